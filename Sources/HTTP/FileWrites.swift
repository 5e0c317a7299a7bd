import Foundation

/// Writes all of `bytes` at `offset` of an open file. A short write (a disk filling up) is not an error by
/// itself and sets no `errno`: the rest is written again, and the failure that stops it is the one thrown
/// (ENOSPC when the file takes no more). Used by every path that puts downloaded or copied bytes on disk.
public func pwriteAll(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer, at offset: off_t) throws {
    var written = 0
    while written < bytes.count {
        let count = pwrite(descriptor, bytes.baseAddress! + written, bytes.count - written, offset + off_t(written))
        if count < 0, errno == EINTR { continue }
        guard count > 0 else { throw POSIXError(count == 0 ? .ENOSPC : POSIXErrorCode(rawValue: errno) ?? .EIO) }
        written += count
    }
}
