import Foundation
import Freshness
import Logging
import PostgresNIO

/// A mount's subscription to the fleet's change log: it listens on the relay's channel, reads the entries
/// after its position, and has the change feeds apply them (reading details with the user's own token).
/// A first mount, one whose position belongs to another log, or one away longer than the log keeps
/// entries catches up on its own first (one round of each feed). While PostgreSQL cannot be reached or
/// the log's schema is not one it reads, the mount polls on its own, and says so in `crmfs status`; it
/// comes back to the feed when the database does. One bad entry holds nothing up: an entry whose ids are
/// not the services' is skipped (logged once), one whose details cannot be read is tried again a few
/// times and then skipped (`FleetBacklog`). Reads that fail as a whole `stallLimit` rounds in a row (the
/// details' `$batch`, or the log itself) make the mount poll on its own too; back, it catches up on its
/// own first and follows from the log's present.
public final class FleetFollower: @unchecked Sendable {
    public enum State: Sendable, Equatable {
        case connecting
        /// Following the log; `relayCaughtUp` is when the relay last read the library's feed in full.
        case following(since: Date, relayCaughtUp: Date?)
        /// Polling on its own, and why.
        case polling(reason: String)
    }

    private let database: FleetDatabase
    private let feeds: ChangeFeeds
    private let logger: Logger
    private let lock = NSLock()
    private var current = State.connecting
    private var task: Task<Void, Never>?
    // Used by the follower's own task only (`run` and what it calls).
    private var backlog = FleetBacklog()
    /// Set when following stalled: the next start catches up on its own and follows from the log's present.
    private var catchUpFirst = false
    /// Stalls since the feed last applied a round: each keeps the mount polling on its own longer.
    private var stalls = 0
    /// Reads of the log that failed in a row.
    private var readFailures = 0

    /// How often the log is read when no notification comes (one lost while reconnecting, say).
    static let readEvery: Duration = .seconds(10)
    /// Rounds in a row whose reads fail as a whole (or failed reads of the log) before the mount polls on its own.
    public static let stallLimit = 5

    public init(database: FleetDatabase, feeds: ChangeFeeds, logger: Logger = Logger(label: "crmfs.fleet")) {
        self.database = database
        self.feeds = feeds
        self.logger = logger
    }

    public var state: State { lock.withLock { current } }

    public func start() {
        lock.withLock {
            guard task == nil else { return }
            task = Task.detached { await self.run() }
        }
    }

    public func stop() async {
        let running = lock.withLock { task }
        running?.cancel()
        await running?.value
    }

    private func run() async {
        var failures = 0
        while !Task.isCancelled {
            do {
                try await database.withChangeLog { log in try await follow(log, failures: &failures) }
            } catch is CancellationError {
                return
            } catch {
                if Task.isCancelled { return }
                failures += 1
                let reason = error is FleetError ? "\(error)" : "PostgreSQL at \(database.settings.address): \(FleetDatabase.describe(error))"
                if case .stalled? = error as? FleetError {
                    // Back, the mount catches up on its own and follows from the log's present: past what would not go.
                    catchUpFirst = true
                    stalls += 1
                    logger.warning("the fleet's change feed is stuck; polling the services on this mount", metadata: ["reason": "\(reason)"])
                } else if failures == 1 {
                    logger.warning("the fleet's change feed is not available; polling the services on this mount", metadata: ["reason": "\(reason)"])
                }
                lock.withLock { current = .polling(reason: reason) }
                feeds.setPolling(true)
            }
            try? await Task.sleep(for: .seconds(max(min(30, 2 * failures), min(120, 30 * stalls))))
        }
    }

