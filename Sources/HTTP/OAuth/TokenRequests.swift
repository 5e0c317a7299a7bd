import Foundation

/// The token requests of Entra ID v2.0 and Salesforce. They run without retries on 401
/// (a 401 here means bad credentials) but with the transport's throttling rules.
enum TokenRequest {
    static func post(_ url: String, form: [(String, String)], client: HTTPClient) async throws -> (JSONValue, HTTPResponse) {
        var headers = HTTPHeaders()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        headers["Accept"] = "application/json"
        // Token requests are safe to repeat: each just mints another token.
        let request = HTTPRequest(method: "POST", url: url, headers: headers, body: .bytes(FormEncoding.encode(form)), isIdempotent: true)
        let response = try await client.send(request)
        let json = (try? JSONDecoder().decode(JSONValue.self, from: response.body)) ?? .null
        guard response.status == 200, let token = json["access_token"]?.stringValue, !token.isEmpty else {
            throw TokenEndpointError(
                endpoint: url, status: response.status,
                code: json["error"]?.stringValue ?? "unexpected_response",
                detail: json["error_description"]?.stringValue ?? "")
        }
        return (json, response)
    }
}

/// Entra ID v2.0 client credentials (app-only): `POST {authority}/{tenant}/oauth2/v2.0/token`.
public struct EntraClientCredentials: Sendable {
    public var authority: String
    public var tenant: String
    public var clientID: String
    public var clientSecret: Secret
    public var scope: String

    public init(authority: String = "https://login.microsoftonline.com", tenant: String, clientID: String, clientSecret: Secret, scope: String = "https://graph.microsoft.com/.default") {
        self.authority = authority.trimmingSuffix("/")
        self.tenant = tenant
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.scope = scope
    }

    public var tokenURL: String { "\(authority)/\(tenant)/oauth2/v2.0/token" }

    public func fetch(using client: HTTPClient) async throws -> AccessToken {
        let issued = Date()
        let (json, _) = try await TokenRequest.post(tokenURL, form: [
            ("client_id", clientID), ("scope", scope),
            ("client_secret", clientSecret.exposedValue), ("grant_type", "client_credentials"),
        ], client: client)
        let lifetime = json["expires_in"]?.doubleValue ?? Double(json["expires_in"]?.stringValue ?? "") ?? 3599
        return AccessToken(value: Secret(json["access_token"]!.stringValue!), expiresAt: issued.addingTimeInterval(lifetime), issuedAt: issued)
    }

    /// The process-wide cached provider for this authority, client and scope.
    public func provider(using client: HTTPClient, registry: TokenCacheRegistry = .shared) -> TokenCache {
        registry.cache(authority: "\(authority)/\(tenant)", clientID: clientID, scope: scope) { try await fetch(using: client) }
    }
}

/// Salesforce OAuth at `{loginURL}/services/oauth2/token`: client credentials (My Domain host) or refresh token.
/// Salesforce returns no `expires_in`: the token lives as long as the org's session timeout,
/// so the cache refreshes ahead of `sessionTimeout` when one is configured, and otherwise on 401.
public struct SalesforceOAuth: Sendable {
    public enum Grant: Sendable {
        case clientCredentials(clientSecret: Secret)
        /// The refresh token lives in a 0600 file; a rotated one replaces it there.
        case refreshToken(file: String, clientSecret: Secret?)
    }

    public var loginURL: String
    public var clientID: String
    public var grant: Grant
    public var sessionTimeout: TimeInterval?

    public init(loginURL: String, clientID: String, grant: Grant, sessionTimeout: TimeInterval? = nil) {
        self.loginURL = loginURL.trimmingSuffix("/")
        self.clientID = clientID
        self.grant = grant
        self.sessionTimeout = sessionTimeout
    }

    public var tokenURL: String { "\(loginURL)/services/oauth2/token" }

    public func fetch(using client: HTTPClient) async throws -> AccessToken {
        var form: [(String, String)] = [("client_id", clientID)]
        switch grant {
        case .clientCredentials(let secret):
            form += [("grant_type", "client_credentials"), ("client_secret", secret.exposedValue)]
        case .refreshToken(let file, let secret):
            let refresh = try Secret.load(file: file)
            form += [("grant_type", "refresh_token"), ("refresh_token", refresh.exposedValue)]
            if let secret { form.append(("client_secret", secret.exposedValue)) }
        }
        let (json, _) = try await TokenRequest.post(tokenURL, form: form, client: client)
        if case .refreshToken(let file, _) = grant, let rotated = json["refresh_token"]?.stringValue, !rotated.isEmpty {
            try Secret.store(Secret(rotated), file: file)
        }
        // issued_at is epoch milliseconds, as a string.
        let issued = (json["issued_at"]?.stringValue).flatMap(Double.init).map { Date(timeIntervalSince1970: $0 / 1000) } ?? Date()
        return AccessToken(
            value: Secret(json["access_token"]!.stringValue!),
            expiresAt: sessionTimeout.map { issued.addingTimeInterval($0) },
            instanceURL: json["instance_url"]?.stringValue,
            issuedAt: issued)
    }

    public func provider(using client: HTTPClient, registry: TokenCacheRegistry = .shared) -> TokenCache {
        registry.cache(authority: loginURL, clientID: clientID, scope: "api") { try await fetch(using: client) }
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String {
        var result = self
        while result.hasSuffix(suffix) { result.removeLast(suffix.count) }
        return result
    }
}
