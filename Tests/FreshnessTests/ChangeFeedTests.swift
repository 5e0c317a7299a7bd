import CRM
import Config
import Foundation
@testable import Freshness
import HTTP
import Namespace
import Testing
import TestSupport

/// The change feeds over an in-memory library and CRM: what each kind of remote change does to the tree and
/// what the kernel is told to forget, with no sandbox and no kernel (`FreshnessTests` in the mount tests
/// covers the same through both).
@Suite("change feeds (in memory)")
struct ChangeFeedTests {
    /// A tenant whose account "Acme Corp" holds a.txt, b.txt and a Sub folder with c.txt; the library has been
    /// enumerated and the tree has listed all of it. Feed rounds run when a test asks.
    struct Bench {
        let tenant = MemoryTenant()
        let folder: String
        let sub: String
        let tree: Tree
        let feeds: ChangeFeeds
        let delivered = Locked<[AppliedChanges]>([])
        let acme: UInt64
        let subIno: UInt64

        init() async throws {
            folder = try #require(tenant.account("001A", "Acme Corp", documents: ["a.txt": "alpha", "b.txt": "bravo"]))
            sub = tenant.drive.addFolder("Sub", in: folder)
            tenant.drive.addDocument("c.txt", in: sub, content: Data("charlie".utf8))
            tree = try await tenant.open()
            let delivered = delivered
            feeds = ChangeFeeds(tree: tree, graph: tenant.drive, records: tenant.records, settings: FreshnessSettings(drivePoll: 3600, crmPoll: 3600)) {
                changes in delivered.withLock { $0.append(changes) }
            }
            // What a first mount's drive feed does first: enumerate the library.
            try await feeds.pollDrive()
            acme = try await MemoryTenant.record(tree, "Acme Corp")
            subIno = try await tree.lookup(parent: acme, name: "Sub").ino
            _ = try await tree.list(subIno)
        }

        func names(_ ino: UInt64) async throws -> [String] { try await tree.list(ino).map(\.name).sorted() }
        func ino(_ parent: UInt64, _ name: String) async throws -> UInt64 { try await tree.lookup(parent: parent, name: name).ino }
        var notices: Set<KernelNotice> { Set(delivered.withLock { $0.flatMap(\.notices) }) }
        var changedContent: [String: String] { delivered.withLock { $0.reduce(into: [:]) { $0.merge($1.changedContent) { $1 } } } }
        func item(_ name: String, in parent: String) throws -> String {
            try #require(tenant.drive.itemID(named: name, in: parent))
        }
    }

    @Test("an edit, an addition, a rename, a move and a deletion each reach the listing; renamed and moved items keep their inode")
    func driveChanges() async throws {
        let bench = try await Bench()
        let drive = bench.tenant.drive
        let a = try await bench.ino(bench.acme, "a.txt"), b = try await bench.ino(bench.acme, "b.txt"), c = try await bench.ino(bench.subIno, "c.txt")
        drive.edit(try bench.item("a.txt", in: bench.folder), content: Data("alpha, longer now".utf8))
        drive.rename(try bench.item("b.txt", in: bench.folder), to: "b renamed.txt")
        drive.rename(try bench.item("c.txt", in: bench.sub), to: "c.txt", in: bench.folder)
        drive.addDocument("new.txt", in: bench.sub)
        #expect(try await bench.feeds.pollDrive() == 5)

        #expect(try await bench.names(bench.acme) == ["Sub", "a.txt", "b renamed.txt", "c.txt"])
        #expect(try await bench.names(bench.subIno) == ["new.txt"])
        #expect(try await bench.tree.attributes(a).size == Int64("alpha, longer now".utf8.count))
        #expect(try await bench.ino(bench.acme, "b renamed.txt") == b)
        #expect(try await bench.ino(bench.acme, "c.txt") == c)
        let notices = bench.notices
        #expect(notices.contains(.entry(parent: bench.acme, name: "b.txt")), "the old name is forgotten by the kernel")
        #expect(notices.contains(.entry(parent: bench.subIno, name: "c.txt")))
        #expect(notices.contains(.inode(a)), "the edited document's attributes and pages are dropped")
        #expect(bench.changedContent[try bench.item("a.txt", in: bench.folder)] != nil, "and its cached blocks")

        drive.removeAsOther(try bench.item("a.txt", in: bench.folder))
        drive.removeAsOther(bench.sub)
        #expect(try await bench.feeds.pollDrive() == 3)
        #expect(try await bench.names(bench.acme) == ["b renamed.txt", "c.txt"])
        #expect(bench.notices.contains(.entry(parent: bench.acme, name: "a.txt")))
        #expect(bench.notices.contains(.entry(parent: bench.acme, name: "Sub")))
        // Nothing new: a round changes nothing and tells the kernel nothing.
        let told = bench.delivered.withLock { $0.count }
        #expect(try await bench.feeds.pollDrive() == 0)
        #expect(bench.delivered.withLock { $0.dropFirst(told).allSatisfy(\.notices.isEmpty) })
    }

