import Cache
import CFuse
import Foundation
import Namespace
import Writeback

/// A kernel request, handed across tasks; libfuse allows the reply from any thread, once.
struct Request: @unchecked Sendable {
    let raw: fuse_req_t

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
        case NamespaceError.invalid: fuse_reply_err(raw, EINVAL)
        case NamespaceError.exists: fuse_reply_err(raw, EEXIST)
        case NamespaceError.notEmpty: fuse_reply_err(raw, ENOTEMPTY)
        case let error as POSIXError: fuse_reply_err(raw, error.code.rawValue)
        case let error as StagingError: fuse_reply_err(raw, error.errno)
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
        let seconds = date.timeIntervalSince1970
        let whole = floor(seconds)
        self.init(tv_sec: Int(whole), tv_nsec: Int((seconds - whole) * 1_000_000_000))
    }
}
