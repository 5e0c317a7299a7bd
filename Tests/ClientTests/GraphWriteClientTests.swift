import Foundation
import Graph
import HTTP
import QuickXor
import Services
import Testing
import TestSupport

/// The write half of the Graph client, against the sandbox over loopback.
@Suite("Graph client writes against the sandbox")
struct GraphWriteClientTests {
    static func file(_ size: Int, seed: UInt8) throws -> (path: String, data: Data) {
        let data = Data((0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seed)) })
        let path = NSTemporaryDirectory() + "crmfs-upload-\(UUID().uuidString)"
        try data.write(to: URL(fileURLWithPath: path))
        return (path, data)
    }

    @Test("folders, renames, moves with times, deletes; If-Match mismatches are GraphErrors with 412")
    func itemWrites() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1) { sandbox in
            let graph = try sandbox.connections().graph
            let driveID = try await sandbox.info()["driveId"]!
            let accounts = try await graph.item(driveID: driveID, path: "Accounts")
            let folder = try await graph.createFolder(driveID: driveID, parentID: accounts.id, name: "Incoming")
            await #expect(throws: GraphError.self) { _ = try await graph.createFolder(driveID: driveID, parentID: accounts.id, name: "incoming") }
            let (path, data) = try Self.file(1000, seed: 1)
            defer { unlink(path) }
            let uploaded = try await graph.simpleUpload(driveID: driveID, to: .child(parentID: folder.id, name: "a b#c.txt"), file: path,
                                                        size: Int64(data.count), options: UploadOptions())
            #expect(uploaded.name == "a b#c.txt")
            let when = Date(timeIntervalSince1970: 1_700_000_000)
            let moved = try await graph.update(driveID: driveID, itemID: uploaded.id, name: "renamed.txt", parentID: accounts.id, modified: when,
                                               ifMatch: uploaded.eTag)
            #expect(moved.name == "renamed.txt")
            #expect(moved.parentReference?.id == accounts.id)
            #expect(moved.fileSystemInfo?.lastModifiedDateTime == "2023-11-14T22:13:20Z")
            do {
                _ = try await graph.update(driveID: driveID, itemID: uploaded.id, name: "again.txt", ifMatch: uploaded.eTag)
                Issue.record("a stale eTag was accepted")
            } catch let error as GraphError {
                #expect(error.status == 412)
                #expect(error.code == "resourceModified")
            }
            try await graph.delete(driveID: driveID, itemID: moved.id, ifMatch: moved.eTag)
            try await graph.delete(driveID: driveID, itemID: moved.id)  // already gone: fine
            await #expect(throws: GraphError.self) { _ = try await graph.item(driveID: driveID, itemID: moved.id) }
        }
    }

    @Test("column values are written type-checked; read-only and unknown columns and bad values are refused")
    func fields() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1) { sandbox in
            let graph = try sandbox.connections().graph
            let driveID = try await sandbox.info()["driveId"]!
            let document = try await graph.item(driveID: driveID, path: SeededPaths.acmeContract)
            let written = try await graph.updateFields(driveID: driveID, itemID: document.id, fields: [
                "DealIdentifier": "OPP-9", "Amount": 1250.5, "Confidential": true, "ExpiresOn": "2027-01-31T00:00:00Z", "DocumentType": "Proposal",
            ], ifMatch: document.eTag)
            #expect(written["DealIdentifier"]?.stringValue == "OPP-9")
            #expect(written["Amount"]?.doubleValue == 1250.5)
            #expect(written["Customer"]?.stringValue == "Acme Corp")  // untouched columns stay
            let fields = try await graph.fields(driveID: driveID, itemID: document.id)
            #expect(fields["Confidential"]?.boolValue == true)
            let after = try await graph.item(driveID: driveID, itemID: document.id)
            #expect(after.eTag != document.eTag)
            #expect(after.cTag == document.cTag)
            for (column, value): (String, JSONValue) in [("Modified", "2020-01-01T00:00:00Z"), ("NoSuchColumn", "x"), ("Amount", "lots"),
                                                         ("DealIdentifier", .string(String(repeating: "x", count: 65))), ("Confidential", "yes")] {
                do {
                    _ = try await graph.updateFields(driveID: driveID, itemID: document.id, fields: [column: value])
                    Issue.record("\(column) = \(value) was accepted")
                } catch let error as GraphError {
                    #expect(error.status == 400, "\(column)")
                }
            }
            await #expect(throws: GraphError.self) {
                _ = try await graph.updateFields(driveID: driveID, itemID: document.id, fields: ["Amount": 1], ifMatch: document.eTag)  // stale
            }
            #expect(try await sandbox.stats()["graph.fields.update"] == 7)

            // Every change is a version: a column change, a rename, new content. Newest first, the current one included.
            let renamed = try await graph.update(driveID: driveID, itemID: document.id, name: "MSA-2026 signed.pdf")
            let (path, data) = try Self.file(321, seed: 9)
            defer { unlink(path) }
            _ = try await graph.simpleUpload(driveID: driveID, to: .item(id: renamed.id), file: path, size: Int64(data.count), options: UploadOptions())
            let versions = try await graph.versions(driveID: driveID, itemID: document.id)
            let first = Int(Double(try #require(versions.last?.id))!)
            #expect(versions.map(\.id) == (first...(first + 3)).reversed().map { "\($0).0" })
            #expect(versions.first?.size == 321)
        }
    }

    @Test("a session upload streams fragments from the file and carries the mtime; it survives throttling and resets")
    func sessionUpload() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1) { sandbox in
            let graph = try sandbox.connections().graph
            let driveID = try await sandbox.info()["driveId"]!
            let accounts = try await graph.item(driveID: driveID, path: "Accounts")
            let (path, data) = try Self.file(5 * 327_680 + 999, seed: 2)
            defer { unlink(path) }
            try await sandbox.admin("faults", ["faults": "503:0.15,reset:0.05", "retryAfter": 0, "seed": 3])
            let when = Date(timeIntervalSince1970: 1_600_000_000)
            let item = try await graph.sessionUpload(driveID: driveID, to: .child(parentID: accounts.id, name: "big.bin"), file: path,
                                                     size: Int64(data.count), options: UploadOptions(conflictBehavior: .fail, modified: when, fragmentSize: 400_000))
            try await sandbox.admin("faults", ["faults": ""])
            #expect(item.size == Int64(data.count))
            #expect(item.file?.hashes?.quickXorHash == QuickXorHash.hash(data))
            #expect(item.fileSystemInfo?.lastModifiedDateTime == "2020-09-13T12:26:40Z")
            #expect(try await graph.download(driveID: driveID, itemID: item.id).data == data)
            let stats = try await sandbox.stats()
            #expect(stats["graph.upload.chunk", default: 0] >= 6)  // 400,000 rounds down to one 320 KiB unit: six fragments
            #expect(stats["faults", default: 0] > 0)  // the fault sequence is seeded: some fragments were throttled or dropped

            // Over the same item by id, guarded by its eTag: replaced in place.
            let (smaller, smallerData) = try Self.file(10, seed: 3)
            defer { unlink(smaller) }
            let replaced = try await graph.sessionUpload(driveID: driveID, to: .item(id: item.id), file: smaller, size: 10,
                                                         options: UploadOptions(ifMatch: item.eTag, modified: when))
            #expect(replaced.id == item.id)
            #expect(try await graph.download(driveID: driveID, itemID: item.id).data == smallerData)
            // A taken name with `fail` is a 409 from the last fragment.
            do {
                _ = try await graph.sessionUpload(driveID: driveID, to: .child(parentID: accounts.id, name: "big.bin"), file: smaller, size: 10,
                                                  options: UploadOptions(conflictBehavior: .fail))
                Issue.record("a name conflict was accepted")
            } catch let error as GraphError {
                #expect(error.status == 409)
                #expect(error.code == "nameAlreadyExists")
            }
        }
    }

    @Test("a session that accepts fragments without advancing, or outlasts its time limit, stops with UploadStalled")
    func stalledSession() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1) { sandbox in
            let graph = try sandbox.connections().graph
            let driveID = try await sandbox.info()["driveId"]!
            let accounts = try await graph.item(driveID: driveID, path: "Accounts")
            let (path, data) = try Self.file(3 * 327_680, seed: 4)
            defer { unlink(path) }
            try await sandbox.admin("faults", ["faults": "stall:1"])
            do {
                _ = try await graph.sessionUpload(driveID: driveID, to: .child(parentID: accounts.id, name: "stuck.bin"), file: path,
                                                  size: Int64(data.count), options: UploadOptions(conflictBehavior: .fail, fragmentSize: 327_680))
                Issue.record("an upload that never advanced returned")
            } catch let error as UploadStalled {
                #expect(error.reason.contains("without the session moving"))
            }
            #expect(try await sandbox.stats()["graph.upload.stalled", default: 0] == 3)
            do {
                _ = try await graph.sessionUpload(driveID: driveID, to: .child(parentID: accounts.id, name: "slow.bin"), file: path,
                                                  size: Int64(data.count), options: UploadOptions(conflictBehavior: .fail, fragmentSize: 327_680,
                                                                                                   stalledFragments: 1_000_000, timeLimit: .milliseconds(300)))
                Issue.record("an upload past its time limit returned")
            } catch let error as UploadStalled {
                #expect(error.reason.contains("longer than its limit"))
            }
            try await sandbox.admin("faults", ["faults": ""])
            let item = try await graph.sessionUpload(driveID: driveID, to: .child(parentID: accounts.id, name: "stuck.bin"), file: path,
                                                     size: Int64(data.count), options: UploadOptions(conflictBehavior: .fail, fragmentSize: 327_680))
            #expect(item.size == Int64(data.count))
        }
    }
}