    @Test("changes in folders the mount never listed cost nothing; the folder's first listing comes from the enumerated library")
    func unlistedFoldersAreLeftAlone() async throws {
        let bench = try await Bench()
        let other = try #require(bench.tenant.account("001B", "Globex", documents: ["g.txt": "g"]))
        #expect(try await bench.feeds.pollRecords() == 1)
        bench.tenant.drive.addDocument("h.txt", in: other)
        #expect(try await bench.feeds.pollDrive() == 0)
        #expect(!bench.notices.contains { if case .entry = $0 { true } else { false } })
        #expect(try await bench.names(try await MemoryTenant.record(bench.tree, "Globex")) == ["g.txt", "h.txt"])
        #expect(bench.tenant.drive.listings(of: other) == 0, "the enumerated library answered its first listing")
    }

    @Test("a record listed as empty shows its documents once a folder for it appears")
    func recordFolderAppears() async throws {
        let bench = try await Bench()
        bench.tenant.account("001B", "Globex")
        try await bench.feeds.pollRecords()
        let globex = try await MemoryTenant.record(bench.tree, "Globex")
        #expect(try await bench.names(globex).isEmpty)
        let folder = bench.tenant.drive.addFolder("Globex (001B)", in: bench.tenant.accounts)
        bench.tenant.drive.addDocument("g.txt", in: folder)
        try await bench.feeds.pollDrive()
        #expect(bench.notices.contains(.inode(globex)))
        #expect(try await bench.names(globex) == ["g.txt"])
    }

    @Test("a document with a local change outstanding keeps the mount's view; the feed's change waits for the upload")
    func localChangesWin() async throws {
        let bench = try await Bench()
        let a = try await bench.ino(bench.acme, "a.txt")
        bench.tree.pin(a)
        bench.tree.setLocal(a, size: 99)
        bench.tenant.drive.rename(try bench.item("a.txt", in: bench.folder), to: "a moved.txt")
        try await bench.feeds.pollDrive()
        #expect(try await bench.names(bench.acme) == ["Sub", "a.txt", "b.txt"])
        #expect(try await bench.tree.attributes(a).size == 99)
        #expect(!bench.notices.contains(.inode(a)))
    }

    @Test("an expired feed position reads the whole library again; what it no longer holds goes")
    func resync() async throws {
        let bench = try await Bench()
        bench.tenant.drive.removeAsOther(try bench.item("b.txt", in: bench.folder))
        bench.tenant.drive.expireDeltaLinks()
        #expect(try await bench.feeds.pollDrive() > 0)
        #expect(try await bench.names(bench.acme) == ["Sub", "a.txt"])
        #expect(bench.notices.contains(.entry(parent: bench.acme, name: "b.txt")))
    }

