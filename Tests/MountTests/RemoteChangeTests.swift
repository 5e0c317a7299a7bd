import CLinux
import CRM
import Foundation
import Freshness
import Graph
import HTTP
import Services
import Testing
import TestSupport

/// Remote changes through the kernel: the change feeds apply what other people do in SharePoint and the CRM
/// to the mount and push it into the kernel's caches, so they show within one poll although the kernel may
/// trust names and attributes for ten minutes (the default with the feeds on). The sandbox answers slowly and
/// keeps a budget meanwhile, as the real services do.
@Suite("remote changes show through the mount", .serialized)
struct RemoteChangeTests {
    /// Polls every second (documents) and every two (records).
    static func fastFeeds(_ config: String) -> String {
        config + "\n[freshness]\ndrive_poll = \"1s\"\ncrm_poll = \"2s\"\n"
    }

    /// Within one poll, give or take a round trip at the sandbox's latency.
    static let onePoll: Duration = .seconds(6)

    /// A real service's latency and budget, on the running sandbox.
    static func realistic(_ sandbox: SandboxFixture) async throws {
        try await sandbox.admin("faults", ["latencyMs": 40, "latencyJitterMs": 20, "ruPerMinute": 1200])
    }

    /// Waits until `condition` holds, up to `limit`; whether it did.
    static func eventually(within limit: Duration = onePoll, _ condition: () async throws -> Bool) async throws -> Bool {
        try await Tools.eventually(within: limit, poll: .milliseconds(200), condition)
    }

    static func inode(_ path: String) -> UInt64? {
        var status = stat()
        return stat(path, &status) == 0 ? UInt64(status.st_ino) : nil
    }

    static func exists(_ path: String) -> Bool { inode(path) != nil }

    @Test("documents edited, added, renamed, moved and deleted in SharePoint show within one poll; renamed and moved ones keep their inode")
    func remoteDocumentChanges() async throws {
        try await withMount(records: 3, docsPerRecord: 1, editConfig: Self.fastFeeds) { mount in
            try await Self.realistic(mount.sandbox)
            let remote = try await RemoteDrive(mount)
            let graph = remote.connections.graph
            let folder = try #require(try await remote.item("\(SeededPaths.acmeFolder)"))
            let contracts = try #require(try await remote.item("\(SeededPaths.acmeFolder)/Contracts"))
            let scratch = try KernelWriteTests.scratch().appendingPathComponent("edit")
            try Data("seed\n".utf8).write(to: scratch)
            for (parent, name) in [(contracts.id, "NDA-2025.pdf"), (folder.id, "Notes.txt"), (folder.id, "Deck.pptx")] {
                _ = try await graph.simpleUpload(driveID: remote.driveID, to: .child(parentID: parent, name: name), file: scratch.path,
                                                 size: 5, options: UploadOptions())
            }
            let record = mount.path(KernelWriteTests.acme)
            // The kernel knows every name (the new ones show within a poll) and has read the contract's bytes.
            #expect(try await Self.eventually {
                let before = try FileManager.default.subpathsOfDirectory(atPath: record)
                return before.contains("Contracts/MSA-2026.pdf") && before.contains("Contracts/NDA-2025.pdf") && before.contains("Deck.pptx")
            })
            let contract = "\(record)/Contracts/MSA-2026.pdf"
            _ = try Data(contentsOf: URL(fileURLWithPath: contract))
            let contractInode = try #require(Self.inode(contract))
            let ndaInode = try #require(Self.inode("\(record)/Contracts/NDA-2025.pdf"))
            let notesInode = try #require(Self.inode("\(record)/Notes.txt"))

