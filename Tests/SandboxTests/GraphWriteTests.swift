import Foundation
import Graph
import HTTP
import Services
import Testing
import TestSupport

/// The sandbox's item writes, on the wire: what crmfs's write path will send and must be answered.
@Suite("Graph item writes in the sandbox")
struct GraphWriteTests {
    struct Wire {
        let connections: Connections
        let base: String

        func send(_ method: String, _ path: String, json: [String: Any]? = nil, headers: HTTPHeaders = [:]) async throws -> (status: Int, body: [String: Any]) {
            var headers = headers
            var body = RequestBody.none
            if let json {
                headers["Content-Type"] = "application/json"
                body = .bytes(try JSONSerialization.data(withJSONObject: json))
            }
            let response = try await connections.http.send(HTTPRequest(method: method, url: base + path, headers: headers, body: body),
                                                           auth: connections.graphToken)
            let object = (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any] ?? [:]
            return (response.status, object)
        }

        static func errorCode(_ body: [String: Any]) -> String? { (body["error"] as? [String: Any])?["code"] as? String }
        static func innerCode(_ body: [String: Any]) -> String? {
            ((body["error"] as? [String: Any])?["innerError"] as? [String: Any])?["code"] as? String
        }
    }

    func withWire(_ body: (Wire, GraphClient, String) async throws -> Void) async throws {
        try await withSandbox(records: 3, docsPerRecord: 2) { sandbox in
            let connections = try sandbox.connections()
            let driveID = try await sandbox.info()["driveId"]!
            try await body(Wire(connections: connections, base: connections.graph.endpoint + "/drives/\(driveID)"), connections.graph, driveID)
        }
    }

