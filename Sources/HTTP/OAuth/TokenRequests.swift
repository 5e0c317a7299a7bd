import Foundation
import Logging

/// The token requests of Entra ID v2.0 and Salesforce. They run without retries on 401
/// (a 401 here means bad credentials) but with the transport's throttling rules.
enum TokenRequest {
    /// Keeps a rotated refresh token. The one just used stays good (Entra ID's do, and Salesforce's unless
    /// the connected app rotates them), so a store that fails (a full disk) must not fail the request that
    /// got a good access token: it is logged, and the earlier refresh token stays in use.
    static func keep(_ rotated: Secret, file: String) {
        do {
            try Secret.store(rotated, file: file)
        } catch {
            Logger(label: "crmfs.auth").warning("could not keep the new refresh token; the earlier one stays in use",
                                                metadata: ["file": "\(file)", "error": "\(error)"])
        }
    }

    /// POSTs the form; an answer other than 200 with `expecting` (the access token, or a device code) is the
    /// service's OAuth error.
    static func post(_ url: String, form: [(String, String)], client: HTTPClient, expecting key: String = "access_token") async throws -> (JSONValue, HTTPResponse) {
        var headers = HTTPHeaders()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        headers["Accept"] = "application/json"
        // Token requests are safe to repeat: each just mints another token.
        let request = HTTPRequest(method: "POST", url: url, headers: headers, body: .bytes(FormEncoding.encode(form)), isIdempotent: true)
        let response = try await client.send(request)
        let json = (try? JSONDecoder().decode(JSONValue.self, from: response.body)) ?? .null
        guard response.status == 200, let value = json[key]?.stringValue, !value.isEmpty else {
            throw TokenEndpointError(
                endpoint: url, status: response.status,
                code: json["error"]?.stringValue ?? "unexpected_response",
                detail: json["error_description"]?.stringValue ?? "")
        }
        return (json, response)
    }

    /// A token answer's `expires_in`, in seconds (a number, or a number in a string as some services send), from
    /// 10 s to a day: `nan` would never refresh, 0 or less would refresh on every request (a token request each).
    static func lifetime(_ json: JSONValue) -> Double? {
        WireNumber.double(json: json["expires_in"], in: 10...86_400)
    }

    /// Salesforce's `issued_at` (epoch milliseconds, as a string); one more than a day from `now` is taken for
    /// `now`, since an expiry reckoned from it (the session timeout) would be long past or far ahead.
    static func issuedAt(_ json: JSONValue, now: Date = Date()) -> Date {
        guard let milliseconds = WireNumber.double(json: json["issued_at"], in: -1e15...1e15) else { return now }
        let issued = Date(timeIntervalSince1970: milliseconds / 1000)
        return abs(issued.timeIntervalSince(now)) <= 86_400 ? issued : now
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
        let lifetime = TokenRequest.lifetime(json) ?? 3599
        return AccessToken(value: Secret(json["access_token"]!.stringValue!), expiresAt: issued.addingTimeInterval(lifetime), issuedAt: issued)
    }

    /// The process-wide cached provider for this authority, client and scope.
    public func provider(using client: HTTPClient, registry: TokenCacheRegistry = .shared) -> TokenCache {
        registry.cache(authority: "\(authority)/\(tenant)", clientID: clientID, scope: scope) { try await fetch(using: client) }
    }
}

/// Entra ID v2.0 refresh token (delegated: a user's own sign-in, docs/wire-facts.md E2). The refresh token lives in a
/// 0600 file; each answer carries a new one, which replaces it there atomically. A public client sends no secret.
public struct EntraRefreshToken: Sendable {
    public var authority: String
    public var tenant: String
    public var clientID: String
    public var scope: String
    public var file: String

    public init(authority: String, tenant: String, clientID: String, scope: String = EntraRefreshToken.userScope, file: String) {
        self.authority = authority.trimmingSuffix("/")
        self.tenant = tenant
        self.clientID = clientID
        self.scope = scope
        self.file = file
    }

    /// What a user's sign-in asks for: the Graph permissions the app was granted, a refresh token, and who signed in.
    public static let userScope = "https://graph.microsoft.com/.default offline_access openid profile"

    public var tokenURL: String { "\(authority)/\(tenant)/oauth2/v2.0/token" }

    public func fetch(using client: HTTPClient) async throws -> AccessToken {
        try await SignInRequired.refreshing("Microsoft 365", file: file) { refresh in
            let issued = Date()
            let (json, _) = try await TokenRequest.post(tokenURL, form: [
                ("client_id", clientID), ("grant_type", "refresh_token"), ("refresh_token", refresh.exposedValue), ("scope", scope),
            ], client: client)
            if let rotated = json["refresh_token"]?.stringValue, !rotated.isEmpty { TokenRequest.keep(Secret(rotated), file: file) }
            let lifetime = TokenRequest.lifetime(json) ?? 3599
            return AccessToken(value: Secret(json["access_token"]!.stringValue!), expiresAt: issued.addingTimeInterval(lifetime), issuedAt: issued)
        }
    }

    public func provider(using client: HTTPClient, registry: TokenCacheRegistry = .shared) -> TokenCache {
        registry.cache(authority: "\(authority)/\(tenant)", clientID: clientID, scope: "user:" + file) { try await fetch(using: client) }
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
        case .refreshToken(_, let secret):
            form += [("grant_type", "refresh_token")]
            if let secret { form.append(("client_secret", secret.exposedValue)) }
        }
        let url = tokenURL
        let json: JSONValue
        if case .refreshToken(let file, _) = grant {
            json = try await SignInRequired.refreshing("Salesforce", file: file) { refresh in
                let (json, _) = try await TokenRequest.post(url, form: form + [("refresh_token", refresh.exposedValue)], client: client)
                if let rotated = json["refresh_token"]?.stringValue, !rotated.isEmpty { TokenRequest.keep(Secret(rotated), file: file) }
                return json
            }
        } else {
            json = try await TokenRequest.post(url, form: form, client: client).0
        }
        // issued_at is epoch milliseconds, as a string.
        let issued = TokenRequest.issuedAt(json)
        return AccessToken(
            value: Secret(json["access_token"]!.stringValue!),
            expiresAt: sessionTimeout.map { issued.addingTimeInterval($0) },
            instanceURL: json["instance_url"]?.stringValue,
            issuedAt: issued,
            userID: AccessToken.userID(identityURL: json["id"]?.stringValue))
    }

    public func provider(using client: HTTPClient, registry: TokenCacheRegistry = .shared) -> TokenCache {
        // A user's tokens (a refresh token's) are theirs alone: never shared with the app's own.
        let identity = if case .refreshToken(let file, _) = grant { "api|user:" + file } else { "api" }
        return registry.cache(authority: loginURL, clientID: clientID, scope: identity) { try await fetch(using: client) }
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String {
        var result = self
        while result.hasSuffix(suffix) { result.removeLast(suffix.count) }
        return result
    }
}
