import Foundation

/// Where a request goes, as far as a bearer token is concerned: scheme, host and port, the scheme's
/// default port made explicit (`https://graph.microsoft.com` is `https://graph.microsoft.com:443`).
public struct Origin: Hashable, Sendable, CustomStringConvertible {
    public let scheme: String
    public let host: String
    public let port: Int

    /// The origin of `url`; nil for a URL without a host, or of a scheme other than https and http.
    public init?(url: String) {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
              var host = components.host?.lowercased(), !host.isEmpty else { return nil }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let defaultPort: Int
        switch scheme {
        case "https": defaultPort = 443
        case "http": defaultPort = 80
        default: return nil
        }
        self.scheme = scheme
        self.host = host
        self.port = components.port ?? defaultPort
    }

    /// The origins of `urls`, leaving out those that name none.
    public static func of(_ urls: [String]) -> Set<Origin> {
        Set(urls.compactMap { Origin(url: $0) })
    }

    public var description: String { "\(scheme)://\(host.contains(":") ? "[\(host)]" : host):\(port)" }
}

/// One service's tokens, bound to the origins they may be sent to: the client attaches them to no request
/// for another origin (another service's host, another port, plain http where the config says https).
public struct OriginBoundTokens: AccessTokenProvider {
    private let tokens: any AccessTokenProvider
    public let allowedOrigins: Set<Origin>

    public init(_ tokens: any AccessTokenProvider, origins: Set<Origin>) {
        self.tokens = tokens
        self.allowedOrigins = origins
    }

    public func token() async throws -> AccessToken { try await tokens.token() }

    public func invalidate(_ token: AccessToken) async { await tokens.invalidate(token) }
}
