import Foundation

/// What goes wrong on purpose, and how often: `--faults 429:0.1,503:0.05,reset:0.02,norange:0.1`.
public struct FaultPlan: Sendable {
    /// Fractions of requests answered 429 or 503 (with Retry-After), dropped (`reset`),
    /// or served whole where a range was asked (`norange`, download URLs only).
    public var rates: [(fault: Fault, rate: Double)] = []
    /// Every request waits this long before it is answered, give or take up to `latencyJitterMilliseconds`
    /// (drawn evenly), as a request to a real service does.
    public var latencyMilliseconds = 0
    public var latencyJitterMilliseconds = 0
    /// Each download and upload stream moves at most this many bytes a second; 0 is no cap.
    public var streamBytesPerSecond: Int64 = 0
    public var retryAfterSeconds = 1
    /// A Retry-After value sent as it is instead of the seconds (`inf`, `1e30`, a date): what a
    /// misbehaving proxy or service might send, for the clients' parsers to survive.
    public var retryAfterText: String?
    public var seed: UInt64 = 42

    public init() {}

    public init(spec: String) throws {
        try parse(spec: spec)
    }

    public mutating func parse(spec: String) throws {
        var rates: [(Fault, Double)] = []
        for entry in spec.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !entry.isEmpty {
            let parts = entry.split(separator: ":")
            guard parts.count == 2, let rate = Double(parts[1]), (0...1).contains(rate) else {
                throw SandboxError.badOption("fault '\(entry)': expected KIND:FRACTION with a fraction from 0 to 1, e.g. 429:0.1")
            }
            rates.append((try Fault(kind: String(parts[0])), rate))
        }
        guard rates.reduce(0, { $0 + $1.1 }) <= 1 else { throw SandboxError.badOption("fault fractions add up to more than 1") }
        self.rates = rates
    }
}

public enum Fault: Sendable, Equatable {
    case status(Int)
    case reset
    case ignoreRange
    /// An upload fragment answered 202 with the session where it was, its bytes dropped (upload URLs only).
    case stall
    /// No fault: lets a queued sequence skip a request.
    case pass

    init(kind: String) throws {
        switch kind {
        case "none": self = .pass
        case "reset": self = .reset
        case "norange": self = .ignoreRange
        case "stall": self = .stall
        default:
            guard let status = Int(kind), [429, 500, 502, 503, 504].contains(status) else {
                throw SandboxError.badOption("fault kind '\(kind)' must be 429, 500, 502, 503, 504, reset, norange or stall")
            }
            self = .status(status)
        }
    }
}

final class FaultInjector: @unchecked Sendable {
    private let lock = NSLock()
    private var current: FaultPlan
    private var rng: SeededGenerator
    /// Latency draws use dice of their own, so the faults a seed gives stay the same with latency on.
    private var latencyRNG: SeededGenerator
    /// Faults to inject into the very next requests, in order, before the plan's dice apply again.
    private var queued: [Fault] = []

    init(plan: FaultPlan) {
        current = plan
        rng = SeededGenerator(seed: plan.seed)
        latencyRNG = SeededGenerator(seed: plan.seed &+ 1)
    }

    var plan: FaultPlan { lock.withLock { current } }

    func replace(plan: FaultPlan) {
        lock.withLock {
            current = plan
            rng = SeededGenerator(seed: plan.seed)
            latencyRNG = SeededGenerator(seed: plan.seed &+ 1)
        }
    }

    /// How long the next request waits: the mean, give or take the jitter; never less than nothing.
    func latency() -> Duration {
        lock.withLock {
            let mean = current.latencyMilliseconds, jitter = current.latencyJitterMilliseconds
            guard mean > 0 || jitter > 0 else { return .zero }
            let offset = jitter > 0 ? Int(latencyRNG.next() % UInt64(2 * jitter + 1)) - jitter : 0
            return .milliseconds(max(0, mean + offset))
        }
    }

    func enqueue(_ faults: [Fault]) {
        lock.withLock { queued += faults }
    }

    /// One draw per request: a queued fault first, otherwise at most one chosen by the plan's fractions.
    func draw() -> Fault? {
        lock.withLock {
            if !queued.isEmpty { return queued.removeFirst() }
            guard !current.rates.isEmpty else { return nil }
            let roll = Double(rng.next() % 1_000_000) / 1_000_000
            var threshold = 0.0
            for (fault, rate) in current.rates {
                threshold += rate
                if roll < threshold { return fault }
            }
            return nil
        }
    }
}
