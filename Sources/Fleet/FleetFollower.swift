import Foundation
import Freshness
import Logging
import PostgresNIO

/// A mount's subscription to the fleet's change log: it listens on the relay's channel, reads the entries
/// after its position, and has the change feeds apply them (reading details with the user's own token).
/// A first mount, one whose position belongs to another log, or one away longer than the log keeps
/// entries catches up on its own first (one round of each feed). While PostgreSQL cannot be reached or
/// the log's schema is not one it reads, the mount polls on its own, and says so in `crmfs status`; it
/// comes back to the feed when the database does.
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

    /// How often the log is read when no notification comes (one lost while reconnecting, say).
    static let readEvery: Duration = .seconds(10)

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
                if failures == 1 { logger.warning("the fleet's change feed is not available; polling the services on this mount", metadata: ["reason": "\(reason)"]) }
                lock.withLock { current = .polling(reason: reason) }
                feeds.setPolling(true)
            }
            try? await Task.sleep(for: .seconds(min(30, 2 * failures)))
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
        if let kept = feeds.keptFleetPosition, let position = Self.position(kept, in: identity),
           position <= bounds.newest, position >= max(bounds.oldest, 1) - 1 {
            return position
        }
        logger.info("catching up on this mount's own before following the fleet's change feed",
                    metadata: ["kept": "\(feeds.keptFleetPosition ?? "none")", "oldest": "\(bounds.oldest)", "newest": "\(bounds.newest)"])
        try await feeds.catchUp()
        feeds.noteFleetPosition("\(identity):\(bounds.newest)")
        return bounds.newest
    }

    /// Applies every entry after `position`; the position after them. An entry whose details cannot be
    /// read now is tried again (the position stays before it).
    private func applyAll(after position: Int64, from log: ChangeLog, identity: String) async throws -> Int64 {
        var position = position
        while true {
            let entries = try await log.entries(after: position)
            guard let last = entries.last else { return position }
            var attempt = 0
            while true {
                do {
                    try await feeds.apply(entries)
                    break
                } catch {
                    attempt += 1
                    logger.warning("the feed's changes could not be read; trying again", metadata: ["error": "\(error)", "attempt": "\(attempt)"])
                    try await Task.sleep(for: .seconds(min(60, 2 * attempt)))
                }
            }
            position = last.sequence
            feeds.noteFleetPosition("\(identity):\(position)")
        }
    }

    /// A kept position (`IDENTITY:SEQUENCE`) if it belongs to this log.
    static func position(_ kept: String, in identity: String) -> Int64? {
        guard let colon = kept.lastIndex(of: ":"), kept[..<colon] == identity else { return nil }
        return Int64(kept[kept.index(after: colon)...])
    }
}
