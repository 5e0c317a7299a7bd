import Foundation

/// Keeps a client's requests inside a service's budget instead of discovering it by 429s: a token bucket
/// in the service's units (SharePoint's resource units), shared by every kind of request. It spends at
/// most `share` of the budget's rate, with a burst of `burst` of it, so no minute holds more than
/// `share + burst` of the budget and other apps keep the rest. What the service says wins: a 429 or 503
/// with Retry-After stops every request until then (throttled requests count too, so sending more only
/// digs deeper), and `RateLimit-Remaining` (sent from 80 % of the budget) caps what the bucket holds,
/// stopping until `RateLimit-Reset` when it runs out.
public final class ResourcePacer: @unchecked Sendable {
    public let unitsPerMinute: Double
    private let rate: Double
    private let capacity: Double

    private let lock = NSLock()
    private var available: Double
    private var refilled = ContinuousClock.now
    private var pausedUntil: ContinuousClock.Instant?
    private var waited: Duration = .zero
    /// What was spent in the last minute, oldest first (for `crmfs status`).
    private var spent: [(at: ContinuousClock.Instant, units: Double)] = []

    public init(unitsPerMinute: Int, share: Double = 0.8, burst: Double = 0.1) {
        self.unitsPerMinute = Double(unitsPerMinute)
        rate = Double(unitsPerMinute) * share / 60
        capacity = max(1, Double(unitsPerMinute) * burst)
        available = capacity
    }

    /// Units spent in the last minute.
    public var unitsLastMinute: Int {
        lock.withLock {
            let now = ContinuousClock.now
            return Int(spent.lazy.filter { now - $0.at <= .seconds(60) }.reduce(0) { $0 + $1.units })
        }
    }

    /// How long requests have waited for the budget so far.
    public var totalWait: Duration { lock.withLock { waited } }

    /// The longest one answer (a Retry-After, a RateLimit-Reset) stops every request of the mount: a request
    /// gives up after its retry budget (`RetryPolicy.maxElapsed`, 600 s) anyway, so a longer pause (a day,
    /// or the 285 million years of `RateLimit-Reset: 9e15`) would only stop the whole mount.
    public static let longestPause: Duration = .seconds(300)

    /// How long from now every request waits for what the service said; zero when it said nothing.
    public var pause: Duration {
        lock.withLock { () -> Duration in
            let now = ContinuousClock.now
            return pausedUntil.map { max(.zero, $0 - now) } ?? .zero
        }
    }

    /// Waits until `cost` units may be spent, then spends them.
    public func admit(cost: Int) async throws {
        let cost = min(Double(cost), capacity)
        while true {
            let wait = lock.withLock { () -> Duration in
                let now = ContinuousClock.now
                if let pausedUntil, pausedUntil > now { return pausedUntil - now }
                let elapsed = now - refilled
                available = min(capacity, available + (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18) * rate)
                refilled = now
                if available >= cost {
                    available -= cost
                    spent.removeFirst(spent.prefix { now - $0.at > .seconds(60) }.count)
                    spent.append((now, cost))
                    return .zero
                }
                return .milliseconds(Int(((cost - available) / rate * 1000).rounded(.up)))
            }
            if wait == .zero { return }
            lock.withLock { waited += wait }
            ServiceMetrics.waited(wait, reason: "pacer")
            try await Task.sleep(for: wait)
        }
    }

    /// Learns from an answer what the service thinks of the budget.
    public func observe(_ response: HTTPResponse) {
        let now = ContinuousClock.now
        lock.withLock {
            if response.status == 429 || response.status == 503 {
                let delay = min(RetryAfter.delay(from: response.headers["Retry-After"]) ?? .seconds(5), Self.longestPause)
                pausedUntil = max(pausedUntil ?? now, now + delay)
                available = 0
            }
            // The service's numbers: `inf`, `nan` or `0x1p63` are none, and a reset is at most `longestPause` away.
            if let remaining = WireNumber.double(response.headers["RateLimit-Remaining"], in: 0...1e12) {
                available = min(available, max(0, remaining - capacity))
                if remaining <= capacity {
                    let reset = WireNumber.duration(seconds: response.headers["RateLimit-Reset"], longest: Self.longestPause) ?? .seconds(5)
                    pausedUntil = max(pausedUntil ?? now, now + reset)
                }
            }
        }
    }
}
