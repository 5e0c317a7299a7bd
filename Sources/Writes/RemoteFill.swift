import Foundation
import Namespace

/// The remote bytes a staged copy still lacks, copied block by block: a write waits only for the blocks
/// it covers in part (a block it covers whole needs nothing copied), a background copy fills the rest in
/// order, and whatever needs the whole file (close, fsync, truncate) waits until it is complete. So a
/// write near the start of a 1 GiB document costs one block, not the whole download.
///
/// Its lock (`condition`) is a leaf: nothing else is locked while it is held, and the blocks are fetched
/// with it released.
final class RemoteFill: @unchecked Sendable {
    let content: RemoteContent
    let blockSize: Int64

    private enum BlockState { case missing, filling, filled }

    private let condition = NSCondition()
    private var blocks: [BlockState]
    private var remaining: Int
    private var failure: Error?
    private var waiters: [CheckedContinuation<Void, Error>] = []
    private var backgroundStarted = false
    private var backgroundRunning = false
    private var cancelled = false

    init(content: RemoteContent, blockSize: Int64) {
        self.content = content
        self.blockSize = max(1, blockSize)
        // Written so no size overflows it (`size + blockSize - 1` would near Int64.max); sizes are clamped where
        // they enter the tree (`DriveItem.largestSize`), so the map stays small too.
        let size = max(0, content.size)
        let count = Int(size / self.blockSize + (size % self.blockSize == 0 ? 0 : 1))
        blocks = Array(repeating: .missing, count: count)
        remaining = count
    }

    var isComplete: Bool { condition.withLock { remaining == 0 } }

    /// Makes the blocks that `offset..<offset+length` touches hold the remote bytes, fetching each with
    /// `fetch` (on this thread) or waiting for the copy already fetching it. With `overwrite`, a block the
    /// range covers whole is only marked done: the write that follows replaces all of it.
    func ready(offset: Int64, length: Int64, overwrite: Bool, fetch: (Int64) throws -> Void) throws {
        guard length > 0, offset < content.size else { return }
        let end = min(content.size, offset + length)
        for index in Int(offset / blockSize)...Int((end - 1) / blockSize) {
            let start = Int64(index) * blockSize
            let covered = overwrite && offset <= start && end >= min(content.size, start + blockSize)
            guard claim(index, coveredWhole: covered) else { continue }
            do {
                try fetch(Int64(index))
            } catch {
                release(index, filled: false)
                throw error
            }
            release(index, filled: true)
        }
    }

    /// Whether the caller should start the background copy: once, or `again` after it stopped on a failure.
    func startBackground(again: Bool) -> Bool {
        condition.withLock {
            guard !backgroundRunning, remaining > 0, !backgroundStarted || again else { return false }
            backgroundStarted = true
            backgroundRunning = true
            return true
        }
    }

    func backgroundEnded() { condition.withLock { backgroundRunning = false } }

    /// The next missing block, claimed for the background copy; nil when none is left.
    func claimNext() -> Int64? {
        condition.withLock {
            guard let index = blocks.firstIndex(of: .missing) else { return nil }
            blocks[index] = .filling
            return Int64(index)
        }
    }

    /// The background copy's outcome for a block it claimed.
    func finished(_ index: Int64, error: Error?) {
        if let error {
            condition.withLock { failure = failure ?? error }
            release(Int(index), filled: false)
            resumeWaiters()
        } else {
            release(Int(index), filled: true)
        }
    }

    /// Nothing more is needed (the file was truncated to nothing, or removed): every block counts as done
    /// at once, and one being fetched now is dropped when it comes (`isCancelled`, looked at with the copy
    /// held). Never waits for that fetch: a close holding the copy alone calls this, and the fetch needs
    /// the copy to end (they deadlocked), as it needs a task thread the caller may be holding.
    func cancel() {
        condition.withLock {
            cancelled = true
            for index in blocks.indices { blocks[index] = .filled }
            remaining = 0
            condition.broadcast()
        }
        resumeWaiters()
    }

    /// Whether the copy was cancelled: a block fetched for it must not be written into it.
    var isCancelled: Bool { condition.withLock { cancelled } }

    /// Blocks the calling thread (a kernel request's, never a task's) until the copy is complete.
    func waitUntilComplete() throws {
        try condition.withLock {
            while remaining > 0 && failure == nil { condition.wait() }
            if remaining > 0, let failure { throw failure }
        }
    }

    /// Returns once the copy is complete; throws what stopped it.
    func complete() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            let outcome = condition.withLock { () -> Result<Void, Error>? in
                if remaining == 0 { return .success(()) }
                if let failure { return .failure(failure) }
                waiters.append(continuation)
                return nil
            }
            if let outcome { continuation.resume(with: outcome) }
        }
    }

    /// After a failure, lets the background copy try again.
    func clearFailure() { condition.withLock { failure = nil } }

    /// Takes block `index` for this caller to fill; false when it is (or has become) filled.
    private func claim(_ index: Int, coveredWhole: Bool) -> Bool {
        let (claimed, done) = condition.withLock { () -> (Bool, Bool) in
            while blocks[index] == .filling { condition.wait() }
            guard blocks[index] == .missing else { return (false, false) }
            if coveredWhole {
                blocks[index] = .filled
                remaining -= 1
                condition.broadcast()
                return (false, remaining == 0)
            }
            blocks[index] = .filling
            return (true, false)
        }
        if done { resumeWaiters() }
        return claimed
    }

    private func release(_ index: Int, filled: Bool) {
        let done = condition.withLock { () -> Bool in
            guard !cancelled else { return false }  // every block counts as done already
            blocks[index] = filled ? .filled : .missing
            if filled { remaining -= 1 }
            condition.broadcast()
            return remaining == 0
        }
        if done { resumeWaiters() }
    }

    private func resumeWaiters() {
        let (ready, outcome) = condition.withLock { () -> ([CheckedContinuation<Void, Error>], Result<Void, Error>?) in
            let outcome: Result<Void, Error>? = remaining == 0 ? .success(()) : failure.map { .failure($0) }
            guard let outcome else { return ([], nil) }
            defer { waiters.removeAll() }
            return (waiters, outcome)
        }
        if let outcome { for waiter in ready { waiter.resume(with: outcome) } }
    }
}
