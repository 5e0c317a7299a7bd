import CRM
import Foundation
import Graph
@testable import Namespace
import Services
import Testing
import TestSupport

/// The tree the kernel shows, compared with what the services hold.
@Suite("mounted namespace", .serialized)
struct NamespaceTests {
    /// The record directory names crmfs promises for an object, from the records themselves.
    static func expectedNames(_ salesforce: SalesforceClient, object: String, template: String) async throws -> Set<String> {
        let fields = ["Id"] + Template(template).fields
        let records = try await salesforce.query("SELECT \(fields.joined(separator: ", ")) FROM \(object)")
        let names = EntryNaming.names(for: records.map { record in
            (id: record.id!, base: Template(template).expand { record[$0]?.description ?? "" })
        })
        return Set(names.values)
    }

    @Test("objects, records and documents match the tenant, hard names included")
    func treeMatchesTenant() async throws {
        try await withMount(records: 14, docsPerRecord: 2) { mount in
            let connections = try mount.sandbox.connections()
            let config = try mount.sandbox.config()
            let top = try FileManager.default.contentsOfDirectory(atPath: mount.mountpoint).sorted()
            #expect(top == ["Accounts", "Cases", "Opportunities"])
            for object in config.objects {
                let listed = Set(try FileManager.default.contentsOfDirectory(atPath: mount.path(object.directory)))
                let expected = try await Self.expectedNames(connections.salesforce, object: object.object, template: object.nameTemplate)
                #expect(listed == expected, "\(object.directory)")
                #expect(listed.count == 14)
            }
            let accounts = Set(try FileManager.default.contentsOfDirectory(atPath: mount.path("Accounts")))
            #expect(accounts.contains("Smith_Wesson Partners"))
            #expect(accounts.contains("Contoso: EMEA"))
            #expect(accounts.contains("Fabrikam Inc."))
            #expect(accounts.contains("Müller & Söhne GmbH"))
            #expect(accounts.filter { $0.hasPrefix("Northwind Traders (") }.count == 2)
            // The 330-character name is shortened to fit 255 bytes and keeps its record Id.
            #expect(accounts.contains { $0.hasPrefix("The International Consolidated") && $0.utf8.count <= 255
                                        && $0.range(of: #" \(001[0-9A-Za-z]{15}\)$"#, options: .regularExpression) != nil })
            #expect(accounts.allSatisfy { $0.utf8.count <= 255 })

            let found = try await Tools.shell("find '\(mount.mountpoint)' -type f | wc -l")
            #expect(found.output.trimmingCharacters(in: .whitespacesAndNewlines) == "\(14 * 3 * 2)")

            // Each record directory holds exactly its SharePoint folder's documents, sub-folders kept.
            let driveID = try await mount.sandbox.info()["driveId"]!
            let recordDocuments = try await Tools.shell("cd '\(mount.path("Accounts/Acme Corp"))' && find . -type f | sort")
            var remote: [String] = []
            func walk(_ itemID: String, _ prefix: String) async throws {
                for child in try await connections.graph.children(driveID: driveID, itemID: itemID) {
                    if child.isFolder { try await walk(child.id, "\(prefix)/\(child.name!)") } else { remote.append("\(prefix)/\(child.name!)") }
                }
            }
            try await walk(try await connections.graph.item(driveID: driveID, path: SeededPaths.acmeFolder).id, ".")
            #expect(recordDocuments.output.split(separator: "\n").map(String.init) == remote.sorted())
        }
    }

    @Test("stat gives SharePoint sizes and mtimes, record mtimes from LastModifiedDate; inodes are stable")
    func attributes() async throws {
        try await withMount { mount in
            let connections = try mount.sandbox.connections()
            let driveID = try await mount.sandbox.info()["driveId"]!
            let item = try await connections.graph.item(driveID: driveID, path: SeededPaths.acmeContract)
            let file = mount.path("Accounts/Acme Corp/Contracts/MSA-2026.pdf")
            let attributes = try FileManager.default.attributesOfItem(atPath: file)
            #expect((attributes[.size] as? NSNumber)?.int64Value == item.size)
            let expectedModified = ISO8601DateFormatter().date(from: item.fileSystemInfo!.lastModifiedDateTime!)!
            #expect(abs((attributes[.modificationDate] as! Date).timeIntervalSince(expectedModified)) < 1)
            #expect((attributes[.posixPermissions] as? Int) == 0o644)

            let record = try await connections.salesforce.record("Account", id: SeededPaths.acmeID, fields: ["LastModifiedDate"])
            let recordModified = try FileManager.default.attributesOfItem(atPath: mount.path("Accounts/Acme Corp"))[.modificationDate] as! Date
            let stamp = record["LastModifiedDate"]!.stringValue!
            #expect(abs(recordModified.timeIntervalSince(ISO8601DateFormatter().date(from: String(stamp.prefix(19)) + "Z")!)) < 1)

            var first = stat(), second = stat()
            #expect(stat(file, &first) == 0)
            _ = try FileManager.default.contentsOfDirectory(atPath: mount.path("Accounts"))
            #expect(stat(file, &second) == 0)
            #expect(first.st_ino == second.st_ino)
        }
    }

    @Test("ls -l of a 10,000-record object lists everything without a request per entry")
    func tenThousandRecords() async throws {
        try await withMount(records: 10_000, docsPerRecord: 0) { mount in
            try await mount.sandbox.admin("stats/reset")
            let listing = try await Tools.shell("ls -l '\(mount.path("Accounts"))' | tail -n +2 | wc -l")
            #expect(listing.output.trimmingCharacters(in: .whitespacesAndNewlines) == "10000")
            let stats = try await mount.sandbox.stats()
            #expect(stats["sf.query", default: 0] <= 5)  // 10,000 records in batches of 2,000
            #expect(stats["sf.record", default: 0] == 0)
            #expect(stats["graph.children", default: 0] == 0)
            #expect(stats["graph.item", default: 0] == 0)
        }
    }

    @Test("directory walkers that trust link counts (Foundation's subpaths, fts) still find sub-folders")
    func walkersFindSubfolders() async throws {
        try await withMount(records: 2, docsPerRecord: 1) { mount in
            let walked = try FileManager.default.subpathsOfDirectory(atPath: mount.path("Accounts/Acme Corp"))
            #expect(walked.contains("Contracts/MSA-2026.pdf"), "\(walked)")
            var status = stat()
            #expect(stat(mount.path("Accounts/Acme Corp"), &status) == 0 && status.st_nlink == 1, "a link count of 1 says 'not counted'")
        }
    }

    @Test("after the first mount's enumeration of the library, find over every record and document costs no Graph request")
    func findAfterEnumeration() async throws {
        try await withMount(records: 10, docsPerRecord: 3) { mount in
            #expect(try await FreshnessTests.eventually(within: .seconds(30)) { mount.logTail(lines: 200).contains("the library is enumerated") })
            try await mount.sandbox.admin("stats/reset")
            let files = try await Tools.shell("find '\(mount.mountpoint)' -type f | wc -l")
            #expect(Int(files.output.trimmingCharacters(in: .whitespacesAndNewlines)) == 10 * 3 * 3)
            let stats = try await mount.sandbox.stats()
            for request in ["graph.item", "graph.children", "graph.fields", "graph.content"] {
                #expect(stats[request, default: 0] == 0, "\(request)")
            }
            // A document known from the enumeration has no column values yet: only a user.sp.* ask fetches them.
            let contract = mount.path("Accounts/Acme Corp/Contracts/MSA-2026.pdf")
            #expect(try await Tools.run("getfattr", ["--only-values", "-n", "user.crmfs.sync", contract]).output == "clean")
            #expect(try await mount.sandbox.stats()["graph.fields", default: 0] == 0)
            #expect(try await Tools.run("getfattr", ["--only-values", "-n", "user.sp.Customer", contract]).output == "Acme Corp")
            #expect(try await mount.sandbox.stats()["graph.fields", default: 0] == 1)
        }
    }

    @Test("a tree walk during the first mount's enumeration of the library waits for it rather than racing it folder by folder")
    func walkWaitsForEnumeration() async throws {
        // Pages of 10 items at 20 ms each: the enumeration takes a while, and find starts at once.
        try await withMount(records: 40, docsPerRecord: 1, configure: { $0.pageCap = 10; $0.faults.latencyMilliseconds = 20 }) { mount in
            let files = try await Tools.shell("find '\(mount.mountpoint)' -type f | wc -l")
            #expect(Int(files.output.trimmingCharacters(in: .whitespacesAndNewlines)) == 3 * 40)
            #expect(mount.logTail(lines: 200).contains("the library is enumerated"))
            let stats = try await mount.sandbox.stats()
            #expect(stats["graph.children", default: 0] <= 10, "a handful of folders listed before the walk was seen, not one per record: \(stats)")
        }
    }

    @Test("with the drive's feed off, find over all documents costs one listing per directory")
    func findIsCheap() async throws {
        try await withMount(records: 10, docsPerRecord: 3, editConfig: { $0 + "\n[freshness]\ndrive_poll = \"0\"\n" }) { mount in
            try await mount.sandbox.admin("stats/reset")
            func count(_ arguments: String) async throws -> Int {
                Int(try await Tools.shell("find '\(mount.mountpoint)' \(arguments) | wc -l").output.trimmingCharacters(in: .whitespacesAndNewlines))!
            }
            let files = try await count("-type f")
            let directories = try await count("-type d")
            let records = try await count("-mindepth 2 -maxdepth 2 -type d")
            let folders = directories - 1 - 3 - records  // below record level
            #expect(files == 10 * 3 * 3)
            let stats = try await mount.sandbox.stats()
            // Per object: a folder lookup for each of the first records, then one lookup and one listing of
            // the folder holding all its record folders. Per record and per sub-folder: one listing.
            // Nothing per file.
            let objects = 3, lookedUp = RecordFolderIndex.threshold - 1
            #expect(stats["graph.item", default: 0] == objects * (lookedUp + 1))
            #expect(stats["graph.children", default: 0] == objects + records + folders)
            #expect(stats["graph.fields", default: 0] == 0)
            #expect(stats["graph.content", default: 0] == 0)
        }
    }

    @Test("names other clients gave (a slash, '..', 300 bytes, two items of one name) list as safe, unique names that read and write")
    func hostileDocumentNames() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1, separateProcess: true) { sandbox in
            let connections = try sandbox.connections()
            let driveID = try await sandbox.info()["driveId"]!
            let folder = try await connections.graph.item(driveID: driveID, path: SeededPaths.acmeFolder)
            let long = String(repeating: "Ä", count: 150) + ".pdf"  // 304 bytes
            let given = ["a/b.txt", "..", long, "Twin.pdf", "Twin.pdf"]
            var ids: [String] = []
            for (index, name) in given.enumerated() {
                let path = NSTemporaryDirectory() + "crmfs-name-\(UUID().uuidString)"
                try Data("document \(index)\n".utf8).write(to: URL(fileURLWithPath: path))
                defer { unlink(path) }
                let item = try await connections.graph.simpleUpload(driveID: driveID, to: .child(parentID: folder.id, name: "n\(index).txt"),
                                                                    file: path, size: Int64("document \(index)\n".utf8.count), options: UploadOptions())
                let renamed = try await sandbox.transport.perform(.init(method: "POST", url: "\(sandbox.baseURL)/_sandbox/items/\(item.id)/name",
                                                                       body: .bytes(Data(name.utf8))))
                #expect(renamed.status == 200)
                ids.append(item.id)
            }
            let mount = try await MountFixture.mount(sandbox)
            defer { Task { await mount.unmount() } }
            let acme = mount.path("Accounts/Acme Corp")
            let listed = try FileManager.default.contentsOfDirectory(atPath: acme)
            let expected = ["a_b.txt", "_..", EntryNaming.withID(long, id: ids[2], keepingExtension: true),
                            "Twin (\(ids[3])).pdf", "Twin (\(ids[4])).pdf"]
            for (index, name) in expected.enumerated() {
                #expect(listed.contains(name), "\(name) not in \(listed)")
                #expect(name.utf8.count <= 255)
                #expect(try await Tools.read("\(acme)/\(name)") == Data("document \(index)\n".utf8), "\(name)")
                #expect(try await Tools.run("getfattr", ["--only-values", "-n", "user.crmfs.item_id", "\(acme)/\(name)"]).output == ids[index])
            }
            #expect(Set(listed).count == listed.count)
            // Writing to a mapped name writes that document; the service keeps its own name.
            #expect(try await Tools.shell("echo appended >> '\(acme)/a_b.txt'").status == 0)
            #expect(try await mount.sync().status == 0)
            let item = try await connections.graph.item(driveID: driveID, itemID: ids[0])
            #expect(item.name == "a/b.txt")
            #expect(try await connections.graph.download(driveID: driveID, itemID: ids[0]).data == Data("document 0\nappended\n".utf8))
        }
    }

    @Test("a record named like another's generated name ('Twin Co (ID)' beside two 'Twin Co') keeps a directory of its own")
    func recordNamesUniqueByFinalForm() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1, separateProcess: true) { sandbox in
            let salesforce = try sandbox.connections().salesforce
            let first = try await salesforce.create("Account", fields: ["Name": "Twin Co"])
            let second = try await salesforce.create("Account", fields: ["Name": "Twin Co"])
            let third = try await salesforce.create("Account", fields: ["Name": .string("Twin Co (\(first))")])
            let mount = try await MountFixture.mount(sandbox)
            defer { Task { await mount.unmount() } }
            let listed = Set(try FileManager.default.contentsOfDirectory(atPath: mount.path("Accounts")))
            let names = ["Twin Co (\(first))", "Twin Co (\(second))", "Twin Co (\(first)) (\(third))"]
            for (name, id) in zip(names, [first, second, third]) {
                #expect(listed.contains(name), "\(name) not in \(listed.filter { $0.hasPrefix("Twin") })")
                let recordID = try await Tools.run("getfattr", ["--only-values", "-n", "user.crmfs.record_id", mount.path("Accounts/\(name)")])
                #expect(recordID.output == id)
            }
        }
    }

    @Test("names differing only in case: a new one beside an existing document is EEXIST, never an upload over it; a case-only rename is the same document")
    func caseInsensitiveNames() async throws {
        try await withMount(records: 2, docsPerRecord: 1) { mount in
            let contracts = mount.path("Accounts/Acme Corp/Contracts")
            let created = try await Tools.blocking { () -> Int32 in
                let descriptor = open("\(contracts)/msa-2026.PDF", O_CREAT | O_WRONLY, 0o644)
                defer { if descriptor >= 0 { close(descriptor) } }
                return descriptor >= 0 ? 0 : errno
            }
            #expect(created == EEXIST)
            #expect(try await Tools.shell("echo other > '\(contracts)/other.pdf'").status == 0)
            let renamed = try await Tools.blocking { rename("\(contracts)/other.pdf", "\(contracts)/Msa-2026.pdf") == 0 ? 0 : errno }
            #expect(renamed == EEXIST)
            #expect(try await Tools.blocking { mkdir("\(contracts)/MSA-2026.PDF", 0o755) == 0 ? 0 : errno } == EEXIST)
            let itemID = try await Tools.run("getfattr", ["--only-values", "-n", "user.crmfs.item_id", "\(contracts)/MSA-2026.pdf"]).output
            #expect(try await Tools.blocking { rename("\(contracts)/MSA-2026.pdf", "\(contracts)/msa-2026.pdf") == 0 ? 0 : errno } == 0)
            #expect(try await mount.sync().status == 0)
            let connections = try mount.sandbox.connections()
            let driveID = try await mount.sandbox.info()["driveId"]!
            #expect(try await connections.graph.item(driveID: driveID, itemID: itemID).name == "msa-2026.pdf")
            let log = try String(contentsOfFile: "\(mount.stateDirectory)/crmfs.log", encoding: .utf8)
            #expect(log.contains("SharePoint names are case-insensitive"))
        }
    }
}
