import Foundation
import Graph
import Testing
import TestSupport

@Suite("reads through the mount", .serialized)
struct ReadTests {
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
            let remote = try await RemoteDrive(mount)
            let record = mount.path(KernelWriteTests.acme)
            let before = try FileManager.default.contentsOfDirectory(atPath: record)
            let folder = try #require(try await remote.item(SeededPaths.acmeFolder))
            let scratch = try KernelWriteTests.scratch().appendingPathComponent("added")
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
