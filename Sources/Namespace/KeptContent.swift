import Foundation
import Logging

/// A remount shows the kept tree at once, but the bytes its block cache holds for a document are those of
/// the version the kept listing names, which may have changed while nothing was mounted. Until the first
/// catch-up of the library's feed has confirmed the kept versions (or brought the new ones), an open of a
/// document's service bytes waits for it: at most `longestWait` counted from the first open that waits
/// (one deadline for every open, so a slow catch-up costs a walk one wait, not one per file). A catch-up
/// that fails (the service cannot be reached) or the deadline opens the gate too: the cached bytes serve,
/// as they always did offline. A first mount (nothing kept) never shuts it.
///
/// Its lock is a leaf: nothing is taken while it is held, and waiters are resumed after it is let go.
final class KeptContentGate: @unchecked Sendable {
    enum State: Sendable, Equatable {
        /// Nothing to wait for (a first mount, or a feed that does not follow the library).
        case open
        /// A remount's kept documents wait for the first catch-up.
        case waiting
        case confirmed
        /// The catch-up failed, or did not end in time: what is cached serves unconfirmed.
        case unconfirmed
    }

    let longestWait: Duration
    private let logger: Logger
    private let lock = NSLock()
    private var state = State.open
    private var deadline: ContinuousClock.Instant?
    private var waiters: [UUID: CheckedContinuation<Void, Never>] = [:]

    init(longestWait: Duration, logger: Logger) {
        self.longestWait = longestWait
        self.logger = logger
    }

    var current: State { lock.withLock { state } }

    /// Shuts the gate until the first catch-up (once, before the mount serves anything).
    func shut() {
        lock.withLock { if state == .open { state = .waiting } }
    }

    /// Opens the gate for good, as `outcome` (`.confirmed` or `.unconfirmed`); false when it was open already.
    @discardableResult
    func settle(_ outcome: State) -> Bool {
        let waiting = lock.withLock { () -> [CheckedContinuation<Void, Never>]? in
            guard state == .waiting else { return nil }
            state = outcome
            defer { waiters.removeAll() }
            return Array(waiters.values)
        }
        guard let waiting else { return false }
        waiting.forEach { $0.resume() }
        return true
    }

    /// Returns at once while the gate is open (false); otherwise once it opens, the deadline passes or the
    /// task is cancelled (true: the caller checks for cancellation).
    func wait() async -> Bool {
        let deadline = lock.withLock { () -> ContinuousClock.Instant? in
            guard state == .waiting else { return nil }
            if self.deadline == nil { self.deadline = .now + longestWait }
            return self.deadline
        }
        guard let deadline else { return false }
        let id = UUID()
        let timer = Task { [weak self] in
            try await Task.sleep(until: deadline, clock: .continuous)
            guard let self, settle(.unconfirmed) else { return }
            logger.warning("the library's first catch-up since the mount has not ended in time; documents are read from the cache unconfirmed",
                           metadata: ["waited": "\(longestWait)"])
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                // Checked under the lock: a cancellation either came before (not registered) or finds it.
                let waiting = lock.withLock { () -> Bool in
                    guard state == .waiting, !Task.isCancelled else { return false }
                    waiters[id] = continuation
                    return true
                }
                if !waiting { continuation.resume() }
            }
        } onCancel: {
            lock.withLock { waiters.removeValue(forKey: id) }?.resume()
        }
        timer.cancel()
        return true
    }
}

extension Tree {
    /// A remount whose feed follows the library: opens of the kept documents' bytes wait for its first catch-up.
    public func holdKeptContent() { keptContent.shut() }

    /// The first catch-up since the mount has ended: every kept document is as the service has it now.
    public func keptContentConfirmed() {
        if keptContent.settle(.confirmed) { logger.debug("the first catch-up confirmed the kept documents") }
    }

    /// The first catch-up failed (the service cannot be reached): the cached bytes serve unconfirmed.
    public func keptContentUnconfirmed(_ error: Error) {
        if keptContent.settle(.unconfirmed) {
            logger.warning("the library's first catch-up since the mount failed; documents are read from the cache unconfirmed",
                           metadata: ["error": "\(error)"])
        }
    }

    /// Before a document's service bytes are read: returns at once unless a remount's first catch-up is still
    /// running, then waits for it (bounded, see `KeptContentGate`). Whether it waited: the caller takes the
    /// document again, as the catch-up left it.
    public func waitForKeptContent() async -> Bool { await keptContent.wait() }
}
