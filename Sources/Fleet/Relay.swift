import Config
import CRM
import Foundation
import Freshness
import Graph
import HTTP
import Logging
import Namespace
import PostgresNIO

/// The fleet's one reader of the services' change feeds: follows the library's delta and the CRM's
/// changed and deleted records of every configured object (one composite call a poll), as the app, and
/// writes what changed (identifiers only) into the change log, with its positions, in one transaction a
/// round: a restart goes on from where it stopped. One relay works at a time: a second one started by
/// mistake waits on an advisory lock. Paced by the same budgets as a mount; its lag is in the log.
public final class Relay: @unchecked Sendable {
    private let config: MountConfig
    private let settings: FleetSettings
    private let database: FleetDatabase
    private let graph: any DriveService
    private let records: any RecordService
    private let logger: Logger
    private let sessionLock = NSLock()
    private var session = RelaySession()

    /// The advisory lock every relay of a database takes ("crmfs" in ASCII).
    static let lockKey: Int64 = 0x63_72_6D_66_73
    /// How far before the newest change seen a CRM poll looks again, for changes committed late.
    public static let crmOverlap: TimeInterval = 30

    public init(config: MountConfig, settings: FleetSettings, database: FleetDatabase, graph: any DriveService, records: any RecordService,
                logger: Logger = Logger(label: "crmfs.relay")) {
        self.config = config
        self.settings = settings
        self.database = database
        self.graph = graph
        self.records = records
        self.logger = logger
    }

    /// Relays until cancelled. PostgreSQL going away is waited out (with backoff); a schema it does not
    /// know ends it.
    public func run() async throws {
        var failures = 0
        while !Task.isCancelled {
            do {
                try await database.withChangeLog { log in try await serve(log, failures: &failures) }
            } catch is CancellationError {
                return
            } catch {
                if case .schema? = error as? FleetError { throw error }
                failures += 1
                logger.warning("the change log cannot be written; trying again", metadata: ["error": "\(FleetDatabase.describe(error))", "failures": "\(failures)"])
            }
            try? await Task.sleep(for: .seconds(min(60, 1 << min(failures, 6))))
        }
    }

    private func serve(_ log: ChangeLog, failures: inout Int) async throws {
        try await waitForTheLock(log)
        try await log.migrate(readerRole: settings.readerRole)
        let driveID = try await LibraryLocation.find(config: config, graph: graph).driveID
        let kept = try await log.positions()
        var state = RelayState(driveID: driveID, deltaLink: kept[RelayState.driveFeed(driveID)]?.position,
                               marks: kept.compactMapValues { ServiceTime.parse($0.position) })
        if state.deltaLink == nil {
            // A new log starts from the library as it is now: mounts enumerate it on their own once.
            state.deltaLink = try await graph.latestDeltaLink(driveID: driveID)
            try await log.append([], positions: [RelayState.driveFeed(driveID): state.deltaLink!])
        }
        logger.info("relaying the services' changes", metadata: ["drive": "\(driveID)", "objects": "\(config.objects.map(\.object).joined(separator: ","))"])
        failures = 0
        let clock = ContinuousClock()
        var nextDrive = clock.now, nextCRM = clock.now, nextTrim = clock.now
        // A service failing (after the clients' own retries) is the feed's to wait out; the change log failing
        // ends the relay's session with the database (it reconnects).
        let endsTheSession: @Sendable (any Error) -> Bool = { $0 is FleetError || $0 is PSQLError }
        var driveRounds = FeedRounds("the library's change feed", logger: logger, passesOn: endsTheSession)
        var crmRounds = FeedRounds("the CRM's changes", logger: logger, passesOn: endsTheSession)
        while !Task.isCancelled {
            let now = clock.now
            if config.freshness.drivePoll > 0, now >= nextDrive {
                try await driveRounds.run { try await relayDrive(&state, into: log) }
                nextDrive = clock.now + .seconds(driveRounds.delay(every: config.freshness.drivePoll))
            }
            if config.freshness.crmPoll > 0, now >= nextCRM {
                try await crmRounds.run { try await relayRecords(&state, into: log) }
                nextCRM = clock.now + .seconds(crmRounds.delay(every: ChangeFeeds.crmInterval(config.freshness.crmPoll, usage: records.apiUsage)))
            }
            if now >= nextTrim {
                let dropped = try await log.trim(olderThan: settings.retention)
                reportLag(trimmed: dropped)
                nextTrim = clock.now + .seconds(600)
            }
            let polls = [config.freshness.drivePoll > 0 ? nextDrive : nil, config.freshness.crmPoll > 0 ? nextCRM : nil].compactMap { $0 }
            try await Task.sleep(until: (polls + [nextTrim]).min()!, clock: clock)
        }
    }

    /// Holds the fleet's advisory lock on this connection (for as long as it lives), waiting while another
    /// relay holds it.
    private func waitForTheLock(_ log: ChangeLog) async throws {
        var told = false
        while true {
            if try await log.tryAdvisoryLock(Self.lockKey) { return }
            if !told {
                logger.notice("another relay is following the feeds for this change log; waiting until it stops")
                told = true
            }
            sessionLock.withLock { session.waiting = true }
            try await Task.sleep(for: .seconds(5))
        }
    }

