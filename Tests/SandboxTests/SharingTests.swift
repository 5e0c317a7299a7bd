import Foundation
import HTTP
import Sandbox
import Testing
import TestSupport

/// Each demo user reaches what Salesforce sharing and SharePoint permissions give them, on the wire as the
/// services answer it: SOQL leaves out what the caller may not read, `UserRecordAccess` answers for at most
/// 200 records (docs/wire-facts.md S6), a record the caller may read but not edit refuses an update with
/// INSUFFICIENT_ACCESS_OR_READONLY; an item the caller may not see is absent from listings and delta and
/// answers 404, and one it may only read refuses changes with 403 `accessDenied`.
@Suite("sharing and permissions in the sandbox")
struct SharingTests {
    /// A Salesforce access token for `user`, through the device flow.
    static func salesforceToken(_ sandbox: SandboxFixture, as user: String) async throws -> String {
        let client = try sandbox.config().salesforce.clientID
        let started = try await DeviceSignInTests.post(sandbox, "/services/oauth2/token", [("response_type", "device_code"), ("client_id", client), ("scope", "api refresh_token")])
        try await sandbox.admin("device", ["userCode": try #require(started.json["user_code"] as? String), "user": user])
        let signedIn = try await DeviceSignInTests.post(sandbox, "/services/oauth2/token", [("grant_type", "device"), ("client_id", client),
                                                                                           ("code", try #require(started.json["device_code"] as? String))])
        return try #require(signedIn.json["access_token"] as? String)
    }

    /// A Graph access token for `user`, through the device flow.
    static func graphToken(_ sandbox: SandboxFixture, as user: String) async throws -> String {
        let base = "/\(try await sandbox.info()["tenantId"]!)/oauth2/v2.0"
        let client = try sandbox.config().graph.clientID
        let started = try await DeviceSignInTests.post(sandbox, base + "/devicecode", [("client_id", client), ("scope", "Sites.ReadWrite.All offline_access")])
        try await sandbox.admin("device", ["userCode": try #require(started.json["user_code"] as? String), "user": user])
        let signedIn = try await DeviceSignInTests.post(sandbox, base + "/token", [("grant_type", "urn:ietf:params:oauth:grant-type:device_code"), ("client_id", client),
                                                                                  ("device_code", try #require(started.json["device_code"] as? String))])
        return try #require(signedIn.json["access_token"] as? String)
    }

    static func call(_ sandbox: SandboxFixture, _ method: String, _ path: String, token: String, json: Any? = nil) async throws -> (status: Int, body: Any?) {
        let body: RequestBody = try json.map { .bytes(try JSONSerialization.data(withJSONObject: $0)) } ?? .none
        let response = try await sandbox.transport.perform(HTTPRequest(method: method, url: sandbox.baseURL + path,
                                                                       headers: ["Authorization": "Bearer \(token)", "Content-Type": "application/json"], body: body))
        return (response.status, try? JSONSerialization.jsonObject(with: response.body))
    }

    static func query(_ sandbox: SandboxFixture, _ soql: String, token: String) async throws -> (status: Int, records: [[String: Any]], body: Any?) {
        let answer = try await call(sandbox, "GET", "/services/data/v62.0/query?q=" + soql.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!, token: token)
        return (answer.status, (answer.body as? [String: Any])?["records"] as? [[String: Any]] ?? [], answer.body)
    }

    @Test("Salesforce: each user's queries, records and UserRecordAccess follow sharing; 200 Ids at most")
    func salesforce() async throws {
        try await withSandbox(records: 4, docsPerRecord: 1, configure: { $0.announce = { _ in }; $0.deviceCodeInterval = 1 }) { sandbox in
            let sam = try await Self.salesforceToken(sandbox, as: "sam")
            let sky = try await Self.salesforceToken(sandbox, as: "sky")
            let morgan = try await Self.salesforceToken(sandbox, as: "morgan")
            func ids(_ object: String, _ token: String) async throws -> Set<String> {
                Set(try await Self.query(sandbox, "SELECT Id FROM \(object)", token: token).records.compactMap { $0["Id"] as? String })
            }
            let opportunity = { (serial: Int) in SalesforceID.make(prefix: "006", serial: serial) }
            #expect(try await ids("Opportunity", sam) == [opportunity(1), opportunity(3)], "sam's own")
            #expect(try await ids("Opportunity", sky).isEmpty, "private, none of sky's")
            #expect(try await ids("Opportunity", morgan).count == 4, "the manager sees all")
            #expect(try await ids("Account", sky).count == 4, "accounts are public read-only")
            #expect(try await Self.call(sandbox, "GET", "/services/data/v62.0/sobjects/Opportunity/\(opportunity(2))", token: sam).status == 404)

            // A manual share opens one record to one user.
            _ = try await sandbox.admin("records/\(opportunity(2))/share", ["user": "sky", "level": "Read"])
            #expect(try await ids("Opportunity", sky) == [opportunity(2)])
            #expect(try await ids("Opportunity", sam) == [opportunity(1), opportunity(3)])

            // Read but not edit: the update is refused and changes nothing.
            let account = SalesforceID.make(prefix: "001", serial: 2)  // morgan's
            let update = try await Self.call(sandbox, "PATCH", "/services/data/v62.0/sobjects/Account/\(account)", token: sky, json: ["Phone": "+1 555 0100"])
            #expect(update.status == 400 && ((update.body as? [[String: Any]])?.first?["errorCode"] as? String) == "INSUFFICIENT_ACCESS_OR_READONLY")
            #expect(try await Self.call(sandbox, "PATCH", "/services/data/v62.0/sobjects/Account/\(account)", token: morgan, json: ["Phone": "+1 555 0100"]).status == 204)

            // UserRecordAccess: one user, up to 200 records, what the caller can read.
            let samID = SalesforceID.make(prefix: "005", serial: 2)
            let accounts = (1...4).map { SalesforceID.make(prefix: "001", serial: $0) }
            let list = accounts.map { "'\($0)'" }.joined(separator: ",")
            let access = try await Self.query(sandbox, "SELECT RecordId, HasReadAccess, HasEditAccess, MaxAccessLevel FROM UserRecordAccess WHERE UserId = '\(samID)' AND RecordId IN (\(list))", token: sam)
            #expect(access.status == 200)
            let editable = Dictionary(uniqueKeysWithValues: access.records.map { ($0["RecordId"] as! String, $0["HasEditAccess"] as! Bool) })
            #expect(editable == [accounts[0]: true, accounts[1]: false, accounts[2]: true, accounts[3]: false], "sam owns every other account")
            #expect(access.records.first?["MaxAccessLevel"] as? String == "All")
            let tooMany = (1...201).map { "'\(SalesforceID.make(prefix: "001", serial: $0))'" }.joined(separator: ",")
            let refused = try await Self.query(sandbox, "SELECT RecordId FROM UserRecordAccess WHERE UserId = '\(samID)' AND RecordId IN (\(tooMany))", token: sam)
            #expect(refused.status == 400 && "\(refused.body ?? "")".contains("exceeds limit: 200"))
            let noUser = try await Self.query(sandbox, "SELECT RecordId FROM UserRecordAccess WHERE RecordId = '\(accounts[0])'", token: sam)
            #expect(noUser.status == 400)
        }
    }

    @Test("SharePoint: items a user may not see are absent and 404; items they may only read refuse changes with 403")
    func sharePoint() async throws {
        try await withSandbox(records: 4, docsPerRecord: 1, configure: { $0.announce = { _ in }; $0.deviceCodeInterval = 1 }) { sandbox in
            let drive = try await sandbox.info()["driveId"]!
            let sky = try await Self.graphToken(sandbox, as: "sky")
            let sam = try await Self.graphToken(sandbox, as: "sam")
            func names(_ path: String, _ token: String) async throws -> [String] {
                let answer = try await Self.call(sandbox, "GET", "/v1.0/drives/\(drive)/root:/\(path):/children", token: token)
                return ((answer.body as? [String: Any])?["value"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
            }
            #expect(try await names("Opportunities", sky).isEmpty, "no opportunity folder of sky's")
            #expect(try await names("Opportunities", sam).count == 2)
            let samsDeal = try #require(try await names("Opportunities", sam).first)
            let hidden = try await Self.call(sandbox, "GET", "/v1.0/drives/\(drive)/root:/Opportunities/\(samsDeal.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed)!)", token: sky)
            #expect(hidden.status == 404)

            // Delta leaves out what the caller may not see.
            let delta = try await Self.call(sandbox, "GET", "/v1.0/drives/\(drive)/root/delta", token: sky)
            let deltaNames = ((delta.body as? [String: Any])?["value"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
            #expect(!deltaNames.contains(samsDeal) && deltaNames.contains("Accounts"))

            // sky reads Acme Corp's folder and may not change it; sam, its owner, may.
            let acme = try #require(try await names("Accounts", sky).first { $0.hasPrefix("Acme Corp") })
            let folder = "Accounts/\(acme)".addingPercentEncoding(withAllowedCharacters: .urlPathAllowed)!
            let create = ["name": "Drafts", "folder": [String: Any]()] as [String: Any]
            let denied = try await Self.call(sandbox, "POST", "/v1.0/drives/\(drive)/root:/\(folder):/children", token: sky, json: create)
            #expect(denied.status == 403 && "\(denied.body ?? "")".contains("accessDenied"))
            let upload = try await Self.call(sandbox, "POST", "/v1.0/drives/\(drive)/root:/\(folder)/notes.txt:/createUploadSession", token: sky, json: ["item": [String: Any]()])
            #expect(upload.status == 403)
            #expect(try await Self.call(sandbox, "POST", "/v1.0/drives/\(drive)/root:/\(folder):/children", token: sam, json: create).status == 201)
            #expect(try await sandbox.stats()["graph.accessDenied"] == 2)
        }
    }
}
