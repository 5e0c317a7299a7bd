import CRM
import FileSystem
import Foundation
import Graph
import HTTP
import Services
import Testing
import TestSupport

/// The write path's behaviour, over the file system library built in process (no kernel, no root): what a
/// user's calls do to the tree and what lands in the sandbox. What only the kernel shows (its caches,
/// everyday tools' own call sequences) stays in MountTests.
@Suite("writes, in process", .serialized)
struct WriteBehaviourTests {
    static let acme = "Accounts/Acme Corp"

    @Test("rename within a record, into a folder, across records and over a document; mkdir and rmdir")
    func renamesAndFolders() async throws {
        try await withFileSystem(records: 3, docsPerRecord: 1) { fs in
            let acme = Self.acme
            for name in ["one", "two", "three", "target"] { try await fs.write("\(acme)/\(name).txt", "\(name)\n") }
            try await fs.mkdir("\(acme)/Drafts")
            try await fs.mkdir("\(acme)/Empty")
            try await fs.rename("\(acme)/one.txt", "\(acme)/renamed.txt")
            try await fs.rename("\(acme)/two.txt", "\(acme)/Drafts/two.txt")
            try await fs.rename("\(acme)/three.txt", "Accounts/Contoso: EMEA/three.txt")
            try await fs.write("\(acme)/zero", Data())
            try await fs.rename("\(acme)/zero", "\(acme)/zero-renamed")
            try await fs.sync()
            let remote = try await RemoteDrive(fs.sandbox)
            let target = try #require(try await remote.item("\(SeededPaths.acmeFolder)/target.txt"))
            // An empty file renamed right after its creation arrives under its new name.
            #expect(try await remote.item("\(SeededPaths.acmeFolder)/zero-renamed")?.size == 0)
            #expect(try await remote.item("\(SeededPaths.acmeFolder)/zero") == nil)
            let renamed = try #require(try await remote.item("\(SeededPaths.acmeFolder)/renamed.txt"))

            // Over an existing document: the source keeps its identity, the target's is gone.
            try await fs.rename("\(acme)/renamed.txt", "\(acme)/target.txt")
            try await fs.rmdir("\(acme)/Empty")
            try await fs.rename("\(acme)/Drafts", "\(acme)/Final")
            #expect(await Errno.of { try await fs.rmdir("\(acme)/Final") } == ENOTEMPTY)
            // RENAME_NOREPLACE refuses a taken name; RENAME_EXCHANGE is not offered.
            #expect(await Errno.of { try await fs.rename("\(acme)/target.txt", "\(acme)/Final/two.txt", flags: 1) } == EEXIST)
            #expect(await Errno.of { try await fs.rename("\(acme)/target.txt", "\(acme)/Final/two.txt", flags: 2) } == EINVAL)
            try await fs.sync()

            let names = try await remote.names(SeededPaths.acmeFolder)
            #expect(names.contains("target.txt") && names.contains("Final") && !names.contains("renamed.txt") && !names.contains("Empty") && !names.contains("Drafts"))
            let now = try #require(try await remote.item("\(SeededPaths.acmeFolder)/target.txt"))
            #expect(now.id == renamed.id && now.id != target.id)
            #expect(try await remote.bytes("\(SeededPaths.acmeFolder)/target.txt") == Data("one\n".utf8))
            #expect(try await remote.bytes("\(SeededPaths.acmeFolder)/Final/two.txt") == Data("two\n".utf8))
            // Across records: the document now lives in the other record's folder.
            let movedID = try #require(try await fs.getxattr("Accounts/Contoso: EMEA/three.txt", "user.crmfs.item_id"))
            let moved = try await remote.connections.graph.item(driveID: remote.driveID, itemID: movedID)
            #expect(moved.parentReference?.path?.contains("Contoso") == true, "\(String(describing: moved.parentReference?.path))")
            #expect(try await remote.bytes(moved) == Data("three\n".utf8))
            #expect(try await remote.item("\(SeededPaths.acmeFolder)/three.txt") == nil)

            // A file removed while still open goes nowhere, and leaves nothing staged once all is sent.
            let handle = try await fs.open("\(acme)/scratch.txt", O_WRONLY | O_CREAT)
            try await fs.write(handle, Data("x".utf8))
            try await fs.unlink("\(acme)/scratch.txt")
            try await fs.write(handle, Data("y".utf8), at: 1)
            try await fs.close(handle)
            try await fs.sync()
            #expect(try await remote.item("\(SeededPaths.acmeFolder)/scratch.txt") == nil)
            #expect(try FileManager.default.contentsOfDirectory(atPath: "\(fs.stateDirectory)/staging").isEmpty)
        }
    }

