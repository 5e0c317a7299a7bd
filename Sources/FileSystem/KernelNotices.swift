import CFuse
import Foundation
import Namespace

/// Remote changes reach the kernel's caches: names that went or changed are forgotten
/// (`fuse_lowlevel_notify_inval_entry`), and so are the attributes and cached pages of nodes that
/// changed (`fuse_lowlevel_notify_inval_inode`), so entry and attribute timeouts can be long.
extension CRMFileSystem {
    /// Hands what a change feed applied to the kernel. The calls run on a queue of their own: one can wait
    /// until the kernel has answered a request on the same directory, which must never hold up a task thread
    /// (that answer may need one).
    public func applied(_ changes: AppliedChanges) {
        for (itemID, eTag) in changes.changedContent { reader.cache.dropVersions(of: itemID, except: eTag) }
        guard !changes.notices.isEmpty else { return }
        let notices = changes.notices
        Self.noticeQueue.async { [self] in
            // Read here, on the queue: the loop's end clears it and then waits for the queue, so it stays valid.
            tell(Self.ordered(notices))
        }
    }

    /// Directories whose entries changed, however that happened: the kernel keeps listings (no opendir,
    /// see ReaderListings) and must let go of these. Runs on the notice queue.
    func entriesChanged() {
        tell(tree.takeKernelNotices())
    }

    /// Sends notices to the kernel, on the notice queue. The session is read here: the loop's end clears
    /// it and then waits for the queue, so it stays valid while this runs.
    private func tell(_ notices: [KernelNotice]) {
        guard !notices.isEmpty, let session = lock.withLock({ self.session }) else { return }
        for notice in notices {
            let status: Int32
            switch notice {
            case .entry(let parent, let name):
                status = name.withCString { fuse_lowlevel_notify_inval_entry(session, parent, $0, strlen($0)) }
            case .inode(let ino):
                status = fuse_lowlevel_notify_inval_inode(session, ino, 0, 0)
            }
            // ENOENT: the kernel holds nothing for it, which is fine.
            if status != 0 && status != -ENOENT {
                logger.debug("kernel notification failed", metadata: ["notice": "\(notice)", "errno": "\(-status)"])
            }
        }
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
