import Foundation

/// A user's sign-in on a machine without a browser of its own (RFC 8628): the service hands out a code, the
/// user enters it on any device, and the client polls until the user approves. Entra ID (docs/wire-facts.md E1)
/// and Salesforce (S1) differ only in their endpoints and field names.
public struct DeviceCodeSignIn: Sendable {
    public enum Service: Sendable {
        /// `POST {authority}/{tenant}/oauth2/v2.0/devicecode`, then `.../token` with `device_code`.
        case entra(authority: String, tenant: String)
        /// `POST {login}/services/oauth2/token` with `response_type=device_code`, then `grant_type=device` with `code`.
        case salesforce(loginURL: String)
    }

    /// What the user must do, as the service words it.
    public struct Prompt: Sendable {
        public var verificationURI: String
        public var userCode: String
        public var message: String
    }

    /// The tokens a finished sign-in gives.
    public struct Result: Sendable {
        public var accessToken: AccessToken
        public var refreshToken: Secret
        /// Who signed in, when the service says (Entra's ID token; Salesforce's identity URL).
        public var account: String?
    }

    public var service: Service
    public var clientID: String
    public var scope: String

    public init(service: Service, clientID: String, scope: String) {
        self.service = service
        self.clientID = clientID
        self.scope = scope
    }

    /// Runs the sign-in: asks for a code, tells `prompt` what the user must do, and polls at the interval the
    /// service asks (5 s more after each `slow_down`) until the user approves, declines or the code expires.
    public func run(using client: HTTPClient, prompt: @Sendable (Prompt) -> Void) async throws -> Result {
        let start: (url: String, form: [(String, String)])
        let tokenURL: String
        switch service {
        case .entra(let authority, let tenant):
            let base = "\(authority.trimmingSuffix("/"))/\(tenant)/oauth2/v2.0"
            start = ("\(base)/devicecode", [("client_id", clientID), ("scope", scope)])
            tokenURL = "\(base)/token"
        case .salesforce(let loginURL):
            tokenURL = "\(loginURL.trimmingSuffix("/"))/services/oauth2/token"
            start = (tokenURL, [("response_type", "device_code"), ("client_id", clientID), ("scope", scope)])
        }
        let (started, _) = try await TokenRequest.post(start.url, form: start.form, client: client, expecting: "device_code")
        guard let deviceCode = started["device_code"]?.stringValue, let userCode = started["user_code"]?.stringValue,
              let uri = started["verification_uri"]?.stringValue else {
            throw TokenEndpointError(endpoint: start.url, status: 200, code: "unexpected_response", detail: "no device_code, user_code or verification_uri")
        }
        prompt(Prompt(verificationURI: uri, userCode: userCode,
                      message: started["message"]?.stringValue ?? "To sign in, open \(uri) in a web browser and enter the code \(userCode)."))
        let timing = Self.timing(started)
        var interval = timing.interval
        let deadline = Date().addingTimeInterval(timing.lifetime)
        let poll: [(String, String)] = switch service {
        case .entra: [("grant_type", "urn:ietf:params:oauth:grant-type:device_code"), ("client_id", clientID), ("device_code", deviceCode)]
        case .salesforce: [("grant_type", "device"), ("client_id", clientID), ("code", deviceCode)]
        }
        while true {
            try await Task.sleep(for: .seconds(interval))
            do {
                let issued = Date()
                let (json, _) = try await TokenRequest.post(tokenURL, form: poll, client: client)
                return try Self.result(json, issued: issued, endpoint: tokenURL)
            } catch let error as TokenEndpointError where error.code == "authorization_pending" && Date() < deadline {
                continue
            } catch let error as TokenEndpointError where error.code == "slow_down" && Date() < deadline {
                interval = min(interval + 5, Self.longestInterval)
            }
        }
    }

    /// The longest wait between polls, whatever the service asks: a sign-in the user finished is seen within it.
    static let longestInterval = 60

    /// How often to poll and for how long, as the service's answer says: `interval` seconds (5 when it does
    /// not say), from 1 to `longestInterval`, since a huge one would never poll again (and overflow
    /// `Task.sleep`); `expires_in` seconds (900 when it does not say), from 1 to an hour.
    static func timing(_ started: JSONValue) -> (interval: Int, lifetime: TimeInterval) {
        (WireNumber.int(json: started["interval"], in: 1...longestInterval) ?? 5, WireNumber.double(json: started["expires_in"], in: 1...3600) ?? 900)
    }

    static func result(_ json: JSONValue, issued: Date, endpoint: String) throws -> Result {
        guard let refresh = json["refresh_token"]?.stringValue, !refresh.isEmpty else {
            throw TokenEndpointError(endpoint: endpoint, status: 200, code: "no_refresh_token",
                                     detail: "the service gave no refresh token (the scope must allow offline access)")
        }
        let lifetime = TokenRequest.lifetime(json)
        let token = AccessToken(value: Secret(json["access_token"]?.stringValue ?? ""), expiresAt: lifetime.map { issued.addingTimeInterval($0) },
                                instanceURL: json["instance_url"]?.stringValue, issuedAt: issued)
        return Result(accessToken: token, refreshToken: Secret(refresh), account: account(json))
    }

    /// The signed-in user's name: Entra's ID token `preferred_username`, or Salesforce's identity URL.
    static func account(_ json: JSONValue) -> String? {
        if let idToken = json["id_token"]?.stringValue, let claims = jwtClaims(idToken), let name = claims["preferred_username"]?.stringValue {
            return name
        }
        return json["id"]?.stringValue
    }
}

/// The claims of a JWT, read without checking its signature: only for showing who signed in.
func jwtClaims(_ jwt: String) -> JSONValue? {
    let parts = jwt.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 3 else { return nil }
    var payload = parts[1].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    while payload.count % 4 != 0 { payload += "=" }
    guard let data = Data(base64Encoded: payload) else { return nil }
    return try? JSONDecoder().decode(JSONValue.self, from: data)
}
