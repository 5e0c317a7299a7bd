import CRM
import Foundation
import Graph
import HTTP
import Sandbox
import Services
import Testing
import TestSupport

@Suite("the seeded demo tenant")
struct TenantTests {
    static func snapshot(_ sandbox: SandboxFixture) async throws -> (records: [String], items: [String]) {
        let connections = try sandbox.connections()
        var records: [String] = []
        for object in ["Account", "Opportunity", "Case"] {
            let rows = try await connections.salesforce.query("SELECT Id, \(object == "Case" ? "Subject" : "Name") FROM \(object) ORDER BY Id")
            records += rows.map { "\($0.id!) \($0.fields.values.map(\.description).sorted().joined(separator: "|"))" }
        }
        let driveID = try await sandbox.info()["driveId"]!
        var items: [String] = []
        var link: String?
        repeat {
            let page = try await connections.graph.delta(driveID: driveID, link: link)
            items += page.items.map { "\($0.id) \($0.name ?? "") \($0.size ?? -1)" }
            link = page.nextLink
        } while link != nil
        return (records, items)
    }

    @Test("the same seed makes the same tenant; another seed another")
    func deterministic() async throws {
        let first = try await withSandbox(records: 15, docsPerRecord: 2, configure: { $0.seed.seed = 5 }) { try await Self.snapshot($0) }
        let second = try await withSandbox(records: 15, docsPerRecord: 2, configure: { $0.seed.seed = 5 }) { try await Self.snapshot($0) }
        let other = try await withSandbox(records: 15, docsPerRecord: 2, configure: { $0.seed.seed = 6 }) { try await Self.snapshot($0) }
        #expect(first.records.count == 45)
        #expect(first.records == second.records)
        #expect(first.items == second.items)
        #expect(first.items != other.items)
    }

    @Test("names that are hard in file systems are seeded, and their SharePoint folders are sanitised")
    func hardNames() async throws {
        try await withSandbox(records: 14, docsPerRecord: 1) { sandbox in
            let connections = try sandbox.connections()
            let names = try await connections.salesforce.query("SELECT Name FROM Account").compactMap { $0["Name"]?.stringValue }
            for hard in ["Smith/Wesson Partners", "Contoso: EMEA", "Fabrikam Inc.", "Müller & Söhne GmbH", "株式会社サンプル商事"] {
                #expect(names.contains(hard), "\(hard)")
            }
            #expect(names.filter { $0 == "Northwind Traders" }.count == 2)
            #expect(names.contains { $0.utf8.count > 255 })

            let driveID = try await sandbox.info()["driveId"]!
            let accounts = try await connections.graph.item(driveID: driveID, path: "Accounts")
            let folders = try await connections.graph.children(driveID: driveID, itemID: accounts.id).compactMap(\.name)
            #expect(folders.count == 14)
            #expect(folders.allSatisfy { name in !name.contains { "/\\:*?<>|#%\"".contains($0) } })
            #expect(folders.contains { $0.hasPrefix("Smith_Wesson Partners (") })
            #expect(folders.contains { $0.hasPrefix("Fabrikam Inc (") })
            #expect(folders.allSatisfy { $0.count < 130 })
        }
    }

    @Test("10,000 records seed and list completely")
    func tenThousand() async throws {
        try await withSandbox(records: 10_000, docsPerRecord: 0) { sandbox in
            let salesforce = try sandbox.connections().salesforce
            var total = 0
            var ids = Set<String>()
            for try await page in salesforce.queryPages("SELECT Id FROM Account") {
                total = page.totalSize
                ids.formUnion(page.records.compactMap(\.id))
            }
            #expect(total == 10_000)
            #expect(ids.count == 10_000)
        }
    }

    @Test("documents keep their bytes across reads, and report a hash once downloaded")
    func contentIsStable() async throws {
        try await withSandbox { sandbox in
            let graph = try sandbox.connections().graph
            let driveID = try await sandbox.info()["driveId"]!
            let item = try await graph.item(driveID: driveID, path: SeededPaths.acmeContract)
            let first = try await graph.download(driveID: driveID, itemID: item.id)
            let second = try await graph.download(driveID: driveID, itemID: item.id)
            #expect(first.data == second.data)
            #expect(Int64(first.data.count) == item.size)
            #expect(first.data.starts(with: Data("%PDF-".utf8)))
            #expect(try await graph.item(driveID: driveID, itemID: item.id).file?.hashes?.quickXorHash != nil)
        }
    }
}

/// What the emulator sends, checked on the wire: status codes, headers and error bodies.
@Suite("wire shapes")
struct WireTests {
    func json(_ response: HTTPResponse) throws -> JSONValue { try JSONDecoder().decode(JSONValue.self, from: response.body) }

    @Test("Graph and Salesforce refuse a missing or stale token with their own 401 bodies")
    func unauthorized() async throws {
        try await withSandbox { sandbox in
            let graph = try await sandbox.transport.perform(HTTPRequest(url: "\(sandbox.baseURL)/v1.0/sites/root", headers: ["Authorization": "Bearer nope"]))
            #expect(graph.status == 401)
            #expect(try json(graph)["error"]?["code"]?.stringValue == "InvalidAuthenticationToken")
            #expect(graph.headers["WWW-Authenticate"] != nil)
            let salesforce = try await sandbox.transport.perform(HTTPRequest(url: "\(sandbox.baseURL)/services/data/v62.0/sobjects", headers: ["Authorization": "Bearer nope"]))
            #expect(salesforce.status == 401)
            #expect(try json(salesforce) == .array([.object(["message": .string("Session expired or invalid"), "errorCode": .string("INVALID_SESSION_ID")])]))
        }
    }