    private func follow(_ log: ChangeLog, failures: inout Int) async throws {
        try await log.checkSchema()
        let identity = try await log.identity()
        let (wakes, wake) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let listener = Task {
            try? await log.listen { wake.yield() }
            wake.finish()  // the connection is gone: the read loop ends with it
        }
        defer { listener.cancel() }
        let timer = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: Self.readEvery)
                wake.yield()
            }
        }
        defer { timer.cancel() }

        await feeds.restored()
        feeds.setPolling(false)
        var position = try await startingPosition(log, identity: identity)
        if failures > 0 { logger.info("following the fleet's change feed again") }
        failures = 0
        lock.withLock { current = .following(since: Date(), relayCaughtUp: nil) }
        logger.info("following the fleet's change feed", metadata: ["position": "\(position)"])
        var iterator = wakes.makeAsyncIterator()
        repeat {
            position = try await applyAll(after: position, from: log, identity: identity)
            feeds.keptContentConfirmed()  // what changed while unmounted has reached the tree (only the first time does anything)
            let relay = try await log.positions().values.map(\.caughtUp).max()
            lock.withLock { if case .following(let since, _) = current { current = .following(since: since, relayCaughtUp: relay) } }
        } while await iterator.next() != nil && !Task.isCancelled
        throw FleetError.unreachable(address: database.settings.address, reason: "the connection closed")
    }

    /// Where to read from: the kept position in this log; otherwise (a first mount, another log, or a
    /// position the log no longer has) the log's present, after a round of each feed of its own.
    private func startingPosition(_ log: ChangeLog, identity: String) async throws -> Int64 {
        let bounds = try await log.bounds()
        // seq starts at 1: a database that says less (Int64.min) must not overflow the subtraction.
        if !catchUpFirst, let kept = feeds.keptFleetPosition, let position = Self.position(kept, in: identity),
           position <= bounds.newest, position >= max(bounds.oldest, 1) - 1 {
            return position
        }
        logger.info("catching up on this mount's own before following the fleet's change feed",
                    metadata: ["kept": "\(feeds.keptFleetPosition ?? "none")", "oldest": "\(bounds.oldest)", "newest": "\(bounds.newest)",
                               "stalled": "\(catchUpFirst)"])
        try await feeds.catchUp()
        catchUpFirst = false
        backlog.reset()  // the catch-up read what they were about
        feeds.noteFleetPosition("\(identity):\(bounds.newest)")
        return bounds.newest
    }

    /// Applies every entry after `position`; the position after them. An entry whose ids are not the
    /// services' is skipped (logged once); one whose details cannot be read waits in the backlog and is
    /// tried again in a later round, a few times, then skipped (logged); the others are applied meanwhile,
    /// and the position kept with the tree stays before the oldest that waits. Reads that fail as a whole
    /// are tried again in place; `stallLimit` rounds of them in a row, or as many failed reads of the log,
    /// throw `FleetError.stalled`.
    private func applyAll(after position: Int64, from log: ChangeLog, identity: String) async throws -> Int64 {
        var position = position
        var failedRounds = 0
        while true {
            let entries: [FeedEntry]
            do {
                entries = try await log.entries(after: position)
                readFailures = 0
            } catch let error where !(error is CancellationError) {
                readFailures += 1
                guard readFailures >= Self.stallLimit else { throw error }
                readFailures = 0
                throw FleetError.stalled("the change log could not be read \(Self.stallLimit) times in a row (\(FleetDatabase.describe(error)))")
            }
            let screened = backlog.screen(entries)
            for refused in screened.refused {
                logger.warning("a change log entry is skipped: \(refused.reason)",
                               metadata: ["sequence": "\(refused.entry.sequence)", "id": "\(Self.printable(refused.entry.id))"])
            }
            let batch = backlog.due() + screened.usable
            if !batch.isEmpty {
                do {
                    let round = try await feeds.apply(batch)
                    failedRounds = 0
                    stalls = 0
                    for skipped in backlog.settle(tried: batch, unread: round.unread) {
                        logger.warning("a change's details could not be read in \(FleetBacklog.attempts) tries; it is skipped",
                                       metadata: ["sequence": "\(skipped.entry.sequence)", "id": "\(Self.printable(skipped.entry.id))", "error": "\(skipped.reason)"])
                    }
                } catch let error where !(error is CancellationError) {
                    failedRounds += 1
                    guard failedRounds < Self.stallLimit else {
                        throw FleetError.stalled("the changes' details could not be read \(Self.stallLimit) times in a row (\(error))")
                    }
                    logger.warning("the feed's changes could not be read; trying again", metadata: ["error": "\(error)", "attempt": "\(failedRounds)"])
                    try await Task.sleep(for: .seconds(min(60, 2 * failedRounds)))
                    continue
                }
            }
            if let last = entries.last { position = last.sequence }
            let kept = backlog.oldestWaiting.map { min(position, $0 - 1) } ?? position
            feeds.noteFleetPosition("\(identity):\(kept)")
            if entries.isEmpty { return position }
        }
    }

    /// An id from the log as a log line may show it: quoted, escaped, at most 100 characters.
    static func printable(_ id: String) -> String {
        String(id.prefix(100)).debugDescription
    }

    /// A kept position (`IDENTITY:SEQUENCE`) if it belongs to this log.
    static func position(_ kept: String, in identity: String) -> Int64? {
        guard let colon = kept.lastIndex(of: ":"), kept[..<colon] == identity else { return nil }
        return Int64(kept[kept.index(after: colon)...])
    }
}

