import ArgumentParser
import CRM
import Config
import Foundation
import Fleet
import Graph
import HTTP
import Services

/// `crmfs check CONFIG`: validates the config, its secret files, and what it names on both services.
struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check a mount configuration against Salesforce and SharePoint, one line per check.")

    @Argument(help: "The mount configuration: a path, or NAME for ~/.config/crmfs/NAME.conf.")
    var config: String

    func run() async throws {
        Hardening.noCoreDumps()  // it reads the config's secrets and gets tokens
        CRMFS.bootstrapLogging(level: .critical)
        var failures = 0
        func report(_ ok: Bool, _ text: String) {
            print("\(ok ? "ok  " : "FAIL") \(text)")
            if !ok { failures += 1 }
        }
        let loaded: MountConfig
        do {
            loaded = try ConfigLoader.load(path: UserPaths().config(config))
            report(true, "config \(config) is valid (\(loaded.objects.count) objects)")
        } catch {
            report(false, "\(error)")
            throw ExitCode(1)
        }
        let connections: Connections
        do {
            connections = try Connections(config: loaded)
            report(true, "secrets are readable and private (0600)")
        } catch {
            report(false, "\(error)")
            throw ExitCode(1)
        }
        do {
            _ = try await connections.graphToken.token()
            report(true, "Entra ID token for Graph (tenant \(loaded.graph.tenant))")
            let site = try await connections.graph.site(hostname: loaded.graph.siteHostname, path: loaded.graph.sitePath)
            report(true, "SharePoint site \(loaded.graph.siteHostname):\(loaded.graph.sitePath)")
            let drives = try await connections.graph.drives(siteID: site.id)
            if let drive = drives.first(where: { $0.name.caseInsensitiveCompare(loaded.graph.library) == .orderedSame }) {
                report(true, "document library '\(loaded.graph.library)'")
                let list = try await connections.graph.list(driveID: drive.id)
                let columns = Set(try await connections.graph.columns(siteID: site.id, listID: list.id).map(\.name))
                for (index, object) in loaded.objects.enumerated() {
                    for mapping in object.mappings {
                        report(columns.contains(mapping.spColumn), "objects[\(index)] column '\(mapping.spColumn)' exists in '\(loaded.graph.library)'")
                    }
                }
            } else {
                report(false, "graph.library: no library '\(loaded.graph.library)'; the site has \(drives.map(\.name).joined(separator: ", "))")
            }
        } catch {
            report(false, "Graph: \(error)")
        }
        do {
            _ = try await connections.salesforceToken.token()
            report(true, "Salesforce token (\(loaded.salesforce.instanceURL))")
            try await ObjectValidation.validate(loaded, salesforce: connections.salesforce)
            for object in loaded.objects {
                var soql = "SELECT Id FROM \(object.object)"
                if let filter = object.filter { soql += " WHERE \(filter)" }
                _ = try await connections.salesforce.queryPages(soql + " LIMIT 1").first { _ in true }
                report(true, "object \(object.object) and its fields\(object.filter.map { ", filter '\($0)'" } ?? "")")
            }
        } catch {
            report(false, "Salesforce: \(error)")
        }
        if let fleet = loaded.fleet { await checkFleet(fleet, of: loaded, report) }
        if failures > 0 { throw ExitCode(1) }
    }

    /// The fleet's change log: reachable with the configured role, a schema this crmfs reads, a relay writing it.
    private func checkFleet(_ fleet: FleetSettings, of config: MountConfig, _ report: (Bool, String) -> Void) async {
        do {
            let (relay, encrypted) = try await FleetDatabase(config: config, settings: fleet).withChangeLog { log in
                try await log.checkSchema()
                return (try await log.positions().values.map(\.caughtUp).max(), try await log.isEncrypted())
            }
            report(true, "fleet: the change log at \(fleet.address) (\(encrypted ? "over TLS" : "not encrypted")), database \(fleet.database), as \(fleet.user); "
                   + (relay.map { "the relay caught up \(Int(Date().timeIntervalSince($0).rounded())) s ago" } ?? "no relay has written it yet"))
        } catch {
            report(false, "fleet: \(error)")
        }
    }
}
