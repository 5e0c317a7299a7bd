import Config
import CRM
import Foundation
import Graph
import HTTP
import Services
import Testing
import TestSupport
import Writeback

/// The background sender: journal in, documents, links and columns out; resumes where it stopped.
@Suite("the writeback engine")
struct EngineTests {
    struct Setup {
        let connections: Connections
        let driveID: String
        let staging: StagingArea
        let journal: Journal
        let sandbox: SandboxFixture
        let account: String
        let accountFolder: String

        func engine(maxAttempts: Int = 5, policy: ConflictPolicy = .keepBoth) -> WritebackEngine {
            let uploader = Uploader(graph: connections.graph, staging: staging, journal: journal, fragmentSize: 1 << 20, simpleUploadMax: 4 << 20)
            return WritebackEngine(journal: journal, staging: staging, uploader: uploader,
                                   linker: Linker(graph: connections.graph, salesforce: connections.salesforce),
                                   graph: connections.graph, salesforce: connections.salesforce,
                                   objects: ["Account": ObjectLinking(model: .linkObject, mappings: [FieldMapping(crmField: "Name", spColumn: "Customer")],
                                                                      conflictPolicy: policy)],
                                   maxAttempts: maxAttempts, retryDelay: .milliseconds(20))
        }

        func stage(_ text: String, name: String, itemID: String? = nil, baseETag: String? = nil) throws -> PendingChange {
            let data = Data(text.utf8)
            let file = try staging.stage(data)
            return try journal.add(PendingChange(kind: .upload, driveID: driveID, name: name, itemID: itemID, parentItemID: accountFolder,
                                                 recordID: account, objectName: "Account", stagedFile: file, size: Int64(data.count),
                                                 modified: Date(timeIntervalSince1970: 1_700_000_000), baseETag: baseETag))
        }
    }