    @Test("a fleet entry's ids are checked against the services' alphabets before use: Graph's for drive and item ids, Salesforce's for record Ids")
    func fleetEntryIDs() {
        let drive = "b!AbC-_0123"
        #expect(FeedEntry(source: .drive(drive), kind: .changed, id: "01ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", parentID: "01PARENT").malformation == nil)
        #expect(FeedEntry(source: .drive(drive), kind: .changed, id: "D4648F06C91D9D3D!54927").malformation == nil)
        for bad in ["", ".", "..", "01A/content", "01A/..", "01A?x=1", "01A#x", "01A%2F", "01A:/x:", "01 A", "01A\n", "ü1", String(repeating: "A", count: 257)] {
            #expect(FeedEntry(source: .drive(drive), kind: .changed, id: bad).malformation != nil, "\(bad.debugDescription)")
        }
        #expect(FeedEntry(source: .drive("../\(drive)"), kind: .changed, id: "01A").malformation != nil, "a drive id that is not one")
        #expect(FeedEntry(source: .drive(drive), kind: .changed, id: "01A", parentID: "01B/..").malformation != nil, "a folder id that is not one")
        #expect(FeedEntry(source: .object("Account"), kind: .changed, id: "0018d0000000001AAA").malformation == nil)
        #expect(FeedEntry(source: .object("Account"), kind: .changed, id: "001' OR Id != '").malformation != nil)
    }

    @Test("fleet entries: one item whose read fails alone is reported unread and the others are applied; entries whose ids are not Graph's are never read; the failed one goes through once it reads")
    func fleetEntriesOneByOne() async throws {
        let bench = try await Bench()
        let drive = bench.tenant.drive
        let driveID = bench.tree.driveID
        let a = try bench.item("a.txt", in: bench.folder), b = try bench.item("b.txt", in: bench.folder)
        let aIno = try await bench.ino(bench.acme, "a.txt")
        drive.edit(a, content: Data("alpha, longer now".utf8))
        drive.rename(b, to: "b renamed.txt")
        drive.failReads(of: a, with: 500)
        let entries = [
            FeedEntry(sequence: 1, source: .drive(driveID), kind: .changed, id: a, parentID: bench.folder),
            FeedEntry(sequence: 2, source: .drive(driveID), kind: .changed, id: b, parentID: bench.folder),
            FeedEntry(sequence: 3, source: .drive(driveID), kind: .changed, id: "\(b)/content", parentID: bench.folder),
            FeedEntry(sequence: 4, source: .drive(driveID), kind: .deleted, id: "..", parentID: bench.folder),
            FeedEntry(sequence: 5, source: .drive(driveID), kind: .changed, id: "01NEW", parentID: "\(bench.folder)/.."),
        ]
        let round = try await bench.feeds.apply(entries)
        #expect(round.unread.map(\.entry) == [entries[0]], "only the item whose read failed")
        #expect(try await bench.names(bench.acme) == ["Sub", "a.txt", "b renamed.txt"], "the rename arrived all the same")
        #expect(try await bench.tree.attributes(aIno).size == Int64("alpha".utf8.count), "the edit waits")
        #expect(drive.reads(of: "\(b)/content") == 0 && drive.reads(of: "..") == 0 && drive.reads(of: "01NEW") == 0)

        drive.failReads(of: a, with: nil)
        let again = try await bench.feeds.apply([entries[0]])
        #expect(again.unread.isEmpty)
        #expect(try await bench.tree.attributes(aIno).size == Int64("alpha, longer now".utf8.count))
    }

    @Test("a fleet entry saying a document was deleted is checked with the library: one it still has stays (read as a change), one it no longer has goes, one it cannot answer for waits")
    func fleetDeletionsConfirmed() async throws {
        let bench = try await Bench()
        let drive = bench.tenant.drive
        let driveID = bench.tree.driveID
        let a = try bench.item("a.txt", in: bench.folder), b = try bench.item("b.txt", in: bench.folder)
        let c = try bench.item("c.txt", in: bench.sub)
        let readsBefore = (drive.reads(of: a), drive.reads(of: b))
        drive.removeAsOther(b)
        drive.failReads(of: c, with: 503)
        let round = try await bench.feeds.apply([
            FeedEntry(sequence: 1, source: .drive(driveID), kind: .deleted, id: a, parentID: bench.folder),
            FeedEntry(sequence: 2, source: .drive(driveID), kind: .deleted, id: b, parentID: bench.folder),
            FeedEntry(sequence: 3, source: .drive(driveID), kind: .deleted, id: c, parentID: bench.sub),
        ])
        #expect(drive.reads(of: a) == readsBefore.0 + 1 && drive.reads(of: b) == readsBefore.1 + 1, "each deletion was asked about")
        #expect(try await bench.names(bench.acme) == ["Sub", "a.txt"], "a.txt is still in the library; b.txt is not")
        #expect(try await bench.names(bench.subIno) == ["c.txt"], "a deletion the library cannot confirm now is not believed")
        #expect(round.unread.map(\.entry.id) == [c])
    }

