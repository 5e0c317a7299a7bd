import Foundation
import Graph
import HTTP
import Services
import Testing
import TestSupport

/// `$batch` against the sandbox: the client's batches and the sandbox's rules for them (docs/wire-facts.md G12).
@Suite("Graph $batch against the sandbox")
struct GraphBatchTests {
    @Test("25 column writes go as three batches of 10 documents, each write with the read of its new version; a 429 inside a batch is retried alone")
    func columnWritesInBatches() async throws {
        try await withSandbox(records: 60, docsPerRecord: 1) { sandbox in
            let graph = try sandbox.connections().graph
            let driveID = try await sandbox.info()["driveId"]!
            let accounts = try await graph.item(driveID: driveID, path: "Accounts")
            var documents: [DriveItem] = []
            for folder in try await graph.children(driveID: driveID, itemID: accounts.id) where folder.isFolder {
                documents += try await graph.children(driveID: driveID, itemID: folder.id).filter { !$0.isFolder }
            }
            let chosen = Array(documents.prefix(25))
            #expect(chosen.count == 25)
            try await sandbox.admin("stats/reset")
            // The batch itself passes; its first request is throttled (Retry-After: 1).
            try await sandbox.admin("faults", ["retryAfter": 1, "next": ["none", "429"]])
            let results = await graph.stampFields(chosen.enumerated().map { index, item in
                FieldsUpdate(driveID: driveID, itemID: item.id, fields: ["DocumentType": .string("Batch \(index)")])
            })
            #expect(results.count == 25)
            for (index, item) in chosen.enumerated() {
                let stamped = try results[index].get()
                #expect(stamped.id == item.id)
                let now = try await graph.item(driveID: driveID, itemID: item.id)
                #expect(stamped.eTag == now.eTag && now.eTag != item.eTag, "document \(index) is answered as it is after the write")
                #expect(try await graph.fields(driveID: driveID, itemID: item.id)["DocumentType"] == .string("Batch \(index)"))
            }
            let stats = try await sandbox.stats()
            #expect(stats["graph.batch"] == 4, "10, 10, 5, then the throttled write again")
            #expect(stats["faults.429"] == 1)
            #expect(stats["graph.item"] == 24 + 1 + 25,
                    "24 reads inside the batches, the throttled write's read on its own (its first failed with it), and the 25 checks above")
        }
    }

    @Test("an id goes into a path as one segment: '/', '?', ':', '%' and the dot segments are escaped, Graph's own ids left as they are; the id check takes Graph's alphabet only")
    func idSegments() {
        #expect(GraphPath.segment("01ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") == "01ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        #expect(GraphPath.segment("b!AbC-_09") == "b!AbC-_09")
        #expect(GraphPath.segment("01A/content") == "01A%2Fcontent")
        #expect(GraphPath.segment("..") == "%2E%2E")
        #expect(GraphPath.segment(".") == "%2E")
        #expect(GraphPath.segment("01A?x") == "01A%3Fx")
        #expect(GraphPath.segment("01A:/x:") == "01A%3A%2Fx%3A")
        #expect(GraphPath.segment("01A%2F") == "01A%252F")
        #expect(GraphPath.isID("b!AbC-_09") && GraphPath.isID("01ABC") && GraphPath.isID("D4648F06C91D9D3D!54927"))
        #expect(!GraphPath.isID("") && !GraphPath.isID("..") && !GraphPath.isID("01A/content") && !GraphPath.isID("01A.b") && !GraphPath.isID(String(repeating: "A", count: 257)))
    }

    @Test("items read in a $batch: an id that is not one (ID/content, .., ID/children) reads as missing instead of reaching another path; each item is answered on its own")
    func itemsOneByOne() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1) { sandbox in
            let graph = try sandbox.connections().graph
            let driveID = try await sandbox.info()["driveId"]!
            let contract = try await graph.item(driveID: driveID, path: SeededPaths.acmeContract)
            let folder = try await graph.item(driveID: driveID, path: SeededPaths.acmeFolder)
            let odd = ["\(contract.id)/content", "..", "\(folder.id)/children"]
            let read = try await graph.items(driveID: driveID, ids: [contract.id] + odd)
            #expect(read[contract.id]??.id == contract.id)
            for id in odd {
                #expect(read[id] != nil && read[id]! == nil, "\(id) reads as missing")
            }

            // (One entry failing alone inside a batch is ChangeFeedTests/fleetEntriesOneByOne's: the sandbox
            // injects faults into whole requests, not into the requests inside a batch.)
            let each = try await graph.itemResults(driveID: driveID, ids: [contract.id, "01NOSUCHITEM"])
            #expect(each.count == 2)
            for (id, result) in each {
                guard case .success(let item) = result else { Issue.record("\(id) failed: \(result)"); continue }
                #expect(id == "01NOSUCHITEM" ? item == nil : item?.id == id)
            }
        }
    }

    @Test("the sandbox refuses more than 20 requests and duplicate ids, answers a failed dependency with 424, and costs each request")
    func sandboxRules() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1) { sandbox in
            let connections = try sandbox.connections()
            let token = try await connections.graphToken.token().value.exposedValue
            let driveID = try await sandbox.info()["driveId"]!
            func post(_ requests: [[String: Any]]) async throws -> (Int, [String: Any]) {
                let body = try JSONSerialization.data(withJSONObject: ["requests": requests])
                let response = try await sandbox.transport.perform(HTTPRequest(method: "POST", url: "\(sandbox.baseURL)/v1.0/$batch",
                                                                               headers: ["Authorization": "Bearer \(token)", "Content-Type": "application/json"],
                                                                               body: .bytes(body)))
                return (response.status, (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any] ?? [:])
            }
            let get: (String) -> [String: Any] = { id in ["id": id, "method": "GET", "url": "/drives/\(driveID)/root"] }
            #expect(try await post((1...21).map { get(String($0)) }).0 == 400)
            #expect(try await post([get("1"), get("1")]).0 == 400)
            let (status, body) = try await post([["id": "1", "method": "GET", "url": "/drives/\(driveID)/items/nope"],
                                                 ["id": "2", "method": "GET", "url": "/drives/\(driveID)/root", "dependsOn": ["1"]],
                                                 get("3")])
            #expect(status == 200)
            let responses = body["responses"] as? [[String: Any]] ?? []
            let statuses = Dictionary(responses.compactMap { answer in (answer["id"] as? String).map { ($0, answer["status"] as? Int ?? 0) } }, uniquingKeysWith: { $1 })
            #expect(statuses == ["1": 404, "2": 424, "3": 200])
            // Each request inside is charged on its own: a budget of 2 lets two of three through.
            try await sandbox.admin("faults", ["ruPerMinute": 2])
            let (_, throttledBody) = try await post([get("a"), get("b"), get("c")])
            let throttled = (throttledBody["responses"] as? [[String: Any]] ?? []).filter { $0["status"] as? Int == 429 }
            #expect(throttled.count == 1)
            #expect((throttled.first?["headers"] as? [String: String])?["Retry-After"] != nil)
        }
    }
}
