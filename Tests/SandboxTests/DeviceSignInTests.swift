import Foundation
import HTTP
import Sandbox
import Testing
import TestSupport

/// The sandbox's device sign-ins answer as Entra ID (docs/wire-facts.md E1, E2) and Salesforce (S1)
/// do: a code waits for its user, polls are told to wait, an approved code is redeemed once for tokens that
/// act as that user, refresh tokens rotate (Entra) and stop working when an administrator revokes them.
@Suite("device sign-in in the sandbox")
struct DeviceSignInTests {
    struct Answer {
        let status: Int
        let json: [String: Any]
        var error: String? { json["error"] as? String }
    }

    static func post(_ sandbox: SandboxFixture, _ path: String, _ form: [(String, String)]) async throws -> Answer {
        let response = try await sandbox.transport.perform(HTTPRequest(
            method: "POST", url: sandbox.baseURL + path, headers: ["Content-Type": "application/x-www-form-urlencoded"],
            body: .bytes(FormEncoding.encode(form))))
        return Answer(status: response.status, json: (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any] ?? [:])
    }

    static func get(_ sandbox: SandboxFixture, _ path: String, token: String) async throws -> Int {
        try await sandbox.transport.perform(HTTPRequest(url: sandbox.baseURL + path, headers: ["Authorization": "Bearer \(token)"])).status
    }

