import Config
import Foundation
import HTTP
import Services
import Testing
import TestSupport

@Suite("token providers")
struct TokenTests {
    @Test("a token is fetched once and reused")
    func caching() async throws {
        try await withSandbox { sandbox in
            let connections = try sandbox.connections()
            for _ in 0..<20 { _ = try await connections.graph.site(hostname: "contoso.sharepoint.com", path: "/sites/Sales") }
            _ = try await connections.salesforce.query("SELECT Id FROM Account LIMIT 1")
            _ = try await connections.salesforce.query("SELECT Id FROM Case LIMIT 1")
            let stats = try await sandbox.stats()
            #expect(stats["token.entra"] == 1)
            #expect(stats["token.salesforce"] == 1)
        }
    }

    @Test("fifty concurrent callers cause one token request")
    func singleFlight() async throws {
        try await withSandbox(configure: { $0.faults.latencyMilliseconds = 50 }) { sandbox in
            let connections = try sandbox.connections()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<50 {
                    group.addTask { _ = try await connections.graph.site(hostname: "contoso.sharepoint.com", path: "/sites/Sales") }
                }
                try await group.waitForAll()
            }
            #expect(try await sandbox.stats()["token.entra"] == 1)
        }
    }

    @Test("a token is refreshed ahead of its expiry, before any 401")
    func refreshAhead() async throws {
        // A life long enough that the refreshed token cannot run out on its way, however busy the machine
        // (3 s did under CI's parallel load, 12 s on a machine loaded twice over); its last 4 s are the
        // refresh margin.
        try await withSandbox(configure: { $0.tokenLifetime = 40 }) { sandbox in
            let connections = try sandbox.connections()
            _ = try await connections.graph.site(hostname: "contoso.sharepoint.com", path: "/sites/Sales")
            let first = try await connections.graphToken.token()
            let expires = try #require(first.expiresAt)
            // Inside the refresh margin: the next request takes a new token first, never sending the old one.
            try await Task.sleep(for: .milliseconds(Int(max(0, expires.timeIntervalSinceNow - 0.6) * 1000)))
            _ = try await connections.graph.site(hostname: "contoso.sharepoint.com", path: "/sites/Sales")
            let stats = try await sandbox.stats()
            // At least the one refresh; a machine so busy that the request outlives the new token's margin
            // too refreshes again, still before any 401.
            #expect(stats["token.entra", default: 0] >= 2)
            #expect(stats["graph.401", default: 0] == 0)
        }
    }

    @Test("a token that expires mid-run is replaced after one 401, and the request retried once")
    func expiryMidRun() async throws {
        try await withSandbox { sandbox in
            let connections = try sandbox.connections()
            _ = try await connections.graph.site(hostname: "contoso.sharepoint.com", path: "/sites/Sales")
            _ = try await connections.salesforce.query("SELECT Id FROM Account LIMIT 1")
            try await sandbox.admin("tokens/expire")
            _ = try await connections.graph.site(hostname: "contoso.sharepoint.com", path: "/sites/Sales")
            _ = try await connections.salesforce.query("SELECT Id FROM Account LIMIT 1")
            let stats = try await sandbox.stats()
            #expect(stats["graph.401"] == 1)
            #expect(stats["sf.401"] == 1)
            #expect(stats["token.entra"] == 2)
            #expect(stats["token.salesforce"] == 2)
        }
    }

    @Test("a 401 that persists is retried only once")
    func persistent401() async throws {
        try await withSandbox { sandbox in
            let connections = try sandbox.connections()
            let stuck = StuckToken(inner: connections.graphToken)
            let client = HTTPClient(transport: sandbox.transport)
            let response = try await client.send(HTTPRequest(url: "\(sandbox.baseURL)/v1.0/sites/root"), auth: stuck)
            #expect(response.status == 401)
            #expect(try await sandbox.stats()["graph.401"] == 2)
        }
    }

    @Test("a wrong client secret fails with the service's code and without the secret in the text")
    func wrongSecret() async throws {
        try await withSandbox { sandbox in
            let config = try sandbox.config()
            let secret = Secret("definitely-not-the-secret-\(UUID().uuidString)")
            let entra = EntraClientCredentials(authority: config.graph.authority, tenant: config.graph.tenant,
                                               clientID: config.graph.clientID, clientSecret: secret)
            do {
                _ = try await entra.fetch(using: HTTPClient(transport: sandbox.transport))
                Issue.record("a wrong secret was accepted")
            } catch let error as TokenEndpointError {
                #expect(error.status == 401)
                #expect(error.code == "invalid_client")
                #expect(!"\(error)".contains(secret.exposedValue))
            }
        }
    }

    @Test("Salesforce refresh-token flow, with the refresh token kept in a 0600 file")
    func salesforceRefreshToken() async throws {
        try await withSandbox { sandbox in
            let config = try sandbox.config()
            let oauth = SalesforceOAuth(loginURL: config.salesforce.instanceURL, clientID: config.salesforce.clientID,
                                        grant: .refreshToken(file: sandbox.directory.appendingPathComponent("secrets/salesforce-refresh-token").path, clientSecret: nil))
            let token = try await oauth.fetch(using: HTTPClient(transport: sandbox.transport))
            #expect(token.instanceURL == sandbox.baseURL)
            #expect(token.expiresAt == nil)  // Salesforce says nothing of expiry
        }
    }
}

@Suite("secrets")
struct SecretTests {
    @Test("secrets print as <redacted> wherever they are interpolated or dumped")
    func redaction() {
        let secret = Secret("s3cr3t-value")
        #expect("\(secret)" == "<redacted>")
        #expect(String(reflecting: secret) == "<redacted>")
        var dumped = ""
        dump(secret, to: &dumped)
        #expect(!dumped.contains("s3cr3t-value"))
        let token = AccessToken(value: Secret("tok-123"), expiresAt: nil)
        #expect(!"\(token)".contains("tok-123"))
    }

