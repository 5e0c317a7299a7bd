import CLinux
import Foundation
import Graph
import HTTP
import Services
import Testing
import TestSupport

/// The write path through the kernel: ordinary tools write into record directories, and what lands in
/// the sandbox (documents, versions, links, columns) is checked with the services' own clients.
@Suite("writes through the mount", .serialized)
struct KernelWriteTests {
    static let acme = "Accounts/Acme Corp"

    /// The sandbox's view of the mount after `crmfs sync`.
    typealias Remote = RemoteDrive

    static func scratch() throws -> URL { URL(fileURLWithPath: try Tools.emptyDirectory("crmfs-write")) }

    @Test("the columns of many documents copied in together are stamped in $batch requests; every document gets them")
    func batchedStamping() async throws {
        try await withMount(records: 2, docsPerRecord: 1) { mount in
            try await mount.sandbox.admin("faults", ["latencyMs": 30])
            let local = try Self.scratch()
            defer { try? FileManager.default.removeItem(at: local) }
            for index in 0..<40 { try Data("document \(index)\n".utf8).write(to: local.appendingPathComponent("doc-\(index).txt")) }
            try await mount.sandbox.admin("stats/reset")
            let copy = try await Tools.run("/usr/bin/rsync", ["-a", local.path + "/", mount.path("\(Self.acme)/Batch/")])
            #expect(copy.status == 0, "\(copy.errors)")
            try await expectSynced(mount)
            let stats = try await mount.sandbox.stats()
            #expect(stats["graph.batch", default: 0] >= 1)
            #expect(stats["graph.fields.update", default: 0] == 40)
            let remote = try await Remote(mount)
            for index in [0, 17, 39] {
                let item = try #require(try await remote.item("\(SeededPaths.acmeFolder)/Batch/doc-\(index).txt"))
                #expect(try await remote.connections.graph.fields(driveID: remote.driveID, itemID: item.id)["Customer"] == .string("Acme Corp"))
            }
        }
    }