/// A follower's entries that could not be used as they came: one whose ids are not the services' is
/// refused (reported once per id, for the log), one whose details could not be read waits and is tried
/// again later (after 5, 10, 20 s), and after `attempts` tries in all is given up (reported).
public struct FleetBacklog: Sendable {
    /// Tries in all of an entry whose details cannot be read, before it is skipped.
    public static let attempts = 4
    /// The wait before the first try again; it doubles with each.
    public static let retryAfter: TimeInterval = 5

    private struct Key: Hashable, Sendable {
        var source: FeedEntry.Source
        var id: String

        init(_ entry: FeedEntry) {
            source = entry.source
            id = entry.id
        }
    }

    private struct Waiting: Sendable {
        var entry: FeedEntry
        var tries: Int
        var due: Date
    }

    private var waiting: [Key: Waiting] = [:]
    private var refused: Set<Key> = []

    public init() {}

    /// `entries` less those whose ids are not the services'; of those, the ones not refused before, with why.
    public mutating func screen(_ entries: [FeedEntry]) -> (usable: [FeedEntry], refused: [UnreadEntry]) {
        var usable: [FeedEntry] = []
        var newly: [UnreadEntry] = []
        for entry in entries {
            guard let reason = entry.malformation else {
                usable.append(entry)
                continue
            }
            if refused.count >= 10_000 { refused.removeAll() }  // bounded: one flood is reported again, not kept
            if refused.insert(Key(entry)).inserted { newly.append(UnreadEntry(entry: entry, reason: reason)) }
        }
        return (usable, newly)
    }

    /// The waiting entries whose time to be tried again has come, oldest first.
    public func due(at now: Date = Date()) -> [FeedEntry] {
        waiting.values.filter { $0.due <= now }.map(\.entry).sorted { $0.sequence < $1.sequence }
    }

    /// After a round that tried `tried`: those it could not read (`unread`) wait, or, tried `attempts`
    /// times, are given up and returned; the others are done with.
    public mutating func settle(tried: [FeedEntry], unread: [UnreadEntry], at now: Date = Date()) -> [UnreadEntry] {
        var failed: [Key: UnreadEntry] = [:]
        for entry in unread { failed[Key(entry.entry)] = entry }
        var givenUp: [UnreadEntry] = []
        for key in Set(tried.map(Key.init)) {
            guard let failure = failed[key] else {
                waiting[key] = nil
                continue
            }
            let tries = (waiting[key]?.tries ?? 0) + 1
            if tries >= Self.attempts {
                waiting[key] = nil
                givenUp.append(failure)
            } else {
                waiting[key] = Waiting(entry: failure.entry, tries: tries, due: now.addingTimeInterval(Self.retryAfter * Double(1 << (tries - 1))))
            }
        }
        return givenUp.sorted { $0.entry.sequence < $1.entry.sequence }
    }

    /// The log position of the oldest entry that waits (the position kept with the tree stays before it).
    public var oldestWaiting: Int64? { waiting.values.map(\.entry.sequence).min() }

    /// How many entries wait.
    public var count: Int { waiting.count }

    /// Forgets the entries that wait (the mount caught up on its own).
    public mutating func reset() { waiting.removeAll() }
}
