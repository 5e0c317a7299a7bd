import Foundation
import Graph
import HTTP
import QuickXor
@testable import Sandbox
import SharePointCosts
import Testing
import TestSupport

/// The sandbox costs what the real services cost: time per request, a cap per stream, and SharePoint's
/// budget of resource units (docs/wire-facts.md G11). Lower bounds only: a busy machine can only add time.
@Suite("the sandbox under load, as the real services are")
struct ServiceLoadTests {
    /// Raw Graph GETs with the app's token, so a test sees the headers.
    struct RawGraph {
        let sandbox: SandboxFixture
        let token: String

        init(_ sandbox: SandboxFixture) async throws {
            self.sandbox = sandbox
            token = try await sandbox.connections().graphToken.token().value.exposedValue
        }

        func get(_ path: String) async throws -> HTTPResponse {
            try await sandbox.transport.perform(HTTPRequest(url: "\(sandbox.baseURL)/v1.0\(path)", headers: ["Authorization": "Bearer \(token)"]))
        }
    }

    static func seconds(_ body: () async throws -> Void) async rethrows -> Double {
        let start = ContinuousClock.now
        try await body()
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    @Test("each request waits the latency, give or take the jitter")
    func latencyWithJitter() async throws {
        try await withSandbox(records: 3, docsPerRecord: 1) { sandbox in
            let driveID = try await sandbox.info()["driveId"]!
            let graph = try await RawGraph(sandbox)
            try await sandbox.admin("faults", ["latencyMs": 150, "latencyJitterMs": 100])
            var times: [Double] = []
            for _ in 0..<12 {
                times.append(try await Self.seconds { _ = try await graph.get("/drives/\(driveID)/root") })
            }
            #expect(times.allSatisfy { $0 >= 0.045 }, "\(times)")
            // Drawn evenly from 50 to 250 ms: twelve draws are not all alike.
            #expect(times.max()! - times.min()! >= 0.03, "\(times)")
            #expect(times.reduce(0, +) / Double(times.count) >= 0.1, "\(times)")
        }
    }

    @Test("a download and an upload move no faster than the stream rate")
    func streamRate() async throws {
        try await withSandbox(records: 3, docsPerRecord: 1) { sandbox in
            let connections = try sandbox.connections()
            let driveID = try await sandbox.info()["driveId"]!
            let bytes = Data((0..<(600 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 31) })
            let file = sandbox.directory.appendingPathComponent("upload.bin")
            try bytes.write(to: file)
            let root = try await connections.graph.item(driveID: driveID, path: "Accounts")
            _ = try await connections.graph.children(driveID: driveID, itemID: root.id)
            try await sandbox.admin("faults", ["streamBytesPerSecond": 1 << 20])
            var item = try await connections.graph.item(driveID: driveID, itemID: root.id)
            let upload = try await Self.seconds {
                item = try await connections.graph.simpleUpload(driveID: driveID, to: .child(parentID: root.id, name: "paced.bin"),
                                                                 file: file.path, size: Int64(bytes.count), options: .init())
            }
            var received = Data()
            let download = try await Self.seconds {
                received = try await connections.graph.download(driveID: driveID, itemID: item.id).data
            }
            #expect(received == bytes)
            // 600 KiB at 1 MiB/s: at least 0.55 s each way.
            #expect(upload >= 0.55, "upload took \(upload) s")
            #expect(download >= 0.55, "download took \(download) s")
        }
    }

    @Test("past its budget of resource units a minute, Graph answers 429 with Retry-After; RateLimit headers from 80 %")
    func resourceUnitBudget() async throws {
        try await withSandbox(records: 3, docsPerRecord: 1) { sandbox in
            let driveID = try await sandbox.info()["driveId"]!
            let graph = try await RawGraph(sandbox)
            try await sandbox.admin("faults", ["ruPerMinute": 10])
            // A single item costs 1, a listing 2: 1 + 2 + 1 + 2 = 6, no headers yet (under 80 %).
            for path in ["/drives/\(driveID)/root", "/drives/\(driveID)/root/children", "/drives/\(driveID)/root", "/drives/\(driveID)/root/children"] {
                let response = try await graph.get(path)
                #expect(response.status == 200)
                #expect(response.headers["RateLimit-Remaining"] == nil)
            }
            // 8 of 10: the headers say how much is left and when the window frees.
            let warned = try await graph.get("/drives/\(driveID)/root/children")
            #expect(warned.status == 200)
            #expect(warned.headers["RateLimit-Limit"] == "10")
            #expect(warned.headers["RateLimit-Remaining"] == "2")
            #expect(Int(warned.headers["RateLimit-Reset"] ?? "") .map { (1...60).contains($0) } == true)
            _ = try await graph.get("/drives/\(driveID)/root/children")  // 10 of 10
            let throttled = try await graph.get("/drives/\(driveID)/root")
            #expect(throttled.status == 429)
            #expect(Int(throttled.headers["Retry-After"] ?? "").map { (1...60).contains($0) } == true)
            #expect(String(decoding: throttled.body, as: UTF8.self).contains("activityLimitReached"))
            // Throttled requests count too, and the token endpoint is not SharePoint's to budget.
            #expect(try await graph.get("/drives/\(driveID)/root").status == 429)
            #expect(try await sandbox.stats()["throttled"] == 2)
            try await sandbox.admin("faults", ["ruPerMinute": 0])
            #expect(try await graph.get("/drives/\(driveID)/root").status == 200)
        }
    }

    @Test("the budget's window slides: throttled requests count, and what was spent a minute ago no longer does")
    func budgetWindowSlides() {
        let budget = ResourceBudget(unitsPerMinute: 4)
        func retryAfter(_ decision: ResourceBudget.Decision) -> Int? {
            if case .throttled(let seconds, _) = decision { seconds } else { nil }
        }
        #expect(budget.charge(2, now: 0) == .allowed(headers: []))
        #expect(retryAfter(budget.charge(2, now: 10)) == nil)
        // 4 of 4 spent: throttled until the 2 units of t=0 leave the window at t=60.
        #expect(retryAfter(budget.charge(1, now: 20)) == 40)
        // At t=61 the window holds t=10 (2) and the throttled t=20 (1): 3 of 4, so it goes.
        #expect(retryAfter(budget.charge(1, now: 61)) == nil)
        #expect(retryAfter(budget.charge(1, now: 62)) == 8)
        #expect(ResourceCost.of(method: "GET", path: "/v1.0/drives/d/items/i/children", query: [:], service: .graph) == 2)
        #expect(ResourceCost.of(method: "GET", path: "/v1.0/drives/d/root/delta", query: ["token": "x"], service: .graph) == 1)
        #expect(ResourceCost.of(method: "GET", path: "/v1.0/drives/d/root/delta", query: [:], service: .graph) == 2)
        #expect(ResourceCost.of(method: "PATCH", path: "/v1.0/drives/d/items/i", query: [:], service: .graph) == 2)
        #expect(ResourceCost.of(method: "GET", path: "/v1.0/drives/d/items/i", query: ["$expand": "permissions"], service: .graph) == 5)
        #expect(ResourceCost.of(method: "POST", path: "/tenant/oauth2/v2.0/token", query: [:], service: .entra) == 0)
        // The client prices the same requests from their URLs, by the same rule.
        #expect(ResourceUnits.cost(method: "GET", url: "https://graph.example/v1.0/drives/d/root/delta?token=x") == 1)
        #expect(ResourceUnits.cost(method: "GET", url: "https://graph.example/v1.0/drives/d/root/delta") == 2)
        #expect(ResourceUnits.cost(method: "GET", url: "https://graph.example/v1.0/drives/d/items/i?%24expand=permissions") == 5)
        #expect(ResourceUnits.cost(method: "GET", url: "https://graph.example/v1.0/drives/d/items/i/children?$top=999") == 2)
        #expect(ResourceUnits.cost(method: "POST", url: "https://graph.example/v1.0/$batch") == 0)
    }

    /// A small .docx (a zip) made by Python's zipfile, as an independent writer of the format.
    static func officeDocument(at url: URL) async throws -> Data {
        let made = try await Tools.run("python3", ["-c", """
            import sys, zipfile
            with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:
                z.writestr('[Content_Types].xml', '<Types/>')
                z.writestr('docProps/custom.xml', '<Properties/>')
                z.writestr('word/document.xml', '<w:document>' + 'text ' * 500 + '</w:document>')
            """, url.path])
        #expect(made.status == 0, "\(made.output)")
        return try Data(contentsOf: url)
    }

    /// The names in a zip, as Python's zipfile reads them after checking every entry's CRC.
    static func zipNames(_ data: Data, in directory: URL) async throws -> [String] {
        let file = directory.appendingPathComponent("check-\(UUID().uuidString).zip")
        try data.write(to: file)
        let listed = try await Tools.run("python3", ["-c", """
            import sys, zipfile
            z = zipfile.ZipFile(sys.argv[1])
            assert z.testzip() is None
            print('\\n'.join(z.namelist()))
            """, file.path])
        #expect(listed.status == 0, "\(listed.output)")
        return listed.output.split(separator: "\n").map(String.init)
    }

    @Test("an uploaded Office document is rewritten as SharePoint does: another size and hash, still a sound zip, and again on every upload")
    func officeDocumentsRewritten() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1) { sandbox in
            let connections = try sandbox.connections()
            let driveID = try await sandbox.info()["driveId"]!
            let folder = try await connections.graph.item(driveID: driveID, path: "Accounts")
            let local = sandbox.directory.appendingPathComponent("Plan.docx")
            let sent = try await Self.officeDocument(at: local)
            func upload(_ file: URL, as name: String) async throws -> DriveItem {
                let size = try FileManager.default.attributesOfItem(atPath: file.path)[.size] as! Int64
                return try await connections.graph.simpleUpload(driveID: driveID, to: .child(parentID: folder.id, name: name), file: file.path,
                                                                size: size, options: .init())
            }
            let first = try await upload(local, as: "Plan.docx")
            #expect(first.size != Int64(sent.count))
            #expect(first.file?.hashes?.quickXorHash != QuickXorHash.hash(sent))
            let stored = try await connections.graph.download(driveID: driveID, itemID: first.id).data
            #expect(Int64(stored.count) == first.size)
            #expect(QuickXorHash.hash(stored) == first.file?.hashes?.quickXorHash)
            let names = try await Self.zipNames(stored, in: sandbox.directory)
            #expect(names.filter { $0 == "docProps/custom.xml" }.count == 1, "\(names)")
            #expect(names.contains("word/document.xml"))
            // The service's own copy, sent back unchanged, is rewritten again: it never converges.
            let again = sandbox.directory.appendingPathComponent("again.docx")
            try stored.write(to: again)
            let second = try await upload(again, as: "Plan.docx")
            #expect(second.file?.hashes?.quickXorHash != QuickXorHash.hash(stored))
            // Other files, and a .docx that is not a zip, are stored as sent.
            let text = sandbox.directory.appendingPathComponent("notes.docx")
            try Data("not a zip".utf8).write(to: text)
            #expect(try await upload(text, as: "notes.docx").size == 9)
            #expect(try await upload(local, as: "Plan.pdf").size == Int64(sent.count))
        }
        // Turned off, the sandbox stores Office documents as sent.
        try await withSandbox(records: 2, docsPerRecord: 1, configure: { $0.rewriteOfficeFiles = false }) { sandbox in
            let connections = try sandbox.connections()
            let driveID = try await sandbox.info()["driveId"]!
            let folder = try await connections.graph.item(driveID: driveID, path: "Accounts")
            let local = sandbox.directory.appendingPathComponent("Plan.docx")
            let sent = try await Self.officeDocument(at: local)
            let item = try await connections.graph.simpleUpload(driveID: driveID, to: .child(parentID: folder.id, name: "Plan.docx"),
                                                                file: local.path, size: Int64(sent.count), options: .init())
            #expect(item.size == Int64(sent.count))
        }
    }

    @Test("other users at work: each kind of change lands where the service shows it, and --churn makes them at its rate")
    func churn() async throws {
        try await withSandbox(records: 6, docsPerRecord: 2) { sandbox in
            let connections = try sandbox.connections()
            let driveID = try await sandbox.info()["driveId"]!
            let link = try await connections.graph.latestDeltaLink(driveID: driveID)
            var changed: [String: String] = [:]
            for kind in ["editDocument", "addDocument", "renameDocument", "moveDocument", "deleteDocument",
                         "changeField", "renameRecord", "createRecord", "deleteRecord"] {
                let change = try await sandbox.admin("churn", ["once": kind])
                #expect(change["kind"] as? String == kind)
                changed[kind] = try #require(change["target"] as? String)
            }
            // Each is listed, with what it did.
            let listed = try await sandbox.transport.perform(HTTPRequest(url: "\(sandbox.baseURL)/_sandbox/churn"))
            let log = (try JSONSerialization.jsonObject(with: listed.body) as? [String: Any])?["changes"] as? [[String: Any]] ?? []
            #expect(log.count == 9)
            #expect(Set(log.compactMap { $0["target"] as? String }) == Set(changed.values))
            #expect(Set(log.compactMap { $0["kind"] as? String }) == Set(changed.keys))
            // The documents' changes are in the drive's delta, the deletion as a deletion.
            var items: [String: DriveItem] = [:]
            var next: String? = link
            while let current = next {
                let page = try await connections.graph.delta(driveID: driveID, link: current)
                for item in page.items { items[item.id] = item }
                next = page.nextLink
            }
            for kind in ["editDocument", "addDocument", "renameDocument", "moveDocument"] {
                #expect(items[changed[kind]!].map { !$0.isDeleted } == true, "\(kind) not in delta")
            }
            #expect(items[changed["deleteDocument"]!]?.isDeleted == true)
            // The records' changes are in the CRM: fields, names, a new account, one in the recycle bin.
            let renamed = try await connections.salesforce.record("Account", id: changed["renameRecord"]!)
            #expect(renamed["Name"]?.stringValue?.hasPrefix("Renamed Account") == true)
            #expect(try await connections.salesforce.record("Account", id: changed["createRecord"]!)["Name"]?.stringValue?.hasPrefix("New Account") == true)
            let live = try await connections.salesforce.query("SELECT Id FROM Account").compactMap(\.id)
            #expect(!live.contains(changed["deleteRecord"]!))
            let all = try await connections.salesforce.query("SELECT Id, IsDeleted FROM Account", includeDeleted: true, batchSize: nil)
            #expect(all.first { $0.id == changed["deleteRecord"] }?["IsDeleted"] == .bool(true))
            // A stream of them, at its rate, until stopped.
            // (20 a second: five more come within a second, or within 20 on a test machine at its busiest.)
            try await sandbox.admin("churn", ["perMinute": 1200])
            let deadline = ContinuousClock.now + .seconds(20)
            while try await sandbox.stats()["churn"] ?? 0 < 9 + 5, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
            }
            try await sandbox.admin("churn", ["perMinute": 0])
            try await Task.sleep(for: .milliseconds(200))  // a change under way when it stopped lands
            let made = try await sandbox.stats()["churn"] ?? 0
            #expect(made >= 9 + 5, "\(made) changes")
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await sandbox.stats()["churn"] == made, "stopped")
        }
    }
}
