import Foundation
import Graph
import HTTP
import QuickXor
import Services
import Testing
import TestSupport

@Suite("Graph client against the sandbox")
struct GraphClientTests {
    @Test("site, drives, and items by path and by id")
    func resolve() async throws {
        try await withSandbox { sandbox in
            let graph = try sandbox.connections().graph
            let site = try await graph.site(hostname: "contoso.sharepoint.com", path: "/sites/Sales")
            #expect(site.id.split(separator: ",").count == 3)
            let drives = try await graph.drives(siteID: site.id)
            let documents = try #require(drives.first { $0.name == "Documents" })
            #expect(documents.driveType == "documentLibrary")
            let byPath = try await graph.item(driveID: documents.id, path: SeededPaths.acmeContract, expandFields: true)
            let byID = try await graph.item(driveID: documents.id, itemID: byPath.id)
            #expect(byPath.id == byID.id)
            #expect(byPath.name == "MSA-2026.pdf")
            #expect(byPath.file?.mimeType == "application/pdf")
            #expect(byPath.cTag != nil && byPath.eTag != nil)
            #expect(byPath.listItem?.fields?["Customer"]?.stringValue == "Acme Corp")
            #expect(byPath.parentReference?.path?.hasSuffix("/Contracts") == true)
            let fields = try await graph.fields(driveID: documents.id, itemID: byPath.id)
            #expect(fields["DocumentType"]?.stringValue == "Contract")
            let list = try await graph.list(driveID: documents.id)
            let columns = try await graph.columns(siteID: site.id, listID: list.id)
            #expect(columns.first { $0.name == "DocumentType" }?.type == "choice")
            #expect(columns.first { $0.name == "Modified" }?.readOnly == true)
        }
    }

    @Test("a missing item is a GraphError with the service's code")
    func notFound() async throws {
        try await withSandbox { sandbox in
            let graph = try sandbox.connections().graph
            let driveID = try await sandbox.info()["driveId"]!
            do {
                _ = try await graph.item(driveID: driveID, path: "Accounts/No Such Record")
                Issue.record("found an item that does not exist")
            } catch let error as GraphError {
                #expect(error.status == 404)
                #expect(error.code == "itemNotFound")
            }
        }
    }

