import Config
import Foundation
import Graph
import Namespace
import Testing
import TestSupport

/// The tree over an in-memory library and CRM: names, listings, inode numbers and freshness, with no
/// sandbox and no kernel (the mount tests cover the same through both).
@Suite("Tree (in memory)")
struct TreeTests {
    typealias Tenant = MemoryTenant

    static func names(_ tree: Tree, _ ino: UInt64) async throws -> [String] {
        try await tree.list(ino).map(\.name).sorted()
    }

    static func record(_ tree: Tree, _ name: String) async throws -> UInt64 { try await MemoryTenant.record(tree, name) }

    /// Renames a document within `directory` as the write path does: pinned, moved, sent, adopted, unpinned.
    static func renameAsTheWritePathDoes(_ tree: Tree, _ tenant: Tenant, _ document: NodeSnapshot, in directory: UInt64, to name: String) async throws {
        let itemID = try #require(document.itemID)
        tree.pin(document.ino)
        try tree.move(document.ino, to: directory, name: name)
        let moved = try await tenant.drive.update(driveID: InMemoryDrive.driveID, itemID: itemID, name: name, parentID: nil, modified: nil,
                                                  ifMatch: nil, conflictBehavior: .replace)
        tree.adopt(document.ino, item: moved, sentFile: nil)
        tree.unpin(document.ino)
    }

    @Test("objects, records and their documents are directories and files, sized as the library says")
    func recordsAndDocuments() async throws {
        let tenant = Tenant()
        tenant.account("001A", "Acme Corp", documents: ["MSA.pdf": "master agreement", "notes.txt": "hi"])
        tenant.account("001B", "Globex")
        let tree = try await tenant.open()
        #expect(try await Self.names(tree, Tree.rootIno) == ["Accounts"])
        let accounts = try await tree.lookup(parent: Tree.rootIno, name: "Accounts")
        #expect(try await Self.names(tree, accounts.ino) == ["Acme Corp", "Globex"])
        let acme = try await Self.record(tree, "Acme Corp")
        #expect(try await Self.names(tree, acme) == ["MSA.pdf", "notes.txt"])
        let msa = try await tree.lookup(parent: acme, name: "MSA.pdf")
        #expect(msa.type == .file)
        #expect(msa.size == Int64("master agreement".utf8.count))
        #expect(msa.content?.itemID == msa.itemID)
        // A record with no folder in the library yet is an empty directory, not an error.
        #expect(try await Self.names(tree, try await Self.record(tree, "Globex")).isEmpty)
        await #expect(throws: NamespaceError.notFound) { try await tree.lookup(parent: acme, name: "missing.pdf") }
    }

    @Test("a feed round asked for before the mount's own rename ended does not put the document back, also past the bound of marks kept; a later round applies as ever")
    func roundAskedBeforeOwnRename() async throws {
        let tenant = Tenant()
        tenant.account("001A", "Acme Corp", documents: ["e.bin": "bytes", "old.txt": "to remove"])
        let tree = try await tenant.open()
        let acme = try await Self.record(tree, "Acme Corp")
        let document = try await tree.lookup(parent: acme, name: "e.bin")
        let itemID = try #require(document.itemID)
        // A feed round asks now, and is answered with the document as it is.
        let asked = tree.feedMark()
        let answered = try await tenant.drive.item(driveID: InMemoryDrive.driveID, itemID: itemID, expandFields: false)
        // Meanwhile, in a long-running mount, many own changes of other items end, then the mount renames it,
        // then one more passes the bound of the marks kept (before: every mark was dropped there).
        tree.noteOwnChangesEnded((0..<9_999).map { "other-\($0)" })
        try await Self.renameAsTheWritePathDoes(tree, tenant, document, in: acme, to: "f.bin")
        tree.noteOwnChangesEnded(["one-more"])
        // Before: the round's answer, applied now, named it e.bin again until the next round (an rmdir of
        // the folder it left answered ENOTEMPTY meanwhile).
        _ = tree.applyDriveChanges([answered], askedAt: asked)
        #expect(try await Self.names(tree, acme) == ["f.bin", "old.txt"])
        tenant.drive.rename(itemID, to: "g.bin")
        let renamed = try await tenant.drive.item(driveID: InMemoryDrive.driveID, itemID: itemID, expandFields: false)
        _ = tree.applyDriveChanges([renamed], askedAt: tree.feedMark())
        #expect(try await Self.names(tree, acme) == ["g.bin", "old.txt"])
        // The same for a deletion: removed, hidden until the service has it, then revealed.
        let old = try await tree.lookup(parent: acme, name: "old.txt")
        let oldID = try #require(old.itemID)
        let askedBeforeDeletion = tree.feedMark()
        let stillThere = try await tenant.drive.item(driveID: InMemoryDrive.driveID, itemID: oldID, expandFields: false)
        tree.hide(oldID)
        tree.detach(old.ino)
        try await tenant.drive.delete(driveID: InMemoryDrive.driveID, itemID: oldID, ifMatch: nil)
        tree.reveal(oldID)
        _ = tree.applyDriveChanges([stillThere], askedAt: askedBeforeDeletion)
        #expect(try await Self.names(tree, acme) == ["g.bin"])
    }

