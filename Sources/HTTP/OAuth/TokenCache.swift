import Foundation

/// Caches one access token and fetches a new one ahead of expiry, at most one fetch at a time:
/// fifty callers arriving together share the single request.
public actor TokenCache: AccessTokenProvider {
    public typealias Fetch = @Sendable () async throws -> AccessToken

    private let fetch: Fetch
    private var current: AccessToken?
    private var inflight: Task<AccessToken, Error>?

    public init(fetch: @escaping Fetch) { self.fetch = fetch }

    /// None: a cache the registry shares is bound to one service's origins by `OriginBoundTokens`
    /// before a client sends its tokens anywhere.
    public nonisolated var allowedOrigins: Set<Origin> { [] }

    public func token() async throws -> AccessToken {
        if let current, !current.needsRefresh() { return current }
        if let inflight { return try await inflight.value }
        let task = Task { try await fetch() }
        inflight = task
        defer { inflight = nil }
        let token = try await task.value
        current = token
        return token
    }

    public func invalidate(_ token: AccessToken) {
        if current?.value == token.value { current = nil }
    }
}

/// One token cache per authority + client + scope, shared by every client in the process.
public final class TokenCacheRegistry: @unchecked Sendable {
    public static let shared = TokenCacheRegistry()
    private let lock = NSLock()
    private var caches: [String: TokenCache] = [:]

    public init() {}

    public func cache(authority: String, clientID: String, scope: String, fetch: @escaping TokenCache.Fetch) -> TokenCache {
        let key = "\(authority)|\(clientID)|\(scope)"
        return lock.withLock {
            if let cache = caches[key] { return cache }
            let cache = TokenCache(fetch: fetch)
            caches[key] = cache
            return cache
        }
    }
}
