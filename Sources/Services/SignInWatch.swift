import Config
import Foundation
import HTTP
import Logging

/// Hands out a service's tokens and says in the log, once, when the user's sign-in stops working (and again
/// once it works after `crmfs login`): every request meanwhile fails with EACCES, nothing staged is lost.
public final class SignInWatch: AccessTokenProvider, @unchecked Sendable {
    private let tokens: any AccessTokenProvider
    private let hint: String
    private let logger: Logger
    /// Why the last token request found the sign-in no longer working; nil while it works. Guarded by `lock`.
    private var failure: String?
    private let lock = NSLock()

    init(_ tokens: any AccessTokenProvider, config: MountConfig, logger: Logger) {
        self.tokens = tokens
        hint = config.userSignIns.isEmpty ? "check the config's credentials" : "run `crmfs login \(config.path)`"
        self.logger = logger
    }

    /// Why the sign-in does not work now (revoked, expired, missing); nil while it works.
    public var problem: String? { lock.withLock { failure } }

    public func token() async throws -> AccessToken {
        do {
            let token = try await tokens.token()
            let recovered = lock.withLock {
                defer { failure = nil }
                return failure != nil
            }
            if recovered {
                logger.notice("signed in again; requests go through")
            }
            return token
        } catch let error as SignInRequired {
            let first = lock.withLock {
                defer { failure = "\(error)" }
                return failure == nil
            }
            if first {
                logger.error("\(error): requests answer EACCES until you sign in again; nothing staged is lost", metadata: ["fix": "\(hint)"])
            }
            throw error
        }
    }

    public func invalidate(_ token: AccessToken) async { await tokens.invalidate(token) }

    /// Those of the tokens it watches: one service's.
    public var allowedOrigins: Set<Origin> { tokens.allowedOrigins }
}
