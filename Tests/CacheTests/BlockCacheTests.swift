import Cache
import Foundation
import Testing

/// The block cache on its own, with downloads that are closures writing into the descriptor they get.
@Suite("the block cache")
struct BlockCacheTests {
    static func scratch() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("crmfs-blocks-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    static func write(_ bytes: Data, to descriptor: Int32) -> Int64 {
        Int64(bytes.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) })
    }

    static let key = BlockKey(itemID: "01ITEM", eTag: "\"{1},1\"", index: 0, length: 5)

    @Test("a disk that fills up while a block is written: the block is fetched again into memory, serves its reads, and is not kept")
    func diskFilledDuringTheWrite() async throws {
        let directory = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: directory) }
        let cache = try BlockCache(directory: directory, capacity: 1 << 20, blockSize: 64 << 10)
        var attempts = 0
        let file = try await cache.fill(Self.key, size: 5) { descriptor in
            attempts += 1
            if attempts == 1 { throw POSIXError(.ENOSPC) }
            return Self.write(Data("hello".utf8), to: descriptor)
        }
        #expect(attempts == 2)
        #expect(file.read(0..<5) == Data("hello".utf8))
        #expect(cache.blockCount == 0 && cache.usedBytes == 0, "nothing kept on the full disk")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty, "no temporary file left")
        #expect(!cache.keepsBlocks)
        // The kernel's next piece of the same block is served from memory, not fetched again.
        #expect(cache.openBlock(Self.key)?.read(1..<3) == Data("el".utf8))
    }

    @Test("another failure is not taken for a full disk: it is the read's error, and nothing is left behind")
    func otherFailures() async throws {
        let directory = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: directory) }
        let cache = try BlockCache(directory: directory, capacity: 1 << 20, blockSize: 64 << 10)
        var attempts = 0
        await #expect(throws: POSIXError.self) {
            _ = try await cache.fill(Self.key, size: 5) { _ in attempts += 1; throw POSIXError(.EIO) }
        }
        #expect(attempts == 1)
        #expect(cache.keepsBlocks && cache.blockCount == 0 && cache.usedBytes == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty)
        // With room, a block is kept.
        _ = try await cache.fill(Self.key, size: 5) { Self.write(Data("hello".utf8), to: $0) }
        #expect(cache.blockCount == 1 && cache.contains(Self.key))
    }
}
