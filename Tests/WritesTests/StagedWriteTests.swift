import Foundation
import Testing
import TestSupport
@testable import Writes

/// Writing into a staged copy (a write after fsync's fresh copy, a remote block) on a disk that fills up.
@Suite("writing a staged copy")
struct StagedWriteTests {
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
                try bytes.withUnsafeBytes { try LocalWrites.writeAll(descriptor, $0, at: 0) }
            }
        }
    }
}