    /// Found by the audit of stop 35: the replaced document's open session still journaled its writer's
    /// bytes at its close, which went up over the renamed document (or failed for good on the item the rename
    /// deleted, holding back every later version of the name).
    @Test("a document renamed over while open for writing: what its writer writes and closes afterwards goes nowhere, as in POSIX; the name holds the renamed document", arguments: [false, true])
    func renameOverOpenWriter(sourceOnService: Bool) async throws {
        try await withFileSystem(records: 3, docsPerRecord: 1) { fs in
            let acme = Self.acme, remote = try await RemoteDrive(fs.sandbox)
            let target = "\(acme)/target.txt", source = "\(acme)/source.txt"
            let renamed = Data("the renamed document\n".utf8)
            try await fs.write(target, "the target\n")
            if sourceOnService { try await fs.write(source, renamed) }
            try await fs.sync()
            let handle = try await fs.open(target, O_WRONLY)
            try await fs.write(handle, Data("written before the rename\n".utf8))
            if !sourceOnService { try await fs.write(source, renamed) }
            try await fs.rename(source, target)
            try await fs.write(handle, Data("and after it\n".utf8), at: 26)
            try await fs.close(handle)
            try await fs.sync()
            #expect(try await fs.read(target) == renamed)
            #expect(try await remote.bytes("\(SeededPaths.acmeFolder)/target.txt") == renamed)
            #expect(try await remote.item("\(SeededPaths.acmeFolder)/source.txt") == nil)
            // Nothing waits behind it: the name's next version goes.
            try await fs.write(target, "later\n")
            try await fs.sync()
            #expect(try await remote.bytes("\(SeededPaths.acmeFolder)/target.txt") == Data("later\n".utf8))
        }
    }

    @Test("names SharePoint refuses fail at create, mkdir and rename with EINVAL; the object level answers EPERM; both are logged")
    func refusals() async throws {
        try await withFileSystem(records: 2, docsPerRecord: 1) { fs in
            let acme = Self.acme
            var codes: [Int32] = []
            codes.append(await Errno.of { _ = try await fs.open("\(acme)/a:b.txt", O_WRONLY | O_CREAT) })
            codes.append(await Errno.of { _ = try await fs.open("\(acme)/trailing ", O_WRONLY | O_CREAT) })
            codes.append(await Errno.of { try await fs.mkdir("\(acme)/folder.") })
            codes.append(await Errno.of { try await fs.mkdir("\(acme)/CON") })
            try await fs.write("\(acme)/good.txt", Data())
            codes.append(await Errno.of { try await fs.rename("\(acme)/good.txt", "\(acme)/bad|name.txt") })
            codes.append(await Errno.of { try await fs.mkdir("Accounts/New Account") })
            codes.append(await Errno.of { _ = try await fs.open("Accounts/loose.txt", O_WRONLY | O_CREAT) })
            codes.append(await Errno.of { try await fs.rename(acme, "\(acme) renamed") })
            #expect(codes == [EINVAL, EINVAL, EINVAL, EINVAL, EINVAL, EPERM, EPERM, EPERM])
            #expect(fs.log.contains("the character ':'"), "\(fs.log.lines)")
            #expect(fs.log.contains("records are not made or renamed through the mount"), "\(fs.log.lines)")
            // No links, devices or preallocation in a document library.
            let unsupported: [CRMFileSystem.Unsupported] = [.link, .symlink, .device, .preallocation]
            #expect(unsupported.map { fs.fileSystem.errno(for: $0) } == [EPERM, EPERM, EPERM, EOPNOTSUPP])
            // chmod and chown succeed and change nothing remotely, so cp -a and rsync -a work.
            _ = try await fs.fileSystem.setattr(try await fs.node("\(acme)/good.txt").ino).value
        }
    }

