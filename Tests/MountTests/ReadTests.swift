import Foundation
import Graph
import Testing
import TestSupport

@Suite("reads through the mount", .serialized)
struct ReadTests {
    @Test("every document's bytes equal the sandbox's (sha256sum through the mount)")
    func everyDocument() async throws {
        try await withMount(records: 6, docsPerRecord: 3) { mount in
            let connections = try mount.sandbox.connections()
            let driveID = try await mount.sandbox.info()["driveId"]!
            let files = try await Tools.shell("cd '\(mount.mountpoint)' && find . -type f -print0 | xargs -0 sha256sum")
            #expect(files.status == 0)
            let lines = files.output.split(separator: "\n")
            #expect(lines.count == 6 * 3 * 3)
            // The same files, fetched directly, hashed the same way.
            let direct = FileManager.default.temporaryDirectory.appendingPathComponent("direct-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: direct) }
            for line in lines {
                let path = String(line.dropFirst(66))  // "HASH  ./Accounts/..."
                let attributes = try await Tools.run("getfattr", ["--only-values", "-n", "user.crmfs.item_id", mount.path(String(path.dropFirst(2)))])
                let itemID = attributes.output
                let data = try await connections.graph.download(driveID: driveID, itemID: itemID).data
                let copy = direct.appendingPathComponent(path)
                try FileManager.default.createDirectory(at: copy.deletingLastPathComponent(), withIntermediateDirectories: true)
                try data.write(to: copy)
            }
            let directHashes = try await Tools.shell("cd '\(direct.path)' && find . -type f -print0 | xargs -0 sha256sum")
            #expect(Set(directHashes.output.split(separator: "\n")) == Set(lines))
        }
    }

    @Test("pread at random offsets and across block edges is exact")
    func randomReads() async throws {
        let size: Int64 = 5 << 20 + 12_345
        try await withMount(records: 1, docsPerRecord: 1, largeFile: size, options: ["block_size=256KiB"]) { mount in
            let connections = try mount.sandbox.connections()
            let info = try await mount.sandbox.info()
            let whole = try await connections.graph.download(driveID: info["driveId"]!, itemID: info["largeFileItemId"]!).data
            let path = mount.path("Accounts/Acme Corp/Large Files/large-file.bin")
            let block = 256 << 10
            var cases: [(Int, Int)] = [(0, 1), (block - 1, 2), (block - 10, 20), (2 * block, block), (3 * block - 1, block + 2), (Int(size) - 7, 7), (Int(size) - 3, 100)]
            for _ in 0..<40 { cases.append((Int.random(in: 0..<Int(size)), Int.random(in: 1...(300 << 10)))) }
            let reads = cases
            let results = try await Tools.blocking { () -> [Bool] in
                let descriptor = open(path, O_RDONLY)
                defer { close(descriptor) }
                return reads.map { offset, length in
                    var buffer = [UInt8](repeating: 0, count: length)
                    let count = pread(descriptor, &buffer, length, off_t(offset))
                    let expectedEnd = min(Int(size), offset + length)
                    return count == expectedEnd - offset && Data(buffer[0..<max(0, count)]) == whole.subdata(in: offset..<expectedEnd)
                }
            }
            #expect(results.allSatisfy { $0 }, "\(zip(cases, results).filter { !$0.1 }.map(\.0))")
        }
    }

    @Test("a second read downloads nothing, also after a remount with the same state")
    func cachedReads() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1, largeFile: 3 << 20, separateProcess: true) { sandbox in
            var mount = try await MountFixture.mount(sandbox, options: ["block_size=1MiB"])
            let file = "Accounts/Acme Corp/Large Files/large-file.bin"
            let first = try await Tools.read(mount.path(file))
            let afterFirst = try await sandbox.stats()["graph.download", default: 0]
            #expect(afterFirst >= 1)
            try await Tools.shell("sync; echo 3 > /proc/sys/vm/drop_caches")
            #expect(try await Tools.read(mount.path(file)) == first)
            #expect(try await sandbox.stats()["graph.download", default: 0] == afterFirst)
            await mount.unmount()

            mount = try await MountFixture.mount(sandbox, options: ["block_size=1MiB"])
            #expect(try await Tools.read(mount.path(file)) == first)
            #expect(try await sandbox.stats()["graph.download", default: 0] == afterFirst)
            await mount.unmount()
        }
    }

    @Test("a cached block cut short (a power loss before it reached the disk) is fetched again, never served short")
    func shortBlockAfterPowerLoss() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1, largeFile: 3 << 20 + 100, separateProcess: true) { sandbox in
            var mount = try await MountFixture.mount(sandbox, options: ["block_size=1MiB"])
            let file = "Accounts/Acme Corp/Large Files/large-file.bin"
            let whole = try await Tools.read(mount.path(file))
            await mount.unmount()
            // What a power loss can leave: blocks renamed into place whose bytes never reached the disk.
            let blocks = URL(fileURLWithPath: mount.stateDirectory).appendingPathComponent("blocks").path
            let names = try FileManager.default.contentsOfDirectory(atPath: blocks).sorted()
            #expect(names.count == 4)
            #expect(truncate("\(blocks)/\(names[0])", 1000) == 0)
            #expect(truncate("\(blocks)/\(names[1])", 0) == 0)
            try await sandbox.admin("stats/reset")
            mount = try await MountFixture.mount(sandbox, options: ["block_size=1MiB"])
            try await Tools.shell("sync; echo 3 > /proc/sys/vm/drop_caches")
            #expect(try await Tools.read(mount.path(file)) == whole)
            #expect(try await sandbox.stats()["graph.download", default: 0] == 2)
            await mount.unmount()
        }
    }

    @Test("a random read fetches only its block; a sequential read fetches every block once, ahead of the reader")
    func readCosts() async throws {
        let block = 256 << 10, size = 4 << 20
        try await withMount(records: 1, docsPerRecord: 1, largeFile: Int64(size), options: ["block_size=256KiB"]) { mount in
            let path = mount.path("Accounts/Acme Corp/Large Files/large-file.bin")
            _ = try await Tools.shell("stat '\(path)'")
            try await mount.sandbox.admin("stats/reset")
            let random = try await Tools.shell("dd if='\(path)' of=/dev/null bs=4096 count=1 skip=\(3 * block / 4096) status=none")
            #expect(random.status == 0)
            #expect(try await mount.sandbox.stats()["graph.download.bytes", default: 0] == block)

            _ = try await Tools.read(path)
            let stats = try await mount.sandbox.stats()
            #expect(stats["graph.download.bytes", default: 0] == size)  // the block read before is not fetched again
            #expect(stats["graph.download", default: 0] == size / block)
        }
    }

    @Test("with a cache smaller than the data, reads stay correct and the cache stays under its limit")
    func smallCache() async throws {
        try await withMount(records: 1, docsPerRecord: 1, largeFile: 3 << 20, options: ["cache_size=1MiB", "block_size=256KiB"]) { mount in
            let connections = try mount.sandbox.connections()
            let info = try await mount.sandbox.info()
            let whole = try await connections.graph.download(driveID: info["driveId"]!, itemID: info["largeFileItemId"]!).data
            #expect(try await Tools.read(mount.path("Accounts/Acme Corp/Large Files/large-file.bin")) == whole)
            let usage = try await Tools.shell("du -sb '\(mount.sandbox.directory.appendingPathComponent("crmfs-state/blocks").path)' | cut -f1")
            #expect(Int(usage.output.trimmingCharacters(in: .whitespacesAndNewlines))! <= 1 << 20 + 4096)
        }
    }

    @Test("on a full disk, documents read whole and right without being kept (a log line says why); once there is room, they are kept again")
    func fullDisk() async throws {
        try await Tools.withSmallDisk(size: "16m") { disk in
            try await withMount(records: 1, docsPerRecord: 3, largeFile: 3 << 20, options: ["block_size=256KiB"], editConfig: {
                $0.replacingOccurrences(of: "directory = \"crmfs-state\"", with: "directory = \"\(disk)/state\"")
            }) { mount in
                let connections = try mount.sandbox.connections()
                let driveID = try await mount.sandbox.info()["driveId"]!
                let acme = mount.path("Accounts/Acme Corp")
                let documents = try await Tools.shell("find '\(acme)' -type f -name '*.*' ! -name 'large-file.bin' | sort").output.split(separator: "\n").map(String.init)
                try #require(documents.count >= 3, "\(documents)")
                /// Reads a document through the mount and as the service has it.
                func expectReadRight(_ path: String) async throws {
                    let itemID = try await Tools.run("getfattr", ["--only-values", "-n", "user.crmfs.item_id", path]).output
                    let remote = try await connections.graph.download(driveID: driveID, itemID: itemID).data
                    #expect(try await Tools.read(path) == remote, "\(path)\n\(mount.logTail())")
                }
                let blocks = "\(mount.stateDirectory)/blocks"
                func blockFiles() -> [String] { (try? FileManager.default.contentsOfDirectory(atPath: blocks)) ?? ["(no blocks directory)"] }

                let filler = "\(disk)/filler"

                // Nearly full: less room than a block and what the cache leaves free (the log can still be
                // written): nothing is kept.
                let nearlyAll = Tools.freeBytes(disk) - 512 << 10
                #expect(try await Tools.shell("head -c \(nearlyAll) /dev/zero > '\(filler)'").status == 0)
                try await expectReadRight(mount.path("Accounts/Acme Corp/Large Files/large-file.bin"))
                #expect(blockFiles().isEmpty, "\(blockFiles())")
                #expect(mount.logTail(lines: 200).contains("the cache's disk is full"), "\(mount.logTail())")

                // Room again: blocks are kept.
                try FileManager.default.removeItem(atPath: filler)
                try await expectReadRight(documents[1])
                #expect(!blockFiles().isEmpty)
                #expect(mount.logTail(lines: 200).contains("the cache's disk has room again"), "\(mount.logTail())")

                // Quite full, not a byte left: the cache gives up what it holds for room (its files go too),
                // and what it reads is not kept.
                _ = try await Tools.shell("cat /dev/zero > '\(filler)'")
                #expect(Tools.freeBytes(disk) < 64 << 10)
                try await expectReadRight(documents[0])
                #expect(blockFiles().isEmpty, "\(blockFiles())")
            }
        }
    }

    @Test("with the drive's feed off, a document changed in SharePoint serves its new bytes after the attribute timeout")
    func remoteChange() async throws {
        try await withMount(options: ["attr_timeout=1", "entry_timeout=1"], editConfig: { $0 + "\n[freshness]\ndrive_poll = \"0\"\n" }) { mount in
            let path = mount.path("Accounts/Acme Corp/Contracts/MSA-2026.pdf")
            let before = try await Tools.read(path)
            let itemID = try await Tools.run("getfattr", ["--only-values", "-n", "user.crmfs.item_id", path]).output
            let eTag = try await Tools.run("getfattr", ["--only-values", "-n", "user.crmfs.etag", path]).output
            let replacement = Data("%PDF-1.7 changed in SharePoint by someone else\n".utf8)
            let response = try await mount.sandbox.transport.perform(.init(method: "POST", url: "\(mount.sandbox.baseURL)/_sandbox/items/\(itemID)/content",
                                                                          body: .bytes(replacement)))
            #expect(response.status == 200)
            try await Task.sleep(for: .milliseconds(2_500))
            let after = try await Tools.read(path)
            #expect(after != before)
            #expect(after == replacement)
            #expect(try await Tools.run("getfattr", ["--only-values", "-n", "user.crmfs.etag", path]).output != eTag)
        }
    }

    @Test("with the drive's feed off, a document added in SharePoint shows in a listing the kernel had cached, after the attribute timeout")
    func remoteAddListed() async throws {
        try await withMount(options: ["attr_timeout=1", "entry_timeout=1"], editConfig: { $0 + "\n[freshness]\ndrive_poll = \"0\"\n" }) { mount in
            let remote = try await WriteTests.Remote(mount)
            let record = mount.path(WriteTests.acme)
            let before = try FileManager.default.contentsOfDirectory(atPath: record)
            let folder = try #require(try await remote.item(SeededPaths.acmeFolder))
            let scratch = try WriteTests.scratch().appendingPathComponent("added")
            try Data("added elsewhere\n".utf8).write(to: scratch)
            _ = try await remote.connections.graph.simpleUpload(driveID: remote.driveID, to: .child(parentID: folder.id, name: "Added remotely.txt"),
                                                                file: scratch.path, size: 16, options: UploadOptions())
            try await Task.sleep(for: .milliseconds(2_500))
            let after = try FileManager.default.contentsOfDirectory(atPath: record)
            #expect(Set(after) == Set(before).union(["Added remotely.txt"]))
        }
    }

    @Test("copying a folder's documents out costs their downloads and one listing of their URLs, not a URL request each")
    func folderCopyListsURLs() async throws {
        try await withMount(records: 2, docsPerRecord: 1, bulkFolder: 30) { mount in
            let bulk = mount.path("Accounts/Acme Corp/Bulk")
            #expect(try FileManager.default.contentsOfDirectory(atPath: bulk).count == 30)
            try await mount.sandbox.admin("stats/reset")
            let copy = FileManager.default.temporaryDirectory.appendingPathComponent("bulk-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: copy) }
            let copied = try await Tools.run("cp", ["-r", bulk, copy])
            #expect(copied.status == 0, "\(copied.errors)")
            #expect(try await Tools.run("diff", ["-r", bulk, copy]).status == 0)
            let stats = try await mount.sandbox.stats()
            #expect(stats["graph.download", default: 0] == 30)
            #expect(stats["graph.content", default: 0] == 0, "the URLs come with a listing of the folder: \(stats)")
            #expect(stats["graph.children", default: 0] <= 1, "the tree's own listing brought them, or the first cold read lists them: \(stats)")
        }
    }

    @Test("rsync -a of a record tree reproduces it byte for byte")
    func rsyncCopy() async throws {
        try await withMount(records: 5, docsPerRecord: 3) { mount in
            let local = FileManager.default.temporaryDirectory.appendingPathComponent("rsync-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: local) }
            let rsync = try await Tools.run("rsync", ["-a", mount.path("Accounts") + "/", local + "/"])
            #expect(rsync.status == 0, "\(rsync.errors)")
            let diff = try await Tools.run("diff", ["-r", mount.path("Accounts"), local])
            #expect(diff.status == 0, "\(diff.output)")
            let mounted = try await Tools.shell("cd '\(mount.path("Accounts"))' && find . | sort")
            let copied = try await Tools.shell("cd '\(local)' && find . | sort")
            #expect(mounted.output == copied.output)
            #expect(mounted.output.split(separator: "\n").count > 5 * 3)
        }
    }
}