    @Test("a change restored from the journal and sent before its folder is listed is not undone by a round asked for before it (soak seed 1209)")
    func restoredChangeSentBeforeListing() async throws {
        let tenant = Tenant()
        let folder = try #require(tenant.account("001A", "Acme Corp", documents: ["a.txt": "version one"]))
        let tree = try await tenant.open()
        let documentID = try #require(tenant.drive.itemID(named: "a.txt", in: folder))
        // A remount's first enumeration asks now, and is answered with the document as it was.
        tree.libraryEnumerationStarted()
        let asked = tree.feedMark()
        let enumerated = try await tenant.drive.delta(driveID: InMemoryDrive.driveID, link: nil, pageSize: 500).items
        // Meanwhile a change the stopped mount journaled is sent, before anything listed its folder.
        tenant.drive.edit(documentID, content: Data("version two, longer".utf8))
        let sent = try await tenant.drive.item(driveID: InMemoryDrive.driveID, itemID: documentID, expandFields: false)
        tree.noteOwnChangesEnded([documentID])
        tree.forgetRestored(1)
        _ = tree.applyDriveChanges([sent])
        // Before: the enumeration's answer, applied now, filled the library's mirror with version one, and
        // the first listing showed it (the next write's If-Match then failed with ESTALE).
        _ = tree.applyDriveChanges(enumerated, askedAt: asked)
        tree.libraryEnumerated()
        let document = try await tree.lookup(parent: try await Self.record(tree, "Acme Corp"), name: "a.txt")
        #expect(document.size == Int64("version two, longer".utf8.count))
        #expect(document.content?.eTag == sent.eTag)
    }

    @Test("a remount's kept listing from before renames the stopped mount sent: as the journal's versions go, each document comes to its name and none is lost to another's old name (soak seed 1265)")
    func keptListingBeforeSentRenames() async throws {
        let tenant = Tenant()
        let folder = try #require(tenant.account("001A", "Acme Corp", documents: ["b.bin": "x bytes", "c.txt": "y bytes"]))
        let first = try await tenant.open()
        _ = try await first.list(try await Self.record(first, "Acme Corp"))
        let kept = try Dictionary(uniqueKeysWithValues: first.takeChangedListings().map { ($0.storageKey, $0.encoded()) })
        let x = try #require(tenant.drive.itemID(named: "b.bin", in: folder))
        let y = try #require(tenant.drive.itemID(named: "c.txt", in: folder))
        // After the listing was kept, the mount renamed b.bin to a.txt and c.txt to b.bin and sent both renames;
        // then it was killed with a new version of each in its journal.
        tenant.drive.rename(x, to: "a.txt")
        tenant.drive.rename(y, to: "b.bin")
        let second = try await tenant.open()
        second.restore([
            RestoredChange(changeID: 1, parentItemID: folder, parentPath: nil, name: "a.txt", itemID: x, stagedFile: nil, size: 9, modified: nil, isFolder: false),
            RestoredChange(changeID: 2, parentItemID: folder, parentPath: nil, name: "b.bin", itemID: y, stagedFile: nil, size: 9, modified: nil, isFolder: false),
        ]) { _ in }
        second.offerKeptListings(kept)
        let acme = try await Self.record(second, "Acme Corp")
        let nodes = (x: try await second.lookup(parent: acme, name: "b.bin").ino, y: try await second.lookup(parent: acme, name: "c.txt").ino)
        // The versions go, y's first, and settle as the write path settles them (LocalWrites.settled).
        for (itemID, ino) in [(y, nodes.y), (x, nodes.x)] {
            tenant.drive.edit(itemID, content: Data("version 2".utf8))
            let sent = try await tenant.drive.item(driveID: InMemoryDrive.driveID, itemID: itemID, expandFields: false)
            second.noteOwnChangesEnded([itemID])
            second.adopt(ino, item: sent, sentFile: nil)
            second.unpin(ino)
            second.applySent([sent])
        }
        // Before: y, sent while x still showed as b.bin, left the directory for good.
        #expect(try await Self.names(second, acme) == ["a.txt", "b.bin"])
        #expect(try await second.lookup(parent: acme, name: "b.bin").itemID == y)
        // The kernel may hold the names as they were (for the entry timeout): it is told to forget them,
        // so an open of b.bin reaches y, not x.
        let notices = Set(second.takeKernelNotices())
        #expect(notices.isSuperset(of: [.entry(parent: acme, name: "b.bin"), .entry(parent: acme, name: "c.txt")]))
    }

