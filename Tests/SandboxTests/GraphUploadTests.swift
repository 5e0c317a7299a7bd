import Foundation
import Graph
import HTTP
import QuickXor
import Services
import Testing
import TestSupport

/// The sandbox's uploads on the wire: simple PUT and upload sessions, as crmfs's write path will drive them.
@Suite("Graph uploads in the sandbox")
struct GraphUploadTests {
    typealias Wire = GraphWriteTests.Wire

    func withWire(_ body: (Wire, GraphClient, String, SandboxFixture) async throws -> Void) async throws {
        try await withSandbox(records: 2, docsPerRecord: 1) { sandbox in
            let connections = try sandbox.connections()
            let driveID = try await sandbox.info()["driveId"]!
            try await body(Wire(connections: connections, base: connections.graph.endpoint + "/drives/\(driveID)"), connections.graph, driveID, sandbox)
        }
    }

    /// A request to a pre-authenticated upload URL: never with Authorization.
    func unauthenticated(_ wire: Wire, _ method: String, _ url: String, body: Data = Data(), headers: HTTPHeaders = [:]) async throws -> (status: Int, body: [String: Any]) {
        let response = try await wire.connections.http.send(HTTPRequest(method: method, url: url, headers: headers, body: body.isEmpty && method != "PUT" ? .none : .bytes(body)))
        return (response.status, (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any] ?? [:])
    }

    static func bytes(_ count: Int, seed: UInt8) -> Data { Data((0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }) }

    @Test("simple PUT creates with 201 and replaces with 200; If-Match and conflict behaviour are honoured")
    func simpleUpload() async throws {
        try await withWire { wire, graph, driveID, sandbox in
            let first = Self.bytes(100_000, seed: 1), second = Self.bytes(5_000, seed: 2)
            let put = { (path: String, data: Data, headers: HTTPHeaders) async throws -> (status: Int, body: [String: Any]) in
                let response = try await wire.connections.http.send(HTTPRequest(method: "PUT", url: wire.base + path, headers: headers, body: .bytes(data)),
                                                                    auth: wire.connections.graphToken)
                return (response.status, (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any] ?? [:])
            }
            let created = try await put("/root:/Accounts/notes.txt:/content", first, [:])
            #expect(created.status == 201)
            let id = try #require(created.body["id"] as? String)
            #expect((created.body["file"] as? [String: Any]).flatMap { ($0["hashes"] as? [String: Any])?["quickXorHash"] as? String } == QuickXorHash.hash(first))
            let refused = try await put("/root:/Accounts/notes.txt:/content?@microsoft.graph.conflictBehavior=fail", second, [:])
            #expect(refused.status == 409)
            let stale = try await put("/items/\(id)/content", second, ["If-Match": "\"{00000000-0000-0000-0000-000000000000},1\""])
            #expect(stale.status == 412)
            let replaced = try await put("/items/\(id)/content", second, ["If-Match": created.body["eTag"] as! String])
            #expect(replaced.status == 200)
            #expect(replaced.body["size"] as? Int == second.count)
            #expect(try await graph.download(driveID: driveID, itemID: id).data == second)
            #expect(try await sandbox.stats()["graph.upload.simple"] == 4)
        }
    }

