import Foundation
import PostgresNIO

/// A query to a server that went away without closing the connection (stopped, crashed, or cut off by
/// the network) may never be answered: every use of the fleet's connection has a deadline, after which
/// the connection is closed and the caller learns the database is out of reach.
enum Deadline {
    static func run<T: Sendable>(_ connection: PostgresConnection, address: String, within limit: Duration = .seconds(20),
                                 _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let work = Task { try await body() }
        let settled = Once()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
                let timer = Task {
                    try await Task.sleep(for: limit)
                    guard settled.first() else { return }
                    work.cancel()
                    FleetDatabase.discard(connection)
                    continuation.resume(throwing: FleetError.unreachable(address: address, reason: "no answer within \(limit)"))
                }
                Task {
                    let result = await work.result
                    guard settled.first() else { return }
                    timer.cancel()
                    continuation.resume(with: result)
                }
            }
        } onCancel: {
            work.cancel()
        }
    }
}

/// True for the first caller only.
private final class Once: @unchecked Sendable {
    private let lock = NSLock()
    private var done = false

    func first() -> Bool {
        lock.withLock {
            defer { done = true }
            return !done
        }
    }
}
