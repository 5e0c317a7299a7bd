import Logging

/// How a feed's rounds follow one another, for the mount's feeds and the fleet's relay alike: `every`
/// apart while they work; while they keep failing, twice as far apart each time, up to ten minutes (or
/// `every` itself when that is longer), from the same position. A failure is logged once a round, and
/// the first round that works again says so.
public struct FeedRounds: Sendable {
    let name: String
    let logger: Logger
    /// Failures that are not the feed's own (the relay's change log going away): passed on, not retried here.
    let passesOn: @Sendable (any Error) -> Bool
    public private(set) var failures = 0

    public init(_ name: String, logger: Logger, passesOn: @escaping @Sendable (any Error) -> Bool = { _ in false }) {
        self.name = name
        self.logger = logger
        self.passesOn = passesOn
    }

    /// Runs one round; a failure is counted and logged, or thrown when `passesOn` says it is not the feed's.
    public mutating func run(_ round: () async throws -> Void) async throws {
        do {
            try await round()
            if failures > 0 { logger.info("\(name) works again") }
            failures = 0
        } catch let error where !passesOn(error) && !(error is CancellationError) {
            failures += 1
            logger.warning("\(name) failed; trying again later", metadata: ["error": "\(error)", "failures": "\(failures)"])
        }
    }

    /// Seconds until the next round, for rounds `every` seconds apart.
    public func delay(every: Double) -> Double {
        min(every * Double(1 << min(failures, 6)), max(every, 600))
    }
}
