import Foundation

/// Entra ID v2.0 token endpoints for Microsoft Graph: client credentials (app-only), and the device code
/// flow with refresh tokens (delegated, a user of the demo tenant; docs/wire-facts.md E1, E2).
struct EntraService: Sendable {
    let credentials: SandboxCredentials
    let tokens: TokenRegistry
    let stats: Stats
    let signIns: DeviceSignIns

    func handle(_ request: SandboxRequest) throws -> SandboxResponse {
        let segments = request.segments
        guard request.method == "POST", segments.count == 4, segments[3] == "token" || segments[3] == "devicecode" else {
            throw error(400, "invalid_request", 900144, "AADSTS900144: The request body must contain the following parameter: 'grant_type'.")
        }
        let tenant = segments[0]
        guard tenant.caseInsensitiveCompare(credentials.tenantID) == .orderedSame
            || tenant.caseInsensitiveCompare(credentials.tenantDomain) == .orderedSame else {
            throw error(400, "invalid_request", 90002, "AADSTS90002: Tenant '\(tenant)' not found. Check to make sure you have the correct tenant ID.")
        }
        guard request.header("Content-Type")?.lowercased().hasPrefix("application/x-www-form-urlencoded") == true else {
            throw error(400, "invalid_request", 900144, "AADSTS900144: The request body must contain the following parameter: 'grant_type'.")
        }
        var form = Dictionary(FormDecoding.decode(String(decoding: request.body, as: UTF8.self)), uniquingKeysWith: { $1 })
        if let basic = BasicAuth.decode(request.header("Authorization")) {
            form["client_id"] = form["client_id"] ?? basic.user
            form["client_secret"] = basic.password
        }
        if segments[3] == "devicecode" { return try startDeviceSignIn(form, request: request) }
        guard let grant = form["grant_type"] else {
            throw error(400, "invalid_request", 900144, "AADSTS900144: The request body must contain the following parameter: 'grant_type'.")
        }
        if grant == "urn:ietf:params:oauth:grant-type:device_code" || grant == "refresh_token" {
            return try delegated(grant, form)
        }
        guard grant == "client_credentials" else {
            throw error(400, "unsupported_grant_type", 70003, "AADSTS70003: The app requested an unsupported grant type '\(grant)'.")
        }
        guard form["client_id"] == credentials.graphClientID else {
            throw error(400, "unauthorized_client", 700016, "AADSTS700016: Application with identifier '\(form["client_id"] ?? "")' was not found in the directory '\(tenant)'.")
        }
        guard let scope = form["scope"], scope == "https://graph.microsoft.com/.default" else {
            throw error(400, "invalid_scope", 1002012, "AADSTS1002012: The provided value for scope \(form["scope"] ?? "") is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).")
        }
        guard form["client_secret"] == credentials.graphClientSecret else {
            throw error(401, "invalid_client", 7000215, "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.")
        }
        stats.increment("token")
        stats.increment("token.entra")
        let token = tokens.issue(.graph, token: "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + SandboxCredentials.token(120) + "." + SandboxCredentials.token(43))
        return .json(200, ["token_type": "Bearer", "expires_in": Int(tokens.lifetime), "ext_expires_in": Int(tokens.lifetime), "access_token": token])
    }

    // MARK: Delegated sign-in

    private func startDeviceSignIn(_ form: [String: String], request: SandboxRequest) throws -> SandboxResponse {
        guard form["client_id"] == credentials.graphClientID else {
            throw error(400, "unauthorized_client", 700016, "AADSTS700016: Application with identifier '\(form["client_id"] ?? "")' was not found in the directory.")
        }
        guard let scope = form["scope"], !scope.isEmpty else {
            throw error(400, "invalid_request", 900144, "AADSTS900144: The request body must contain the following parameter: 'scope'.")
        }
        let verificationURI = request.origin + "/devicelogin"
        let started = signIns.start(.entra, clientID: credentials.graphClientID, scope: scope, verificationURI: verificationURI)
        return .json(200, [
            "device_code": started.deviceCode, "user_code": started.userCode, "verification_uri": verificationURI,
            "expires_in": Int(signIns.lifetime), "interval": signIns.interval,
            "message": "To sign in, use a web browser to open the page \(verificationURI) and enter the code \(started.userCode) to authenticate.",
        ])
    }

    private func delegated(_ grant: String, _ form: [String: String]) throws -> SandboxResponse {
        guard form["client_id"] == credentials.graphClientID else {
            throw error(400, "unauthorized_client", 700016, "AADSTS700016: Application with identifier '\(form["client_id"] ?? "")' was not found in the directory.")
        }
        let user: SandboxUser
        let scope: String
        if grant == "refresh_token" {
            guard let granted = signIns.grant(of: form["refresh_token"] ?? "", service: .entra, clientID: credentials.graphClientID) else {
                throw error(400, "invalid_grant", 50173, "AADSTS50173: The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.")
            }
            (user, scope) = (granted.user, granted.scope)
        } else {
            switch signIns.poll(.entra, deviceCode: form["device_code"] ?? "", clientID: credentials.graphClientID, enforceInterval: false) {
            case .approved(let approver, let granted): (user, scope) = (approver, granted)
            case .pending, .slowDown:
                throw error(400, "authorization_pending", 70016, "AADSTS70016: OAuth 2.0 device flow error. Authorization is pending. Continue polling.")
            case .declined:
                throw error(400, "authorization_declined", 70000, "AADSTS70000: The user denied the authorization request.")
            case .expired:
                throw error(400, "expired_token", 70020, "AADSTS70020: The provided value for the input parameter 'device_code' is not valid. This device code has expired.")
            case .unknown:
                throw error(400, "bad_verification_code", 70019, "AADSTS70019: The provided value for the input parameter 'device_code' is not valid.")
            }
        }
        stats.increment("token")
        stats.increment("token.entra")
        let token = tokens.issue(.graph, token: "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + SandboxCredentials.token(120) + "." + SandboxCredentials.token(43), user: user)
        let scopes = scope.split(separator: " ").map(String.init)
        var body: [String: Any] = ["token_type": "Bearer", "scope": scopes.filter { $0 != "offline_access" && $0 != "openid" && $0 != "profile" }.joined(separator: " "),
                                   "expires_in": Int(tokens.lifetime), "ext_expires_in": Int(tokens.lifetime), "access_token": token]
        if scopes.contains("offline_access") {
            // A new refresh token each time; the one used stays good (docs/wire-facts.md E2).
            body["refresh_token"] = signIns.issueRefreshToken(.init(service: .entra, clientID: credentials.graphClientID, scope: scope, user: user))
        }
        if scopes.contains("openid") { body["id_token"] = idToken(for: user) }
        return .json(200, body)
    }

    /// An ID token's claims (the signature is not checked by clients that only read who signed in).
    private func idToken(for user: SandboxUser) -> String {
        func part(_ object: [String: Any]) -> String {
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
            return data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        }
        let now = Int(Date().timeIntervalSince1970)
        return part(["typ": "JWT", "alg": "RS256"]) + "." + part([
            "aud": credentials.graphClientID, "iss": "https://login.microsoftonline.com/\(credentials.tenantID)/v2.0", "iat": now, "nbf": now, "exp": now + 3600,
            "name": user.displayName, "preferred_username": user.userPrincipalName, "tid": credentials.tenantID, "ver": "2.0",
        ]) + "." + SandboxCredentials.token(43)
    }

    private func error(_ status: Int, _ code: String, _ number: Int, _ description: String) -> ServiceFailure {
        ServiceFailure(response: .json(status, [
            "error": code, "error_description": description, "error_codes": [number],
            "timestamp": "\(GraphTime.format(Date()).replacingOccurrences(of: "T", with: " ").replacingOccurrences(of: "Z", with: "Z"))",
            "trace_id": UUID().uuidString.lowercased(), "correlation_id": UUID().uuidString.lowercased(),
        ]))
    }
}

enum BasicAuth {
    static func decode(_ header: String?) -> (user: String, password: String)? {
        guard let header, header.lowercased().hasPrefix("basic "),
              let data = Data(base64Encoded: String(header.dropFirst(6)).trimmingCharacters(in: .whitespaces)) else { return nil }
        let text = String(decoding: data, as: UTF8.self)
        guard let colon = text.firstIndex(of: ":") else { return nil }
        func decoded(_ s: Substring) -> String { String(s).removingPercentEncoding ?? String(s) }
        return (decoded(text[..<colon]), decoded(text[text.index(after: colon)...]))
    }
}
