import Foundation
import Graph
import HTTP
import QuickXor
import Services
import Testing
import TestSupport
import Writeback

/// The uploader against the sandbox: staged bytes in, the document out, every step in the journal.
@Suite("uploads of staged changes")
struct UploaderTests {
    struct Setup {
        let graph: GraphClient
        let driveID: String
        let staging: StagingArea
        let journal: Journal
        let uploader: Uploader
        let sandbox: SandboxFixture

        /// Stages `data` and records an upload of it.
        func stage(_ data: Data, name: String, parentID: String? = nil, itemID: String? = nil, modified: Date? = nil, baseETag: String? = nil) throws -> PendingChange {
            let file = try staging.stage(data)
            return try journal.add(PendingChange(kind: .upload, driveID: driveID, name: name, itemID: itemID, parentItemID: parentID,
                                                 stagedFile: file, size: Int64(data.count), modified: modified, baseETag: baseETag))
        }
    }

    func withUploader(_ body: (Setup) async throws -> Void) async throws {
        try await withSandbox(records: 2, docsPerRecord: 1) { sandbox in
            let root = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("crmfs-uploader-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: root) }
            let graph = try sandbox.connections().graph
            let staging = try StagingArea(directory: root.appendingPathComponent("staging"))
            let journal = try Journal(path: root.appendingPathComponent("journal.sqlite").path)
            let uploader = Uploader(graph: graph, staging: staging, journal: journal, fragmentSize: 1 << 20, simpleUploadMax: 4 << 20)
            try await body(Setup(graph: graph, driveID: try await sandbox.info()["driveId"]!, staging: staging, journal: journal,
                                 uploader: uploader, sandbox: sandbox))
        }
    }

    static func bytes(_ count: Int, seed: UInt8) -> Data { Data((0..<count).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ Int(seed)) }) }

    @Test("a file whose mtime was set goes in a session that carries it; one without goes in a single PUT")
    func mtimeChoosesTheRoute() async throws {
        try await withUploader { setup in
            let accounts = try await setup.graph.item(driveID: setup.driveID, path: "Accounts")
            let when = Date(timeIntervalSince1970: 1_650_000_000)
            let timed = try setup.stage(Self.bytes(2000, seed: 1), name: "timed.txt", parentID: accounts.id, modified: when)
            let item = try await setup.uploader.upload(timed)
            #expect(item.fileSystemInfo?.lastModifiedDateTime == "2022-04-15T05:20:00Z")
            let recorded = try #require(try setup.journal.change(id: timed.id!))
            #expect(recorded.state == .linking)
            #expect(recorded.itemID == item.id)

            let plain = try setup.stage(Self.bytes(3000, seed: 2), name: "plain.txt", parentID: accounts.id)
            _ = try await setup.uploader.upload(plain)
            let stats = try await setup.sandbox.stats()
            #expect(stats["graph.upload.session"] == 1)
            #expect(stats["graph.upload.simple"] == 1)
            #expect(stats["graph.patch", default: 0] == 0)  // the mtime never costs a second version
        }
    }

    @Test("an upload of a file still being flushed sends all but its last fragment, then finishes once it is sealed")
    func waitsForTheSeal() async throws {
        try await withUploader { setup in
            let accounts = try await setup.graph.item(driveID: setup.driveID, path: "Accounts")
            // Fragments of 960 KiB (1 MiB rounded down to 320 KiB steps): three whole ones and a last one.
            let data = Self.bytes(3 * 983_040 + 1000, seed: 3)
            var change = try setup.stage(data, name: "flushing.bin", parentID: accounts.id, modified: Date(timeIntervalSince1970: 1_650_000_000))
            try setup.journal.update(id: change.id!) { $0.sealed = false }
            change.sealed = false
            let upload = Task { try await setup.uploader.upload(change) }
            var chunks = 0
            for _ in 0..<200 where chunks < 3 {
                try await Task.sleep(for: .milliseconds(10))
                chunks = try await setup.sandbox.stats()["graph.upload.chunk"] ?? 0
            }
            try await Task.sleep(for: .milliseconds(200))
            #expect(try await setup.sandbox.stats()["graph.upload.chunk"] == 3, "the last fragment waits")
            try setup.journal.update(id: change.id!) { $0.sealed = true }
            setup.uploader.seals.sealed(change.id!)
            let item = try await upload.value
            #expect(item.size == Int64(data.count))
            #expect(try await setup.sandbox.stats()["graph.upload.chunk"] == 4)
        }
    }

    @Test("an upload whose flush failed stops before its last fragment with the reason, and waits for nothing")
    func failedSealStopsTheUpload() async throws {
        try await withUploader { setup in
            let accounts = try await setup.graph.item(driveID: setup.driveID, path: "Accounts")
            var change = try setup.stage(Self.bytes(3 << 20, seed: 6), name: "unsealed.bin", parentID: accounts.id, modified: Date())
            try setup.journal.update(id: change.id!) { $0.sealed = false }
            change.sealed = false
            let upload = Task { try await setup.uploader.upload(change) }
            try await Task.sleep(for: .milliseconds(200))
            setup.uploader.seals.failed(change.id!, reason: "fsync: Input/output error")
            do {
                _ = try await upload.value
                Issue.record("an upload whose bytes were never durable completed")
            } catch let failure as SealFailure {
                #expect(failure.description.contains("Input/output error"))
            }
            #expect(try await setup.graph.children(driveID: setup.driveID, itemID: accounts.id).allSatisfy { $0.name != "unsealed.bin" })
        }
    }

    @Test("a change an interrupted fsync left unsealed is set aside at the next start, not sent")
    func unsealedIsDiscarded() async throws {
        try await withUploader { setup in
            var change = try setup.stage(Self.bytes(100, seed: 4), name: "torn.bin", parentID: "01X")
            try setup.journal.update(id: change.id!) { $0.sealed = false }
            change.sealed = false
            let discarded = try setup.journal.discardUnsealed()
            #expect(discarded.map(\.name) == ["torn.bin"])
            #expect(try setup.journal.change(id: change.id!) == nil)
        }
    }

    @Test("an overwrite based on an old eTag is a conflict, recorded, and the remote document is untouched")
    func conflict() async throws {
        try await withUploader { setup in
            let document = try await setup.graph.item(driveID: setup.driveID, path: SeededPaths.acmeContract)
            let before = try await setup.graph.download(driveID: setup.driveID, itemID: document.id).data
            let change = try setup.stage(Self.bytes(100, seed: 3), name: "MSA-2026.pdf", itemID: document.id,
                                         baseETag: "\"{00000000-0000-0000-0000-000000000000},1\"")
            do {
                _ = try await setup.uploader.upload(change)
                Issue.record("a stale overwrite went through")
            } catch UploadFailure.conflict(let name) {
                #expect(name == "MSA-2026.pdf")
            }
            #expect(try setup.journal.change(id: change.id!)?.state == .conflict)
            #expect(try await setup.graph.download(driveID: setup.driveID, itemID: document.id).data == before)

            // Based on the current eTag, the overwrite goes through.
            let current = try setup.stage(Self.bytes(100, seed: 4), name: "MSA-2026.pdf", itemID: document.id, baseETag: document.eTag)
            let replaced = try await setup.uploader.upload(current)
            #expect(replaced.id == document.id)
        }
    }

    @Test("an upload cut off after some fragments resumes in its session after a restart, sending only the rest")
    func resumesSession() async throws {
        try await withUploader { setup in
            let accounts = try await setup.graph.item(driveID: setup.driveID, path: "Accounts")
            let data = Self.bytes(3_670_016, seed: 6)
            let change = try setup.stage(data, name: "resume.bin", parentID: accounts.id, modified: Date(timeIntervalSince1970: 1_600_000_000))
            // The earlier daemon opened a session and sent two fragments before it was killed.
            let connections = try setup.sandbox.connections()
            let created = try await connections.http.send(
                HTTPRequest(method: "POST", url: "\(connections.graph.endpoint)/drives/\(setup.driveID)/items/\(accounts.id):/resume.bin:/createUploadSession",
                            headers: ["Content-Type": "application/json"], body: .bytes(Data("{}".utf8))), auth: connections.graphToken)
            let url = try #require((try JSONSerialization.jsonObject(with: created.body) as? [String: Any])?["uploadUrl"] as? String)
            let fragment = 983_040
            for start in stride(from: 0, to: 2 * fragment, by: fragment) {
                let response = try await connections.http.send(HTTPRequest(method: "PUT", url: url,
                    headers: ["Content-Range": "bytes \(start)-\(start + fragment - 1)/\(data.count)"], body: .bytes(data.subdata(in: start..<start + fragment))))
                #expect(response.status == 202)
            }
            try setup.journal.update(id: change.id!) { $0.state = .uploading; $0.uploadURL = url }
            try await setup.sandbox.admin("stats/reset")

            let item = try await setup.uploader.upload(try #require(try setup.journal.change(id: change.id!)))
            let stats = try await setup.sandbox.stats()
            #expect(stats["graph.upload.session", default: 0] == 0)
            #expect(stats["graph.upload.chunk"] == 2)  // 1,703,936 bytes left: one 983,040-byte fragment and the rest
            #expect(try await setup.graph.download(driveID: setup.driveID, itemID: item.id).data == data)
            #expect(try setup.journal.change(id: change.id!)?.uploadURL == nil)
        }
    }

    @Test("a multi-fragment upload through throttling and dropped connections arrives intact")
    func faults() async throws {
        try await withUploader { setup in
            let accounts = try await setup.graph.item(driveID: setup.driveID, path: "Accounts")
            let data = Self.bytes(5 << 20 + 77, seed: 5)
            let change = try setup.stage(data, name: "big.bin", parentID: accounts.id, modified: Date(timeIntervalSince1970: 1_600_000_000))
            try await setup.sandbox.admin("faults", ["faults": "429:0.1,503:0.1,reset:0.05", "retryAfter": 0, "seed": 11])
            let item = try await setup.uploader.upload(change)
            try await setup.sandbox.admin("faults", ["faults": ""])
            #expect(item.file?.hashes?.quickXorHash == QuickXorHash.hash(data))
            #expect(try await setup.graph.download(driveID: setup.driveID, itemID: item.id).data == data)
        }
    }
}