    @Test("writes to one item at the same time each take effect whole: a column write beside an upload and a rename undoes neither")
    func concurrentWritesDoNotUndoEachOther() async throws {
        try await withWire { wire, graph, driveID in
            let folder = try await graph.item(driveID: driveID, path: "Accounts")
            let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("crmfs-concurrent-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: scratch) }
            try Data("first".utf8).write(to: scratch)
            let item = try await graph.simpleUpload(driveID: driveID, to: .child(parentID: folder.id, name: "busy.txt"), file: scratch.path,
                                                    size: 5, options: UploadOptions())
            for round in 0..<15 {
                let text = "version \(round)"
                let file = scratch.appendingPathExtension("\(round)")
                try Data(text.utf8).write(to: file)
                async let upload = graph.simpleUpload(driveID: driveID, to: .item(id: item.id), file: file.path, size: Int64(text.utf8.count),
                                                      options: UploadOptions(conflictBehavior: .replace))
                async let column = graph.updateFields(driveID: driveID, itemID: item.id, fields: ["DocumentType": .string(round % 2 == 0 ? "Quote" : "Note")])
                async let rename = wire.send("PATCH", "/items/\(item.id)", json: ["name": "busy \(round).txt"])
                _ = try await (upload, column)
                // Before: each request wrote back the whole row it had read, undoing what another had saved meanwhile.
                #expect(try await graph.download(driveID: driveID, itemID: item.id).data == Data(text.utf8), "round \(round)")
                #expect(try await graph.fields(driveID: driveID, itemID: item.id)["DocumentType"]?.stringValue == (round % 2 == 0 ? "Quote" : "Note"))
                let renamed = try await rename
                #expect(try await graph.item(driveID: driveID, itemID: item.id).name == "busy \(round).txt", "\(renamed.status) \(renamed.body)")
                // A time set on its own (as the mount sends one) beside a rename keeps the rename.
                async let time = wire.send("PATCH", "/items/\(item.id)", json: ["fileSystemInfo": ["lastModifiedDateTime": "2020-01-0\(round % 9 + 1)T00:00:00Z"]])
                async let again = wire.send("PATCH", "/items/\(item.id)", json: ["name": "busy \(round) again.txt"])
                _ = try await (time, again)
                #expect(try await graph.item(driveID: driveID, itemID: item.id).name == "busy \(round) again.txt")
                #expect(try await graph.item(driveID: driveID, itemID: item.id).fileSystemInfo?.lastModifiedDateTime?.hasPrefix("2020-01-0\(round % 9 + 1)") == true)
            }
        }
    }

    @Test("folders are created with 201, name conflicts answer 409 or are renamed, bad names 400")
    func createFolder() async throws {
        try await withWire { wire, graph, driveID in
            let accounts = try await graph.item(driveID: driveID, path: "Accounts")
            let created = try await wire.send("POST", "/items/\(accounts.id)/children", json: ["name": "New Folder", "folder": [String: Any]()])
            #expect(created.status == 201)
            #expect((created.body["folder"] as? [String: Any])?["childCount"] as? Int == 0)
            let again = try await wire.send("POST", "/items/\(accounts.id)/children", json: ["name": "new folder", "folder": [String: Any]()])
            #expect(again.status == 409)
            #expect(Wire.errorCode(again.body) == "nameAlreadyExists")
            let renamed = try await wire.send("POST", "/items/\(accounts.id)/children",
                                              json: ["name": "New Folder", "folder": [String: Any](), "@microsoft.graph.conflictBehavior": "rename"])
            #expect(renamed.status == 201)
            #expect(renamed.body["name"] as? String == "New Folder 1")
            let bad = try await wire.send("POST", "/items/\(accounts.id)/children", json: ["name": "a:b", "folder": [String: Any]()])
            #expect(bad.status == 400)
            #expect(Wire.innerCode(bad.body) == "invalidPath")
            #expect(try await graph.children(driveID: driveID, itemID: accounts.id).contains { $0.name == "New Folder" })
        }
    }

    @Test("PATCH renames, moves and sets fileSystemInfo with a new eTag; If-Match guards it")
    func update() async throws {
        try await withWire { wire, graph, driveID in
            let accounts = try await graph.item(driveID: driveID, path: "Accounts")
            let folders = try await graph.children(driveID: driveID, itemID: accounts.id)
            var found: (DriveItem, DriveItem)?
            for folder in folders where found == nil {
                if let file = try await graph.children(driveID: driveID, itemID: folder.id).first(where: { !$0.isFolder }) { found = (folder, file) }
            }
            let (source, document) = try #require(found)
            let target = try #require(folders.first { $0.id != source.id })

            let stale = try await wire.send("PATCH", "/items/\(document.id)", json: ["name": "x.pdf"], headers: ["If-Match": "\"{00000000-0000-0000-0000-000000000000},1\""])
            #expect(stale.status == 412)
            #expect(Wire.errorCode(stale.body) == "resourceModified")
            let unquoted = try await wire.send("PATCH", "/items/\(document.id)", json: ["name": "x.pdf"], headers: ["If-Match": "abc"])
            #expect(unquoted.status == 400)
            #expect(Wire.innerCode(unquoted.body) == "malformedEntityTag")

            let moved = try await wire.send("PATCH", "/items/\(document.id)", json: [
                "name": "Moved.pdf", "parentReference": ["id": target.id],
                "fileSystemInfo": ["lastModifiedDateTime": "2025-03-04T05:06:07Z"],
            ], headers: ["If-Match": document.eTag!])
            #expect(moved.status == 200)
            #expect(moved.body["name"] as? String == "Moved.pdf")
            #expect(moved.body["eTag"] as? String != document.eTag)
            #expect(moved.body["cTag"] as? String == document.cTag)  // content unchanged
            #expect((moved.body["fileSystemInfo"] as? [String: Any])?["lastModifiedDateTime"] as? String == "2025-03-04T05:06:07Z")
            #expect(try await graph.item(driveID: driveID, itemID: document.id).parentReference?.id == target.id)

            let toRoot = try await wire.send("PATCH", "/items/\(document.id)", json: ["parentReference": ["id": "root"]])
            #expect(toRoot.status == 400)
            let otherDrive = try await wire.send("PATCH", "/items/\(document.id)", json: ["parentReference": ["driveId": "b!other", "id": source.id]])
            #expect(otherDrive.status == 400)
            let intoItself = try await wire.send("PATCH", "/items/\(source.id)", json: ["parentReference": ["id": source.id]])
            #expect(intoItself.status == 400)
            let readOnly = try await wire.send("PATCH", "/items/\(document.id)", json: ["size": 5])
            #expect(Wire.innerCode(readOnly.body) == "propertyNotUpdateable")
            #expect(try await wire.connections.http.send(HTTPRequest(url: "\(wire.base)/items/\(document.id)"), auth: wire.connections.graphToken).status == 200)
        }
    }

    @Test("DELETE answers 204 and takes the folder's contents with it; If-Match mismatch deletes nothing")
    func delete() async throws {
        try await withWire { wire, graph, driveID in
            let accounts = try await graph.item(driveID: driveID, path: "Accounts")
            let folder = try await graph.children(driveID: driveID, itemID: accounts.id)[0]
            let inside = try await graph.children(driveID: driveID, itemID: folder.id)
            #expect(!inside.isEmpty)
            let refused = try await wire.send("DELETE", "/items/\(folder.id)", headers: ["If-Match": "\"{00000000-0000-0000-0000-000000000000},9\""])
            #expect(refused.status == 412)
            #expect(try await graph.children(driveID: driveID, itemID: accounts.id).contains { $0.id == folder.id })

            let deleted = try await wire.send("DELETE", "/items/\(folder.id)", headers: ["If-Match": folder.eTag!])
            #expect(deleted.status == 204)
            #expect(try await !graph.children(driveID: driveID, itemID: accounts.id).contains { $0.id == folder.id })
            for item in inside {
                let gone = try await wire.send("GET", "/items/\(item.id)")
                #expect(gone.status == 404)
            }
            // Delta reports the deletions.
            var deletedIDs: Set<String> = []
            var link: String?
            repeat {
                let page = try await graph.delta(driveID: driveID, link: link)
                deletedIDs.formUnion(page.items.filter(\.isDeleted).map(\.id))
                link = page.nextLink
            } while link != nil
            #expect(deletedIDs.isSuperset(of: [folder.id] + inside.map(\.id)))
        }
    }
}