    /// One round of the library's delta: every page, each written with the link that follows it.
    private func relayDrive(_ state: inout RelayState, into log: ChangeLog) async throws {
        var link = state.deltaLink
        var written = 0
        while true {
            let page: DeltaPage
            do {
                page = try await graph.delta(driveID: state.driveID, link: link, pageSize: 999)
            } catch let error as GraphError where error.needsResync {
                // The position expired: every item is told again (mounts read only those they hold).
                logger.warning("the library's change feed position expired; relaying the whole library again")
                link = error.location
                continue
            }
            let entries = page.items.map { item in
                FeedEntry(source: .drive(state.driveID), kind: item.isDeleted ? .deleted : .changed, id: item.id,
                          parentID: item.parentReference?.id, changedAt: item.lastModifiedDateTime.flatMap(ServiceTime.parse) ?? Date())
            }
            guard let next = page.nextLink ?? page.deltaLink else { break }
            try await log.append(entries, positions: [RelayState.driveFeed(state.driveID): next])
            written += entries.count
            link = next
            if page.nextLink == nil { break }
        }
        state.deltaLink = link
        sessionLock.withLock { session.driveCaughtUp = Date(); session.waiting = false; session.entries += written }
        if written > 0 { logger.debug("relayed library changes", metadata: ["entries": "\(written)"]) }
    }

    /// One poll of every configured object in one composite call: records changed or deleted since each
    /// object's mark (less an overlap for late commits; entries already relayed are not written again).
    private func relayRecords(_ state: inout RelayState, into log: ChangeLog) async throws {
        let started = Date()
        let queries = config.objects.map { object in
            let since = state.marks[RelayState.objectFeed(object.object)] ?? started
            let from = ChangeFeeds.soqlDateTime(since.addingTimeInterval(-Self.crmOverlap))
            return RecordQuery("SELECT Id, IsDeleted, CreatedDate, SystemModstamp FROM \(object.object) WHERE SystemModstamp > \(from) ORDER BY SystemModstamp",
                               includeDeleted: true)
        }
        let answers = try await records.queries(queries)
        var entries: [FeedEntry] = []
        var positions: [String: String] = [:]
        for (object, answer) in zip(config.objects, answers) {
            let feed = RelayState.objectFeed(object.object)
            let mark = state.marks[feed] ?? started
            var newest = mark
            for record in answer {
                guard let id = record.id, let stamp = record["SystemModstamp"]?.stringValue.flatMap(ServiceTime.parse) else { continue }
                newest = max(newest, stamp)
                guard state.firstSighting(id, at: stamp) else { continue }
                let created = record["CreatedDate"]?.stringValue.flatMap(ServiceTime.parse).map { $0 > mark.addingTimeInterval(-Self.crmOverlap) } ?? false
                let kind: FeedEntry.Kind = record["IsDeleted"]?.boolValue == true ? .deleted : created ? .created : .changed
                entries.append(FeedEntry(source: .object(object.object), kind: kind, id: id, changedAt: stamp))
            }
            state.marks[feed] = newest
            positions[feed] = ChangeFeeds.soqlDateTime(newest)
        }
        state.forgetSightingsOutsideTheOverlap()
        try await log.append(entries, positions: positions)
        sessionLock.withLock { session.crmCaughtUp = Date(); session.waiting = false; session.entries += entries.count }
    }

    /// When each feed was last relayed in full, and whether the relay waits for another one.
    public var status: RelaySession { sessionLock.withLock { session } }

    /// Every ten minutes: what the relay wrote, and how far behind each feed is (a warning when one has not
    /// caught up for three of its intervals: the services are slow, throttling, or refusing).
    private func reportLag(trimmed: Int) {
        let (session, written) = sessionLock.withLock { () -> (RelaySession, Int) in
            defer { self.session.entries = 0 }
            return (self.session, self.session.entries)
        }
        let now = Date()
        let lag = { (date: Date?) in date.map { String(Int(now.timeIntervalSince($0).rounded())) + " s" } ?? "not yet" }
        let metadata: Logger.Metadata = ["entries": "\(written)", "trimmed": "\(trimmed)",
                                         "library caught up": "\(lag(session.driveCaughtUp))", "CRM caught up": "\(lag(session.crmCaughtUp))"]
        let behind = [(session.driveCaughtUp, config.freshness.drivePoll), (session.crmCaughtUp, config.freshness.crmPoll)].contains { caughtUp, interval in
            interval > 0 && caughtUp.map { now.timeIntervalSince($0) > 3 * max(interval, 60) } == true
        }
        if behind { logger.warning("the relay is behind the services' feeds", metadata: metadata) } else { logger.info("relayed", metadata: metadata) }
    }
}

/// What the relay has done lately, for its log and status.
public struct RelaySession: Sendable {
    public var driveCaughtUp: Date?
    public var crmCaughtUp: Date?
    public var waiting = false
    /// Entries written since the last report.
    public var entries = 0
}

/// The relay's positions while it runs: the delta link, each object's newest `SystemModstamp`, and the
/// record versions relayed within the overlap (so the overlap writes nothing twice).
public struct RelayState: Sendable {
    let driveID: String
    var deltaLink: String?
    public var marks: [String: Date]
    private var sightings: [String: Date] = [:]

    public init(driveID: String, deltaLink: String?, marks: [String: Date]) {
        self.driveID = driveID
        self.deltaLink = deltaLink
        self.marks = marks
    }

    static func driveFeed(_ driveID: String) -> String { "drive:\(driveID)" }
    static func objectFeed(_ object: String) -> String { "object:\(object)" }

    /// Whether this version of the record is new to the relay.
    public mutating func firstSighting(_ id: String, at stamp: Date) -> Bool {
        if let seen = sightings[id], seen >= stamp { return false }
        sightings[id] = stamp
        return true
    }

    /// Forgets the versions no poll can select again: those older than the overlap before every object's
    /// mark. (The window follows the newest change, not the clock: while nothing changes, the last
    /// changes stay in it, and must stay known.)
    public mutating func forgetSightingsOutsideTheOverlap() {
        guard let oldest = marks.values.min() else { return }
        let cutoff = oldest.addingTimeInterval(-Relay.crmOverlap)
        sightings = sightings.filter { $0.value >= cutoff }
    }
}
