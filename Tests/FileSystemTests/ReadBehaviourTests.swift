import FileSystem
import Foundation
import Graph
import Testing
import TestSupport

/// Reads through the file system library and its block cache, in process: bytes, cache hits and what
/// each read costs the service. The kernel's own page cache is MountTests' business.
@Suite("reads, in process", .serialized)
struct ReadBehaviourTests {
    static let large = "Accounts/Acme Corp/Large Files/large-file.bin"

    @Test("every document's bytes equal the sandbox's")
    func everyDocument() async throws {
        try await withFileSystem(records: 6, docsPerRecord: 3) { fs in
            let remote = try await RemoteDrive(fs.sandbox)
            let files = try await fs.files(below: "")
            #expect(files.count == 6 * 3 * 3)
            for file in files {
                let itemID = try #require(try await fs.getxattr(file, "user.crmfs.item_id"))
                let direct = try await remote.connections.graph.download(driveID: remote.driveID, itemID: itemID).data
                #expect(try await fs.read(file) == direct, "\(file)")
            }
        }
    }

    @Test("reads at random offsets and across block edges are exact")
    func randomReads() async throws {
        let size: Int64 = 5 << 20 + 12_345
        try await withFileSystem(records: 1, docsPerRecord: 1, largeFile: size, options: ["block_size=256KiB"]) { fs in
            let remote = try await RemoteDrive(fs.sandbox)
            let whole = try await remote.connections.graph.download(driveID: remote.driveID, itemID: try await fs.sandbox.info()["largeFileItemId"]!).data
            let block = 256 << 10
            var cases: [(Int, Int)] = [(0, 1), (block - 1, 2), (block - 10, 20), (2 * block, block), (3 * block - 1, block + 2), (Int(size) - 7, 7), (Int(size) - 3, 100)]
            for _ in 0..<40 { cases.append((Int.random(in: 0..<Int(size)), Int.random(in: 1...(300 << 10)))) }
            let handle = try await fs.open(Self.large)
            defer { fs.fileSystem.release(handle: handle) }
            for (offset, length) in cases {
                let read = try await fs.read(handle, offset: Int64(offset), length: length)
                #expect(read == whole.subdata(in: offset..<min(Int(size), offset + length)), "\(offset) + \(length)")
            }
        }
    }

    @Test("a second read downloads nothing, also after a remount with the same state")
    func cachedReads() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1, largeFile: 3 << 20, separateProcess: true) { sandbox in
            var fs = try await FileSystemFixture.build(sandbox, options: ["block_size=1MiB"])
            let first = try await fs.read(Self.large)
            let afterFirst = try await sandbox.stats()["graph.download", default: 0]
            #expect(afterFirst >= 1)
            #expect(try await fs.read(Self.large) == first)
            #expect(try await sandbox.stats()["graph.download", default: 0] == afterFirst)
            await fs.close()

            fs = try await FileSystemFixture.build(sandbox, options: ["block_size=1MiB"])
            #expect(try await fs.read(Self.large) == first)
            #expect(try await sandbox.stats()["graph.download", default: 0] == afterFirst)
            await fs.close()
        }
    }

    @Test("a cached block cut short (a power loss before it reached the disk) is fetched again, never served short")
    func shortBlockAfterPowerLoss() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1, largeFile: 3 << 20 + 100, separateProcess: true) { sandbox in
            var fs = try await FileSystemFixture.build(sandbox, options: ["block_size=1MiB"])
            let whole = try await fs.read(Self.large)
            await fs.close()
            // What a power loss can leave: blocks renamed into place whose bytes never reached the disk.
            let blocks = URL(fileURLWithPath: fs.stateDirectory).appendingPathComponent("blocks").path
            let names = try FileManager.default.contentsOfDirectory(atPath: blocks).sorted()
            #expect(names.count == 4)
            #expect(truncate("\(blocks)/\(names[0])", 1000) == 0)
            #expect(truncate("\(blocks)/\(names[1])", 0) == 0)
            try await sandbox.admin("stats/reset")
            fs = try await FileSystemFixture.build(sandbox, options: ["block_size=1MiB"])
            #expect(try await fs.read(Self.large) == whole)
            #expect(try await sandbox.stats()["graph.download", default: 0] == 2)
            await fs.close()
        }
    }

    @Test("a random read fetches only its block; a sequential read fetches every block once, ahead of the reader")
    func readCosts() async throws {
        let block = 256 << 10, size = 4 << 20
        try await withFileSystem(records: 1, docsPerRecord: 1, largeFile: Int64(size), options: ["block_size=256KiB"]) { fs in
            _ = try await fs.node(Self.large)
            try await fs.sandbox.admin("stats/reset")
            let handle = try await fs.open(Self.large)
            _ = try await fs.read(handle, offset: Int64(3 * block / 4096 * 4096), length: 4096)
            fs.fileSystem.release(handle: handle)
            #expect(try await fs.sandbox.stats()["graph.download.bytes", default: 0] == block)

            _ = try await fs.read(Self.large)
            let stats = try await fs.sandbox.stats()
            #expect(stats["graph.download.bytes", default: 0] == size)  // the block read before is not fetched again
            #expect(stats["graph.download", default: 0] == size / block)
        }
    }

    @Test("with a cache smaller than the data, reads stay correct and the cache stays under its limit")
    func smallCache() async throws {
        try await withFileSystem(records: 1, docsPerRecord: 1, largeFile: 3 << 20, options: ["cache_size=1MiB", "block_size=256KiB"]) { fs in
            let remote = try await RemoteDrive(fs.sandbox)
            let whole = try await remote.connections.graph.download(driveID: remote.driveID, itemID: try await fs.sandbox.info()["largeFileItemId"]!).data
            #expect(try await fs.read(Self.large) == whole)
            let blocks = URL(fileURLWithPath: fs.stateDirectory).appendingPathComponent("blocks")
            let usage = try FileManager.default.contentsOfDirectory(at: blocks, includingPropertiesForKeys: [.fileSizeKey])
                .reduce(0) { $0 + ((try? $1.resourceValues(forKeys: [.fileSizeKey]).fileSize) ?? 0) }
            #expect(usage <= 1 << 20 + 4096)
        }
    }
}
