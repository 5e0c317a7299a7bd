import Foundation
import HTTP
import Testing
import TestSupport

/// Putting bytes on a disk that fills up: downloaded blocks, a staged copy (the fresh copy after fsync, a remote block).
@Suite("writing bytes to a file")
struct FileWritesTests {
    @Test("a disk filling up mid-write answers ENOSPC, not the errno an earlier call left (soak seed 1326: ENOENT)")
    func diskFillsMidWrite() async throws {
        try await Tools.withSmallDisk(size: "64k") { disk in
            let descriptor = open("\(disk)/copy", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            try #require(descriptor >= 0)
            defer { close(descriptor) }
            let bytes = [UInt8](repeating: 7, count: 1 << 20)
            // The first pwrite writes what fits and sets no errno; the one after it fails.
            errno = ENOENT
            #expect(throws: POSIXError(.ENOSPC)) {
                try bytes.withUnsafeBytes { try pwriteAll(descriptor, $0, at: 0) }
            }
        }
    }
}
