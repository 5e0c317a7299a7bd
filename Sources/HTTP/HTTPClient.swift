import Foundation
import Logging

/// Sends requests with a bearer token and the retry rules every crmfs client shares:
/// refresh once on 401, wait out 429/503 (Retry-After, else jittered backoff),
/// retry dropped connections for idempotent requests, give up within a bounded budget.
public final class HTTPClient: Sendable {
    public let transport: CurlTransport
    public let retry: RetryPolicy
    let logger: Logger

    /// Where a bearer token may go is the token provider's to say (`AccessTokenProvider.allowedOrigins`):
    /// each service's tokens only to the origins the config names for that service.
    public init(transport: CurlTransport, retry: RetryPolicy = .default, logger: Logger = Logger(label: "crmfs.http")) {
        self.transport = transport
        self.retry = retry
        self.logger = logger
    }

    /// Sends `request`, authorising it with `auth` when given. Returns the last response,
    /// whatever its status, unless retries ran out on throttling or the network. `observe` sees every
    /// answer, retried ones too (a pacer learns of throttling from the first 429, not the last).
    public func send(_ request: HTTPRequest, auth: (any AccessTokenProvider)? = nil, sink: ResponseSink = .memory(limit: ResponseSink.defaultMemoryLimit),
                     observe: (@Sendable (HTTPResponse) -> Void)? = nil) async throws -> HTTPResponse {
        let clock = ContinuousClock()
        let started = clock.now
        var attempt = 0
        var refreshedAfter401 = false
        // A token goes only to an origin (scheme, host and port) its provider names: URLs the services hand
        // back (`@odata.nextLink`, `instance_url`, ...) and the other service's hosts get none.
        if let auth {
            let origin = Origin(url: request.url)
            guard let origin, auth.allowedOrigins.contains(origin) else {
                let host = origin?.description ?? URLComponents(string: request.url)?.host?.lowercased() ?? ""
                throw HTTPError.untrustedHost(host: host, request: request.logDescription)
            }
        }

        while true {
            attempt += 1
            var outgoing = request
            var usedToken: AccessToken?
            if let auth {
                let token = try await auth.token()
                usedToken = token
                outgoing.headers["Authorization"] = "Bearer \(token.value.exposedValue)"
            }

            let response: HTTPResponse
            do {
                response = try await transport.perform(outgoing, sink: sink)
                observe?(response)
            } catch let error as HTTPError where error.isRetryableTransportFailure && request.isIdempotent {
                let delay = retry.backoff(retry: attempt - 1)
                guard attempt < retry.maxAttempts, clock.now - started + delay < retry.maxElapsed else { throw error }
                logger.debug("retrying after transport failure", metadata: ["request": "\(request.logDescription)", "error": "\(error)", "attempt": "\(attempt)"])
                try await Task.sleep(for: delay)
                continue
            }

            if response.status == 401, let auth, let usedToken, !refreshedAfter401 {
                refreshedAfter401 = true
                attempt -= 1
                await auth.invalidate(usedToken)
                logger.debug("401: refreshing token and retrying once", metadata: ["request": "\(request.logDescription)"])
                continue
            }

            if retry.shouldRetry(status: response.status, idempotent: request.isIdempotent) {
                let delay = RetryAfter.delay(from: response.headers["Retry-After"]) ?? retry.backoff(retry: attempt - 1)
                guard attempt < retry.maxAttempts, clock.now - started + delay < retry.maxElapsed else {
                    throw HTTPError.retriesExhausted(status: response.status, attempts: attempt, request: request.logDescription, response: response)
                }
                logger.debug("throttled: waiting", metadata: ["request": "\(request.logDescription)", "status": "\(response.status)", "delay": "\(delay)"])
                ServiceMetrics.waited(delay, reason: "retry-after")
                try await Task.sleep(for: delay)
                continue
            }
            return response
        }
    }
}