    @Test("children page through @odata.nextLink: 1,000 children in pages of 200")
    func childrenPaging() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1, bulkFolder: 1000) { sandbox in
            let graph = try sandbox.connections().graph
            let info = try await sandbox.info()
            try await sandbox.admin("stats/reset")
            let children = try await graph.children(driveID: info["driveId"]!, itemID: info["bulkFolderItemId"]!, pageSize: 200, expandFields: true)
            #expect(children.count == 1000)
            #expect(Set(children.map(\.id)).count == 1000)
            #expect(Set(children.compactMap(\.name)) == Set((0..<1000).map { String(format: "item-%05d.txt", $0) }))
            #expect(children.allSatisfy { $0.listItem?.fields?["RecordId"]?.stringValue == SeededPaths.acmeID })
            #expect(try await sandbox.stats()["graph.children"] == 5)
        }
    }

    @Test("ranged downloads are exact at block edges, and fetched from the download URL without Authorization")
    func rangedDownloads() async throws {
        let size: Int64 = 9 << 20
        try await withSandbox(records: 1, docsPerRecord: 1, largeFile: size) { sandbox in
            let graph = try sandbox.connections().graph
            let info = try await sandbox.info()
            let driveID = info["driveId"]!, itemID = info["largeFileItemId"]!

            let path = sandbox.directory.appendingPathComponent("whole.bin").path
            let descriptor = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
            defer { close(descriptor) }
            #expect(try await graph.download(driveID: driveID, itemID: itemID, to: descriptor) == size)
            let whole = try Data(contentsOf: URL(fileURLWithPath: path))
            #expect(Int64(whole.count) == size)
            let item = try await graph.item(driveID: driveID, itemID: itemID)
            #expect(item.file?.hashes?.quickXorHash == QuickXorHash.hash(whole))

            let block: Int64 = 4 << 20
            var ranges: [ClosedRange<Int64>] = [0...0, 0...(block - 1), (block - 1)...block, block...(2 * block - 1),
                                                 (2 * block - 3)...(2 * block + 2), (size - 10)...(size - 1), (size - 1)...(size - 1)]
            var generator = SystemRandomNumberGenerator()
            for _ in 0..<10 {
                let start = Int64.random(in: 0..<size, using: &generator)
                ranges.append(start...min(size - 1, start + Int64.random(in: 0..<(1 << 20), using: &generator)))
            }
            for range in ranges {
                let download = try await graph.download(driveID: driveID, itemID: itemID, range: range)
                #expect(download.data == whole.subdata(in: Int(range.lowerBound)..<Int(range.upperBound) + 1), "range \(range)")
                #expect(download.totalSize == size)
            }
            // A range past the end is refused with 416.
            await #expect(throws: GraphError.self) { _ = try await graph.download(driveID: driveID, itemID: itemID, range: size...(size + 5)) }
        }
    }

    @Test("a server that ignores Range still yields exactly the window asked for")
    func ignoredRange() async throws {
        try await withSandbox(records: 1, docsPerRecord: 1, largeFile: 3 << 20) { sandbox in
            let graph = try sandbox.connections().graph
            let info = try await sandbox.info()
            let driveID = info["driveId"]!, itemID = info["largeFileItemId"]!
            let exact = try await graph.download(driveID: driveID, itemID: itemID, range: 1_000_000...1_400_000)
            // A download is two requests, /content then the download URL: the second one ignores the range.
            try await sandbox.admin("faults", ["next": ["none", "norange"]])
            let ignored = try await graph.download(driveID: driveID, itemID: itemID, range: 1_000_000...1_400_000)
            #expect(try await sandbox.stats()["faults.norange"] == 1)
            #expect(ignored.data == exact.data)
            #expect(exact.data.count == 400_001)
        }
    }

    @Test("download URLs refuse an Authorization header")
    func downloadURLRefusesAuthorization() async throws {
        try await withSandbox { sandbox in
            let connections = try sandbox.connections()
            let driveID = try await sandbox.info()["driveId"]!
            let item = try await connections.graph.item(driveID: driveID, path: SeededPaths.acmeContract)
            let location = try await connections.graph.downloadLocation(driveID: driveID, itemID: item.id)
            let token = try await connections.graphToken.token()
            let withAuth = try await sandbox.transport.perform(HTTPRequest(url: location, headers: ["Authorization": "Bearer \(token.value.exposedValue)"]))
            #expect(withAuth.status == 401)
            let without = try await sandbox.transport.perform(HTTPRequest(url: location))
            #expect(without.status == 200)
            #expect(Int64(without.body.count) == item.size)
        }
    }

    @Test("delta enumerates everything through nextLink, then follows its deltaLink; an expired token answers 410")
    func delta() async throws {
        try await withSandbox(records: 30, docsPerRecord: 3) { sandbox in
            let graph = try sandbox.connections().graph
            let driveID = try await sandbox.info()["driveId"]!
            var items: [DriveItem] = []
            var page = try await graph.delta(driveID: driveID, pageSize: 50)
            var pages = 1
            while true {
                items += page.items
                #expect(page.items.allSatisfy { $0.parentReference?.path == nil })  // never sent in delta
                guard let next = page.nextLink else { break }
                page = try await graph.delta(driveID: driveID, link: next)
                pages += 1
            }
            #expect(pages > 2)
            let deltaLink = try #require(page.deltaLink)
            // Everything in the drive: root, 3 object folders, 90 record folders, their documents and sub-folders.
            #expect(items.first?.root != nil)
            #expect(items.filter { $0.file != nil }.count == 90 * 3)
            #expect(Set(items.map(\.id)).count == items.count)
            let again = try await graph.delta(driveID: driveID, link: deltaLink)
            #expect(again.items.isEmpty)
            #expect(again.deltaLink != nil)
            let latest = try await graph.latestDeltaLink(driveID: driveID)
            #expect(try await graph.delta(driveID: driveID, link: latest).items.isEmpty)

            try await sandbox.admin("delta/expire")
            do {
                _ = try await graph.delta(driveID: driveID, link: deltaLink)
                Issue.record("an expired delta token was accepted")
            } catch let error as GraphError {
                #expect(error.needsResync)
                #expect(error.innerCode == "resyncChangesApplyDifferences")
                let restart = try #require(error.location)
                #expect(try await graph.delta(driveID: driveID, link: restart).items.isEmpty == false)
            }
        }
    }

    @Test("a storm of 10% 429 and 2% resets over 500 requests: every request succeeds")
    func storm() async throws {
        try await withSandbox { sandbox in
            let connections = try sandbox.connections()
            let driveID = try await sandbox.info()["driveId"]!
            let item = try await connections.graph.item(driveID: driveID, path: SeededPaths.acmeContract)
            try await sandbox.admin("faults", ["faults": "429:0.1,reset:0.02", "retryAfter": 1, "seed": 7])
            let succeeded = try await withThrowingTaskGroup(of: Bool.self) { group in
                var count = 0
                for index in 0..<500 {
                    if index >= 16, try await group.next() == true { count += 1 }
                    group.addTask {
                        switch index % 3 {
                        case 0: return try await connections.graph.item(driveID: driveID, itemID: item.id).id == item.id
                        case 1: return try await connections.salesforce.query("SELECT Id FROM Account LIMIT 2").count == 2
                        default: return try await connections.graph.download(driveID: driveID, itemID: item.id, range: 0...99).data.count == 100
                        }
                    }
                }
                for try await ok in group where ok { count += 1 }
                return count
            }
            #expect(succeeded == 500)
            let stats = try await sandbox.stats()
            #expect(stats["faults.429", default: 0] > 20)
            #expect(stats["faults.reset", default: 0] > 2)
        }
    }
}
