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
        let names = RecordNaming.names(for: records.map { record in
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

    @Test("find over all documents costs one listing per directory")
    func findIsCheap() async throws {
        try await withMount(records: 10, docsPerRecord: 3) { mount in
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
}
