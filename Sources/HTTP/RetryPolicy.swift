import Foundation

/// How long to keep trying a request that the service throttles or that the network drops.
public struct RetryPolicy: Sendable {
    /// Attempts in all, the first included. A refresh after 401 does not count.
    public var maxAttempts: Int
    /// No retry is started once this much time has passed since the first attempt.
    public var maxElapsed: Duration
    /// Backoff when the service names no Retry-After: full jitter over `base * 2^n`, capped.
    public var baseDelay: Duration
    public var maxDelay: Duration
    /// Statuses worth another attempt. 500/502/504 only for idempotent requests.
    public var throttlingStatuses: Set<Int> = [429, 503]
    public var serverErrorStatuses: Set<Int> = [500, 502, 504]

    public init(maxAttempts: Int = 10, maxElapsed: Duration = .seconds(600), baseDelay: Duration = .milliseconds(200), maxDelay: Duration = .seconds(30)) {
        self.maxAttempts = maxAttempts
        self.maxElapsed = maxElapsed
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
    }

    public static let `default` = RetryPolicy()

    /// Full-jitter exponential backoff for the given 0-based retry number.
    public func backoff(retry: Int) -> Duration {
        let base = baseDelay.seconds * pow(2, Double(min(retry, 30)))
        let ceiling = min(maxDelay.seconds, base)
        return .milliseconds(Int64(Double.random(in: 0...ceiling) * 1000))
    }

    public func shouldRetry(status: Int, idempotent: Bool) -> Bool {
        throttlingStatuses.contains(status) || (idempotent && serverErrorStatuses.contains(status))
    }
}

public enum RetryAfter {
    /// The longest wait a Retry-After can ask for; a longer one (`1e30`, a date in the year 9999) is
    /// read as this, which is past any retry budget, so the request fails instead of waiting for ever.
    public static let longest: Duration = .seconds(86_400)

    /// Parses a Retry-After value: delta seconds (RFC 9110 says digits; a decimal is tolerated), or an
    /// HTTP date. Anything else (`inf`, `nan`, `-1`, text) is no value at all.
    public static func delay(from value: String?, now: Date = Date()) -> Duration? {
        guard let value = value?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        let seconds: Double
        if value.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }), let number = Double(value) {
            seconds = number.isFinite ? number : longest.seconds  // more digits than a Double holds
        } else if let date = HTTPDate.parse(value) {
            seconds = max(0, date.timeIntervalSince(now))
        } else {
            return nil
        }
        guard seconds.isFinite else { return nil }
        return .milliseconds(Int64(min(seconds, longest.seconds) * 1000))
    }
}

public enum HTTPDate {
    private static func formatter() -> DateFormatter {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return formatter
    }

    public static func parse(_ text: String) -> Date? { formatter().date(from: text) }
    public static func format(_ date: Date) -> String { formatter().string(from: date) }
}

extension Duration {
    public var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) / 1e18
    }
}