    @Test("a small file goes in one PUT; a time set right after close (cp -p) goes inside an upload session, never by a PATCH after it")
    func uploadKinds() async throws {
        try await withFileSystem(records: 2, docsPerRecord: 1) { fs in
            try await fs.sandbox.admin("stats/reset")
            try await fs.write("\(Self.acme)/plain.txt", "plain\n")
            try await fs.sync()
            var stats = try await fs.sandbox.stats()
            #expect(stats["graph.upload.simple"] == 1 && (stats["graph.upload.session"] ?? 0) == 0, "\(stats)")
            try await fs.write("\(Self.acme)/timed.txt", "kept time\n")
            try await fs.setModified("\(Self.acme)/timed.txt", to: Date(timeIntervalSince1970: 1_683_356_889))  // 2023-05-06 07:08:09 UTC
            try await fs.sync()
            stats = try await fs.sandbox.stats()
            #expect(stats["graph.upload.session"] == 1, "\(stats)")
            #expect((stats["graph.patch"] ?? 0) == 0, "no PATCH of the item after its upload: \(stats)")
            let remote = try await RemoteDrive(fs.sandbox)
            let timed = try #require(try await remote.item("\(SeededPaths.acmeFolder)/timed.txt"))
            #expect(timed.fileSystemInfo?.lastModifiedDateTime?.hasPrefix("2023-05-06T07:08:09") == true, "\(String(describing: timed.fileSystemInfo?.lastModifiedDateTime))")
        }
    }

    @Test("a time set right after close reaches the service on the upload itself, also when the file is renamed at once", arguments: [false, true])
    func timeAfterClose(renamed: Bool) async throws {
        try await withFileSystem(records: 2, docsPerRecord: 1) { fs in
            let final = renamed ? "n.txt" : "m.txt"
            try await fs.sandbox.admin("stats/reset")
            try await fs.write("\(Self.acme)/m.txt", "minutes of the meeting\n")
            try await fs.setModified("\(Self.acme)/m.txt", to: Date(timeIntervalSince1970: 1_577_934_245))  // 2020-01-02 03:04:05 UTC
            if renamed { try await fs.rename("\(Self.acme)/m.txt", "\(Self.acme)/n.txt") }
            try await fs.sync()
            let remote = try await RemoteDrive(fs.sandbox)
            let item = try #require(try await remote.item("\(SeededPaths.acmeFolder)/\(final)"))
            #expect(item.fileSystemInfo?.lastModifiedDateTime == "2020-01-02T03:04:05Z")
            // It rode on the upload: no metadata update (an extra version) after it.
            let stats = try await fs.sandbox.stats()
            #expect(stats["graph.patch", default: 0] == 0, "\(stats)")
            #expect(stats["graph.upload.session", default: 0] == 1, "\(stats)")
            #expect(try await remote.item("\(SeededPaths.acmeFolder)/m.txt") == nil || !renamed)
        }
    }

