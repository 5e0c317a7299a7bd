import Cache
import Config
import Foundation
import Graph
import Logging
import Namespace
import Synchronization
import Testing
import TestSupport
import Writeback
import Writes

/// The write path between the kernel's operations and the engine, over a tenant in memory: what a
/// sequence of creates, writes, closes, renames and times sends, and that parallel writers and
/// hand-overs lose no byte. No sandbox, no kernel (the mount tests cover the same through both), so
/// these also run under ThreadSanitizer.
@Suite("the write path (in memory)")
struct LocalWritesTests {
    /// A tenant with account "Acme" holding `existing.txt` ("old text") and account "Renamed Corp"
    /// whose folder is still "Old Corp (001B)", a tree over it, and the write
    /// path with its own state directory. A closed document waits a minute before it goes (unless
    /// synced), so what a test does "right after close" does not depend on how busy the machine is.
    struct Bench {
        let tenant: MemoryTenant
        let root = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("crmfs-writes-\(UUID().uuidString)")
        let folder: String
        let tree: Tree
        let engine: WritebackEngine
        let writes: LocalWrites
        /// Acme's directory.
        let record: UInt64

        /// `beforeRecord` runs before every new change is journaled, `beforeSeal` before every seal of a
        /// staged file (the journal's and the staging area's test hooks), `beforeWrite` before every write
        /// the service gets (the in-memory drive's: a test holds or fails it there).
        /// `journaled` is what a stopped mount left in the journal (restored as this one starts); with
        /// `started` false the engine waits for the test's `engine.start()`. `objects` links and stamps
        /// uploads into records (none by default).
        init(beforeRecord: (@Sendable () throws -> Void)? = nil, beforeSeal: (@Sendable () -> Void)? = nil,
             beforeWrite: @escaping @Sendable (InMemoryDrive.Call) async throws -> Void = { _ in },
             journaled: (_ acmeFolder: String, MemoryTenant) -> [PendingChange] = { _, _ in [] }, started: Bool = true,
             objects: [String: ObjectLinking] = [:]) async throws {
            tenant = MemoryTenant(beforeWrite: beforeWrite)
            folder = tenant.account("001A", "Acme", documents: ["existing.txt": "old text"])!
            // An account renamed in the CRM since its folder was made: the folder keeps the old name.
            tenant.account("001B", "Renamed Corp")
            tenant.drive.addFolder("Old Corp (001B)", in: tenant.accounts)
            tree = try await tenant.open()
            let staging = try StagingArea(directory: root.appendingPathComponent("staging"), beforeSeal: beforeSeal)
            let journal = try Journal(path: root.appendingPathComponent("journal.sqlite").path, beforeAdd: beforeRecord)
            for change in journaled(folder, tenant) { try journal.add(change) }
            let uploader = Uploader(graph: tenant.drive, staging: staging, journal: journal, fragmentSize: 320 << 10, simpleUploadMax: 1 << 20)
            engine = WritebackEngine(journal: journal, staging: staging, uploader: uploader,
                                     linker: Linker(graph: tenant.drive, salesforce: tenant.records), graph: tenant.drive,
                                     salesforce: tenant.records, objects: objects, retryDelay: .milliseconds(10))
            if started { engine.start() }
            let cache = try BlockCache(directory: root.appendingPathComponent("blocks"), capacity: 64 << 20, blockSize: 64 << 10)
            writes = LocalWrites(tree: tree, reader: BlockReader(cache: cache, graph: tenant.drive),
                                 support: WriteSupport(staging: staging, engine: engine, localOnly: LocalOnlyNames()),
                                 logger: Logger(label: "crmfs.test"), quietPeriod: .seconds(60))
            record = try await MemoryTenant.record(tree, "Acme")
        }

