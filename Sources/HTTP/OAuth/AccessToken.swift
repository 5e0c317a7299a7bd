import Foundation

public struct AccessToken: Sendable {
    public var value: Secret
    /// When the service says the token stops working; nil when it does not say (Salesforce).
    public var expiresAt: Date?
    /// Salesforce answers with the REST base to use; Entra does not.
    public var instanceURL: String?
    public var issuedAt: Date
    /// Whose token it is, when the service says: Salesforce's User Id, the last part of its identity URL
    /// (`https://login.salesforce.com/id/00D…/005…`).
    public var userID: String?

    public init(value: Secret, expiresAt: Date?, instanceURL: String? = nil, issuedAt: Date = Date(), userID: String? = nil) {
        self.value = value
        self.expiresAt = expiresAt
        self.instanceURL = instanceURL
        self.issuedAt = issuedAt
        self.userID = userID
    }

    /// The User Id at the end of a Salesforce identity URL.
    public static func userID(identityURL: String?) -> String? {
        guard let identityURL, let last = identityURL.split(separator: "/").last, last.hasPrefix("005") else { return nil }
        return String(last)
    }

    /// True once the token is within the refresh margin of its expiry: a tenth of its life, between 1 s and 5 min.
    public func needsRefresh(now: Date = Date()) -> Bool {
        guard let expiresAt else { return false }
        let lifetime = expiresAt.timeIntervalSince(issuedAt)
        let margin = min(300, max(1, lifetime / 10))
        return now.addingTimeInterval(margin) >= expiresAt
    }
}

public protocol AccessTokenProvider: Sendable {
    /// A token that is valid now; fetched or refreshed when needed.
    func token() async throws -> AccessToken
    /// Forget `token` (the service answered 401 to it) so the next call fetches a new one.
    func invalidate(_ token: AccessToken) async
    /// The origins (scheme, host and port, as the config names them) this provider's tokens may be sent
    /// to: `HTTPClient` attaches a token to no request for another. Empty: none at all.
    var allowedOrigins: Set<Origin> { get }
}

public struct TokenEndpointError: Error, CustomStringConvertible, Sendable {
    public var endpoint: String
    public var status: Int
    /// The OAuth `error` field (`invalid_client`, `invalid_grant`, ...).
    public var code: String
    public var detail: String

    public var description: String {
        "token request to \(endpoint) failed: HTTP \(status) \(code)" + (detail.isEmpty ? "" : ": \(detail)")
    }
}

/// A user's sign-in that no longer works (revoked, expired, or never made): no retry helps until the user
/// signs in again. The file system answers EACCES for it, not EIO.
public struct SignInRequired: Error, CustomStringConvertible, Sendable {
    public var service: String
    public var reason: String

    public init(service: String, reason: String) {
        self.service = service
        self.reason = reason
    }

    public var description: String { "the sign-in to \(service) no longer works (\(reason))" }

    /// Runs a refresh-token request with the token kept in `file`, turning the service's word that the token
    /// is no good (or a missing file) into `SignInRequired`.
    static func refreshing<T>(_ service: String, file: String, _ body: (Secret) async throws -> T) async throws -> T {
        guard FileManager.default.fileExists(atPath: file) else { throw SignInRequired(service: service, reason: "no sign-in is kept in \(file)") }
        let refreshToken = try Secret.load(file: file)
        do {
            return try await body(refreshToken)
        } catch let error as TokenEndpointError where error.code == "invalid_grant" || error.code == "interaction_required" {
            throw SignInRequired(service: service, reason: error.detail.isEmpty ? error.code : "\(error.code): \(error.detail)")
        }
    }
}