    @Test("the mtime touch -d sets is the one stat shows, at once and after a remount; touch downloads nothing")
    func touchedTimes() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1, separateProcess: true) { sandbox in
            let expected = Date(timeIntervalSince1970: 1_709_210_096)  // 2024-02-29 12:34:56 UTC
            let contract = "Accounts/Acme Corp/Contracts/MSA-2026.pdf"
            let first = try await FileSystemFixture.build(sandbox)
            _ = try await first.node(contract)
            try await sandbox.admin("stats/reset")
            // touch opens the document for writing, closes it, and sets the time: that alone copies none of its bytes.
            try await first.close(try await first.open(contract, O_WRONLY | O_CREAT))
            try await first.setModified(contract, to: expected)
            #expect((try await sandbox.stats()["graph.download.bytes"] ?? 0) == 0)
            #expect(try await first.stat(contract).st_mtim.tv_sec == 1_709_210_096)
            try await first.sync()
            await first.close()
            let second = try await FileSystemFixture.build(sandbox)
            #expect(try await second.stat(contract).st_mtim.tv_sec == 1_709_210_096)
            await second.close()
        }
    }

    @Test("fsync returns once the file is uploaded; user.crmfs.sync says where a file stands; statfs reports the staging disk's room")
    func fsyncWaits() async throws {
        try await withFileSystem(records: 2, docsPerRecord: 1) { fs in
            let path = "\(Self.acme)/fsynced.txt"
            let handle = try await fs.open(path, O_WRONLY | O_CREAT)
            try await fs.write(handle, Data("durable".utf8))
            try await fs.fsync(handle)
            let remote = try await RemoteDrive(fs.sandbox)
            #expect(try await remote.bytes("\(SeededPaths.acmeFolder)/fsynced.txt") == Data("durable".utf8), "there without crmfs sync")
            try await fs.close(handle)
            #expect(try await fs.getxattr(path, "user.crmfs.sync") == "clean")
            try await fs.write("\(Self.acme)/.~lock.x#", "lock\n")
            #expect(try await fs.getxattr("\(Self.acme)/.~lock.x#", "user.crmfs.sync") == "local-only")
            // statfs reports the room left where writes are staged.
            let reported = fs.fileSystem.statfs()
            let stateDisk = try FileManager.default.attributesOfFileSystem(forPath: fs.stateDirectory)
            let free = Double(reported.f_bavail) * Double(reported.f_frsize)
            let expected = (stateDisk[.systemFreeSize] as? NSNumber)?.doubleValue ?? -1
            #expect(free > 0 && abs(free - expected) < 1e9, "\(free) vs \(expected)")
        }
    }

    @Test("setfattr user.crm.FIELD changes the record where writable_fields allows it, and only there")
    func recordFields() async throws {
        let allowPhone = { (text: String) in
            text.replacingOccurrences(of: "link = \"folder\"\nfolder = \"Accounts/", with: "writable_fields = [\"Phone\"]\nlink = \"folder\"\nfolder = \"Accounts/")
        }
        try await withFileSystem(records: 2, docsPerRecord: 1, editConfig: allowPhone) { fs in
            try await fs.setxattr(Self.acme, "user.crm.Phone", "+1 206 555 0199")
            #expect(await Errno.of { try await fs.setxattr(Self.acme, "user.crm.Website", "x") } == EPERM)
            let connections = try fs.sandbox.connections()
            let fields = try await connections.salesforce.record("Account", id: SeededPaths.acmeID, fields: ["Phone", "Website"])
            #expect(fields["Phone"]?.stringValue == "+1 206 555 0199")
            #expect(fields["Website"]?.stringValue != "x")
            #expect(try await fs.getxattr(Self.acme, "user.crm.Phone") == "+1 206 555 0199")
        }
    }

    @Test("setfattr on a column lands in SharePoint; a value of the wrong type is refused with EINVAL")
    func columns() async throws {
        try await withFileSystem(records: 2, docsPerRecord: 1) { fs in
            let file = "Accounts/Acme Corp/Contracts/MSA-2026.pdf"
            try await fs.setxattr(file, "user.sp.DocumentType", "Quote")
            try await fs.setxattr(file, "user.sp.Amount", "1250.5")
            var bad: [Int32] = []
            for (name, value) in [("user.sp.Amount", "lots"), ("user.sp.Confidential", "perhaps"), ("user.sp.NoSuchColumn", "x"),
                                  ("user.sp.Modified", "x"), ("user.crm.Name", "x")] {
                bad.append(await Errno.of { try await fs.setxattr(file, name, value) })
            }
            #expect(bad == [EINVAL, EINVAL, EINVAL, EPERM, EPERM])
            let remote = try await RemoteDrive(fs.sandbox)
            let item = try #require(try await remote.item(SeededPaths.acmeContract))
            let fields = try await remote.connections.graph.fields(driveID: remote.driveID, itemID: item.id)
            #expect(fields["DocumentType"] == .string("Quote"))
            #expect(fields["Amount"] == .number(1250.5))
            #expect(try await fs.getxattr(file, "user.sp.DocumentType") == "Quote")
            // A document just written waits for its upload, then takes the column.
            try await fs.write("\(Self.acme)/fresh.txt", "fresh\n")
            try await fs.setxattr("\(Self.acme)/fresh.txt", "user.sp.DocumentType", "Note")
            let freshItem = try #require(try await remote.item("\(SeededPaths.acmeFolder)/fresh.txt"))
            #expect(try await remote.connections.graph.fields(driveID: remote.driveID, itemID: freshItem.id)["DocumentType"] == .string("Note"))
        }
    }
}