        /// Writes `bytes` at `offset` as the kernel's write would.
        func write(_ session: WriteSession, _ bytes: Data, at offset: Int64) throws {
            let written = try writes.write(session, at: offset, length: bytes.count) { descriptor in
                bytes.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, off_t(offset)) }
            }
            #expect(written == bytes.count)
        }

        /// A new document holding `text`, closed (flush and release) as `cp` leaves it.
        @discardableResult
        func create(_ name: String, _ text: String) async throws -> NodeSnapshot {
            let (node, session) = try await writes.create(parent: record, name: name, flags: O_CREAT | O_WRONLY)
            try write(session, Data(text.utf8), at: 0)
            try writes.commit(session)
            try writes.close(session)
            return node
        }

        /// `crmfs sync`, failing the test instead of hanging it.
        func sync() async throws {
            let writes = self.writes
            let synced = try await finishes(within: .seconds(60)) { try await writes.drain() }
            if !synced { Issue.record("crmfs sync did not finish within 60 s") }
        }

        /// rsync's way, `rounds` times: `.doc-N.txt.AbNNNN` (local-only, so its close journals nothing)
        /// written and flushed, then renamed to `doc-N.txt` (which records its upload) while its last
        /// close lands on another thread once `beforeClose` returns.
        func renameTemporariesWhileClosing(rounds: Int, beforeClose: @escaping @Sendable () -> Void) async throws {
            for round in 0..<rounds {
                let temporary = ".doc-\(round).txt." + String(format: "Ab%04d", round)
                let (_, session) = try await writes.create(parent: record, name: temporary, flags: O_CREAT | O_WRONLY)
                try write(session, Data("round \(round)".utf8), at: 0)
                try writes.commit(session)
                let closed = Task.detached { [writes] in
                    beforeClose()
                    try writes.close(session)
                }
                try await writes.rename(parent: record, name: temporary, to: record, newName: "doc-\(round).txt", noReplace: false)
                try await closed.value
            }
        }

        func content(_ name: String) -> String? {
            tenant.drive.content(at: "Accounts/Acme (001A)/\(name)").map { String(decoding: $0, as: UTF8.self) }
        }

        func modified(_ name: String) -> Date? { tenant.drive.modified(at: "Accounts/Acme (001A)/\(name)") }

        func calls(_ kind: InMemoryDrive.Call.Kind) -> [String] {
            tenant.drive.calls.filter { $0.kind == kind }.map(\.name)
        }

        /// Stages `text` as the bytes of journaled change `name`, as a stopped mount left them.
        func stageRestored(_ name: String, _ text: String) throws {
            let change = try #require(try engine.outstanding().first { $0.name == name })
            let (file, descriptor) = try writes.staging.create()
            defer { close(descriptor) }
            let bytes = Data(text.utf8)
            #expect(bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) } == bytes.count)
            try writes.staging.seal(file, descriptor: descriptor)
            try engine.amend(change.id!) { $0.stagedFile = file; $0.sealed = true }
        }

        /// Staged files left in the staging area.
        var stagedFiles: [String] { (try? writes.staging.orphans(keeping: [])) ?? [] }

        func tearDown() async {
            await engine.stop()
            try? FileManager.default.removeItem(at: root)
        }
    }

    /// Found by the audit of stop 35: the earlier version's row (and staged file) went before the new one was
    /// journaled; when that failed (a full disk), the earlier version, whose close had succeeded, was gone.
    @Test("a new version that cannot be journaled leaves the version before it journaled: its close fails, the earlier bytes stay until the new ones go")
    func failedRecordKeepsEarlierVersion() async throws {
        let failing = Locked(false)
        let bench = try await Bench(beforeRecord: { if failing.value { throw POSIXError(.ENOSPC) } })
        let node = try await bench.create("draft.txt", "first")
        let session = try await bench.writes.open(node, truncate: false)
        try bench.write(session, Data("SECOND".utf8), at: 0)
        failing.set(true)
        #expect(throws: (any Error).self) { try bench.writes.commit(session) }
        failing.set(false)
        let journaled = try bench.engine.outstanding().filter { $0.name == "draft.txt" }
        #expect(journaled.count == 1, "the first version is still journaled: \(journaled)")
        try bench.writes.commit(session)
        try bench.writes.close(session)
        #expect(try bench.engine.outstanding().filter { $0.name == "draft.txt" }.count == 1, "the new version took its place")
        try await bench.sync()
        #expect(bench.content("draft.txt") == "SECOND")
        #expect(bench.calls(.upload).filter { $0 == "draft.txt" }.count == 1, "one upload: \(bench.calls(.upload))")
    }

    @Test("a time set right after close rides on the upload: one upload, no extra version")
    func timeAfterCloseRidesOnUpload() async throws {
        let bench = try await Bench()
        let node = try await bench.create("m.txt", "hello")
        let date = Date(timeIntervalSince1970: 1_577_934_245)  // 2020-01-02 03:04:05 UTC
        try bench.writes.setModified(node, to: date)
        try await bench.sync()
        #expect(bench.content("m.txt") == "hello")
        #expect(bench.calls(.upload) == ["m.txt"])
        #expect(bench.calls(.update).isEmpty)
        let item = try await bench.tenant.drive.item(driveID: InMemoryDrive.driveID, path: "Accounts/Acme (001A)/m.txt")
        #expect(item.fileSystemInfo?.lastModifiedDateTime.flatMap { ISO8601DateFormatter().date(from: $0) } == date)
        await bench.tearDown()
    }

    @Test("an fsync whose journal entry fails keeps the bytes dirty: never clean, and the next close sends them")
    func fsyncNotJournaled() async throws {
        let journalFull = Locked(false)
        let bench = try await Bench(beforeRecord: { if journalFull.value { throw POSIXError(.ENOSPC) } })
        let (node, session) = try await bench.writes.create(parent: bench.record, name: "journaled.txt", flags: O_CREAT | O_WRONLY)
        try bench.write(session, Data("must arrive".utf8), at: 0)
        journalFull.set(true)
        await #expect(throws: POSIXError.self) { try await bench.writes.fsync(session) }
        #expect(bench.writes.syncStatus(try #require(bench.tree.current(node.ino))).hasPrefix("error:"))
        // Room again: the close records what the fsync could not.
        journalFull.set(false)
        try bench.writes.commit(session)
        try bench.writes.close(session)
        try await bench.sync()
        #expect(bench.content("journaled.txt") == "must arrive")
        #expect(bench.writes.syncStatus(try #require(bench.tree.current(node.ino))) == "clean")
        await bench.tearDown()
    }

    @Test("a time set on a file still open after its fsync holds against the library's feed, and reaches the service (model seed 1202)")
    func timeAfterFsyncWhileOpen() async throws {
        let bench = try await Bench()
        let (node, session) = try await bench.writes.create(parent: bench.record, name: "a.txt", flags: O_CREAT | O_WRONLY)
        try bench.write(session, Data("sent by fsync".utf8), at: 0)
        try await bench.writes.fsync(session)
        let date = Date(timeIntervalSince1970: 1_720_931_160)
        try bench.writes.setModified(try #require(bench.tree.current(node.ino)), to: date)
        // A feed round brings the version the fsync sent, stamped with the time of its upload.
        let itemID = try #require(bench.tree.current(node.ino)?.itemID)
        _ = bench.tree.applyDriveChanges([try await bench.tenant.drive.item(driveID: "b!memory", itemID: itemID, expandFields: false)])
        #expect(bench.tree.current(node.ino)?.modified == date, "the time set shows")
        try bench.writes.commit(session)
        try bench.writes.close(session)
        try await bench.sync()
        // Before: the time waited in the open handle, unpinned; the feed put the upload's time over it, and
        // the close sent that as the time set.
        #expect(bench.modified("a.txt") == date)
        #expect(bench.content("a.txt") == "sent by fsync")
        await bench.tearDown()
    }

    @Test("a time set on an open file that cannot be journaled (a full disk) waits in the handle: the close fails, and crmfs sync sends it once there is room")
    func timeOnAFullDiskWaitsInTheHandle() async throws {
        let journalFull = Locked(false)
        let bench = try await Bench(beforeRecord: { if journalFull.value { throw POSIXError(.ENOSPC) } })
        let (node, session) = try await bench.writes.create(parent: bench.record, name: "a.txt", flags: O_CREAT | O_WRONLY)
        try bench.write(session, Data("sent by fsync".utf8), at: 0)
        try await bench.writes.fsync(session)
        journalFull.set(true)
        let date = Date(timeIntervalSince1970: 1_720_931_160)
        // Before: utimens failed ENOSPC with the time already showing, and nothing ever sent it.
        try bench.writes.setModified(try #require(bench.tree.current(node.ino)), to: date)
        #expect(throws: POSIXError.self) { try bench.writes.commit(session) }
        #expect(throws: POSIXError.self) { try bench.writes.close(session) }
        journalFull.set(false)
        try await bench.sync()
        #expect(bench.modified("a.txt") == date)
        await bench.tearDown()
    }

    @Test("an empty document (one whose close could not be journaled on a full disk, sent by crmfs sync once there is room) written again without O_TRUNC: other handles read the written bytes at once, and the next close sends them (model regression closeFailedOnAFullDisk)")
    func writtenAgainAfterAFailedClose() async throws {
        let journalFull = Locked(false)
        let bench = try await Bench(beforeRecord: { if journalFull.value { throw POSIXError(.ENOSPC) } })
        let (node, session) = try await bench.writes.create(parent: bench.record, name: "a.txt", flags: O_CREAT | O_WRONLY)
        journalFull.set(true)
        #expect(throws: POSIXError.self) { try bench.writes.commit(session) }
        #expect(throws: POSIXError.self) { try bench.writes.close(session) }
        journalFull.set(false)
        try await bench.sync()
        #expect(bench.content("a.txt") == "")
        let again = try await bench.writes.open(try #require(bench.tree.current(node.ino)), truncate: false)
        try bench.write(again, Data("written after".utf8), at: 0)
        // Before: with nothing to copy, the node kept reading the service's empty version at the new size
        // (a read through another handle failed EIO: the service answered 416).
        #expect(bench.tree.current(node.ino)?.stagedFile != nil)
        try bench.writes.commit(again)
        try bench.writes.close(again)
        try await bench.sync()
        // Before: the second close journaled nothing; the mount showed 13 bytes, the service had none.
        #expect(bench.content("a.txt") == "written after")
        await bench.tearDown()
    }

    @Test("a document whose upload gave up, then renamed: its one change goes again under the new name, and nothing is left behind")
    func renameAfterGivingUp() async throws {
        let failing = Locked(true)
        let bench = try await Bench(beforeWrite: InMemoryDrive.unavailable(for: .upload, while: failing))
        try await bench.create("a.txt", "first words")
        #expect(try await finishes(within: .seconds(60)) { try? await bench.writes.drain() })
        #expect(bench.engine.givenUp.count == 1)
        failing.set(false)
        // Before: the change that gave up could not be amended, so the rename recorded a second change of
        // the same staged file; the first removed the file on success, and the second never went.
        try await bench.writes.rename(parent: bench.record, name: "a.txt", to: bench.record, newName: "b.txt", noReplace: false)
        // It goes by itself, with nothing else to wake the engine (a sync would).
        let change = try #require(try bench.engine.outstanding().first?.id)
        #expect(try await finishes(within: .seconds(60)) { try await bench.engine.wait(for: change) })
        try await bench.sync()
        #expect(bench.content("b.txt") == "first words")
        #expect(bench.content("a.txt") == nil)
        #expect(try bench.engine.outstanding().isEmpty)
        #expect(bench.stagedFiles.isEmpty)
        await bench.tearDown()
    }

    @Test("a new file renamed over a document, written again while its upload is on its way: the second version is that document's next one, no conflict copy")
    func writtenAgainAfterRenameOver() async throws {
        let gate = Locked<CheckedContinuation<Void, Never>?>(nil)
        let held = Locked(true)
        let bench = try await Bench(beforeWrite: { call in
            if call.kind == .upload, held.value { await withCheckedContinuation { gate.set($0) } }
        })
        // As an editor saves: a new file written, renamed over the document, closed.
        let (_, first) = try await bench.writes.create(parent: bench.record, name: "new.txt", flags: O_CREAT | O_WRONLY)
        try bench.write(first, Data("first version".utf8), at: 0)
        try bench.writes.commit(first)
        try await bench.writes.rename(parent: bench.record, name: "new.txt", to: bench.record, newName: "existing.txt", noReplace: false)
        try bench.writes.close(first)
        let writes = bench.writes
        let sending = Task { try? await writes.drain() }  // `crmfs sync`: goes without the quiet moment
        while gate.value == nil { try await Task.sleep(for: .milliseconds(5)) }
        // Its upload (which names the replaced document's item) is on its way; the file is written again.
        let (_, second) = try await bench.writes.create(parent: bench.record, name: "existing.txt", flags: O_CREAT | O_WRONLY | O_TRUNC)
        try bench.write(second, Data("second version".utf8), at: 0)
        try bench.writes.commit(second)
        try bench.writes.close(second)
        held.set(false)
        gate.value?.resume()
        _ = await sending.value
        try await bench.sync()
        // Before: the second version named the document by its place only, never learned the item the first
        // wrote, went as a new document, met the name taken and was kept as a conflict copy beside it.
        #expect(bench.tenant.drive.names(in: bench.folder) == ["existing.txt"])
        #expect(bench.content("existing.txt") == "second version")
        #expect(try bench.engine.outstanding().isEmpty)
        await bench.tearDown()
    }

    @Test("a new file renamed over a document, then unlinked before its bytes went: the document is deleted")
    func renamedOverThenUnlinked() async throws {
        let bench = try await Bench()
        let (_, file) = try await bench.writes.create(parent: bench.record, name: "new.txt", flags: O_CREAT | O_WRONLY)
        try bench.write(file, Data("replacement".utf8), at: 0)
        try bench.writes.close(file)
        try await bench.writes.rename(parent: bench.record, name: "new.txt", to: bench.record, newName: "existing.txt", noReplace: false)
        try await bench.writes.remove(parent: bench.record, name: "existing.txt", directory: false)
        try await bench.sync()
        // Before: the withdrawn upload was to be the document's next version; with it gone, nothing named the
        // document any more, and it stayed on the service under the name the user removed.
        #expect(bench.tenant.drive.names(in: bench.folder).isEmpty)
        #expect(try bench.engine.outstanding().isEmpty)
        await bench.tearDown()
    }

    @Test("a new file renamed over a document, then another renamed over it: the last one's bytes are the document's next version")
    func renamedOverTwice() async throws {
        let bench = try await Bench()
        let existing = try #require(bench.tenant.drive.itemID(named: "existing.txt", in: bench.folder))
        for (name, text) in [("first.txt", "first"), ("second.txt", "second")] {
            let (_, file) = try await bench.writes.create(parent: bench.record, name: name, flags: O_CREAT | O_WRONLY)
            try bench.write(file, Data(text.utf8), at: 0)
            try bench.writes.close(file)
            try await bench.writes.rename(parent: bench.record, name: name, to: bench.record, newName: "existing.txt", noReplace: false)
        }
        try await bench.sync()
        #expect(bench.tenant.drive.names(in: bench.folder) == ["existing.txt"])
        #expect(bench.content("existing.txt") == "second")
        // Before: the second rename did not know the item the first one's withdrawn upload was to replace.
        #expect(bench.tenant.drive.itemID(named: "existing.txt", in: bench.folder) == existing)
        await bench.tearDown()
    }

    @Test("a column written on a document, then a new file renamed over it: the new bytes are its next version, not a conflict")
    func columnThenRenamedOver() async throws {
        let bench = try await Bench()
        let existing = try #require(try await bench.tree.child(of: bench.record, named: "existing.txt"))
        // A column write (the mount's, whose answer carries no eTag, or a colleague's) moves the document's eTag
        // on the service; its bytes stay as they were.
        _ = try await bench.tenant.drive.updateFields(driveID: InMemoryDrive.driveID, itemID: try #require(existing.itemID),
                                                      fields: ["DocumentType": .string("Quote")], ifMatch: nil)
        try await bench.create("new.txt", "replacement")
        try await bench.writes.rename(parent: bench.record, name: "new.txt", to: bench.record, newName: "existing.txt", noReplace: false)
        try await bench.sync()
        // Before: the upload was guarded by the eTag before the column write, met 412 and was kept as a copy beside it.
        #expect(bench.tenant.drive.names(in: bench.folder) == ["existing.txt"])
        #expect(bench.content("existing.txt") == "replacement")
        await bench.tearDown()
    }

    @Test("a new file renamed over a document, then on to a new name before its bytes went: the document moves there with the new bytes")
    func renamedOverThenOn() async throws {
        let bench = try await Bench()
        let existing = try #require(bench.tenant.drive.itemID(named: "existing.txt", in: bench.folder))
        try await bench.create("new.txt", "replacement")
        try await bench.writes.rename(parent: bench.record, name: "new.txt", to: bench.record, newName: "existing.txt", noReplace: false)
        try await bench.writes.rename(parent: bench.record, name: "existing.txt", to: bench.record, newName: "moved.txt", noReplace: false)
        try await bench.sync()
        #expect(bench.tenant.drive.names(in: bench.folder) == ["moved.txt"])
        #expect(bench.content("moved.txt") == "replacement")
        #expect(bench.tenant.drive.itemID(named: "moved.txt", in: bench.folder) == existing)
        #expect(try await bench.tree.list(bench.record).map(\.name).sorted() == ["moved.txt"])
        await bench.tearDown()
    }

    @Test("a document renamed to a name that stays local, written there and renamed back: the bytes written go as its next version")
    func writtenUnderALocalName() async throws {
        let bench = try await Bench()
        let existing = try #require(bench.tenant.drive.itemID(named: "existing.txt", in: bench.folder))
        try await bench.writes.rename(parent: bench.record, name: "existing.txt", to: bench.record, newName: "existing.txt~", noReplace: false)
        let (_, file) = try await bench.writes.create(parent: bench.record, name: "existing.txt~", flags: O_WRONLY | O_TRUNC)
        try bench.write(file, Data("edited aside".utf8), at: 0)
        try bench.writes.close(file)
        try await bench.writes.rename(parent: bench.record, name: "existing.txt~", to: bench.record, newName: "existing.txt", noReplace: false)
        try await bench.sync()
        #expect(bench.content("existing.txt") == "edited aside")
        #expect(bench.tenant.drive.itemID(named: "existing.txt", in: bench.folder) == existing)
        await bench.tearDown()
    }

    @Test("a document open on two handles, flushed, renamed to a name that stays local, written and flushed there, renamed back: every byte goes")
    func flushedUnderALocalName() async throws {
        let bench = try await Bench()
        let existing = try #require(try await bench.tree.child(of: bench.record, named: "existing.txt"))
        let session = try await bench.writes.open(existing, truncate: true)
        _ = try await bench.writes.open(existing, truncate: false)  // a second handle on the same document
        try bench.write(session, Data("first part, ".utf8), at: 0)
        try bench.writes.commit(session)  // one handle's close: flushed and journaled
        try await bench.writes.rename(parent: bench.record, name: "existing.txt", to: bench.record, newName: "existing.txt~", noReplace: false)
        try bench.write(session, Data("second part".utf8), at: 12)
        try bench.writes.commit(session)  // flushed under a name that stays local: nothing journaled
        try await bench.writes.rename(parent: bench.record, name: "existing.txt~", to: bench.record, newName: "existing.txt", noReplace: false)
        try bench.writes.close(session)
        try bench.writes.close(session)
        try await bench.sync()
        // Before: the journaled change kept the size of the first flush, and the upload sent that many bytes.
        #expect(bench.content("existing.txt") == "first part, second part")
        await bench.tearDown()
    }

    @Test("a document renamed to a name that stays local, a new file made under its name and removed before it went: the document stays, held by the temporary file")
    func newFileUnderAShadowedNameRemoved() async throws {
        let bench = try await Bench()
        try await bench.writes.rename(parent: bench.record, name: "existing.txt", to: bench.record, newName: "existing.txt~", noReplace: false)
        try await bench.create("existing.txt", "a new file")
        try await bench.writes.remove(parent: bench.record, name: "existing.txt", directory: false)
        try await bench.writes.rename(parent: bench.record, name: "existing.txt~", to: bench.record, newName: "existing.txt", noReplace: false)
        try await bench.sync()
        // Before: removing the new file deleted the document it was to replace; the rename back then moved a deleted item.
        #expect(bench.tenant.drive.names(in: bench.folder) == ["existing.txt"])
        #expect(bench.content("existing.txt") == "old text")
        await bench.tearDown()
    }

    @Test("a new file renamed over a document, then to a name that stays local and removed: the document is deleted")
    func renamedOverThenAsideThenUnlinked() async throws {
        let bench = try await Bench()
        try await bench.create("new.txt", "replacement")
        try await bench.writes.rename(parent: bench.record, name: "new.txt", to: bench.record, newName: "existing.txt", noReplace: false)
        try await bench.writes.rename(parent: bench.record, name: "existing.txt", to: bench.record, newName: "existing.txt~", noReplace: false)
        try await bench.writes.remove(parent: bench.record, name: "existing.txt~", directory: false)
        try await bench.sync()
        #expect(bench.tenant.drive.names(in: bench.folder).isEmpty)
        #expect(try bench.engine.outstanding().isEmpty)
        await bench.tearDown()
    }

    @Test("a version a stop's journal sends after a restart, of a document that mount had moved before it stopped: the mount shows it where it was moved")
    func restoredVersionOfAMovedDocument() async throws {
        let bench = try await Bench(journaled: { acme, tenant in
            // The stopped mount wrote existing.txt again, then moved it into G as f.txt; the move went, the
            // new version did not.
            let itemID = tenant.drive.itemID(named: "existing.txt", in: acme)!
            let folder = tenant.drive.addFolder("G", in: acme)
            tenant.drive.rename(itemID, to: "f.txt", in: folder)
            var change = PendingChange(kind: .upload, driveID: InMemoryDrive.driveID, name: "existing.txt", parentItemID: acme)
            change.itemID = itemID
            change.size = 11
            return [change]
        }, started: false)
        try bench.stageRestored("existing.txt", "new version")
        _ = try await bench.tree.list(bench.record)
        bench.engine.start()
        try await bench.sync()
        #expect(bench.tenant.drive.content(at: "Accounts/Acme (001A)/G/f.txt") == Data("new version".utf8))
        // Before: the restored version was shown at the name and place it was journaled with, and the
        // document vanished from G.
        #expect(try await bench.tree.list(bench.record).map(\.name).sorted() == ["G"])
        let folder = try await bench.tree.lookup(parent: bench.record, name: "G")
        #expect(try await bench.tree.list(folder.ino).map(\.name) == ["f.txt"])
        await bench.tearDown()
    }

    @Test("a document moved into G, written there, and moved back, none of it sent before a stop: after the restart it shows once, where it is, not also in G where its version was recorded (soak seed 1356)")
    func restoredVersionRecordedInAFolderLeftSince() async throws {
        let bench = try await Bench(journaled: { acme, tenant in
            let itemID = tenant.drive.itemID(named: "existing.txt", in: acme)!
            let folder = tenant.drive.addFolder("G", in: acme)
            let away = PendingChange(kind: .move, driveID: InMemoryDrive.driveID, name: "f.txt", itemID: itemID, parentItemID: folder)
            // Written as G/f.txt; the rename back gave the change its name, not its place.
            var version = PendingChange(kind: .upload, driveID: InMemoryDrive.driveID, name: "existing.txt", parentItemID: folder)
            version.itemID = itemID
            version.size = 11
            let back = PendingChange(kind: .move, driveID: InMemoryDrive.driveID, name: "existing.txt", itemID: itemID, parentItemID: acme)
            return [away, version, back]
        }, started: false)
        try bench.stageRestored("existing.txt", "new version")
        func shown() async throws -> [String] {
            let folder = try await bench.tree.lookup(parent: bench.record, name: "G")
            return try await bench.tree.list(bench.record).map(\.name).sorted() + bench.tree.list(folder.ino).map { "G/\($0.name)" }
        }
        // Before: G showed a second existing.txt, which stayed after everything went.
        #expect(try await shown() == ["G", "existing.txt"])
        bench.engine.start()
        try await bench.sync()
        #expect(bench.content("existing.txt") == "new version")
        #expect(try await shown() == ["G", "existing.txt"])
        await bench.tearDown()
    }

    @Test("a folder a stop's journal makes after a restart shows what that mount had already sent into it")
    func restoredFolderShowsWhatIsInIt() async throws {
        // The stopped mount's uploads into F (named by path) made the folder and sent d.txt; its own
        // folder change, which had given up, is still in the journal.
        let bench = try await Bench(journaled: { acme, tenant in
            let made = tenant.drive.addFolder("F", in: acme)
            tenant.drive.addDocument("d.txt", in: made, content: Data("delta".utf8))
            return [PendingChange(kind: .createFolder, driveID: InMemoryDrive.driveID, name: "F", parentItemID: acme)]
        }, started: false)
        // The record is listed (the journal's folder shows in it, made locally), then the change goes.
        let folder = try await bench.tree.lookup(parent: bench.record, name: "F")
        bench.engine.start()
        try await bench.sync()
        // Before: the folder kept the empty listing it was restored with; d.txt was ENOENT until it went stale.
        #expect(try await bench.tree.lookup(parent: folder.ino, name: "d.txt").name == "d.txt")
        await bench.tearDown()
    }

    @Test("versions a stop's journal sends after a restart before their folder is listed are what its first listing shows, also when the remount's first enumeration, asked for before they went, comes in after (soak seeds 1015 and 1209)")
    func restoredSentBeforeTheFirstListing() async throws {
        let bench = try await Bench(journaled: { acme, tenant in
            var edit = PendingChange(kind: .upload, driveID: InMemoryDrive.driveID, name: "existing.txt", parentItemID: acme)
            edit.itemID = tenant.drive.itemID(named: "existing.txt", in: acme)
            edit.size = 11
            var made = PendingChange(kind: .upload, driveID: InMemoryDrive.driveID, name: "new.txt", parentItemID: acme)
            made.size = 3
            return [edit, made]
        }, started: false)
        try bench.stageRestored("existing.txt", "new version")
        try bench.stageRestored("new.txt", "new")
        // The remount's first enumeration asks now; its answer comes in after the journal's changes went.
        bench.tree.libraryEnumerationStarted()
        let asked = bench.tree.feedMark()
        let enumerated = try await bench.tenant.drive.delta(driveID: InMemoryDrive.driveID, link: nil, pageSize: 500).items
        bench.engine.start()
        try await bench.sync()
        _ = bench.tree.applyDriveChanges(enumerated, askedAt: asked)
        bench.tree.libraryEnumerated()
        // Before: existing.txt showed the enumeration's version ("old text"), and the next write into it
        // failed ESTALE.
        #expect(try await bench.tree.list(bench.record).map(\.name).sorted() == ["existing.txt", "new.txt"])
        for (name, text) in [("existing.txt", "new version"), ("new.txt", "new")] {
            let shown = try await bench.tree.lookup(parent: bench.record, name: name)
            let held = try await bench.tenant.drive.item(driveID: InMemoryDrive.driveID, itemID: try #require(shown.itemID), expandFields: false)
            #expect(bench.content(name) == text)
            #expect(shown.size == Int64(text.utf8.count))
            #expect(shown.content?.eTag == held.eTag)
        }
        await bench.tearDown()
    }

    @Test("a deletion a stop's journal sends after a restart shows at once in a folder listed before it went")
    func restoredDeletionShowsAtOnce() async throws {
        let bench = try await Bench(journaled: { acme, tenant in
            var deletion = PendingChange(kind: .delete, driveID: InMemoryDrive.driveID, name: "existing.txt", parentItemID: acme)
            deletion.itemID = tenant.drive.itemID(named: "existing.txt", in: acme)
            return [deletion]
        }, started: false)
        #expect(try await bench.tree.list(bench.record).map(\.name) == ["existing.txt"])
        bench.engine.start()
        try await bench.sync()
        #expect(bench.tenant.drive.names(in: bench.folder).isEmpty)
        // Before: the listing kept the document until the next feed round.
        #expect(try await bench.tree.list(bench.record).map(\.name).isEmpty)
        await bench.tearDown()
    }

    @Test("a new document whose columns are stamped after its upload shows the stamped version, also when a feed round asked for before it ended answers with the version before the stamp")
    func roundBetweenUploadAndStamp() async throws {
        let stamping = Mutex<(@Sendable () async -> Void)?>(nil)
        let bench = try await Bench(beforeWrite: { call in
            if call.kind == .stampFields, let hook = stamping.withLock({ $0 }) { await hook() }
        }, objects: ["Account": ObjectLinking(model: .folder, mappings: [FieldMapping(crmField: "Name", spColumn: "Customer")])])
        // A feed round asks now, and its answer is taken between the upload and the column stamp.
        let asked = bench.tree.feedMark()
        let answer = Mutex<[DriveItem]>([])
        let (tenant, acme) = (bench.tenant, bench.folder)
        stamping.withLock { $0 = {
            guard let id = tenant.drive.itemID(named: "stamped.txt", in: acme),
                  let item = try? await tenant.drive.item(driveID: InMemoryDrive.driveID, itemID: id, expandFields: false) else { return }
            answer.withLock { $0 = [item] }
        } }
        try await bench.create("stamped.txt", "columns follow")
        try await bench.sync()
        let unstamped = answer.withLock { $0 }
        #expect(unstamped.count == 1)
        _ = bench.tree.applyDriveChanges(unstamped, askedAt: asked)
        // Before: the round's answer put the version before the stamp back, and the next write's If-Match failed.
        let shown = try await bench.tree.lookup(parent: bench.record, name: "stamped.txt")
        let held = try await bench.tenant.drive.item(driveID: InMemoryDrive.driveID, itemID: try #require(shown.itemID), expandFields: false)
        #expect(held.eTag != unstamped.first?.eTag)
        #expect(shown.content?.eTag == held.eTag)
        await bench.tearDown()
    }

    @Test("an edit that needs a document's item (setfattr of a column) after its upload gave up in an outage tries the upload again, and waits for it")
    func editAfterTheUploadGaveUp() async throws {
        let outage = Locked(true)
        let bench = try await Bench(beforeWrite: InMemoryDrive.unavailable(for: .upload, while: outage))
        let node = try await bench.create("during.txt", "written during an outage")
        #expect(try await finishes(within: .seconds(60)) { try? await bench.writes.drain() })
        #expect(bench.engine.givenUp.count == 1)
        outage.set(false)
        // Before: it failed at once (the upload still given up), and setfattr said the document was not in SharePoint yet.
        try await bench.writes.uploaded(node.ino)
        #expect(bench.content("during.txt") == "written during an outage")
        await bench.tearDown()
    }

    @Test("an fsync of a new document given the name of one whose time gave up in an outage (then renamed away) tries that time and rename again once the outage is over, then sends its bytes (soak seed 1320)")
    func fsyncBehindATimeThatGaveUp() async throws {
        let outage = Locked(true)
        let bench = try await Bench(beforeWrite: InMemoryDrive.unavailable(for: .update, while: outage))
        let date = Date(timeIntervalSince1970: 1_577_934_245)
        try bench.writes.setModified(try await bench.tree.lookup(parent: bench.record, name: "existing.txt"), to: date)
        #expect(try await finishes(within: .seconds(60)) { try? await bench.writes.drain() })
        #expect(bench.engine.givenUp.count == 1)
        // The rename waits behind the time, and the new document behind the rename that frees its name.
        try await bench.writes.rename(parent: bench.record, name: "existing.txt", to: bench.record, newName: "moved.txt", noReplace: false)
        let (_, session) = try await bench.writes.create(parent: bench.record, name: "existing.txt", flags: O_CREAT | O_WRONLY)
        try bench.write(session, Data("new document".utf8), at: 0)
        outage.set(false)
        // Before: EIO at once, though the service answers again: the changes it stands behind had given up.
        try await bench.writes.fsync(session)
        #expect(bench.content("existing.txt") == "new document")
        #expect(bench.content("moved.txt") == "old text")
        #expect(bench.modified("moved.txt") == date)
        #expect(bench.engine.givenUp.isEmpty)
        try bench.writes.commit(session)
        try bench.writes.close(session)
        await bench.tearDown()
    }

    @Test("a document removed while its upload is being sent, which then gives up: its change goes with it, and no change is left naming a removed file")
    func unlinkWhileUploadGivesUp() async throws {
        let attempts = Locked(0)
        let gate = Locked<CheckedContinuation<Void, Never>?>(nil)
        let bench = try await Bench(beforeWrite: { call in
            guard call.kind == .upload else { return }
            let attempt = attempts.withLock { count -> Int in
                count += 1
                return count
            }
            if attempt == 1 { await withCheckedContinuation { gate.set($0) } }
            throw InMemoryDrive.unavailable(call)
        })
        try await bench.create("a.txt", "never arrives")
        let sync = Task { try? await bench.writes.drain() }
        while gate.value == nil { try await Task.sleep(for: .milliseconds(5)) }
        let unlink = Task { try await bench.writes.remove(parent: bench.record, name: "a.txt", directory: false) }
        // Time for the unlink to find the upload under way (after the fix, any order passes).
        try await Task.sleep(for: .milliseconds(200))
        gate.value?.resume()
        try await unlink.value
        #expect(try await finishes(within: .seconds(60)) { await sync.value })
        // Before: the unlink waited for the change to give up, then removed the staged file it still named.
        #expect(try bench.engine.outstanding().isEmpty)
        #expect(bench.stagedFiles.isEmpty)
        #expect(bench.content("a.txt") == nil)
        await bench.tearDown()
    }

    @Test("a document whose time could not be sent, then replaced by a rename over it: its deletion takes the time change along, none is left to go after it")
    func timeGaveUpThenRenamedOver() async throws {
        let failing = Locked(true)
        let bench = try await Bench(beforeWrite: InMemoryDrive.unavailable(for: .update, while: failing))
        let existing = try #require(try await bench.tree.child(of: bench.record, named: "existing.txt"))
        try bench.writes.setModified(existing, to: Date(timeIntervalSince1970: 1_577_934_245))
        #expect(try await finishes(within: .seconds(60)) { try? await bench.writes.drain() })
        #expect(bench.engine.givenUp.count == 1)
        failing.set(false)
        try await bench.create("new.txt", "the new text")
        try await bench.writes.rename(parent: bench.record, name: "new.txt", to: bench.record, newName: "existing.txt", noReplace: false)
        // Before: the time change stayed in the journal after the deletion, to fail on the gone item (404).
        try await bench.sync()
        #expect(bench.content("existing.txt") == "the new text")
        #expect(try bench.engine.outstanding().isEmpty)
        await bench.tearDown()
    }

    @Test("a new document renamed to a name that stays local (an editor's backup~) before it is sent keeps its bytes, and goes when renamed back")
    func renamedLocalKeepsItsBytes() async throws {
        let bench = try await Bench()
        try await bench.create("notes.txt", "my notes")
        try await bench.writes.rename(parent: bench.record, name: "notes.txt", to: bench.record, newName: "notes.txt~", noReplace: false)
        // Before: withdrawing the upload removed the staged file the local-only document reads from.
        #expect(bench.stagedFiles.count == 1)
        try await bench.writes.rename(parent: bench.record, name: "notes.txt~", to: bench.record, newName: "notes.txt", noReplace: false)
        try await bench.sync()
        #expect(bench.content("notes.txt") == "my notes")
        #expect(bench.stagedFiles.isEmpty)
        await bench.tearDown()
    }

    @Test("a new document renamed to the name of a document removed a moment before goes after that removal: one document, no conflict copy")
    func renamedOntoARemovedName() async throws {
        let deletes = Locked(0)
        let bench = try await Bench(beforeWrite: { call in
            // The service answers the first deletion 503: it waits out a backoff.
            if call.kind == .delete, deletes.withLock({ count -> Int in count += 1; return count }) == 1 {
                throw InMemoryDrive.unavailable(call)
            }
        })
        try await bench.create("new.txt", "the new text")
        try await bench.writes.remove(parent: bench.record, name: "existing.txt", directory: false)
        try await bench.writes.rename(parent: bench.record, name: "new.txt", to: bench.record, newName: "existing.txt", noReplace: false)
        try await bench.sync()
        // Before: the upload, recorded before the removal and renamed in place, went first, met the name
        // still taken (409) and was kept as a conflict copy beside the document it was to replace.
        #expect(bench.tenant.drive.names(in: bench.folder) == ["existing.txt"])
        #expect(bench.content("existing.txt") == "the new text")
        #expect(try bench.engine.outstanding().isEmpty)
        await bench.tearDown()
    }

    @Test("a new document given the name of a document whose removal gave up waits for that removal, and gives up with it: no conflict copy")
    func newDocumentBehindAGivenUpRemoval() async throws {
        let failing = Locked(true)
        let bench = try await Bench(beforeWrite: InMemoryDrive.unavailable(for: .delete, while: failing))
        try await bench.writes.remove(parent: bench.record, name: "existing.txt", directory: false)
        #expect(try await finishes(within: .seconds(60)) { try? await bench.writes.drain() })
        try await bench.create("existing.txt", "the new text")
        #expect(try await finishes(within: .seconds(60)) { try? await bench.writes.drain() })
        // Before: the removal gave up, the new document went anyway, met the name taken (409) and was kept
        // as a conflict copy beside the document the user had removed.
        #expect(bench.tenant.drive.names(in: bench.folder) == ["existing.txt"])
        #expect(bench.content("existing.txt") == "old text")
        #expect(try bench.engine.outstanding().count == 2)
        await bench.tearDown()
    }

    @Test("a new document given the name a document was renamed away from waits for that rename when it gave up; removed meanwhile, the document's deletion takes the rename's place: one document, no conflict copy (model seed 1043)")
    func newDocumentWhereARenameGaveUp() async throws {
        let failing = Locked(true)
        let bench = try await Bench(beforeWrite: InMemoryDrive.unavailable(for: .update, while: failing))
        try await bench.writes.rename(parent: bench.record, name: "existing.txt", to: bench.record, newName: "moved.txt", noReplace: false)
        #expect(try await finishes(within: .seconds(60)) { try? await bench.writes.drain() })
        try await bench.create("existing.txt", "the new text")
        #expect(try await finishes(within: .seconds(60)) { try? await bench.writes.drain() })
        // Before: the new document went while the old one still had the name (409), and was kept as a conflict copy.
        #expect(bench.tenant.drive.names(in: bench.folder) == ["existing.txt"])
        #expect(bench.content("existing.txt") == "old text")
        // Before: the deletion, recorded last, came after the new document, which met the name still taken.
        try await bench.writes.remove(parent: bench.record, name: "moved.txt", directory: false)
        failing.set(false)
        try await bench.sync()
        #expect(bench.tenant.drive.names(in: bench.folder) == ["existing.txt"])
        #expect(bench.content("existing.txt") == "the new text")
        #expect(try bench.engine.outstanding().isEmpty)
        await bench.tearDown()
    }

    @Test("a folder renamed, a document moved out of it, then the folder removed while both moves wait: the document leaves before the folder's deletion, which goes last")
    func folderRemovedAfterAMoveOutOfIt() async throws {
        let failing = Locked(true)
        let bench = try await Bench(beforeWrite: InMemoryDrive.unavailable(for: .update, while: failing), journaled: { acme, tenant in
            tenant.drive.addDocument("doc.txt", in: tenant.drive.addFolder("Sub", in: acme), content: Data("keep me".utf8))
            return []
        })
        _ = try await bench.tree.list(bench.record)
        try await bench.writes.rename(parent: bench.record, name: "Sub", to: bench.record, newName: "Sub2", noReplace: false)
        let sub = try await bench.tree.lookup(parent: bench.record, name: "Sub2")
        _ = try await bench.tree.list(sub.ino)
        try await bench.writes.rename(parent: sub.ino, name: "doc.txt", to: bench.record, newName: "doc.txt", noReplace: false)
        try await bench.writes.remove(parent: bench.record, name: "Sub2", directory: true)
        failing.set(false)
        try await bench.sync()
        // A deletion put in the folder's rename's place went first: SharePoint deletes a folder with what is
        // in it, and the document the user had moved out was gone.
        #expect(bench.tenant.drive.names(in: bench.folder).sorted() == ["doc.txt", "existing.txt"])
        #expect(bench.content("doc.txt") == "keep me")
        #expect(try bench.engine.outstanding().isEmpty)
        await bench.tearDown()
    }

    @Test("a document renamed right after close goes up once, under its final name")
    func renameAfterCloseTravels() async throws {
        let bench = try await Bench()
        try await bench.create("draft.txt", "the text")
        try await bench.writes.rename(parent: bench.record, name: "draft.txt", to: bench.record, newName: "final.txt", noReplace: false)
        try await bench.sync()
        #expect(bench.tenant.drive.names(in: bench.folder) == ["existing.txt", "final.txt"])
        #expect(bench.content("final.txt") == "the text")
        #expect(bench.calls(.upload) == ["final.txt"])
        #expect(bench.calls(.update).isEmpty)
        await bench.tearDown()
    }

    @Test("a new document in a record renamed in the CRM goes into the folder the record has, which kept the old name")
    func newDocumentInRenamedRecord() async throws {
        let bench = try await Bench()
        let renamed = try await MemoryTenant.record(bench.tree, "Renamed Corp")
        let (_, session) = try await bench.writes.create(parent: renamed, name: "new.txt", flags: O_CREAT | O_WRONLY)
        try bench.write(session, Data("hello".utf8), at: 0)
        try bench.writes.commit(session)
        try bench.writes.close(session)
        try await bench.sync()
        #expect(bench.tenant.drive.content(at: "Accounts/Old Corp (001B)/new.txt") == Data("hello".utf8))
        #expect(bench.tenant.drive.content(at: "Accounts/Renamed Corp (001B)/new.txt") == nil)
        await bench.tearDown()
    }

    @Test("a write into a remote document copies the rest from the service: the new version keeps the bytes not written")
    func partialWriteKeepsRemoteBytes() async throws {
        let bench = try await Bench()
        let node = try await bench.tree.lookup(parent: bench.record, name: "existing.txt")
        let session = try await bench.writes.open(node, truncate: false)
        try bench.write(session, Data("NEW".utf8), at: 0)
        try bench.writes.commit(session)
        try bench.writes.close(session)
        try await bench.sync()
        #expect(bench.content("existing.txt") == "NEW text")
        #expect(bench.calls(.upload) == ["existing.txt"])
        await bench.tearDown()
    }

    @Test("parallel writers of one document, with fsyncs and syncs handing its bytes over meanwhile, lose no byte")
    func parallelWritersAndHandOvers() async throws {
        let bench = try await Bench()
        let (_, session) = try await bench.writes.create(parent: bench.record, name: "parallel.bin", flags: O_CREAT | O_WRONLY)
        let writers = 8, chunks = 32, chunk = 4096
        // Each chunk is filled with its own letter, so a lost or misplaced write shows in the result.
        func bytes(_ index: Int) -> Data { Data(repeating: UInt8(ascii: "a") + UInt8(index % 26), count: chunk) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<writers {
                group.addTask {
                    for step in 0..<chunks {
                        let index = step * writers + writer
                        try bench.write(session, bytes(index), at: Int64(index * chunk))
                    }
                }
            }
            group.addTask {
                for round in 0..<4 {
                    if round % 2 == 0 { try await bench.writes.fsync(session) } else { try await bench.writes.drain() }
                }
            }
            try await group.waitForAll()
        }
        try bench.writes.commit(session)
        try bench.writes.close(session)
        try await bench.sync()
        let expected = (0..<(writers * chunks)).reduce(into: Data()) { $0 += bytes($1) }
        let sent = bench.tenant.drive.content(at: "Accounts/Acme (001A)/parallel.bin")
        #expect(sent?.count == expected.count)
        #expect(sent == expected)
        await bench.tearDown()
    }

    @Test("a rename racing the last close of the renamed document never leaves its change held")
    func renameRacingClose() async throws {
        // The close lands while the rename records the document's upload (held: the document was open
        // when it looked), as a late release does on a busy machine (rsync's temporary files).
        let recording = DispatchSemaphore(value: 0)
        let bench = try await Bench(beforeRecord: {
            recording.signal()
            usleep(20_000)
        })
        let rounds = 10
        try await bench.renameTemporariesWhileClosing(rounds: rounds) { _ = recording.wait(timeout: .now() + 5) }
        try await bench.sync()
        for round in 0..<rounds { #expect(bench.content("doc-\(round).txt") == "round \(round)") }
        #expect(bench.tenant.drive.names(in: bench.folder).count == rounds + 1)
        await bench.tearDown()
    }

    @Test("a late close while a rename seals the renamed document's bytes sends them once, and every byte arrives")
    func closeWhileRenameSeals() async throws {
        // Seals are slow (a busy disk), and each close lands at a random moment of the rename, so some
        // fall while it seals the bytes it is about to record (rsync renaming its temporary file while
        // the kernel's late release of it arrives).
        let bench = try await Bench(beforeSeal: { usleep(10_000) })
        let rounds = 40
        try await bench.renameTemporariesWhileClosing(rounds: rounds) { usleep(UInt32.random(in: 0...20_000)) }
        try await bench.sync()
        for round in 0..<rounds { #expect(bench.content("doc-\(round).txt") == "round \(round)") }
        #expect(bench.calls(.upload).count == rounds)
        await bench.tearDown()
    }
}
