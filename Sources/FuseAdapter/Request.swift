import CFuse
import Cache
import FileSystem
import Foundation

/// A kernel request, handed across tasks; libfuse allows the reply from any thread, once.
struct Request: @unchecked Sendable {
    let raw: fuse_req_t

    /// The local user who made the call (on an `allow_other` mount, not necessarily the daemon's).
    var uid: UInt32? { fuse_req_ctx(raw).map { $0.pointee.uid } }

    func error(_ code: Int32) { fuse_reply_err(raw, code) }
    func ok() { fuse_reply_err(raw, 0) }

    /// Replies with the errno a failure maps to.
    func fail(_ error: any Error) { fuse_reply_err(raw, errnoCode(for: error)) }

    func bytes(_ data: Data) {
        data.withUnsafeBytes { buffer in
            _ = fuse_reply_buf(raw, buffer.baseAddress?.assumingMemoryBound(to: CChar.self), buffer.count)
        }
    }

    func read(_ bytes: BlockRead) {
        switch bytes {
        // Bytes of a block file, spliced (no copy through this process where the kernel allows).
        case .span(let span): crmfs_reply_from_fd(raw, span.file.descriptor, off_t(span.offset), span.length)
        case .bytes(let data): self.bytes(data)
        }
    }

    /// Replies with `answer`'s value through `reply`, or with its failure's errno: at once, on the kernel
    /// request's thread, when the answer is known (a hop to a task costs two thread wake-ups per request);
    /// on a task when it needs the services.
    func answer<Value: Sendable>(_ answer: Answer<Value>, _ reply: @escaping @Sendable (Value) -> Void) {
        switch answer {
        case .now(.success(let value)): reply(value)
        case .now(.failure(let error)): fail(error)
        case .later(let fetch):
            Task {
                do { reply(try await fetch()) } catch { fail(error) }
            }
        }
    }

    /// Runs `body` on a task and replies success or its failure's errno.
    func perform(_ body: @escaping @Sendable () async throws -> Void) {
        Task {
            do { try await body(); ok() } catch { fail(error) }
        }
    }

    /// Runs a long wait (`fsync`, `crmfs sync`) on a task the kernel's interrupt cancels, then answers:
    /// success, EINTR when a signal reached the caller first, or the failure's errno.
    func performInterruptibly(_ body: @escaping @Sendable () async throws -> Void) {
        let interruption = Interruption()
        register(interruption)
        interruption.attach(Task {
            var failure: (any Error)?
            do { try await body() } catch { failure = error }
            unregister(interruption)
            if let failure { fail(failure) } else { ok() }
        })
    }

    /// The xattr protocol: size 0 asks how big; a buffer too small is ERANGE.
    func xattr(_ data: Data, size: Int) {
        if size == 0 { fuse_reply_xattr(raw, data.count) }
        else if size < data.count { error(ERANGE) }
        else { bytes(data) }
    }
}

/// A `fuse_file_info` copied out of libfuse's stack frame, so it can be replied with later.
struct FileInfo: @unchecked Sendable {
    var raw: fuse_file_info
    init(_ pointer: UnsafeMutablePointer<fuse_file_info>?) { raw = pointer?.pointee ?? fuse_file_info() }

    /// `raw` with an opened file's handle and page-cache choices.
    func with(_ opened: CRMFileSystem.Opened) -> FileInfo {
        var info = self
        info.raw.fh = opened.handle
        if opened.directIO { crmfs_fi_set_direct_io(&info.raw, 1) }
        crmfs_fi_set_keep_cache(&info.raw, opened.keepCache ? 1 : 0)
        return info
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