    /// The claims of a JWT, without checking its signature.
    static func claims(_ jwt: String) throws -> [String: Any] {
        var payload = String(jwt.split(separator: ".")[1]).replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while payload.count % 4 != 0 { payload += "=" }
        let data = try #require(Data(base64Encoded: payload))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    @Test("Entra: pending until the user approves, then tokens for that user; refresh rotates; revoking ends it")
    func entra() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1, configure: { $0.announce = { _ in } }) { sandbox in
            let info = try await sandbox.info()
            let config = try sandbox.config()
            let base = "/\(info["tenantId"]!)/oauth2/v2.0"
            let client = config.graph.clientID
            let started = try await Self.post(sandbox, base + "/devicecode", [("client_id", client), ("scope", "Sites.ReadWrite.All offline_access openid profile")])
            #expect(started.status == 200)
            let deviceCode = try #require(started.json["device_code"] as? String)
            let userCode = try #require(started.json["user_code"] as? String)
            #expect(started.json["interval"] as? Int == 5 && started.json["expires_in"] as? Int == 900)
            #expect(started.json["verification_uri_complete"] == nil)
            #expect((started.json["message"] as? String)?.contains(userCode) == true)

            let poll: [(String, String)] = [("grant_type", "urn:ietf:params:oauth:grant-type:device_code"), ("client_id", client), ("device_code", deviceCode)]
            let pending = try await Self.post(sandbox, base + "/token", poll)
            #expect(pending.status == 400 && pending.error == "authorization_pending")

            try await sandbox.admin("device", ["userCode": userCode, "user": "sam"])
            let signedIn = try await Self.post(sandbox, base + "/token", poll)
            #expect(signedIn.status == 200)
            let access = try #require(signedIn.json["access_token"] as? String)
            let refresh = try #require(signedIn.json["refresh_token"] as? String)
            let idToken = try #require(signedIn.json["id_token"] as? String)
            #expect(try Self.claims(idToken)["preferred_username"] as? String == "sam.rivera@contoso.onmicrosoft.com")
            #expect(try await Self.get(sandbox, "/v1.0/sites/contoso.sharepoint.com:/sites/Sales", token: access) == 200)
            let again = try await Self.post(sandbox, base + "/token", poll)
            #expect(again.status == 400 && again.error == "bad_verification_code", "a code is redeemed once")

            let refreshForm: [(String, String)] = [("grant_type", "refresh_token"), ("client_id", client), ("refresh_token", refresh)]
            let refreshed = try await Self.post(sandbox, base + "/token", refreshForm)
            let rotated = try #require(refreshed.json["refresh_token"] as? String)
            #expect(rotated != refresh)
            #expect(try await Self.post(sandbox, base + "/token", refreshForm).status == 200, "the used refresh token stays good")

            #expect(try await sandbox.admin("users/sam/revoke")["revoked"] as? Int == 3)
            let revoked = try await Self.post(sandbox, base + "/token", [("grant_type", "refresh_token"), ("client_id", client), ("refresh_token", rotated)])
            #expect(revoked.status == 400 && revoked.error == "invalid_grant")
        }
    }

    @Test("a rotated refresh token that cannot be kept (a full disk) fails nothing: the access token is used, the earlier refresh token stays")
    func rotatedTokenNotKept() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1, configure: { $0.approveDeviceCodesAs = "sam"; $0.announce = { _ in } }) { sandbox in
            let tenant = try #require(try await sandbox.info()["tenantId"])
            let client = try sandbox.config().graph.clientID
            let base = "/\(tenant)/oauth2/v2.0"
            let started = try await Self.post(sandbox, base + "/devicecode", [("client_id", client), ("scope", EntraRefreshToken.userScope)])
            let signedIn = try await Self.post(sandbox, base + "/token", [
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"), ("client_id", client), ("device_code", try #require(started.json["device_code"] as? String)),
            ])
            let refresh = try #require(signedIn.json["refresh_token"] as? String)
            // A name the store's temporary file cannot have (over NAME_MAX with its suffix): the store fails, as on
            // a full disk, while the file itself reads.
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rotation-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let file = directory.appendingPathComponent(String(repeating: "r", count: 240)).path
            #expect(FileManager.default.createFile(atPath: file, contents: Data(refresh.utf8), attributes: [.posixPermissions: 0o600]))

            let oauth = EntraRefreshToken(authority: sandbox.baseURL, tenant: tenant, clientID: client, file: file)
            let token = try await oauth.fetch(using: HTTPClient(transport: sandbox.transport))
            #expect(try await Self.get(sandbox, "/v1.0/sites/contoso.sharepoint.com:/sites/Sales", token: token.value.exposedValue) == 200)
            #expect(try Secret.load(file: file).exposedValue == refresh, "the earlier refresh token stays, and works")
            _ = try await oauth.fetch(using: HTTPClient(transport: sandbox.transport))
        }
    }

    @Test("Entra: a declined code says so, and the verification page approves as the user chosen")
    func entraDeclineAndPage() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1, configure: { $0.announce = { _ in } }) { sandbox in
            let info = try await sandbox.info()
            let client = try sandbox.config().graph.clientID
            let base = "/\(info["tenantId"]!)/oauth2/v2.0"
            func start() async throws -> (String, String) {
                let started = try await Self.post(sandbox, base + "/devicecode", [("client_id", client), ("scope", "Sites.ReadWrite.All offline_access")])
                return (try #require(started.json["device_code"] as? String), try #require(started.json["user_code"] as? String))
            }
            func poll(_ code: String) async throws -> Answer {
                try await Self.post(sandbox, base + "/token", [("grant_type", "urn:ietf:params:oauth:grant-type:device_code"), ("client_id", client), ("device_code", code)])
            }
            let (declinedCode, declinedUser) = try await start()
            try await sandbox.admin("device", ["userCode": declinedUser, "approve": false])
            #expect(try await poll(declinedCode).error == "authorization_declined")

            let (deviceCode, userCode) = try await start()
            let page = try await Self.post(sandbox, "/devicelogin", [("code", userCode), ("user", "sky"), ("decision", "approve")])
            #expect(page.status == 200)
            let signedIn = try await poll(deviceCode)
            #expect(signedIn.status == 200 && signedIn.json["refresh_token"] != nil && signedIn.json["id_token"] == nil)
        }
    }

    @Test("Salesforce: `code` polls, too-fast polls slow down, the token acts as the user, revoking ends the refresh token")
    func salesforce() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1, configure: { $0.announce = { _ in }; $0.deviceCodeInterval = 30 }) { sandbox in
            let client = try sandbox.config().salesforce.clientID
            let started = try await Self.post(sandbox, "/services/oauth2/token", [("response_type", "device_code"), ("client_id", client), ("scope", "api refresh_token")])
            let deviceCode = try #require(started.json["device_code"] as? String)
            let userCode = try #require(started.json["user_code"] as? String)
            #expect(started.json["interval"] as? Int == 30)  // long, so the second poll is surely too soon however busy the machine
            let poll: [(String, String)] = [("grant_type", "device"), ("client_id", client), ("code", deviceCode)]
            #expect(try await Self.post(sandbox, "/services/oauth2/token", poll).error == "authorization_pending")
            #expect(try await Self.post(sandbox, "/services/oauth2/token", poll).error == "slow_down")
            let wrongField = try await Self.post(sandbox, "/services/oauth2/token", [("grant_type", "device"), ("client_id", client), ("device_code", deviceCode)])
            #expect(wrongField.status == 400, "the field is `code`, not `device_code`")

            try await sandbox.admin("device", ["userCode": userCode, "user": "morgan"])
            let signedIn = try await Self.post(sandbox, "/services/oauth2/token", poll)
            #expect(signedIn.status == 200)
            let access = try #require(signedIn.json["access_token"] as? String)
            let refresh = try #require(signedIn.json["refresh_token"] as? String)
            let users = try #require(try await sandbox.adminGet("users")["users"] as? [[String: Any]])
            let morgan = try #require(users.first { $0["name"] as? String == "morgan" }?["salesforceUserId"] as? String)
            #expect((signedIn.json["id"] as? String)?.hasSuffix("/" + morgan) == true)
            #expect(try await Self.get(sandbox, "/services/data/v62.0/limits", token: access) == 200)

            let refreshForm: [(String, String)] = [("grant_type", "refresh_token"), ("client_id", client), ("refresh_token", refresh)]
            let refreshed = try await Self.post(sandbox, "/services/oauth2/token", refreshForm)
            #expect(refreshed.status == 200 && refreshed.json["refresh_token"] == nil, "Salesforce keeps the refresh token")
            #expect((refreshed.json["id"] as? String)?.hasSuffix("/" + morgan) == true)
            try await sandbox.admin("users/morgan/revoke")
            let revoked = try await Self.post(sandbox, "/services/oauth2/token", refreshForm)
            #expect(revoked.status == 400 && revoked.error == "invalid_grant")
        }
    }
}