    @Test("while the mount sends a version of a document, a colleague renames it and gives its name to another: the other shows with its Id until the version is sent, then by its name")
    func nameTakenWhileSending() async throws {
        let tenant = Tenant()
        let folder = try #require(tenant.account("001A", "Acme Corp", documents: ["x.txt": "x bytes"]))
        let tree = try await tenant.open()
        let acme = try await Self.record(tree, "Acme Corp")
        let x = try await tree.lookup(parent: acme, name: "x.txt")
        let xID = try #require(x.itemID)
        tree.pin(x.ino)  // a version of it on its way
        tenant.drive.rename(xID, to: "x-old.txt")
        let yID = tenant.drive.addDocument("x.txt", in: folder, content: Data("y bytes".utf8))
        var round: [DriveItem] = []
        for id in [xID, yID] { round.append(try await tenant.drive.item(driveID: InMemoryDrive.driveID, itemID: id, expandFields: false)) }
        _ = tree.applyDriveChanges(round, askedAt: tree.feedMark())
        // Before: the other one was not shown at all, and nothing listed it again once the version went.
        let shownMeanwhile = try await Self.names(tree, acme)
        #expect(shownMeanwhile.count == 2 && shownMeanwhile.contains("x.txt") && shownMeanwhile.contains { $0.contains(yID) })
        tenant.drive.edit(xID, content: Data("x version 2".utf8))
        let sent = try await tenant.drive.item(driveID: InMemoryDrive.driveID, itemID: xID, expandFields: false)
        tree.noteOwnChangesEnded([xID])
        tree.adopt(x.ino, item: sent, sentFile: nil)
        tree.unpin(x.ino)
        tree.applySent([sent])
        #expect(try await Self.names(tree, acme) == ["x-old.txt", "x.txt"])
        #expect(try await tree.lookup(parent: acme, name: "x.txt").itemID == yID)
    }

    @Test("names other clients gave (a slash, dot names, over 255 bytes, equal names) become safe, unique and stable")
    func hostileNamesBecomeSafe() async throws {
        let tenant = Tenant()
        let long = String(repeating: "é", count: 200) + ".docx"
        let folder = try #require(tenant.account("001A", "Acme", documents: ["a/b.txt": "1", "..": "2", ".": "3", long: "4", "Same.txt": "5", "": "6"]))
        // Two items of one name (a migration can leave them): both stay visible.
        tenant.drive.addDocument("Same.txt", in: folder, content: Data("7".utf8))

        let first = try await tenant.open()
        let listed = try await Self.names(first, try await Self.record(first, "Acme"))
        #expect(listed.count == 7)
        #expect(Set(listed).count == 7)
        for name in listed {
            #expect(!name.contains("/") && !name.contains("\0"))
            #expect(name != "." && name != ".." && !name.isEmpty)
            #expect(name.utf8.count <= 255)
        }
        #expect(listed.contains("a_b.txt"))
        #expect(listed.filter { $0.hasPrefix("Same (") && $0.hasSuffix(").txt") }.count == 2)
        #expect(listed.contains { $0.hasSuffix(").docx") && $0.utf8.count <= 255 })
        // The same items get the same names on every mount.
        let second = try await tenant.open()
        #expect(try await Self.names(second, try await Self.record(second, "Acme")) == listed)
    }

    @Test("a record named like another's name-with-Id does not take that record's directory")
    func recordNamesUniqueByFinalForm() async throws {
        let tenant = Tenant()
        tenant.account("001A", "Acme")
        tenant.account("001B", "Acme")
        tenant.account("001C", "Acme (001A)")
        let tree = try await tenant.open()
        let accounts = try await tree.lookup(parent: Tree.rootIno, name: "Accounts")
        let entries = try await tree.list(accounts.ino)
        #expect(entries.map(\.name).sorted() == ["Acme (001A)", "Acme (001A) (001C)", "Acme (001B)"])
        // Each name leads to its own record: the name-with-Id belongs to the record with that Id.
        for (name, id) in [("Acme (001A)", "001A"), ("Acme (001B)", "001B"), ("Acme (001A) (001C)", "001C")] {
            let ino = try await tree.lookup(parent: accounts.ino, name: name).ino
            let attributes = try await tree.extendedAttributes(ino)
            #expect(attributes.first { $0.name == "user.crmfs.record_id" }?.value == id)
        }
    }