    @Test("records created, renamed and deleted in the CRM reach a listed object; a rename keeps the inode")
    func recordChanges() async throws {
        let bench = try await Bench()
        bench.tenant.account("001B", "Globex")
        #expect(try await bench.feeds.pollRecords() == 1)
        let accounts = try await bench.tree.lookup(parent: Tree.rootIno, name: "Accounts").ino
        #expect(try await bench.names(accounts) == ["Acme Corp", "Globex"])
        let records = bench.tenant.records
        records.update("Account", "001A", ["Name": .string("Acme Holdings")])
        records.add("Account", ["Id": .string("001C"), "Name": .string("Initech")])
        records.remove("Account", "001B")
        #expect(try await bench.feeds.pollRecords() == 3)
        #expect(try await bench.names(accounts) == ["Acme Holdings", "Initech"])
        #expect(try await bench.ino(accounts, "Acme Holdings") == bench.acme)
        #expect(try await bench.names(bench.acme) == ["Sub", "a.txt", "b.txt"], "its documents stay")
        #expect(bench.notices.contains(.entry(parent: accounts, name: "Acme Corp")))
        #expect(bench.notices.contains(.entry(parent: accounts, name: "Globex")))
        #expect(try await bench.feeds.pollRecords() == 0, "a record seen again unchanged is no change")
    }
}

@Suite("CRM polling and the daily allowance")
struct AllowanceTests {
    @Test("Sforce-Limit-Info reads as calls used of the allowance")
    func header() {
        #expect(APIUsage(header: "api-usage=18/5000") == APIUsage(used: 18, limit: 5000))
        #expect(APIUsage(header: "api-usage=18/5000, per-app-api-usage=2/250(appName=crmfs)") == APIUsage(used: 18, limit: 5000))
        #expect(APIUsage(header: "nonsense") == nil)
    }

    @Test("the CRM poll slows as the daily allowance runs down")
    func slows() {
        #expect(ChangeFeeds.crmInterval(60, usage: nil) == 60)
        #expect(ChangeFeeds.crmInterval(60, usage: APIUsage(used: 100, limit: 1000)) == 60)
        #expect(ChangeFeeds.crmInterval(60, usage: APIUsage(used: 600, limit: 1000)) == 120)
        #expect(ChangeFeeds.crmInterval(60, usage: APIUsage(used: 900, limit: 1000)) == 480)
        #expect(ChangeFeeds.crmInterval(60, usage: APIUsage(used: 990, limit: 1000)) == 3600)
    }
}

