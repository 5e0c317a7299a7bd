import ArgumentParser
import Config
import Fleet
import Foundation
import Logging
import Services

/// `crmfs relay CONFIG`: the fleet's one reader of the services' change feeds (see docs/fleet.md). It signs
/// in as the app, follows the library's delta and the CRM's changes, and writes identifiers into the
/// change log in PostgreSQL that every fleet mount follows instead of polling.
struct RelayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay",
        abstract: "Follow the services' change feeds once for a fleet of mounts, into a PostgreSQL change log.",
        discussion: """
            CONFIG is a mount.conf (a path, or NAME for ~/.config/crmfs/NAME.conf) with a [fleet] section naming the \
            database and the relay's role, client credentials for Graph and Salesforce, and the objects the fleet mounts. \
            [freshness] sets how often the relay polls. Runs until SIGINT or SIGTERM; under systemd as crmfs-relay.service.
            """)

    @Argument(help: "The relay's config.")
    var config: String

    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    func run() async throws {
        Hardening.noCoreDumps()
        CRMFS.bootstrapLogging(level: Logger.Level(rawValue: logLevel) ?? .info)
        let config = try CRMFS.loadConfig(config)
        guard let fleet = config.fleet else {
            CRMFS.fail("\(config.path): fleet: missing; the relay writes the change log a [fleet] section names")
        }
        for (key, auth) in [("graph.auth", config.graph.auth.isClientCredentials), ("salesforce.auth", config.salesforce.auth.isClientCredentials)] where !auth {
            CRMFS.fail("\(config.path): \(key): the relay signs in as the app: use client_credentials (each mount reads details as its own user)")
        }
        let relay: Relay
        do {
            let connections = try Connections(config: config)
            relay = Relay(config: config, settings: fleet, database: try FleetDatabase(config: config, settings: fleet),
                          graph: connections.graph, records: connections.salesforce)
        } catch {
            CRMFS.fail("\(error)")
        }
        let work = Task { try await relay.run() }
        let stop = Task {
            await SignalWaiter(signals: [SIGINT, SIGTERM]).wait()
            work.cancel()
        }
        do {
            try await work.value
        } catch {
            CRMFS.fail("\(error)")
        }
        stop.cancel()
    }
}
