import Foundation

/// Where an upload whose staged bytes an `fsync` is still flushing waits before its last fragment: the
/// service must not get the whole file before it is durable here. The flush ends in `sealed` or `failed`.
public final class SealGate: @unchecked Sendable {
    private let lock = NSLock()
    private var waiters: [Int64: [CheckedContinuation<Void, Error>]] = [:]
    private var failures: [Int64: String] = [:]

    public init() {}

    /// Returns once change `id`'s bytes are durable (`isSealed` says whether they are already); throws
    /// when the flush failed.
    func wait(for id: Int64, isSealed: @escaping () throws -> Bool) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            let outcome = lock.withLock { () -> Result<Void, Error>? in
                if let failure = failures[id] { return .failure(SealFailure(reason: failure)) }
                do {
                    if try isSealed() { return .success(()) }
                } catch {
                    return .failure(error)
                }
                waiters[id, default: []].append(continuation)
                return nil
            }
            if let outcome { continuation.resume(with: outcome) }
        }
    }

    /// Change `id`'s bytes are durable now (the journal says so already).
    public func sealed(_ id: Int64) {
        let waiting = lock.withLock { () -> [CheckedContinuation<Void, Error>] in
            failures[id] = nil
            return waiters.removeValue(forKey: id) ?? []
        }
        for waiter in waiting { waiter.resume() }
    }

    /// Change `id`'s bytes could not be made durable: its upload stops before the last fragment.
    public func failed(_ id: Int64, reason: String) {
        let waiting = lock.withLock { () -> [CheckedContinuation<Void, Error>] in
            failures[id] = reason
            return waiters.removeValue(forKey: id) ?? []
        }
        for waiter in waiting { waiter.resume(throwing: SealFailure(reason: reason)) }
    }

    /// A later flush will try again.
    public func reset(_ id: Int64) { lock.withLock { _ = failures.removeValue(forKey: id) } }
}

/// The staged bytes of a change could not be made durable (the flush or its journal entry failed).
public struct SealFailure: Error, CustomStringConvertible, Sendable {
    public var reason: String
    public init(reason: String) { self.reason = reason }
    public var description: String { "could not make the staged file durable: \(reason)" }
}