@Suite("the kept tree (in memory)")
struct KeptTreeTests {
    @Test("a remount shows the last known tree without listing anything, then one round of each feed brings what changed meanwhile")
    func remountCatchesUp() async throws {
        let tenant = MemoryTenant()
        let folder = try #require(tenant.account("001A", "Acme Corp", documents: ["a.txt": "alpha", "b.txt": "bravo"]))
        tenant.account("001B", "Globex")
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("crmfs-kept-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: state) }
        let settings = FreshnessSettings(drivePoll: 3600, crmPoll: 3600)
        func mount() async throws -> (Tree, ChangeFeeds) {
            let tree = try await tenant.open()
            let store = try MetadataStore(path: state.appendingPathComponent("metadata.sqlite").path, config: try tenant.config())
            let feeds = ChangeFeeds(tree: tree, graph: tenant.drive, records: tenant.records, settings: settings, store: store) { _ in }
            feeds.start()
            return (tree, feeds)
        }
        let (first, firstFeeds) = try await mount()
        let acme = try await MemoryTenant.record(first, "Acme Corp")
        #expect(try await first.list(acme).map(\.name).sorted() == ["a.txt", "b.txt"])
        firstFeeds.stop()
        let listed = tenant.drive.listings(of: folder), queried = tenant.records.asked.count

        // While unmounted: another user renames a document and adds a record.
        tenant.drive.rename(try #require(tenant.drive.itemID(named: "b.txt", in: folder)), to: "b renamed.txt")
        tenant.records.add("Account", ["Id": .string("001C"), "Name": .string("Initech")])

        let (second, secondFeeds) = try await mount()
        defer { secondFeeds.stop() }
        let accounts = try await second.lookup(parent: Tree.rootIno, name: "Accounts").ino
        let again = try await MemoryTenant.record(second, "Acme Corp")
        // (The catch-up round runs at once beside this, so the names may already be the new ones.)
        #expect(try await second.list(again).map(\.name).contains("a.txt"), "the last known tree, at once")
        #expect(tenant.drive.listings(of: folder) == listed, "no listing was needed")
        #expect(tenant.records.asked.dropFirst(queried).allSatisfy { $0.contains("SystemModstamp >") }, "no full query of the records")
        try await secondFeeds.pollDrive()
        try await secondFeeds.pollRecords()
        #expect(try await second.list(again).map(\.name).sorted() == ["a.txt", "b renamed.txt"])
        #expect(try await second.list(accounts).map(\.name).sorted() == ["Acme Corp", "Globex", "Initech"])
    }

    @Test("a version the feed passed over while the mount's own change held the document is not lost to a remount: the feed's position is kept only once the document's listing holds its item (model seed 1050)")
    func passedOverWhileHeld() async throws {
        let tenant = MemoryTenant()
        let folder = try #require(tenant.account("001A", "Acme Corp", documents: ["a.txt": "alpha"]))
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("crmfs-kept-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: state) }
        func mount() async throws -> (Tree, ChangeFeeds) {
            let tree = try await tenant.open()
            let store = try MetadataStore(path: state.appendingPathComponent("metadata.sqlite").path, config: try tenant.config())
            let feeds = ChangeFeeds(tree: tree, graph: tenant.drive, records: tenant.records, settings: FreshnessSettings(drivePoll: 3600, crmPoll: 3600), store: store) { _ in }
            feeds.start(polling: false)
            return (tree, feeds)
        }
        let (first, firstFeeds) = try await mount()
        try await firstFeeds.pollDrive()
        let acme = try await MemoryTenant.record(first, "Acme Corp")
        let document = try await first.lookup(parent: acme, name: "a.txt").ino
        try firstFeeds.keep()
        // The mount's own upload holds the document; its new version is in the next feed round, passed over.
        first.pin(document)
        let itemID = try #require(tenant.drive.itemID(named: "a.txt", in: folder))
        tenant.drive.edit(itemID, content: Data("alpha, the mount's own second version".utf8))
        try await firstFeeds.pollDrive()
        #expect(try await first.lookup(parent: acme, name: "a.txt").size == 5)
        try firstFeeds.keep()
        // Killed before the upload's end reached the tree (or before the next keep after it).

        let (second, secondFeeds) = try await mount()
        try await secondFeeds.pollDrive()
        let again = try await MemoryTenant.record(second, "Acme Corp")
        // Before: the kept position was past the new version and the kept listing before it: the remount
        // showed the first version for good, and reads of it failed ESTALE.
        #expect(try await second.lookup(parent: again, name: "a.txt").size == 37)
        secondFeeds.stop()
    }

    @Test("a kept listing is applied when its directory is first asked for, before the background restore reaches it; the restore applies the rest and names every listing it used")
    func keptListingsOnDemand() async throws {
        let tenant = MemoryTenant()
        let acmeFolder = try #require(tenant.account("001A", "Acme Corp", documents: ["a.txt": "alpha"]))
        let globexFolder = try #require(tenant.account("001B", "Globex", documents: ["g.txt": "golf"]))
        let first = try await tenant.open()
        for name in ["Acme Corp", "Globex"] { _ = try await first.list(try await MemoryTenant.record(first, name)) }
        let kept = try Dictionary(uniqueKeysWithValues: first.takeChangedListings().map { ($0.storageKey, $0.encoded()) })
        let listed = (tenant.drive.listings(of: acmeFolder), tenant.drive.listings(of: globexFolder))

        let second = try await tenant.open()
        second.offerKeptListings(kept)
        let accounts = try #require(second.lookupIfKnown(parent: Tree.rootIno, name: "Accounts")).get().ino
        let acme = try #require(second.lookupIfKnown(parent: accounts, name: "Acme Corp")).get().ino
        #expect(try #require(second.listIfKnown(acme)).get().map(\.name) == ["a.txt"], "answered from the kept listing, on the spot")
        #expect(second.applyKeptListings() == Set(kept.keys))
        let globex = try #require(second.lookupIfKnown(parent: accounts, name: "Globex")).get().ino
        #expect(try #require(second.listIfKnown(globex)).get().map(\.name) == ["g.txt"])
        #expect(tenant.drive.listings(of: acmeFolder) == listed.0 && tenant.drive.listings(of: globexFolder) == listed.1, "nothing listed again")
    }

    @Test("a remount's opens of kept documents wait for the library's first catch-up, at most the bound, or until cancelled; a first mount's never wait")
    func keptContentWaitsForTheCatchUp() async throws {
        let tenant = MemoryTenant()
        tenant.account("001A", "Acme Corp", documents: ["a.txt": "alpha"])
        let config = try tenant.config()
        func mount(wait: Duration) async throws -> Tree {
            Tree(config: config, location: try await LibraryLocation.find(config: config, graph: tenant.drive), graph: tenant.drive,
                 salesforce: tenant.records, recordURLBase: "https://contoso.my.salesforce.com", options: TreeOptions(keptContentWait: wait))
        }
        let first = try await mount(wait: .seconds(20))
        #expect(await first.waitForKeptContent() == false, "nothing kept: nothing to wait for")

        let second = try await mount(wait: .seconds(20))
        second.holdKeptContent()
        let waiting = Task { await second.waitForKeptContent() }
        try await Task.sleep(for: .milliseconds(200))
        second.keptContentConfirmed()
        _ = await waiting.value  // ends (whether it had begun to wait or not)
        #expect(await second.waitForKeptContent() == false, "open for good once confirmed")

        let third = try await mount(wait: .milliseconds(300))
        third.holdKeptContent()
        let waited = await ContinuousClock().measure { _ = await third.waitForKeptContent() }
        #expect(waited >= .milliseconds(300) && waited < .seconds(60), "\(waited)")
        #expect(await third.waitForKeptContent() == false, "past the bound the cached bytes serve, without waiting again")

        // Through the feed: a round that answers opens it.
        let fourth = try await mount(wait: .seconds(20))
        fourth.holdKeptContent()
        let feeds = ChangeFeeds(tree: fourth, graph: tenant.drive, records: tenant.records, settings: FreshnessSettings(drivePoll: 3600, crmPoll: 3600)) { _ in }
        try await feeds.pollDrive()
        #expect(await fourth.waitForKeptContent() == false)

        // A waiter whose task is cancelled (Ctrl-C on `crmfs sync`, an interrupted open) stops waiting at once,
        // long before the bound.
        let fifth = try await mount(wait: .seconds(3600))
        fifth.holdKeptContent()
        let cancelled = Task { await fifth.waitForKeptContent() }
        try await Task.sleep(for: .milliseconds(100))
        cancelled.cancel()
        #expect(try await finishes(within: .seconds(60)) { _ = await cancelled.value })
        let alreadyCancelled = Task { withUnsafeCurrentTask { $0?.cancel() }; return await fifth.waitForKeptContent() }
        #expect(try await finishes(within: .seconds(60)) { _ = await alreadyCancelled.value })
    }

    @Test("a name a remount's kept listing lacks (made after it was kept) is not answered ENOENT before the first catch-up has said so")
    func keptListingMissWaitsForTheCatchUp() async throws {
        let tenant = MemoryTenant()
        let acmeFolder = try #require(tenant.account("001A", "Acme Corp", documents: ["a.txt": "alpha"]))
        let first = try await tenant.open()
        _ = try await first.list(try await MemoryTenant.record(first, "Acme Corp"))
        let kept = try Dictionary(uniqueKeysWithValues: first.takeChangedListings().map { ($0.storageKey, $0.encoded()) })
        // Made after the listing was kept: the last moments before a crash (the mount's own upload, say).
        tenant.drive.addDocument("b.txt", in: acmeFolder, content: Data("bravo".utf8))

        let second = try await tenant.open()
        second.holdKeptContent()
        second.offerKeptListings(kept)
        let accounts = try #require(second.lookupIfKnown(parent: Tree.rootIno, name: "Accounts")).get().ino
        let acme = try #require(second.lookupIfKnown(parent: accounts, name: "Acme Corp")).get().ino
        #expect(try #require(second.lookupIfKnown(parent: acme, name: "a.txt")).get().name == "a.txt", "what the kept listing holds answers at once")
        #expect(second.lookupIfKnown(parent: acme, name: "b.txt") == nil, "a miss is not answered on the spot")
        let found = Task { try await second.lookup(parent: acme, name: "b.txt").name }
        let feeds = ChangeFeeds(tree: second, graph: tenant.drive, records: tenant.records, settings: FreshnessSettings(drivePoll: 3600, crmPoll: 3600)) { _ in }
        try await feeds.pollDrive()
        // Before: ENOENT at once, from the kept listing, though the service held the document.
        #expect(try await found.value == "b.txt")
        // Once caught up, a miss is a miss.
        await #expect(throws: NamespaceError.notFound) { try await second.lookup(parent: acme, name: "c.txt") }
    }

    @Test("what the mount's own change made, applied after a remount before the folder's kept listing: the kept listing does not put the earlier version back")
    func ownChangeBeforeTheKeptListing() async throws {
        let tenant = MemoryTenant()
        let acmeFolder = try #require(tenant.account("001A", "Acme Corp", documents: ["a.txt": "alpha"]))
        let first = try await tenant.open()
        _ = try await first.list(try await MemoryTenant.record(first, "Acme Corp"))
        let kept = try Dictionary(uniqueKeysWithValues: first.takeChangedListings().map { ($0.storageKey, $0.encoded()) })

        let second = try await tenant.open()
        second.offerKeptListings(kept)
        let accounts = try #require(second.lookupIfKnown(parent: Tree.rootIno, name: "Accounts")).get().ino
        let acme = try #require(second.lookupIfKnown(parent: accounts, name: "Acme Corp")).get().ino
        // A change the stopped mount's journal held is sent before the folder is looked at: the tree takes
        // the item it made (as `LocalWrites` does for a change with no node yet).
        let itemID = try #require(tenant.drive.itemID(named: "a.txt", in: acmeFolder))
        tenant.drive.edit(itemID, content: Data("alpha, second version".utf8))
        _ = second.applyDriveChanges([try await tenant.drive.item(driveID: InMemoryDrive.driveID, itemID: itemID, expandFields: false)])
        // Before: the folder's kept listing came in at the first look and showed the version before.
        #expect(try #require(second.lookupIfKnown(parent: acme, name: "a.txt")).get().size == 21)
    }

    @Test("a config that shows the tree differently starts afresh")
    func configChangeStartsAfresh() async throws {
        let tenant = MemoryTenant()
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("crmfs-kept-\(UUID().uuidString).sqlite").path
        defer { try? FileManager.default.removeItem(atPath: state) }
        let store = try MetadataStore(path: state, config: try tenant.config())
        try store.save([DirectoryListing(key: .object(0), records: [["Id": .string("001A")]])], deltaLink: "memory://delta/1")
        #expect(try store.load().listings.count == 1)
        let other = try MetadataStore(path: state, config: try tenant.config(library: "Archive"))
        #expect(try other.load().listings.isEmpty)
        #expect(try other.load().deltaLink == nil)
    }
}
