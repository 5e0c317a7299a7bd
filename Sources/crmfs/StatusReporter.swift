import Cache
import Config
import CoreMetrics
import Fleet
import Foundation
import Freshness
import Services
import Status
import Writeback

/// A running mount's status, gathered from its parts each time `crmfs status` asks (see MountStatus).
struct StatusReporter: Sendable {
    let config: MountConfig
    let mountpoint: String
    let stateDirectory: URL
    let connections: Connections
    let feeds: ChangeFeeds
    let follower: FleetFollower?
    let cache: BlockCache
    /// Nil for a read-only mount.
    let engine: WritebackEngine?
    let mountedAt = Date()

    var socketPath: String { stateDirectory.appendingPathComponent(MountStatus.socketName).path }

    func report() -> MountStatus {
        let problems = engine?.problems ?? []
        let givenUp = Set(engine?.givenUp.keys.map { $0 } ?? [])
        let waiting = ((try? engine?.outstanding()) ?? []).filter { change in change.id.map { !givenUp.contains($0) } ?? true }.count
        let conflicts = ((try? FileManager.default.contentsOfDirectory(atPath: stateDirectory.appendingPathComponent("conflicts").path)) ?? []).sorted()
        let caughtUp = feeds.caughtUp
        let usage = connections.salesforce.apiUsage
        var status = MountStatus(
            mountpoint: mountpoint, config: config.path, stateDirectory: stateDirectory.path, pid: getpid(), mountedAt: mountedAt,
            readOnly: engine == nil, signIns: signIns,
            uploads: (engine?.uploader.progress.current ?? []).map {
                MountStatus.Upload(name: $0.name, bytesSent: $0.sent, bytes: $0.bytes, bytesPerSecond: $0.bytesPerSecond, secondsLeft: $0.secondsLeft)
            },
            waiting: waiting, conflicts: conflicts, failed: problems.map { MountStatus.Problem(name: $0.name, reason: $0.reason) },
            libraryCaughtUp: caughtUp.drive, crmCaughtUp: caughtUp.crm,
            graphUnitsLastMinute: connections.graph.pacer?.unitsLastMinute, graphUnitsPerMinute: connections.graph.pacer.map { Int($0.unitsPerMinute) },
            salesforceCallsToday: usage?.used, salesforceDailyLimit: usage?.limit,
            cacheBytes: cache.usedBytes, cacheLimit: cache.capacity)
        status.fleet = follower.map { Self.describe($0.state) }
        return status
    }

    /// A fleet mount's feed, in a line.
    static func describe(_ state: FleetFollower.State, now: Date = Date()) -> String {
        switch state {
        case .connecting: "connecting to the fleet's change feed"
        case .following(let since, let relay):
            "following the fleet's change feed since \(since.formatted(.iso8601))"
                + (relay.map { "; the relay caught up \(Int(now.timeIntervalSince($0).rounded())) s ago" } ?? "")
        case .polling(let reason): "polling on its own: the fleet's change feed is not available (\(reason))"
        }
    }

    /// Sets the gauges a metrics scrape reads from the same facts `crmfs status` shows.
    func recordGauges() {
        let status = report()
        let now = Date()
        Gauge(label: "crmfs_changes_waiting").record(status.waiting)
        Gauge(label: "crmfs_uploads_in_flight").record(status.uploads.count)
        Gauge(label: "crmfs_changes_failed").record(status.failed.count)
        Gauge(label: "crmfs_conflicts_kept").record(status.conflicts.count)
        Gauge(label: "crmfs_cache_bytes").record(status.cacheBytes)
        Gauge(label: "crmfs_cache_limit_bytes").record(status.cacheLimit)
        for (feed, caughtUp) in [("library", status.libraryCaughtUp), ("crm", status.crmCaughtUp)] {
            // Since the mount started, while a feed has not caught up yet.
            Gauge(label: "crmfs_feed_lag_seconds", dimensions: [("feed", feed)]).record(now.timeIntervalSince(caughtUp ?? mountedAt))
        }
        if let units = status.graphUnitsLastMinute { Gauge(label: "crmfs_graph_units_last_minute").record(units) }
        if let calls = status.salesforceCallsToday { Gauge(label: "crmfs_salesforce_calls_today").record(calls) }
        for signIn in status.signIns {
            Gauge(label: "crmfs_signed_in", dimensions: [("service", signIn.service)]).record(signIn.problem == nil ? 1 : 0)
        }
    }

    private var signIns: [MountStatus.SignIn] {
        let asUser: [SignInService: Bool] = [.graph: config.userSignIns.contains(.graph), .salesforce: config.salesforceSignsInAsUser]
        return [(SignInService.graph, connections.graphSignIn), (.salesforce, connections.salesforceSignIn)].map { service, watch in
            let account = asUser[service] == true
                ? (try? String(contentsOfFile: config.accountFile(service), encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) : nil
            return MountStatus.SignIn(service: service.rawValue, kind: asUser[service] == true ? "user" : "app", account: account, problem: watch.problem)
        }
    }
}