    @Test("a record renamed in the CRM still shows the documents of its folder, which keeps the old name and the Id")
    func renamedRecordKeepsItsFolder() async throws {
        let tenant = Tenant()
        tenant.account("001A", "New Name")
        tenant.account("001B", "Other")
        let folder = tenant.drive.addFolder("Old Name (001A)", in: tenant.accounts)
        tenant.drive.addDocument("MSA.pdf", in: folder, content: Data("signed".utf8))
        tenant.drive.addFolder("Other (001B)", in: tenant.accounts)
        let tree = try await tenant.open()
        #expect(try await Self.names(tree, try await Self.record(tree, "New Name")) == ["MSA.pdf"])
        #expect(try await Self.names(tree, try await Self.record(tree, "Other")).isEmpty)
    }

    @Test("many lookups at once in a directory not loaded yet list it once")
    func oneListingAtATime() async throws {
        let tenant = Tenant()
        let folder = try #require(tenant.account("001A", "Acme", documents: Dictionary(uniqueKeysWithValues: (0..<20).map { ("doc-\($0).txt", "\($0)") })))
        let tree = try await tenant.open()
        let acme = try await Self.record(tree, "Acme")
        let found = try await withThrowingTaskGroup(of: UInt64.self) { group in
            for index in 0..<20 { group.addTask { try await tree.lookup(parent: acme, name: "doc-\(index).txt").ino } }
            return try await group.reduce(into: Set<UInt64>()) { $0.insert($1) }
        }
        #expect(found.count == 20)
        #expect(tenant.drive.listings(of: folder) == 1)
    }

    @Test("past the attribute timeout another client's rename shows, under the same inode number")
    func remoteRenameKeepsInode() async throws {
        let tenant = Tenant()
        let folder = try #require(tenant.account("001A", "Acme", documents: ["draft.docx": "v1"]))
        let tree = try await tenant.open(attributeTimeout: 0)
        let acme = try await Self.record(tree, "Acme")
        let before = try await tree.lookup(parent: acme, name: "draft.docx")
        let itemID = try #require(before.itemID)
        tenant.drive.rename(itemID, to: "final.docx")
        #expect(try await Self.names(tree, acme) == ["final.docx"])
        let after = try await tree.lookup(parent: acme, name: "final.docx")
        #expect(after.ino == before.ino)
        #expect(after.eTag != before.eTag)
        #expect(tenant.drive.listings(of: folder) >= 2)
    }

    @Test("""
        past the attribute timeout with the services unreachable, the last listings answer: records, documents, and a \
        new name's miss (so a new file can be made offline), until the services answer again (model seed 1100)
        """)
    func lastListingsAnswerOffline() async throws {
        let tenant = Tenant()
        let folder = try #require(tenant.account("001A", "Acme", documents: ["a.txt": "a"]))
        let tree = try await tenant.open(attributeTimeout: 0)
        let accounts = try #require(try await tree.list(Tree.rootIno).first { $0.name == "Accounts" }).node.ino
        let acme = try await Self.record(tree, "Acme")
        #expect(try await Self.names(tree, acme) == ["a.txt"])

        tenant.drive.failListings(with: 503)
        tenant.records.failQueries(true)
        #expect(try await Self.names(tree, accounts) == ["Acme"])
        #expect(try await tree.lookup(parent: accounts, name: "Acme").ino == acme)
        #expect(try await Self.names(tree, acme) == ["a.txt"])
        #expect(try await tree.lookup(parent: acme, name: "a.txt").itemID != nil)
        do {
            _ = try await tree.lookup(parent: acme, name: "new.txt")
            Issue.record("a name the last listing lacks is not there")
        } catch NamespaceError.notFound {}

        tenant.drive.failListings(with: nil)
        tenant.records.failQueries(false)
        tenant.drive.addDocument("b.txt", in: folder)
        #expect(try await Self.names(tree, acme) == ["a.txt", "b.txt"], "asked again once the services answer")

        // An answer about the folder itself (gone: 404) is no outage: the last listing does not hide it.
        tenant.drive.failListings(with: 404)
        do {
            _ = try await tree.list(acme)
            Issue.record("a listing the service answered 404 is not served from the last one")
        } catch NamespaceError.remote {}
    }

    @Test("within the attribute timeout listings come from memory")
    func listingsTrustedForTheTimeout() async throws {
        let tenant = Tenant()
        let folder = try #require(tenant.account("001A", "Acme", documents: ["a.txt": "a"]))
        let tree = try await tenant.open(attributeTimeout: 3600)
        let acme = try await Self.record(tree, "Acme")
        for _ in 0..<5 { _ = try await tree.list(acme) }
        #expect(tenant.drive.listings(of: folder) == 1)
        #expect(tenant.records.asked.count == 1)
    }

    @Test("a library the site does not have is a config error naming graph.library and the libraries there are")
    func unknownLibrary() async throws {
        let tenant = Tenant()
        do {
            _ = try await tenant.open(library: "Contracts")
            Issue.record("opened a library the site does not have")
        } catch let error as ConfigError {
            #expect(error.key == "graph.library")
            #expect(error.message.contains("Contracts") && error.message.contains("Documents"))
        }
    }
}