    @Test("an upload session takes 320 KiB-multiple fragments in order and commits with the bytes, hash and mtime")
    func uploadSession() async throws {
        try await withWire { wire, graph, driveID, sandbox in
            let unit = 320 * 1024
            let data = Self.bytes(3 * unit + 1234, seed: 3)
            let session = try await wire.send("POST", "/root:/Accounts/big.bin:/createUploadSession", json: ["item": [
                "@microsoft.graph.conflictBehavior": "fail", "name": "big.bin",
                "fileSystemInfo": ["lastModifiedDateTime": "2024-05-02T11:12:13Z"],
            ]])
            #expect(session.status == 200)
            let url = try #require(session.body["uploadUrl"] as? String)
            #expect(session.body["nextExpectedRanges"] as? [String] == ["0-"])
            func fragment(_ range: Range<Int>) async throws -> (status: Int, body: [String: Any]) {
                try await unauthenticated(wire, "PUT", url, body: data.subdata(in: range),
                                          headers: ["Content-Range": "bytes \(range.lowerBound)-\(range.upperBound - 1)/\(data.count)"])
            }

            let withToken = try await wire.connections.http.send(HTTPRequest(method: "PUT", url: url, headers: ["Content-Range": "bytes 0-\(unit - 1)/\(data.count)"],
                                                                             body: .bytes(data.subdata(in: 0..<unit))), auth: wire.connections.graphToken)
            #expect(withToken.status == 401)
            let odd = try await fragment(0..<1000)
            #expect(odd.status == 400)
            let firstTwo = try await fragment(0..<2 * unit)
            #expect(firstTwo.status == 202)
            #expect(firstTwo.body["nextExpectedRanges"] as? [String] == ["\(2 * unit)-"])
            let overlap = try await fragment(unit..<3 * unit)
            #expect(overlap.status == 416)
            let skip = try await fragment(3 * unit..<data.count)
            #expect(skip.status == 416)
            let status = try await unauthenticated(wire, "GET", url)
            #expect(status.body["nextExpectedRanges"] as? [String] == ["\(2 * unit)-"])
            let last = try await fragment(2 * unit..<data.count)
            #expect(last.status == 201)
            let id = try #require(last.body["id"] as? String)
            #expect((last.body["fileSystemInfo"] as? [String: Any])?["lastModifiedDateTime"] as? String == "2024-05-02T11:12:13Z")
            #expect(try await graph.download(driveID: driveID, itemID: id).data == data)
            #expect(try await unauthenticated(wire, "GET", url).status == 404)  // committed: gone

            // A second session for the same name with the default behaviour fails at the last fragment, with 409.
            let again = try await wire.send("POST", "/root:/Accounts/big.bin:/createUploadSession", json: [:])
            let againURL = try #require(again.body["uploadUrl"] as? String)
            let clash = try await unauthenticated(wire, "PUT", againURL, body: Data("x".utf8), headers: ["Content-Range": "bytes 0-0/1"])
            #expect(clash.status == 409)
            #expect(Wire.errorCode(clash.body) == "nameAlreadyExists")

            // Over the existing item, with replace: 200 and the new bytes.
            let replace = try await wire.send("POST", "/items/\(id)/createUploadSession",
                                              json: ["item": ["@microsoft.graph.conflictBehavior": "replace"]], headers: ["If-Match": last.body["eTag"] as! String])
            let replaceURL = try #require(replace.body["uploadUrl"] as? String)
            let replaced = try await unauthenticated(wire, "PUT", replaceURL, body: Data("new".utf8), headers: ["Content-Range": "bytes 0-2/3"])
            #expect(replaced.status == 200)
            #expect(try await graph.download(driveID: driveID, itemID: id).data == Data("new".utf8))

            // Expired and cancelled sessions answer 404.
            let expiring = try await wire.send("POST", "/root:/Accounts/later.bin:/createUploadSession", json: [:])
            let expiringURL = try #require(expiring.body["uploadUrl"] as? String)
            try await sandbox.admin("uploads/expire")
            let expired = try await unauthenticated(wire, "PUT", expiringURL, body: Data("x".utf8), headers: ["Content-Range": "bytes 0-0/1"])
            #expect(expired.status == 404)
            #expect(Wire.innerCode(expired.body) == "uploadSessionNotFound")
            let cancelled = try await wire.send("POST", "/root:/Accounts/cancel.bin:/createUploadSession", json: [:])
            let cancelledURL = try #require(cancelled.body["uploadUrl"] as? String)
            #expect(try await unauthenticated(wire, "DELETE", cancelledURL).status == 204)
            #expect(try await unauthenticated(wire, "GET", cancelledURL).status == 404)

            let stats = try await sandbox.stats()
            #expect(stats["graph.upload.session"] == 5)
            #expect(stats["graph.upload.chunk", default: 0] >= 7)
        }
    }
}