    @Test("token endpoints: Entra's error body and expires_in; Salesforce's issued_at string and no expires_in")
    func tokenShapes() async throws {
        try await withSandbox { sandbox in
            let config = try sandbox.config()
            let secret = try String(contentsOfFile: sandbox.directory.appendingPathComponent("secrets/graph-client-secret").path, encoding: .utf8)
                .trimmingCharacters(in: .newlines)
            let form = { (scope: String) in FormEncoding.encode([("client_id", config.graph.clientID), ("scope", scope),
                                                                 ("client_secret", secret), ("grant_type", "client_credentials")]) }
            let headers: HTTPHeaders = ["Content-Type": "application/x-www-form-urlencoded"]
            let url = "\(config.graph.authority)/\(config.graph.tenant)/oauth2/v2.0/token"
            let bad = try await sandbox.transport.perform(HTTPRequest(method: "POST", url: url, headers: headers, body: .bytes(form("https://graph.microsoft.com/Sites.Read.All"))))
            #expect(bad.status == 400)
            #expect(try json(bad)["error"]?.stringValue == "invalid_scope")
            #expect(try json(bad)["error_codes"]?.arrayValue?.isEmpty == false)
            let good = try await sandbox.transport.perform(HTTPRequest(method: "POST", url: url, headers: headers, body: .bytes(form("https://graph.microsoft.com/.default"))))
            #expect(good.status == 200)
            #expect(try json(good)["expires_in"]?.intValue == 3600)
            #expect(try json(good)["refresh_token"] == nil)

            let sfSecret = try String(contentsOfFile: sandbox.directory.appendingPathComponent("secrets/salesforce-client-secret").path, encoding: .utf8)
                .trimmingCharacters(in: .newlines)
            let sf = try await sandbox.transport.perform(HTTPRequest(
                method: "POST", url: "\(config.salesforce.instanceURL)/services/oauth2/token", headers: headers,
                body: .bytes(FormEncoding.encode([("grant_type", "client_credentials"), ("client_id", config.salesforce.clientID), ("client_secret", sfSecret)]))))
            let body = try json(sf)
            #expect(sf.status == 200)
            #expect(body["expires_in"] == nil)
            #expect(body["refresh_token"] == nil)
            #expect(body["issued_at"]?.stringValue.flatMap(Int64.init) != nil)
            #expect(body["instance_url"]?.stringValue == sandbox.baseURL)
        }
    }

    @Test("throttling carries Retry-After in each service's error shape; REST answers carry Sforce-Limit-Info")
    func throttlingShapes() async throws {
        try await withSandbox { sandbox in
            let connections = try sandbox.connections()
            let graphToken = try await connections.graphToken.token().value.exposedValue
            let sfToken = try await connections.salesforceToken.token().value.exposedValue
            try await sandbox.admin("faults", ["next": ["429", "503"], "retryAfter": 7])
            let graph = try await sandbox.transport.perform(HTTPRequest(url: "\(sandbox.baseURL)/v1.0/sites/root", headers: ["Authorization": "Bearer \(graphToken)"]))
            #expect(graph.status == 429)
            #expect(graph.headers["Retry-After"] == "7")
            #expect(try json(graph)["error"]?["code"]?.stringValue == "activityLimitReached")
            let salesforce = try await sandbox.transport.perform(HTTPRequest(url: "\(sandbox.baseURL)/services/data/v62.0/limits", headers: ["Authorization": "Bearer \(sfToken)"]))
            #expect(salesforce.status == 503)
            #expect(try json(salesforce).arrayValue?.first?["errorCode"]?.stringValue == "SERVER_UNAVAILABLE")
            let ok = try await sandbox.transport.perform(HTTPRequest(url: "\(sandbox.baseURL)/services/data/v62.0/limits", headers: ["Authorization": "Bearer \(sfToken)"]))
            #expect(ok.headers["Sforce-Limit-Info"]?.hasPrefix("api-usage=") == true)
        }
    }

    @Test("children links are absolute and opaque; $top is bounded; Salesforce cursors are relative")
    func links() async throws {
        try await withSandbox(records: 3, docsPerRecord: 1, bulkFolder: 30) { sandbox in
            let connections = try sandbox.connections()
            let info = try await sandbox.info()
            let token = try await connections.graphToken.token().value.exposedValue
            let base = "\(sandbox.baseURL)/v1.0/drives/\(info["driveId"]!)/items/\(info["bulkFolderItemId"]!)/children"
            let page = try await sandbox.transport.perform(HTTPRequest(url: "\(base)?$top=10", headers: ["Authorization": "Bearer \(token)"]))
            let next = try #require(try json(page)["@odata.nextLink"]?.stringValue)
            #expect(next.hasPrefix(sandbox.baseURL))
            #expect(!next.contains("offset") && !next.contains("=10&$skiptoken=10"))
            let tooBig = try await sandbox.transport.perform(HTTPRequest(url: "\(base)?$top=5000", headers: ["Authorization": "Bearer \(token)"]))
            #expect(tooBig.status == 400)
            #expect(try json(tooBig)["error"]?["code"]?.stringValue == "invalidRequest")

            let sfToken = try await connections.salesforceToken.token().value.exposedValue
            let query = try await sandbox.transport.perform(HTTPRequest(
                url: "\(sandbox.baseURL)/services/data/v62.0/query?q=SELECT+Id+FROM+Account", headers: ["Authorization": "Bearer \(sfToken)"]))
            #expect(try json(query)["done"]?.boolValue == true)
            #expect(try json(query)["records"]?.arrayValue?.first?["attributes"]?["type"]?.stringValue == "Account")
        }
    }
}
