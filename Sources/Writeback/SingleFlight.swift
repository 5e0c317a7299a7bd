import Foundation

/// Values worked out once however many ask at the same moment, and kept for a while: the askers of a
/// key share one computation; a failure is shared by those who waited for it and kept by nobody.
final class SingleFlight<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private let keepFor: Duration
    private var known: [String: (value: Value, at: ContinuousClock.Instant)] = [:]
    private var underWay: [String: Task<Value, Error>] = [:]

    private enum Found {
        case kept(Value)
        case underWay(Task<Value, Error>)
    }

    init(keepFor: Duration) { self.keepFor = keepFor }

    func value(for key: String, compute: @escaping @Sendable () async throws -> Value) async throws -> Value {
        // The kept value is read under the same lock as the check: a prune by another key cannot drop it between.
        let found = lock.withLock { () -> Found in
            if let entry = known[key], ContinuousClock.now - entry.at < keepFor { return .kept(entry.value) }
            if let running = underWay[key] { return .underWay(running) }
            let task = Task { try await compute() }
            underWay[key] = task
            return .underWay(task)
        }
        let task: Task<Value, Error>
        switch found {
        case .kept(let value): return value
        case .underWay(let running): task = running
        }
        do {
            let value = try await task.value
            lock.withLock {
                if underWay[key] == task { underWay[key] = nil }
                let now = ContinuousClock.now
                if known.count > 1_000 { known = known.filter { now - $0.value.at < keepFor } }
                known[key] = (value, now)
            }
            return value
        } catch {
            lock.withLock { if underWay[key] == task { underWay[key] = nil } }
            throw error
        }
    }
}