    @Test("a secret file readable by others is refused, naming the file and the fix")
    func looseFileRefused() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("secret-\(UUID().uuidString)").path
        FileManager.default.createFile(atPath: path, contents: Data("x\n".utf8), attributes: [.posixPermissions: 0o644])
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: SecretSourceError.tooOpen(path: path, mode: "644")) { try Secret.load(file: path) }
        chmod(path, 0o600)
        #expect(try Secret.load(file: path).exposedValue == "x")
    }

    @Test("a secret file owned by another user is refused, even at 0600")
    func foreignOwnerRefused() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("secret-\(UUID().uuidString)").path
        FileManager.default.createFile(atPath: path, contents: Data("x\n".utf8), attributes: [.posixPermissions: 0o600])
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(chown(path, 4242, 4242) == 0)
        #expect(throws: SecretSourceError.notOwned(path: path, owner: 4242)) { try Secret.load(file: path) }
    }

    @Test("a rotated secret is written through a new exclusive file, never through a planted link")
    func rotationIgnoresPlantedLinks() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rotation-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("refresh-token").path
        let victim = directory.appendingPathComponent("victim").path
        FileManager.default.createFile(atPath: victim, contents: Data("untouched".utf8))
        // The old scheme's temporary name, planted as a link to another file.
        #expect(symlink(victim, path + ".tmp-\(getpid())") == 0)
        try Secret.store(Secret("rotated"), file: path)
        #expect(try Secret.load(file: path).exposedValue == "rotated")
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "untouched")
        var info = stat()
        #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o600)
    }

    @Test("a bearer token never goes to a host the config does not name (a nextLink elsewhere), nor over plain http off loopback")
    func tokensStayWithConfiguredHosts() async throws {
        try await withSandbox { sandbox in
            let connections = try sandbox.connections()
            let port = URLComponents(string: sandbox.baseURL)!.port!
            let sandboxOrigin = try #require(Origin(url: sandbox.baseURL))
            #expect(connections.graphToken.allowedOrigins == [sandboxOrigin])
            #expect(connections.salesforceToken.allowedOrigins == [sandboxOrigin])
            #expect(connections.graphSignIn.allowedOrigins == [sandboxOrigin])
            #expect(connections.salesforceSignIn.allowedOrigins == [sandboxOrigin])
            do {
                _ = try await connections.http.send(HTTPRequest(url: "http://localhost:\(port)/v1.0/drives"), auth: connections.graphToken)
                Issue.record("a token went to a host the config does not name")
            } catch let error as HTTPError {
                guard case .untrustedHost(let host, _) = error else { Issue.record("\(error)"); return }
                #expect(host == "http://localhost:\(port)")
            }
            // Plain http to a host that is not this machine is refused before anything is sent.
            do {
                _ = try await connections.http.send(HTTPRequest(url: "http://192.0.2.1/"))
                Issue.record("plain http off loopback was sent")
            } catch let error as HTTPError {
                guard case .cleartext = error else { Issue.record("\(error)"); return }
            }
            let tokens = try await sandbox.stats()["token", default: 0]
            #expect(tokens == 0)
        }
    }

    @Test("each service's tokens may go only to the origins the config names for that service, ports made explicit")
    func originsPerService() throws {
        let config = try ConfigLoader.parse("""
            [salesforce]
            instance_url = "https://contoso.my.salesforce.com"
            client_id = "3MVG9abc"
            client_secret_env = "SF_SECRET"

            [graph]
            authority = "https://login.microsoftonline.com"
            endpoint = "https://graph.microsoft.com:443/v1.0"
            tenant = "contoso.onmicrosoft.com"
            client_id = "00000000-0000-0000-0000-000000000001"
            client_secret_env = "GRAPH_SECRET"
            site = "contoso.sharepoint.com:/sites/Sales"

            [[objects]]
            object = "Account"
            directory = "Accounts"
            name = "{Name}"
            folder = "Accounts/{Name} ({Id})"
            """, path: "/etc/crmfs/sales.conf")
        let graph = Connections.graphOrigins(config), salesforce = Connections.salesforceOrigins(config)
        #expect(graph == Origin.of(["https://graph.microsoft.com:443", "https://login.microsoftonline.com:443"]))
        #expect(salesforce == Origin.of(["https://contoso.my.salesforce.com:443"]))
        #expect(graph.isDisjoint(with: salesforce))
        #expect(!graph.contains(Origin(url: "https://graph.microsoft.com:8443")!))
        #expect(!graph.contains(Origin(url: "http://graph.microsoft.com")!))
    }

    @Test("a mount whose secret file is world-readable fails with a config error naming the key")
    func looseSecretInConfig() async throws {
        try await withSandbox { sandbox in
            let secretPath = sandbox.directory.appendingPathComponent("secrets/graph-client-secret").path
            chmod(secretPath, 0o644)
            do {
                _ = try sandbox.connections()
                Issue.record("a world-readable secret file was accepted")
            } catch let error as ConfigError {
                #expect(error.key == "graph.client_secret_file")
                #expect(error.file == sandbox.configPath)
                #expect(error.message.contains("chmod 600"))
            }
        }
    }
}

/// Always hands out the same token, even after a 401: proves the client retries only once.
struct StuckToken: AccessTokenProvider {
    let inner: any AccessTokenProvider
    var allowedOrigins: Set<Origin> { inner.allowedOrigins }
    func token() async throws -> AccessToken {
        var token = try await inner.token()
        token.value = Secret("expired-\(token.value.exposedValue.prefix(4))")
        return token
    }
    func invalidate(_ token: AccessToken) async {}
}
