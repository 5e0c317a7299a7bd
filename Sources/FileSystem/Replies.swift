import Cache
import CFuse
import Foundation
import HTTP
import Namespace
import Writeback

/// A kernel request, handed across tasks; libfuse allows the reply from any thread, once.
struct Request: @unchecked Sendable {
    let raw: fuse_req_t

    /// The local user who made the call (on an `allow_other` mount, not necessarily the daemon's).
    var uid: UInt32? { fuse_req_ctx(raw).map { $0.pointee.uid } }

    func error(_ code: Int32) { fuse_reply_err(raw, code) }
    func ok() { fuse_reply_err(raw, 0) }
    func none() { fuse_reply_none(raw) }

    func bytes(_ data: Data) {
        data.withUnsafeBytes { buffer in
            _ = fuse_reply_buf(raw, buffer.baseAddress?.assumingMemoryBound(to: CChar.self), buffer.count)
        }
    }

    /// Replies with bytes of a block file, spliced (no copy through this process where the kernel allows).
    func splice(_ span: BlockSpan) {
        crmfs_reply_from_fd(raw, span.file.descriptor, off_t(span.offset), span.length)
    }

    /// Replies with the errno a failure maps to.
    func fail(_ error: Error) {
        switch error {
        case NamespaceError.notFound: fuse_reply_err(raw, ENOENT)
        case NamespaceError.notDirectory: fuse_reply_err(raw, ENOTDIR)
        case NamespaceError.isDirectory: fuse_reply_err(raw, EISDIR)
        case NamespaceError.stale: fuse_reply_err(raw, ESTALE)
        case NamespaceError.notPermitted: fuse_reply_err(raw, EPERM)
        case NamespaceError.accessDenied: fuse_reply_err(raw, EACCES)
        case NamespaceError.invalid: fuse_reply_err(raw, EINVAL)
        case NamespaceError.exists: fuse_reply_err(raw, EEXIST)
        case NamespaceError.notEmpty: fuse_reply_err(raw, ENOTEMPTY)
        case let error as POSIXError: fuse_reply_err(raw, error.code.rawValue)
        case let error as StagingError: fuse_reply_err(raw, error.errno)
        case is SignInRequired: fuse_reply_err(raw, EACCES)  // until the user signs in again (`crmfs login`)
        case is CancellationError: fuse_reply_err(raw, EINTR)
        default: fuse_reply_err(raw, EIO)
        }
    }
}

/// A `fuse_file_info` copied out of libfuse's stack frame, so it can be replied with later.
struct FileInfo: @unchecked Sendable {
    var raw: fuse_file_info
    init(_ pointer: UnsafeMutablePointer<fuse_file_info>?) { raw = pointer?.pointee ?? fuse_file_info() }
}

extension timespec {
    init(_ date: Date) {
        // Times come from the services and from users: one out of Int's range must not stop the daemon.
        let interval = date.timeIntervalSince1970
        let seconds = interval.isFinite ? min(max(interval, -1e17), 1e17) : 0
        let whole = floor(seconds)
        self.init(tv_sec: Int(whole), tv_nsec: min(Int((seconds - whole) * 1_000_000_000), 999_999_999))
    }
}

/// The task serving a long request (fsync, `crmfs sync`), cancelled when the kernel interrupts the
/// request because a signal reached its caller: Ctrl-C ends the wait with EINTR; what it waited for
/// goes on in the background.
final class Interruption: @unchecked Sendable {
    private let lock = NSLock()
    private var interrupted = false
    private var task: Task<Void, Never>?

    /// From libfuse's thread that read the kernel's FUSE_INTERRUPT.
    func interrupt() {
        let task = lock.withLock { () -> Task<Void, Never>? in
            interrupted = true
            return self.task
        }
        task?.cancel()
    }

    /// The task to cancel; cancelled at once when the interrupt came first.
    func attach(_ task: Task<Void, Never>) {
        let cancelNow = lock.withLock { () -> Bool in
            self.task = task
            return interrupted
        }
        if cancelNow { task.cancel() }
    }
}

extension Request {
    /// Passes the kernel's interrupt of this request to `interruption` (at once, when it came already).
    func register(_ interruption: Interruption) {
        fuse_req_interrupt_func(raw, { _, data in
            guard let data else { return }
            Unmanaged<Interruption>.fromOpaque(data).takeUnretainedValue().interrupt()
        }, Unmanaged.passRetained(interruption).toOpaque())
    }

    /// Stops passing interrupts on, before the reply frees the request: libfuse returns from this only
    /// once no callback is under way, and makes none after.
    func unregister(_ interruption: Interruption) {
        fuse_req_interrupt_func(raw, nil, nil)
        Unmanaged.passUnretained(interruption).release()
    }
}
