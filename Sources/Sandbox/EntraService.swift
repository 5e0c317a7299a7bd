import Foundation

/// Entra ID v2.0 token endpoint: client credentials for Microsoft Graph.
struct EntraService: Sendable {
    let credentials: SandboxCredentials
    let tokens: TokenRegistry
    let stats: Stats

    func handle(_ request: SandboxRequest) throws -> SandboxResponse {
        let segments = request.segments
        guard request.method == "POST", segments.count == 4, segments[3] == "token" else {
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
        guard let grant = form["grant_type"] else {
            throw error(400, "invalid_request", 900144, "AADSTS900144: The request body must contain the following parameter: 'grant_type'.")
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
