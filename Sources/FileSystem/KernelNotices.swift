import Foundation
import Namespace

/// Whatever keeps caches of the mount's names, attributes and pages (the kernel, through the FUSE
/// adapter): told when they changed. Called on the notice queue, one call at a time; a call may wait
/// until the kernel has answered a request on the same directory.
public protocol KernelNotifier: Sendable {
    func tell(_ notices: [KernelNotice])
}

/// Remote changes reach the kernel's caches: names that went or changed are forgotten, and so are the
/// attributes and cached pages of nodes that changed, so entry and attribute timeouts can be long.
extension CRMFileSystem {
    /// Notices go to `notifier` from now on (the adapter, once the kernel session is there).
    public func attach(_ notifier: any KernelNotifier) {
        lock.withLock { self.notifier = notifier }
    }

    /// No notice goes out after this returns (the adapter, before its kernel session goes).
    public func detach() {
        lock.withLock { notifier = nil }
        Self.noticeQueue.sync {}
    }

    /// Hands what a change feed applied to the kernel. The calls run on a queue of their own: one can wait
    /// until the kernel has answered a request on the same directory, which must never hold up a task thread
    /// (that answer may need one).
    public func applied(_ changes: AppliedChanges) {
        for (itemID, eTag) in changes.changedContent { reader.cache.dropVersions(of: itemID, except: eTag) }
        guard !changes.notices.isEmpty else { return }
        let notices = changes.notices
        Self.noticeQueue.async { [self] in tell(Self.ordered(notices)) }
    }

    /// Directories whose entries changed, however that happened: the kernel keeps listings (no opendir,
    /// see ReaderListings) and must let go of these. Runs on the notice queue.
    func entriesChanged() {
        tell(tree.takeKernelNotices())
    }

    /// Sends notices on, on the notice queue. The notifier is read here: `detach` clears it and then
    /// waits for the queue, so none is told after it returns.
    private func tell(_ notices: [KernelNotice]) {
        guard !notices.isEmpty, let notifier = lock.withLock({ self.notifier }) else { return }
        notifier.tell(notices)
    }

    static let noticeQueue = DispatchQueue(label: "crmfs.kernel-notices")

    /// Returns once every notice queued before the call has gone to the kernel (without holding up a
    /// task thread meanwhile), or after `limit`: a notice can wait on a lock the kernel holds while it
    /// waits for this very request, and an answer a little stale beats one that never comes.
    static func noticesSent(within limit: Duration = .seconds(2)) async {
        let once = ResumeOnce()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            once.set(continuation)
            noticeQueue.async { once.resume() }
            let milliseconds = Int(min(limit.components.seconds, 3600) * 1000 + limit.components.attoseconds / 1_000_000_000_000_000)
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(milliseconds)) { once.resume() }
        }
    }

    /// Each notice once, names before nodes.
    static func ordered(_ notices: [KernelNotice]) -> [KernelNotice] {
        var seen: Set<KernelNotice> = []
        let unique = notices.filter { seen.insert($0).inserted }
        return unique.filter { if case .entry = $0 { true } else { false } } + unique.filter { if case .inode = $0 { true } else { false } }
    }
}

/// A continuation resumed by whichever of several callers comes first.
private final class ResumeOnce: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<Void, Never>?

    func set(_ continuation: CheckedContinuation<Void, Never>) { lock.withLock { self.continuation = continuation } }

    func resume() {
        let waiting = lock.withLock { () -> CheckedContinuation<Void, Never>? in
            defer { continuation = nil }
            return continuation
        }
        waiting?.resume()
    }
}
