/// Runs `body`; false (and `body` cancelled, not awaited) when it has not returned within `limit`: for
/// calls whose bug would be to wait forever, so such a test fails instead of hanging the suite. The limit
/// is generous (a loaded machine is slow, never this slow): it bounds a hang, it does not time a call.
public func finishes(within limit: Duration, _ body: @escaping @Sendable () async throws -> Void) async throws -> Bool {
    let decided = Locked(false)
    return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Bool, Error>) in
        @Sendable func decide(_ result: Result<Bool, Error>) {
            let first = decided.withLock { done -> Bool in
                defer { done = true }
                return !done
            }
            if first { continuation.resume(with: result) }
        }
        let timer = Task {
            try? await Task.sleep(for: limit)
            decide(.success(false))
        }
        let work = Task {
            do {
                try await body()
                decide(.success(true))
            } catch {
                decide(.failure(error))
            }
            timer.cancel()
        }
        Task {
            _ = await timer.result
            work.cancel()
        }
    }
}