    func withEngineSetup(_ body: (Setup) async throws -> Void) async throws {
        try await withSandbox(records: 2, docsPerRecord: 1) { sandbox in
            let root = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("crmfs-engine-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: root) }
            let connections = try sandbox.connections()
            let driveID = try await sandbox.info()["driveId"]!
            let account = try #require(try await connections.salesforce.query("SELECT Id FROM Account WHERE Name = 'Acme Corp'").first?.id)
            let folder = try await connections.graph.item(driveID: driveID, path: SeededPaths.acmeFolder)
            try await body(Setup(connections: connections, driveID: driveID, staging: try StagingArea(directory: root.appendingPathComponent("staging")),
                                 journal: try Journal(path: root.appendingPathComponent("journal.sqlite").path), sandbox: sandbox,
                                 account: account, accountFolder: folder.id))
        }
    }

    @Test("staged files are uploaded, linked and stamped; the journal and the staging area empty")
    func drains() async throws {
        try await withEngineSetup { setup in
            let changes = try (1...3).map { try setup.stage("document \($0)", name: "note-\($0).txt") }
            let engine = setup.engine()
            engine.start()
            engine.kick()
            try await engine.wait(for: changes[0].id!)
            try await engine.drain()
            await engine.stop()
            #expect(try setup.journal.count == 0)
            #expect(try setup.staging.orphans(keeping: []).isEmpty)
            let salesforce = setup.connections.salesforce
            let links = try await salesforce.query("SELECT Name, Record_Id__c FROM SharePoint_Document__c WHERE Record_Id__c = '\(setup.account)'")
            #expect(Set(links.compactMap { $0["Name"]?.stringValue }) == ["note-1.txt", "note-2.txt", "note-3.txt"])
            let item = try await setup.connections.graph.item(driveID: setup.driveID, path: SeededPaths.acmeFolder + "/note-2.txt")
            #expect(try await setup.connections.graph.download(driveID: setup.driveID, itemID: item.id).data == Data("document 2".utf8))
            #expect(try await setup.connections.graph.fields(driveID: setup.driveID, itemID: item.id)["Customer"]?.stringValue == "Acme Corp")
            #expect(item.fileSystemInfo?.lastModifiedDateTime == "2023-11-14T22:13:20Z")
        }
    }

    @Test("folders, moves to another record, column edits and deletes reach both services")
    func otherChanges() async throws {
        try await withEngineSetup { setup in
            let graph = setup.connections.graph, salesforce = setup.connections.salesforce
            let upload = try setup.stage("to be moved", name: "move-me.txt")
            let engine = setup.engine()
            engine.start()
            try await engine.wait(for: upload.id!)
            let item = try await graph.item(driveID: setup.driveID, path: SeededPaths.acmeFolder + "/move-me.txt")

            let folder = try setup.journal.add(PendingChange(kind: .createFolder, driveID: setup.driveID, name: "Signed", parentItemID: setup.accountFolder))
            engine.kick()
            try await engine.wait(for: folder.id!)
            let signed = try await graph.item(driveID: setup.driveID, path: SeededPaths.acmeFolder + "/Signed")
            #expect(signed.isFolder)

            let other = try #require(try await salesforce.query("SELECT Id FROM Account WHERE Id != '\(setup.account)' LIMIT 1").first?.id)
            let move = try setup.journal.add(PendingChange(kind: .move, driveID: setup.driveID, name: "moved.txt", itemID: item.id, parentItemID: signed.id,
                                                           recordID: other, objectName: "Account"))
            let columns = try setup.journal.add(PendingChange(kind: .setColumns, driveID: setup.driveID, name: "moved.txt", itemID: item.id,
                                                              columns: #"{"DocumentType":"Contract"}"#))
            engine.kick()
            try await engine.wait(for: move.id!)
            try await engine.wait(for: columns.id!)
            let moved = try await graph.item(driveID: setup.driveID, itemID: item.id)
            #expect(moved.name == "moved.txt")
            #expect(moved.parentReference?.id == signed.id)
            #expect(try await graph.fields(driveID: setup.driveID, itemID: item.id)["DocumentType"]?.stringValue == "Contract")
            let link = try await salesforce.query("SELECT Record_Id__c FROM SharePoint_Document__c WHERE Item_Id__c = '\(item.id)'")
            #expect(link.map { $0["Record_Id__c"]?.stringValue } == [other])

            let delete = try setup.journal.add(PendingChange(kind: .delete, driveID: setup.driveID, name: "moved.txt", itemID: item.id, objectName: "Account"))
            engine.kick()
            try await engine.wait(for: delete.id!)
            await engine.stop()
            await #expect(throws: GraphError.self) { _ = try await graph.item(driveID: setup.driveID, itemID: item.id) }
            #expect(try await salesforce.query("SELECT Id FROM SharePoint_Document__c WHERE Item_Id__c = '\(item.id)'").isEmpty)
            #expect(try setup.journal.count == 0)
        }
    }

    @Test("a change that was uploaded before a crash is linked on restart without uploading again")
    func resumes() async throws {
        try await withEngineSetup { setup in
            let change = try setup.stage("already up", name: "resumed.txt")
            // The first daemon uploaded it and died before linking.
            let uploader = Uploader(graph: setup.connections.graph, staging: setup.staging, journal: setup.journal, fragmentSize: 1 << 20, simpleUploadMax: 4 << 20)
            _ = try await uploader.upload(change)
            #expect(try setup.journal.change(id: change.id!)?.state == .linking)
            try await setup.sandbox.admin("stats/reset")

            let engine = setup.engine()
            engine.start()
            try await engine.drain()
            await engine.stop()
            let stats = try await setup.sandbox.stats()
            #expect(stats["graph.upload.session", default: 0] + stats["graph.upload.simple", default: 0] == 0)
            #expect(stats["sf.create"] == 1)
            #expect(try setup.journal.count == 0)
        }
    }

    @Test("an overwrite of a document changed remotely follows the object's conflict policy", arguments: [ConflictPolicy.keepBoth, .localWins, .remoteWins])
    func conflictPolicies(policy: ConflictPolicy) async throws {
        try await withEngineSetup { setup in
            let graph = setup.connections.graph
            let document = try await graph.item(driveID: setup.driveID, path: SeededPaths.acmeContract)
            let remote = try await graph.download(driveID: setup.driveID, itemID: document.id).data
            let change = try setup.stage("local edit", name: "MSA-2026.pdf", itemID: document.id, baseETag: "\"{00000000-0000-0000-0000-000000000000},1\"")
            let engine = setup.engine(policy: policy)
            engine.start()
            try await engine.wait(for: change.id!)
            await engine.stop()
            #expect(try setup.journal.count == 0)
            let now = try await graph.download(driveID: setup.driveID, itemID: document.id).data
            let siblings = try await graph.children(driveID: setup.driveID, itemID: try #require(document.parentReference?.id)).compactMap(\.name)
            let conflictCopies = siblings.filter { $0.hasPrefix("MSA-2026 (conflict ") && $0.hasSuffix(").pdf") }
            switch policy {
            case .keepBoth:
                #expect(now == remote)
                #expect(conflictCopies.count == 1, "\(siblings)")
            case .localWins:
                #expect(now == Data("local edit".utf8))
                #expect(conflictCopies.isEmpty)
            case .remoteWins:
                #expect(now == remote)
                #expect(conflictCopies.isEmpty)
                let kept = setup.staging.directory.deletingLastPathComponent().appendingPathComponent("conflicts")
                let files = try FileManager.default.contentsOfDirectory(atPath: kept.path)
                #expect(files.count == 1)
                #expect(try Data(contentsOf: kept.appendingPathComponent(files[0])) == Data("local edit".utf8))
            }
        }
    }

    @Test("two remote-wins conflicts of one document on one day keep both local copies")
    func remoteWinsKeepsEveryCopy() async throws {
        try await withEngineSetup { setup in
            let graph = setup.connections.graph
            let document = try await graph.item(driveID: setup.driveID, path: SeededPaths.acmeContract)
            let engine = setup.engine(policy: .remoteWins)
            engine.start()
            for edit in ["first local edit", "second local edit"] {
                let change = try setup.stage(edit, name: "MSA-2026.pdf", itemID: document.id, baseETag: "\"{00000000-0000-0000-0000-000000000000},1\"")
                engine.kick()
                try await engine.wait(for: change.id!)
            }
            await engine.stop()
            let kept = setup.staging.directory.deletingLastPathComponent().appendingPathComponent("conflicts")
            let files = try FileManager.default.contentsOfDirectory(atPath: kept.path).sorted()
            #expect(files.count == 2, "\(files)")
            let contents = Set(try files.map { String(decoding: try Data(contentsOf: kept.appendingPathComponent($0)), as: UTF8.self) })
            #expect(contents == ["first local edit", "second local edit"])
            #expect(files.contains { $0.hasSuffix(" (2).pdf") }, "\(files)")
        }
    }

    @Test("a new version recorded as the upload that made its document ends, before the mount knows the item, becomes that document's next version")
    func versionRecordedAsDocumentIsMade() async throws {
        try await withEngineSetup { setup in
            let engine = setup.engine()
            let first = try setup.stage("first version", name: "minutes.txt")
            let second = Locked<PendingChange?>(nil)
            // Observers run after the upload is done and before the mount has the item: a write landing
            // then still names the document by its place, as a new document.
            engine.observe { outcome in
                guard case .done(let change, _) = outcome, change.id == first.id else { return }
                let data = Data("second version".utf8)
                second.set(try? engine.record(PendingChange(kind: .upload, driveID: setup.driveID, name: "minutes.txt", parentItemID: setup.accountFolder,
                                                            recordID: setup.account, objectName: "Account", stagedFile: try setup.staging.stage(data),
                                                            size: Int64(data.count))))
            }
            engine.start()
            engine.kick()
            try await engine.wait(for: first.id!)
            let recorded = try #require(second.value)
            try await engine.wait(for: recorded.id!)
            await engine.stop()
            let graph = setup.connections.graph
            let document = try await graph.item(driveID: setup.driveID, path: SeededPaths.acmeFolder + "/minutes.txt")
            #expect(try await graph.download(driveID: setup.driveID, itemID: document.id).data == Data("second version".utf8))
            #expect(try await graph.versions(driveID: setup.driveID, itemID: document.id).count >= 2)
            let names = try await graph.children(driveID: setup.driveID, itemID: setup.accountFolder).compactMap(\.name)
            #expect(!names.contains { $0.contains("conflict") }, "\(names)")
        }
    }

    @Test("conflict copies are named NAME (conflict DATE HOST).EXT")
    func conflictNames() {
        let date = Date(timeIntervalSince1970: 1_795_392_000)  // 2026-11-23
        #expect(WritebackEngine.conflictName("MSA-2026.pdf", hostname: "ws12.example.com", date: date) == "MSA-2026 (conflict 2026-11-23 ws12).pdf")
        #expect(WritebackEngine.conflictName("README", hostname: "ws12", date: date) == "README (conflict 2026-11-23 ws12)")
    }
}
