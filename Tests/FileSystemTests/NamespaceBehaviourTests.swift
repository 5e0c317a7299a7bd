import Config
import CRM
import FileSystem
import Foundation
import Graph
@testable import Namespace
import Services
import Testing
import TestSupport

/// The tree the file system shows, compared with what the services hold, in process.
@Suite("namespace, in process", .serialized)
struct NamespaceBehaviourTests {
    @Test("objects, records and documents match the tenant, hard names included")
    func treeMatchesTenant() async throws {
        try await withFileSystem(records: 14, docsPerRecord: 2) { fs in
            let connections = try fs.sandbox.connections()
            let config = try fs.sandbox.config()
            #expect(try await fs.list("").sorted() == ["Accounts", "Cases", "Opportunities"])
            for object in config.objects {
                let listed = Set(try await fs.list(object.directory))
                let expected = try await RecordNames.expected(connections.salesforce, object: object.object, template: object.nameTemplate)
                #expect(listed == expected, "\(object.directory)")
                #expect(listed.count == 14)
            }
            let accounts = Set(try await fs.list("Accounts"))
            #expect(accounts.contains("Smith_Wesson Partners"))
            #expect(accounts.contains("Contoso: EMEA"))
            #expect(accounts.contains("Fabrikam Inc."))
            #expect(accounts.contains("Müller & Söhne GmbH"))
            #expect(accounts.filter { $0.hasPrefix("Northwind Traders (") }.count == 2)
            // The 330-character name is shortened to fit 255 bytes and keeps its record Id.
            #expect(accounts.contains { $0.hasPrefix("The International Consolidated") && $0.utf8.count <= 255
                                        && $0.range(of: #" \(001[0-9A-Za-z]{15}\)$"#, options: .regularExpression) != nil })
            #expect(accounts.allSatisfy { $0.utf8.count <= 255 })
            #expect(try await fs.files(below: "").count == 14 * 3 * 2)

            // Each record directory holds exactly its SharePoint folder's documents, sub-folders kept.
            let remote = try await RemoteDrive(fs.sandbox)
            let documents = try await remote.documents(below: SeededPaths.acmeFolder)
            #expect(try await fs.files(below: "Accounts/Acme Corp") == documents.keys.sorted())
        }
    }

    @Test("stat gives SharePoint sizes and mtimes, record mtimes from LastModifiedDate; inodes are stable")
    func attributes() async throws {
        try await withFileSystem { fs in
            let remote = try await RemoteDrive(fs.sandbox)
            let item = try #require(try await remote.item(SeededPaths.acmeContract))
            let file = "Accounts/Acme Corp/Contracts/MSA-2026.pdf"
            let attributes = try await fs.stat(file)
            #expect(Int64(attributes.st_size) == item.size)
            let expectedModified = ISO8601DateFormatter().date(from: item.fileSystemInfo!.lastModifiedDateTime!)!
            #expect(attributes.st_mtim.tv_sec == Int(expectedModified.timeIntervalSince1970))
            #expect(attributes.st_mode & 0o777 == 0o644)

            let record = try await remote.connections.salesforce.record("Account", id: SeededPaths.acmeID, fields: ["LastModifiedDate"])
            let stamp = record["LastModifiedDate"]!.stringValue!
            let recordModified = ISO8601DateFormatter().date(from: String(stamp.prefix(19)) + "Z")!
            #expect(try await fs.stat("Accounts/Acme Corp").st_mtim.tv_sec == Int(recordModified.timeIntervalSince1970))

            let first = try await fs.stat(file).st_ino
            _ = try await fs.list("Accounts")
            #expect(try await fs.stat(file).st_ino == first)
        }
    }

    @Test("a listing of a 10,000-record object has everything without a request per entry")
    func tenThousandRecords() async throws {
        try await withFileSystem(records: 10_000, docsPerRecord: 0) { fs in
            try await fs.sandbox.admin("stats/reset")
            #expect(try await fs.list("Accounts").count == 10_000)
            let stats = try await fs.sandbox.stats()
            #expect(stats["sf.query", default: 0] <= 5)  // 10,000 records in batches of 2,000
            #expect(stats["sf.record", default: 0] == 0)
            #expect(stats["graph.children", default: 0] == 0)
            #expect(stats["graph.item", default: 0] == 0)
        }
    }

    @Test("getfattr -d shows CRM fields, SharePoint columns and crmfs facts")
    func listedAttributes() async throws {
        try await withFileSystem { fs in
            func dump(_ path: String) async throws -> [String: String] {
                var values: [String: String] = [:]
                for name in try await fs.listxattr(path) { values[name] = try await fs.getxattr(path, name) }
                return values
            }
            let record = try await dump("Accounts/Acme Corp")
            #expect(record["user.crm.Name"] == "Acme Corp")
            #expect(record["user.crm.Industry"] != nil)
            #expect(record["user.crmfs.record_id"] == SeededPaths.acmeID)
            #expect(record["user.crmfs.web_url"] != nil)
            let file = try await dump("Accounts/Acme Corp/Contracts/MSA-2026.pdf")
            #expect(file["user.crm.Name"] == "Acme Corp")
            #expect(file["user.sp.Customer"] == "Acme Corp")
            #expect(file["user.sp.DocumentType"] == "Contract")
            #expect(file["user.crmfs.record_id"] == SeededPaths.acmeID)
            #expect(file["user.crmfs.sync"] == "clean")
            for name in ["user.crmfs.item_id", "user.crmfs.drive_id", "user.crmfs.web_url", "user.crmfs.etag"] {
                #expect(file[name]?.isEmpty == false, "\(name)")
            }
            #expect(Int(record["user.crm.AnnualRevenue"] ?? "") != nil, "numbers are plain: \(String(describing: record["user.crm.AnnualRevenue"]))")
            let date = record["user.crm.LastModifiedDate"] ?? ""
            #expect(date.hasSuffix("Z") && date.contains("T"), "dates are ISO 8601: \(date)")
            // A missing attribute is ENODATA, another namespace EOPNOTSUPP: never EIO.
            #expect(try await fs.getxattr("Accounts/Acme Corp", "user.crm.NoSuchField") == nil)
            let contract = try await fs.node("Accounts/Acme Corp/Contracts/MSA-2026.pdf")
            #expect(await Errno.of { _ = try await fs.fileSystem.getxattr(contract.ino, name: "trusted.something").value } == EOPNOTSUPP)
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
            let fs = try await FileSystemFixture.build(sandbox)
            let acme = "Accounts/Acme Corp"
            let listed = try await fs.list(acme)
            let expected = ["a_b.txt", "_..", EntryNaming.withID(long, id: ids[2], keepingExtension: true),
                            "Twin (\(ids[3])).pdf", "Twin (\(ids[4])).pdf"]
            for (index, name) in expected.enumerated() {
                #expect(listed.contains(name), "\(name) not in \(listed)")
                #expect(name.utf8.count <= 255)
                #expect(try await fs.read("\(acme)/\(name)") == Data("document \(index)\n".utf8), "\(name)")
                #expect(try await fs.getxattr("\(acme)/\(name)", "user.crmfs.item_id") == ids[index])
            }
            #expect(Set(listed).count == listed.count)
            // Writing to a mapped name writes that document; the service keeps its own name.
            try await fs.append("\(acme)/a_b.txt", Data("appended\n".utf8))
            try await fs.sync()
            let item = try await connections.graph.item(driveID: driveID, itemID: ids[0])
            #expect(item.name == "a/b.txt")
            #expect(try await connections.graph.download(driveID: driveID, itemID: ids[0]).data == Data("document 0\nappended\n".utf8))
            await fs.close()
        }
    }

    @Test("a record named like another's generated name ('Twin Co (ID)' beside two 'Twin Co') keeps a directory of its own")
    func recordNamesUniqueByFinalForm() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1, separateProcess: true) { sandbox in
            let salesforce = try sandbox.connections().salesforce
            let first = try await salesforce.create("Account", fields: ["Name": "Twin Co"])
            let second = try await salesforce.create("Account", fields: ["Name": "Twin Co"])
            let third = try await salesforce.create("Account", fields: ["Name": .string("Twin Co (\(first))")])
            let fs = try await FileSystemFixture.build(sandbox)
            let listed = Set(try await fs.list("Accounts"))
            let names = ["Twin Co (\(first))", "Twin Co (\(second))", "Twin Co (\(first)) (\(third))"]
            for (name, id) in zip(names, [first, second, third]) {
                #expect(listed.contains(name), "\(name) not in \(listed.filter { $0.hasPrefix("Twin") })")
                #expect(try await fs.getxattr("Accounts/\(name)", "user.crmfs.record_id") == id)
            }
            await fs.close()
        }
    }

    @Test("names differing only in case: a new one beside an existing document is EEXIST, never an upload over it; a case-only rename is the same document")
    func caseInsensitiveNames() async throws {
        try await withFileSystem(records: 2, docsPerRecord: 1) { fs in
            let contracts = "Accounts/Acme Corp/Contracts"
            #expect(await Errno.of { _ = try await fs.open("\(contracts)/msa-2026.PDF", O_CREAT | O_WRONLY) } == EEXIST)
            try await fs.write("\(contracts)/other.pdf", "other\n")
            #expect(await Errno.of { try await fs.rename("\(contracts)/other.pdf", "\(contracts)/Msa-2026.pdf") } == EEXIST)
            #expect(await Errno.of { try await fs.mkdir("\(contracts)/MSA-2026.PDF") } == EEXIST)
            let itemID = try #require(try await fs.getxattr("\(contracts)/MSA-2026.pdf", "user.crmfs.item_id"))
            try await fs.rename("\(contracts)/MSA-2026.pdf", "\(contracts)/msa-2026.pdf")
            try await fs.sync()
            let remote = try await RemoteDrive(fs.sandbox)
            #expect(try await remote.connections.graph.item(driveID: remote.driveID, itemID: itemID).name == "msa-2026.pdf")
            #expect(fs.log.contains("SharePoint names are case-insensitive"), "\(fs.log.lines)")
        }
    }
}