            let edited = Data("edited by someone else\n".utf8)
            try await Self.replace(SeededPaths.acmeContract, with: edited, through: remote)
            _ = try await graph.simpleUpload(driveID: remote.driveID, to: .child(parentID: folder.id, name: "Added remotely.txt"), file: scratch.path,
                                             size: 5, options: UploadOptions())
            let nda = try #require(try await remote.item("\(SeededPaths.acmeFolder)/Contracts/NDA-2025.pdf"))
            _ = try await graph.update(driveID: remote.driveID, itemID: nda.id, name: "NDA-2025 signed.pdf")
            let notes = try #require(try await remote.item("\(SeededPaths.acmeFolder)/Notes.txt"))
            _ = try await graph.update(driveID: remote.driveID, itemID: notes.id, parentID: contracts.id)
            let deck = "Deck.pptx"
            let deckItem = try #require(try await remote.item("\(SeededPaths.acmeFolder)/\(deck)"))
            try await graph.delete(driveID: remote.driveID, itemID: deckItem.id)

            #expect(try await Self.eventually {
                (try? Data(contentsOf: URL(fileURLWithPath: contract))) == edited
            }, "the edit shows: new bytes, not the kernel's cached pages")
            #expect(Self.inode(contract) == contractInode)
            #expect(try await Self.eventually { Self.exists("\(record)/Added remotely.txt") })
            #expect(try await Self.eventually { !Self.exists("\(record)/Contracts/NDA-2025.pdf") }, "the old name is gone from the kernel too")
            #expect(Self.inode("\(record)/Contracts/NDA-2025 signed.pdf") == ndaInode, "a rename keeps the inode")
            #expect(try await Self.eventually { !Self.exists("\(record)/Notes.txt") })
            #expect(Self.inode("\(record)/Contracts/Notes.txt") == notesInode, "a move keeps the inode")
            #expect(try await Self.eventually { !Self.exists("\(record)/\(deck)") })
            #expect(try await Self.eventually {
                Set(try FileManager.default.contentsOfDirectory(atPath: record)) == (try await remote.names(SeededPaths.acmeFolder))
            }, "the listing is the service's")
            let stats = try await mount.sandbox.stats()
            #expect(stats["throttled", default: 0] == 0, "crmfs's own traffic stays inside the budget")
        }
    }

    @Test("records created, renamed and deleted in the CRM show within one poll; a renamed record keeps its inode and documents")
    func remoteRecordChanges() async throws {
        try await withMount(records: 4, docsPerRecord: 1, editConfig: Self.fastFeeds) { mount in
            try await Self.realistic(mount.sandbox)
            let salesforce = try mount.sandbox.connections().salesforce
            let accounts = mount.path("Accounts")
            let names = try FileManager.default.contentsOfDirectory(atPath: accounts)
            #expect(names.contains("Acme Corp"))
            let acmeInode = try #require(Self.inode("\(accounts)/Acme Corp"))
            let acmeDocuments = try FileManager.default.subpathsOfDirectory(atPath: "\(accounts)/Acme Corp").sorted()
            let doomedRecord = try #require(try await salesforce.query("SELECT Id, Name FROM Account").first { record in
                record.id != SeededPaths.acmeID && names.contains(record["Name"]?.stringValue ?? "")
            })
            let doomed = try #require(doomedRecord["Name"]?.stringValue), doomedID = try #require(doomedRecord.id)

            try await salesforce.update("Account", id: SeededPaths.acmeID, fields: ["Name": .string("Acme Holdings")])
            let createdID = try await salesforce.create("Account", fields: ["Name": .string("Brand New Account")])
            try await salesforce.delete("Account", id: doomedID)

            #expect(try await Self.eventually { Self.exists("\(accounts)/Brand New Account") })
            #expect(try await Self.eventually { !Self.exists("\(accounts)/Acme Corp") })
            #expect(Self.inode("\(accounts)/Acme Holdings") == acmeInode, "a renamed record keeps its inode")
            #expect(try FileManager.default.subpathsOfDirectory(atPath: "\(accounts)/Acme Holdings").sorted() == acmeDocuments,
                    "and its documents (its folder keeps the old name and the Id)")
            #expect(try await Self.eventually { !Self.exists("\(accounts)/\(doomed)") })
            #expect(try Self.xattr("\(accounts)/Brand New Account", "user.crmfs.record_id") == createdID)
        }
    }

    @Test("a directory read while records go lists every remaining record exactly once (the reader keeps the listing it started)")
    func readWhileRecordsGo() async throws {
        try await withMount(records: 10_000, docsPerRecord: 0, editConfig: Self.fastFeeds) { mount in
            let salesforce = try mount.sandbox.connections().salesforce
            let accounts = mount.path("Accounts")
            let everyone = try FileManager.default.contentsOfDirectory(atPath: accounts)
            let directory = try #require(opendir(accounts))
            defer { closedir(directory) }
            var seen: [String] = []
            func next() -> String? {
                guard let entry = readdir(directory) else { return nil }
                return withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            }
            for _ in 0..<12 { seen.append(try #require(next())) }
            // Records the reader has passed go; the rest of the listing must not move under it.
            let passed = seen.filter { $0 != "." && $0 != ".." }.prefix(8)
            for name in passed {
                try await salesforce.delete("Account", id: try #require(try Self.xattr("\(accounts)/\(name)", "user.crmfs.record_id")))
            }
            #expect(try await Self.eventually { passed.allSatisfy { !Self.exists("\(accounts)/\($0)") } })
            while let name = next() { seen.append(name) }
            let names = seen.filter { $0 != "." && $0 != ".." }
            #expect(names.count == Set(names).count, "no name twice")
            let missing = Set(everyone).subtracting(names), unknown = Set(names).subtracting(everyone)
            #expect(missing.isEmpty && unknown.isEmpty, "every record the reader started with, once: missing \(missing.sorted()), unknown \(unknown.sorted())")
        }
    }

    @Test("an open handle on a document changed remotely: its next read fails with ESTALE once the change shows; a new open reads the new version")
    func openHandleOnChangedDocument() async throws {
        try await withMount(records: 2, docsPerRecord: 1, editConfig: Self.fastFeeds) { mount in
            let remote = try await RemoteDrive(mount)
            let contract = mount.path("\(KernelWriteTests.acme)/Contracts/MSA-2026.pdf")
            let original = try Data(contentsOf: URL(fileURLWithPath: contract))
            let descriptor = open(contract, O_RDONLY)
            #expect(descriptor >= 0)
            defer { close(descriptor) }
            var first = [UInt8](repeating: 0, count: 16)
            #expect(pread(descriptor, &first, 16, 0) == 16)

            let edited = Data("a new version\n".utf8)
            try await Self.replace(SeededPaths.acmeContract, with: edited, through: remote)
            #expect(try await Self.eventually { Self.size(contract) == Int64(edited.count) })
            let code = try await Tools.blocking { () -> Int32 in
                var buffer = [UInt8](repeating: 0, count: 16)
                errno = 0
                return pread(descriptor, &buffer, 16, 0) < 0 ? errno : 0
            }
            #expect(code == ESTALE, "never a mix of two versions")
            #expect(try Data(contentsOf: URL(fileURLWithPath: contract)) == edited)
            #expect(original != edited)
        }
    }

    @Test("a document changed remotely, read before the feed shows the change: that read fails ESTALE, and the next open reads the new version without waiting for the feed")
    func readFindsANewerVersion() async throws {
        // No round of the library's feed after the first for ten minutes: only the read can tell the mount.
        let slowFeeds = { (config: String) in config + "\n[freshness]\ndrive_poll = \"600s\"\n" }
        try await withMount(records: 2, docsPerRecord: 1, editConfig: slowFeeds) { mount in
            let remote = try await RemoteDrive(mount)
            let contract = mount.path("\(KernelWriteTests.acme)/Contracts/MSA-2026.pdf")
            #expect(Self.size(contract) != nil)  // listed, never read
            let edited = Data("a new version\n".utf8)
            try await Self.replace(SeededPaths.acmeContract, with: edited, through: remote)
            let first = try await Tools.blocking { () -> Int32 in
                let descriptor = open(contract, O_RDONLY)
                defer { close(descriptor) }
                var buffer = [UInt8](repeating: 0, count: 16)
                errno = 0
                return pread(descriptor, &buffer, 16, 0) < 0 ? errno : 0
            }
            #expect(first == ESTALE, "the version listed is not the one served: never a mix of two")
            // Before: ESTALE at every open until the next round of the feed (here ten minutes; by default 5 s).
            #expect(try await Self.eventually { (try? Data(contentsOf: URL(fileURLWithPath: contract))) == edited })
            #expect(Self.size(contract) == Int64(edited.count))
        }
    }

    @Test("a document being written through the mount keeps the mount's view while the feed reports another client's change; the close ends in keep-both")
    func localChangeBeatsTheFeed() async throws {
        try await withMount(records: 2, docsPerRecord: 1, editConfig: Self.fastFeeds) { mount in
            let remote = try await RemoteDrive(mount)
            let contract = mount.path("\(KernelWriteTests.acme)/Contracts/MSA-2026.pdf")
            let mine = Data(repeating: 0x6D, count: 3000)
            let descriptor = open(contract, O_WRONLY | O_TRUNC)
            #expect(descriptor >= 0)
            #expect(mine.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) } == mine.count)

            let theirs = Data("someone else's version\n".utf8)
            try await Self.replace(SeededPaths.acmeContract, with: theirs, through: remote)
            // Several polls go by: the mount still shows what is being written.
            try await Task.sleep(for: .seconds(3))
            #expect(Self.size(contract) == Int64(mine.count))
            #expect(try Data(contentsOf: URL(fileURLWithPath: contract)) == mine)
            close(descriptor)
            try await expectSynced(mount)
            #expect(try await remote.bytes(SeededPaths.acmeContract) == theirs, "keep-both: the remote change stands")
            let names = try await remote.names("\(SeededPaths.acmeFolder)/Contracts")
            let copy = try #require(names.first { $0.hasPrefix("MSA-2026 (conflict ") })
            #expect(try await remote.bytes("\(SeededPaths.acmeFolder)/Contracts/\(copy)") == mine)
            #expect(try await Self.eventually { Self.exists(mount.path("\(KernelWriteTests.acme)/Contracts/\(copy)")) })
        }
    }

    /// What a remount test starts from: fast feeds, and a first mount that walked the whole tree (so all of
    /// it is kept), unmounted. Returns the walk (`find .`, sorted).
    static func mountWalkAndUnmount(_ sandbox: SandboxFixture) async throws -> String {
        let text = try String(contentsOfFile: sandbox.configPath, encoding: .utf8)
        try fastFeeds(text).write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
        let first = try await MountFixture.mount(sandbox)
        let walked = try await Tools.shell("cd '\(first.mountpoint)' && find . | sort")
        #expect(walked.output.contains("Acme Corp/Contracts/MSA-2026.pdf"))
        await first.unmount()
        return walked.output
    }

    @Test("a remount shows the last known tree without listing it again, and what changed while unmounted within one round of each feed")
    func remountCatchesUp() async throws {
        try await withSandbox(records: 4, docsPerRecord: 1, separateProcess: true) { sandbox in
            _ = try await Self.mountWalkAndUnmount(sandbox)

            // While unmounted: a document is renamed, an account's phone number changes. (A new account would be
            // looked for among the folders of all accounts, a listing of its own.)
            let connections = try sandbox.connections()
            let driveID = try await sandbox.info()["driveId"]!
            let contract = try await connections.graph.item(driveID: driveID, path: SeededPaths.acmeContract)
            _ = try await connections.graph.update(driveID: driveID, itemID: contract.id, name: "MSA-2026 signed.pdf")
            try await connections.salesforce.update("Account", id: SeededPaths.acmeID, fields: ["Phone": .string("+1 555 0100")])
            try await sandbox.admin("stats/reset")

            let second = try await MountFixture.mount(sandbox)
            do {
                let again = try await Tools.shell("find '\(second.mountpoint)' | sort")
                #expect(again.status == 0)
                #expect(try await sandbox.stats()["graph.children", default: 0] == 0, "the kept tree answers: no folder is listed again")
                let record = second.path(KernelWriteTests.acme)
                #expect(try await Self.eventually { Self.exists("\(record)/Contracts/MSA-2026 signed.pdf") && !Self.exists("\(record)/Contracts/MSA-2026.pdf") })
                #expect(try await Self.eventually { try Self.xattr(record, "user.crm.Phone") == "+1 555 0100" })
            }
            await second.unmount()
        }
    }

    @Test("""
        a document changed while unmounted reads as it is now at once after a remount, cached before and the first \
        catch-up slow; `crmfs sync` returns once that catch-up shows what changed
        """)
    func remountReadsNewBytes() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1, separateProcess: true) { sandbox in
            let text = try String(contentsOfFile: sandbox.configPath, encoding: .utf8)
            try Self.fastFeeds(text).write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
            let contract = "\(KernelWriteTests.acme)/Contracts/MSA-2026.pdf"
            let notes = "\(KernelWriteTests.acme)/Contracts/notes.txt"
            let first = try await MountFixture.mount(sandbox)
            let remote = try await RemoteDrive(first)
            let old = try await Tools.read(first.path(contract))  // now in the block cache, kept for the next mount
            try Data("first notes\n".utf8).write(to: URL(fileURLWithPath: first.path(notes)))
            #expect(try await first.sync().status == 0)
            await first.unmount()

            // While unmounted, another client replaces both (other sizes too).
            let new = Data("countersigned, \(UUID().uuidString)\n".utf8)
            try await Self.replace(SeededPaths.acmeContract, with: new, through: remote)
            #expect(new != old && new.count != old.count)
            try await Self.replace("\(SeededPaths.acmeFolder)/Contracts/notes.txt", with: Data("longer notes from a colleague\n".utf8), through: remote)
            // Every request now takes 2.5 s: the remount's first catch-up (a token, then a delta page) takes 5 s or
            // more, and the read below starts well before it ends. It needs no request to show the tree.
            try await sandbox.admin("faults", ["latencyMs": 2500])
            let second = try await MountFixture.mount(sandbox)
            do {
                let started = ContinuousClock.now
                let reading = Task { try await Tools.read(second.path(contract)) }
                // Nothing of this mount's own to send, but sync returns only once the catch-up has shown the
                // colleague's notes (stat answers from the kept tree at once until then).
                #expect(try await second.sync().status == 0)
                #expect(Self.size(second.path(notes)) == 30, "the size the service holds after crmfs sync")
                let read = try await reading.value
                #expect(read == new, "the version the service has, not the cached one: \(read.count) bytes read, \(old.count) cached, \(new.count) now")
                #expect(ContinuousClock.now - started < .seconds(25), "\(ContinuousClock.now - started)")
                try await sandbox.admin("faults", ["latencyMs": 0])
            }
            await second.unmount()
        }
    }

    @Test("a remount needs no round trip: with every request to the services failing it mounts and shows the kept tree, and catches up once they answer")
    func remountWithoutServices() async throws {
        try await withSandbox(records: 4, docsPerRecord: 1, separateProcess: true) { sandbox in
            let walked = try await Self.mountWalkAndUnmount(sandbox)

            try await sandbox.admin("faults", ["faults": "503:1"])
            let second = try await MountFixture.mount(sandbox)
            do {
                let again = try await Tools.shell("cd '\(second.mountpoint)' && find . | sort")
                #expect(again.status == 0, "\(again.errors)")
                #expect(again.output == walked, "the kept tree, whole, with the services down")
                #expect(try Self.xattr(second.path(KernelWriteTests.acme), "user.crm.Name") == "Acme Corp")

                try await sandbox.admin("faults", ["faults": ""])
                let connections = try sandbox.connections()
                let driveID = try await sandbox.info()["driveId"]!
                let contract = try await connections.graph.item(driveID: driveID, path: SeededPaths.acmeContract)
                _ = try await connections.graph.update(driveID: driveID, itemID: contract.id, name: "MSA-2026 back.pdf")
                #expect(try await Self.eventually(within: .seconds(30)) { Self.exists(second.path("\(KernelWriteTests.acme)/Contracts/MSA-2026 back.pdf")) })
            }
            await second.unmount()
        }
    }

    @Test("a remount whose kept library was replaced since (another drive under its name) logs it and keeps nothing of it, so the next mount starts cold")
    func replacedLibraryKeepsNothing() async throws {
        try await withSandbox(records: 4, docsPerRecord: 1, separateProcess: true) { sandbox in
            let walked = try await Self.mountWalkAndUnmount(sandbox)
            let config = try sandbox.config()
            let path = sandbox.directory.appendingPathComponent("crmfs-state/metadata.sqlite").path
            do {
                // What the last mount saw, before the library was replaced.
                let store = try MetadataStore(path: path, config: config)
                var facts = try #require(try store.facts(for: ServiceFacts.key(for: config)))
                facts.location.driveID = "b!replaced-since"
                try store.keep(facts)
            }
            let second = try await MountFixture.mount(sandbox)
            #expect(try await Self.eventually { second.logTail(lines: 100).contains("not the one the kept tree came from") })
            await second.unmount()

            let store = try MetadataStore(path: path, config: config)
            let kept = try store.load()
            #expect(kept.listings.isEmpty && kept.deltaLink == nil, "nothing of the replaced library is kept")
            #expect(try store.facts(for: ServiceFacts.key(for: config)) == nil)
            let third = try await MountFixture.mount(sandbox)
            #expect(try await Tools.shell("cd '\(third.mountpoint)' && find . | sort").output == walked)
            await third.unmount()
        }
    }

    @Test("an rsync of 24 files under a budget of 120 resource units a minute (more than a minute's worth of work) finishes with nothing lost and no error; crmfs is never throttled")
    func rsyncUnderATightBudget() async throws {
        try await withMount(records: 2, docsPerRecord: 1, editConfig: { text in
            text.replacingOccurrences(of: "ru_per_minute = 0", with: "ru_per_minute = 120")
        }) { mount in
            try await mount.sandbox.admin("faults", ["ruPerMinute": 120, "latencyMs": 20])
            let local = try KernelWriteTests.scratch()
            defer { try? FileManager.default.removeItem(at: local) }
            for index in 0..<24 { try Data("budgeted \(index)\n".utf8).write(to: local.appendingPathComponent("doc-\(index).txt")) }
            let copy = try await Tools.run("/usr/bin/rsync", ["-a", local.path + "/", mount.path("\(KernelWriteTests.acme)/Budget/")], timeLimit: .seconds(300))
            #expect(copy.status == 0, "\(copy.errors)")
            try await expectSynced(mount, timeLimit: .seconds(300))
            let remote = try await RemoteDrive(mount)
            #expect(try await remote.names("\(SeededPaths.acmeFolder)/Budget").count == 24)
            let stats = try await mount.sandbox.stats()
            #expect(stats["throttled", default: 0] == 0, "the pacer kept crmfs inside the budget")
            #expect(stats["graph.ru", default: 0] > 120, "the work needed more than a minute's budget")
        }
    }

    @Test("a damaged kept tree is set aside: the mount starts cold and works")
    func damagedKeptTree() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1, separateProcess: true) { sandbox in
            let state = sandbox.directory.appendingPathComponent("crmfs-state")
            try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try Data("this is not a database".utf8).write(to: state.appendingPathComponent("metadata.sqlite"))
            let mount = try await MountFixture.mount(sandbox)
            #expect(Self.exists(mount.path("Accounts/Acme Corp/Contracts/MSA-2026.pdf")))
            #expect(mount.logTail(lines: 100).contains("set aside"))
            #expect(FileManager.default.fileExists(atPath: state.appendingPathComponent("metadata.sqlite.damaged").path))
            await mount.unmount()
        }
    }

    @Test("under churn (other users editing, adding, renaming, moving and deleting documents and records), the mount converges on the service within a poll of the churn stopping")
    func convergesUnderChurn() async throws {
        try await withMount(records: 6, docsPerRecord: 2, editConfig: Self.fastFeeds) { mount in
            try await Self.realistic(mount.sandbox)
            let accounts = mount.path("Accounts")
            _ = try FileManager.default.subpathsOfDirectory(atPath: accounts)  // the mount has listed everything
            try await mount.sandbox.admin("churn", ["perMinute": 240])
            try await Task.sleep(for: .seconds(8))
            try await mount.sandbox.admin("churn", ["perMinute": 0])
            let made = try await mount.sandbox.adminGet("churn")["changes"] as? [[String: Any]] ?? []
            #expect(made.count >= 10, "the churn ran")

            let connections = try mount.sandbox.connections()
            let driveID = try await mount.sandbox.info()["driveId"]!
            let graph = connections.graph
            func serviceTree(_ folderID: String, _ prefix: String = "") async throws -> Set<String> {
                var names: Set<String> = []
                for item in try await graph.children(driveID: driveID, itemID: folderID) {
                    let path = prefix + (item.name ?? "")
                    names.insert(path)
                    if item.isFolder { names.formUnion(try await serviceTree(item.id, path + "/")) }
                }
                return names
            }
            func converged() async throws -> Bool {
                let expected = try await RecordNames.expected(connections.salesforce, object: "Account", template: "{Name}")
                let shown = Set(try FileManager.default.contentsOfDirectory(atPath: accounts))
                guard shown == expected else { return false }
                let folders = try await graph.children(driveID: driveID, itemID: try await graph.item(driveID: driveID, path: "Accounts").id)
                for name in shown {
                    guard let id = try Self.xattr("\(accounts)/\(name)", "user.crmfs.record_id") else { return false }
                    let folder = folders.filter { $0.isFolder && ($0.name ?? "").contains(id) }
                    let remote = folder.count == 1 ? try await serviceTree(folder[0].id) : []
                    if Set(try FileManager.default.subpathsOfDirectory(atPath: "\(accounts)/\(name)")) != remote { return false }
                }
                return true
            }
            #expect(try await Self.eventually(within: .seconds(10)) { try await converged() })
            #expect(try await mount.sandbox.stats()["throttled", default: 0] == 0)
        }
    }

    /// Another client replaces a document's bytes.
    static func replace(_ path: String, with bytes: Data, through remote: RemoteDrive) async throws {
        let scratch = try KernelWriteTests.scratch().appendingPathComponent("replacement")
        try bytes.write(to: scratch)
        let item = try #require(try await remote.item(path))
        _ = try await remote.connections.graph.simpleUpload(driveID: remote.driveID, to: .item(id: item.id), file: scratch.path,
                                                            size: Int64(bytes.count), options: UploadOptions())
    }

    static func size(_ path: String) -> Int64? {
        var status = stat()
        return stat(path, &status) == 0 ? Int64(status.st_size) : nil
    }

    static func xattr(_ path: String, _ name: String) throws -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = getxattr(path, name, &buffer, buffer.count)
        return count < 0 ? nil : String(decoding: buffer.prefix(count), as: UTF8.self)
    }
}