    @Test("cp in and out keeps every byte: empty, small and 50 MiB files; overwrite, append, truncate and sparse writes")
    func copyInAndOut() async throws {
        try await withMount(records: 3, docsPerRecord: 1) { mount in
            let local = try Self.scratch()
            defer { try? FileManager.default.removeItem(at: local) }
            let contents = ["empty.bin": Data(), "small.txt": Data("a small document\n".utf8), "large.bin": try Tools.randomBytes(50 << 20)]
            for (name, data) in contents { try data.write(to: local.appendingPathComponent(name)) }
            let copyIn = try await Tools.shell("cp '\(local.path)'/* '\(mount.path(Self.acme))/'")
            #expect(copyIn.status == 0, "\(copyIn.errors)")
            let back = local.appendingPathComponent("back")
            try FileManager.default.createDirectory(at: back, withIntermediateDirectories: true)
            let copyOut = try await Tools.shell(contents.keys.map { "cp '\(mount.path(Self.acme))/\($0)' '\(back.path)/'" }.joined(separator: " && "))
            #expect(copyOut.status == 0, "\(copyOut.errors)")
            for (name, data) in contents {
                #expect(try Data(contentsOf: back.appendingPathComponent(name)) == data, "\(name) read back through the mount")
            }

            // Overwrite, append, truncate, and a sparse write past the end.
            let replaced = Data("replaced\n".utf8)
            try replaced.write(to: local.appendingPathComponent("replacement"))
            #expect(try await Tools.shell("cp '\(local.path)/replacement' '\(mount.path(Self.acme))/small.txt'").status == 0)
            #expect(try await Tools.shell("printf 'more\\n' >> '\(mount.path(Self.acme))/small.txt'").status == 0)
            #expect(try await Tools.shell("truncate -s 1000 '\(mount.path(Self.acme))/large.bin'").status == 0)
            let sparsePath = mount.path("\(Self.acme)/sparse.bin")
            let sparseWritten = try await Tools.blocking { () -> Bool in
                let descriptor = open(sparsePath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
                defer { close(descriptor) }
                return pwrite(descriptor, "end", 3, 3 << 20) == 3 && pwrite(descriptor, "start", 5, 0) == 5
            }
            #expect(sparseWritten)
            var sparse = Data(count: (3 << 20) + 3)
            sparse.replaceSubrange(0..<5, with: Data("start".utf8))
            sparse.replaceSubrange((3 << 20)..<((3 << 20) + 3), with: Data("end".utf8))
            let expected: [String: Data] = [
                "empty.bin": Data(), "small.txt": replaced + Data("more\n".utf8),
                "large.bin": contents["large.bin"]!.prefix(1000), "sparse.bin": sparse,
            ]
            for (name, data) in expected {
                #expect(try await Tools.read(mount.path("\(Self.acme)/\(name)")) == data, "\(name) through the mount before upload")
            }

            let sync = try await mount.sync()
            #expect(sync.status == 0, "\(sync.errors)")
            let remote = try await Remote(mount)
            for (name, data) in expected {
                #expect(try await remote.bytes("\(SeededPaths.acmeFolder)/\(name)") == data, "\(name) in SharePoint")
            }
            let state = try await Tools.run("getfattr", ["--only-values", "-n", "user.crmfs.sync", mount.path("\(Self.acme)/large.bin")])
            #expect(state.output == "clean", "\(mount.logTail(lines: 60))")
        }
    }

    @Test("rsync -a of 300 files and an empty one, then again: the second run transfers nothing, also after a remount")
    func rsyncTwice() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1, separateProcess: true) { sandbox in
            let local = try Self.scratch()
            defer { try? FileManager.default.removeItem(at: local) }
            for folder in 0..<3 {
                let directory = local.appendingPathComponent("part \(folder)")
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                for index in 0..<100 { try Data("document \(folder)-\(index)\n".utf8).write(to: directory.appendingPathComponent("doc-\(index).txt")) }
            }
            // An empty file too: it cannot travel in an upload session, yet its mtime must arrive.
            try Data().write(to: local.appendingPathComponent("part 0/empty.txt"))
            let first = try await MountFixture.mount(sandbox)
            let target = first.path("\(Self.acme)/Synced/")
            let run1 = try await Tools.run("/usr/bin/rsync", ["-a", "--stats", local.path + "/", target])
            #expect(run1.status == 0, "\(run1.errors)")
            #expect(run1.output.contains("Number of regular files transferred: 301"))
            try await expectSynced(first)
            let run2 = try await Tools.run("/usr/bin/rsync", ["-a", "--stats", local.path + "/", target])
            #expect(run2.output.contains("Number of regular files transferred: 0"), "\(run2.output)")
            await first.unmount()

            let second = try await MountFixture.mount(sandbox)
            defer { Task { await second.unmount() } }
            let run3 = try await Tools.run("/usr/bin/rsync", ["-a", "--stats", local.path + "/", second.path("\(Self.acme)/Synced/")])
            #expect(run3.output.contains("Number of regular files transferred: 0"), "after a remount: \(run3.output)")
            let remote = try await Remote(second)
            let names = try await remote.names("\(SeededPaths.acmeFolder)/Synced/part 1")
            #expect(names.count == 100 && names.allSatisfy { $0.hasPrefix("doc-") }, "no rsync temporaries: \(names.filter { !$0.hasPrefix("doc-") })")
            let local1 = try FileManager.default.attributesOfItem(atPath: local.appendingPathComponent("part 1/doc-7.txt").path)[.modificationDate] as! Date
            let mounted = try FileManager.default.attributesOfItem(atPath: second.path("\(Self.acme)/Synced/part 1/doc-7.txt"))[.modificationDate] as! Date
            #expect(abs(local1.timeIntervalSince(mounted)) < 1)
            await second.unmount()
        }
    }

    @Test("Ctrl-C ends a crmfs sync or an fsync that is waiting at once; the upload it waited for goes on")
    func interruptedSync() async throws {
        try await withMount(records: 2, docsPerRecord: 1) { mount in
            // A document already in SharePoint and known to the mount, for the fsync below.
            #expect(try await Tools.shell("echo 'draft' > '\(mount.path(Self.acme))/agenda.bin'").status == 0)
            try await expectSynced(mount)
            // Every request to the services takes 12 s now: the upload cannot be done for a while.
            try await mount.sandbox.admin("faults", ["latencyMs": 12_000])
            #expect(try await Tools.shell("echo 'minutes of the call' > '\(mount.path(Self.acme))/minutes.txt'").status == 0)
            let sync = try Subprocess(Tools.crmfs, ["sync", mount.mountpoint])
            try await Task.sleep(for: .seconds(1))
            let interrupted = ContinuousClock.now
            sync.signal(SIGINT)
            let status = await sync.wait()
            // Without the interrupt, it would wait out the upload (tens of seconds).
            #expect(ContinuousClock.now - interrupted < .seconds(6))
            #expect(status == 128 + SIGINT)
            // The daemon sees the caller's connection close a moment after the caller is gone.
            #expect(await FleetTests.eventually(within: 10) { mount.logTail().contains("crmfs sync interrupted") }, "\(mount.logTail())")
            // The same for an fsync: dd writes the known document and fsyncs it (conv=fsync).
            let fsyncing = try Subprocess("/bin/dd", ["if=/dev/zero", "of=\(mount.path(Self.acme))/agenda.bin", "bs=1k", "count=4", "conv=fsync"])
            try await Task.sleep(for: .seconds(1))
            let fsyncInterrupted = ContinuousClock.now
            fsyncing.signal(SIGINT)
            _ = await fsyncing.wait()
            #expect(ContinuousClock.now - fsyncInterrupted < .seconds(6))
            #expect(mount.logTail().contains("fsync interrupted"), "\(mount.logTail())")
            try await mount.sandbox.admin("faults", ["latencyMs": 0])
            try await expectSynced(mount)
            let remote = try await Remote(mount)
            #expect(try await remote.bytes("\(SeededPaths.acmeFolder)/minutes.txt") == Data("minutes of the call\n".utf8))
            #expect(try await remote.bytes("\(SeededPaths.acmeFolder)/agenda.bin") == Data(count: 4096))
        }
    }

    @Test("while crmfs sync waits for a slow upload, the mount's root still lists (the sync holds no lock of the kernel's)")
    func syncHoldsNothingUp() async throws {
        try await withMount(records: 2, docsPerRecord: 1) { mount in
            try await mount.sandbox.admin("faults", ["streamBytesPerSecond": 512 << 10])
            #expect(try await Tools.shell("head -c 3000000 /dev/urandom > '\(mount.path(Self.acme))/big.bin'").status == 0)
            let syncing = Locked(true)
            let sync = Task {
                let result = try await mount.sync()
                syncing.set(false)
                return result
            }
            try await Task.sleep(for: .milliseconds(500))
            #expect(syncing.value, "the sync waits for the upload (about 6 s at this rate)")
            let listing = try await Tools.run("/bin/ls", [mount.mountpoint])
            let listedWhileSyncing = syncing.value
            #expect(listing.output.split(separator: "\n") == ["Accounts", "Cases", "Opportunities"], "\(listing.output)")
            #expect(listedWhileSyncing, "ls of the root answered only once the sync was over")
            try await mount.sandbox.admin("faults", ["streamBytesPerSecond": 0])
            #expect(try await sync.value.status == 0)
        }
    }

    @Test("an office-style save (lock file, temp file, rename over the original) is one new version, with no lock or temp file in SharePoint")
    func officeSave() async throws {
        try await withMount(records: 2, docsPerRecord: 1) { mount in
            let acme = mount.path(Self.acme)
            #expect(try await Tools.shell("echo 'first draft' > '\(acme)/Plan.odt'").status == 0)
            try await expectSynced(mount)
            let remote = try await Remote(mount)
            let before = try #require(try await remote.item("\(SeededPaths.acmeFolder)/Plan.odt"))
            let versionsBefore = try await remote.connections.graph.versions(driveID: remote.driveID, itemID: before.id).count

            let save = """
                set -e
                cd '\(acme)'
                echo 'locked by me' > '.~lock.Plan.odt#'
                echo 'second draft' > lu12345.tmp
                mv lu12345.tmp Plan.odt
                rm '.~lock.Plan.odt#'
                """
            #expect(try await Tools.shell(save).status == 0)
            // vim's way: the original renamed to a backup, a new file written, the backup removed.
            #expect(try await Tools.shell("cd '\(acme)' && mv Plan.odt Plan.odt~ && echo 'third draft' > Plan.odt && rm Plan.odt~").status == 0)
            try await expectSynced(mount)
            let after = try #require(try await remote.item("\(SeededPaths.acmeFolder)/Plan.odt"))
            #expect(after.id == before.id, "the document keeps its identity and history")
            let versionsAfter = try await remote.connections.graph.versions(driveID: remote.driveID, itemID: after.id).count
            #expect(versionsAfter == versionsBefore + 2, "one version per save: \(versionsBefore) -> \(versionsAfter)")
            #expect(try await remote.bytes("\(SeededPaths.acmeFolder)/Plan.odt") == Data("third draft\n".utf8))
            let names = try await remote.names(SeededPaths.acmeFolder)
            #expect(!names.contains { $0.hasPrefix(".~lock") || $0.hasSuffix(".tmp") || $0.hasSuffix("~") }, "\(names)")
        }
    }

    @Test("a small file written without a time goes up in one PUT, and then this mount shows the time SharePoint gave it, as the service does")
    func uploadTakesTheServiceTime() async throws {
        // Without the drive's feed, nothing but the upload's own outcome can bring the service's time to this mount.
        try await withMount(records: 2, docsPerRecord: 1, editConfig: { $0 + "\n[freshness]\ndrive_poll = \"0\"\n" }) { mount in
            let path = mount.path("\(Self.acme)/untimed.txt")
            try await mount.sandbox.admin("stats/reset")
            // The sandbox stamps the upload as it stores it, after each request's latency: more than a second
            // after the write, so in another whole second for sure.
            try await mount.sandbox.admin("faults", ["latencyMs": 1200])
            // As cp and LibreOffice's export write it: no fsync (Foundation's Data.write would wait for the upload).
            #expect(try await Tools.shell("printf 'no time given\\n' > '\(path)'").status == 0)
            let written = try #require(try FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date)
            try await expectSynced(mount)
            try await mount.sandbox.admin("faults", ["latencyMs": 0])
            let stats = try await mount.sandbox.stats()
            #expect(stats["graph.upload.simple"] == 1 && stats["graph.upload.session", default: 0] == 0 && stats["graph.patch", default: 0] == 0, "\(stats)")
            let remote = try await Remote(mount)
            let item = try #require(try await remote.item("\(SeededPaths.acmeFolder)/untimed.txt"))
            let service = try #require(item.fileSystemInfo?.lastModifiedDateTime.flatMap(ServiceTime.parse))
            #expect(Int(service.timeIntervalSince1970) > Int(written.timeIntervalSince1970), "the service's time is the upload's: \(service), written \(written)")
            // The kernel is told at once (a notice, on a queue of its own): no feed round, no attribute timeout.
            var shown = Date.distantPast
            for _ in 0..<200 {  // at most 20 s on a loaded machine; a notice usually lands within milliseconds
                shown = try #require(try FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date)
                if Int(shown.timeIntervalSince1970) == Int(service.timeIntervalSince1970) { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(Int(shown.timeIntervalSince1970) == Int(service.timeIntervalSince1970), "stat shows \(shown), the service \(service)")
        }
    }

    @Test("the first write near the start of a large document copies only its block before it returns; the rest follows, and close has it all")
    func firstWriteCopiesOneBlock() async throws {
        let size = 48 << 20
        try await withMount(records: 1, docsPerRecord: 1, largeFile: Int64(size), options: ["block_size=1MiB"]) { mount in
            let path = mount.path("Accounts/Acme Corp/Large Files/large-file.bin")
            let connections = try mount.sandbox.connections()
            let info = try await mount.sandbox.info()
            var expected = try await connections.graph.download(driveID: info["driveId"]!, itemID: info["largeFileItemId"]!).data
            _ = try FileManager.default.attributesOfItem(atPath: path)
            try await mount.sandbox.admin("stats/reset")
            // Each block request now takes 300 ms: the whole document is 48 of them (read-ahead fetches up to 8 at once).
            try await mount.sandbox.admin("faults", ["latencyMs": 300])
            let patch = Data("patched near the start".utf8)
            let (descriptor, written) = try await Tools.blocking { () -> (Int32, Int) in
                let descriptor = open(path, O_WRONLY | O_CLOEXEC)
                return (descriptor, patch.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 1000) })
            }
            let downloadedAtWrite = try await mount.sandbox.stats()["graph.download.bytes", default: 0]
            #expect(descriptor >= 0 && written == patch.count)
            #expect(downloadedAtWrite < size / 2, "downloaded \(downloadedAtWrite) of \(size) bytes before the write returned")
            // close waits for the rest of the copy: the staged file is the whole document.
            #expect(try await Tools.blocking { close(descriptor) } == 0)
            try await mount.sandbox.admin("faults", ["latencyMs": 0])
            expected.replaceSubrange(1000..<1000 + patch.count, with: patch)
            #expect(try await Tools.read(path) == expected)
            try await expectSynced(mount)
            #expect(try await connections.graph.download(driveID: info["driveId"]!, itemID: info["largeFileItemId"]!).data == expected)
        }
    }

    @Test("a document changed remotely between an open for writing and the first write fails that write with ESTALE")
    func staleFirstWrite() async throws {
        try await withMount(records: 2, docsPerRecord: 1) { mount in
            let remote = try await Remote(mount)
            let path = mount.path("Accounts/Acme Corp/Contracts/MSA-2026.pdf")
            let descriptor = open(path, O_WRONLY)
            #expect(descriptor >= 0)
            defer { close(descriptor) }
            let item = try #require(try await remote.item(SeededPaths.acmeContract))
            let scratch = try Self.scratch().appendingPathComponent("new")
            try Data("changed remotely\n".utf8).write(to: scratch)
            _ = try await remote.connections.graph.simpleUpload(driveID: remote.driveID, to: .item(id: item.id), file: scratch.path,
                                                                size: 17, options: UploadOptions())
            let code = try await Tools.blocking { () -> Int32 in errno = 0; _ = pwrite(descriptor, "x", 1, 0); return errno }
            #expect(code == ESTALE)
            #expect(try await remote.bytes(SeededPaths.acmeContract) == Data("changed remotely\n".utf8), "the remote change stands")
        }
    }

    @Test("crmfs sync sends what was written before it, files still open for writing included; later writes go on")
    func syncIncludesOpenFiles() async throws {
        try await withMount(records: 2, docsPerRecord: 1) { mount in
            let path = mount.path("\(Self.acme)/open.txt")
            let descriptor = try await Tools.blocking { () -> Int32 in
                let descriptor = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
                _ = "part one\n".withCString { write(descriptor, $0, 9) }
                return descriptor
            }
            #expect(descriptor >= 0)
            try await expectSynced(mount)
            let remote = try await Remote(mount)
            #expect(try await remote.bytes("\(SeededPaths.acmeFolder)/open.txt") == Data("part one\n".utf8))
            #expect(try await Tools.blocking { () -> Int in "part two\n".withCString { write(descriptor, $0, 9) } } == 9)
            #expect(try await Tools.blocking { close(descriptor) } == 0)
            try await expectSynced(mount)
            #expect(try await remote.bytes("\(SeededPaths.acmeFolder)/open.txt") == Data("part one\npart two\n".utf8))
        }
    }

    @Test("a .docx SharePoint rewrites as it stores it ends clean with the service's size, after one upload and no retry")
    func officeRewriteIsNotAFailure() async throws {
        try await withMount(records: 2, docsPerRecord: 1) { mount in
            let local = try Self.scratch()
            defer { try? FileManager.default.removeItem(at: local) }
            let document = local.appendingPathComponent("Report.docx")
            let made = try await Tools.run("python3", ["-c", """
                import sys, zipfile
                with zipfile.ZipFile(sys.argv[1], 'w') as z:
                    z.writestr('[Content_Types].xml', '<Types/>')
                    z.writestr('word/document.xml', '<w:document>' + 'text ' * 500 + '</w:document>')
                """, document.path])
            #expect(made.status == 0, "\(made.output)")
            let sent = try Data(contentsOf: document)
            try await mount.sandbox.admin("stats/reset")
            #expect(try await Tools.run("/bin/cp", [document.path, mount.path(Self.acme)]).status == 0)
            // (Taking the rewrite for a failed transfer retried it for ever, each upload rewritten again.)
            try await expectSynced(mount, timeLimit: .seconds(120))
            let stats = try await mount.sandbox.stats()
            #expect(stats["graph.upload.rewritten"] == 1, "\(stats)")
            #expect((stats["graph.upload.simple"] ?? 0) + (stats["graph.upload.session"] ?? 0) == 1, "one upload, no retry: \(stats)")
            let path = mount.path("\(Self.acme)/Report.docx")
            let state = try await Tools.run("getfattr", ["--only-values", "-n", "user.crmfs.sync", path])
            #expect(state.output.hasPrefix("clean (SharePoint rewrote it on upload: \(sent.count) bytes sent"), "\(state.output)")
            let remote = try await Remote(mount)
            let stored = try #require(try await remote.item("\(SeededPaths.acmeFolder)/Report.docx"))
            #expect(stored.size != Int64(sent.count))
            let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int64
            #expect(size == stored.size, "stat shows the service's document")
            let read = try Data(contentsOf: URL(fileURLWithPath: path))
            #expect(read == (try await remote.bytes("\(SeededPaths.acmeFolder)/Report.docx")), "reads show the service's document")
        }
    }
}

/// `crmfs sync` on a mount succeeded; when not, the failure shows the daemon's last log lines.
func expectSynced(_ mount: MountFixture, timeLimit: Duration = Tools.defaultTimeLimit,
                  sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let result = try await mount.sync(timeLimit: timeLimit)
    #expect(result.status == 0, "crmfs sync: \(result.errors)", sourceLocation: sourceLocation)
}
