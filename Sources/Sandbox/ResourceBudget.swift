import Foundation
import SharePointCosts

/// SharePoint's per-app budget of resource units (docs/wire-facts.md G11): every Graph request costs 1, 2 or 5
/// units against a budget per minute; past it, requests are answered 429 with `Retry-After` until the
/// window frees, and the `RateLimit-*` headers appear once 80 % of it is used. Throttled requests count
/// too. The window slides: what was spent more than a minute ago no longer counts.
final class ResourceBudget: @unchecked Sendable {
    /// What one request gets: to go on (with the headers to add, if any), or 429 after `retryAfter` seconds.
    enum Decision: Equatable {
        case allowed(headers: [Header])
        case throttled(retryAfter: Int, headers: [Header])
    }

    struct Header: Equatable {
        var name: String
        var value: String
    }

    static let window: TimeInterval = 60

    private let lock = NSLock()
    /// Units per minute; 0 is no budget at all.
    private var limit: Int
    /// What was spent in the window, oldest first.
    private var spent: [(at: TimeInterval, units: Int)] = []
    private var total = 0

    init(unitsPerMinute: Int) { limit = max(0, unitsPerMinute) }

    var unitsPerMinute: Int {
        get { lock.withLock { limit } }
        set { lock.withLock { limit = max(0, newValue) } }
    }

    /// Charges a request of `units` at `now` (seconds on a monotonic clock) and decides.
    func charge(_ units: Int, now: TimeInterval = ProcessInfo.processInfo.systemUptime) -> Decision {
        lock.withLock {
            guard limit > 0 else { return .allowed(headers: []) }
            expire(before: now - Self.window)
            let over = total >= limit
            spent.append((now, units))
            total += units
            let remaining = max(0, limit - total)
            // When more is available again: under the budget, once the oldest spending leaves the window.
            let reset = max(1, secondsUntil(below: min(limit, total), now: now))
            let headers = total * 5 >= limit * 4
                ? [Header(name: "RateLimit-Limit", value: String(limit)), Header(name: "RateLimit-Remaining", value: String(remaining)),
                   Header(name: "RateLimit-Reset", value: String(reset))]
                : []
            return over ? .throttled(retryAfter: reset, headers: headers) : .allowed(headers: headers)
        }
    }

    private func expire(before cutoff: TimeInterval) {
        var dropped = 0
        while dropped < spent.count, spent[dropped].at <= cutoff {
            total -= spent[dropped].units
            dropped += 1
        }
        spent.removeFirst(dropped)
    }

    /// Whole seconds until what was spent falls below `level` as the window slides.
    private func secondsUntil(below level: Int, now: TimeInterval) -> Int {
        var left = total
        for entry in spent {
            if left < level { break }
            left -= entry.units
            if left < level { return Int((entry.at + Self.window - now).rounded(.up)) }
        }
        return 0
    }
}

/// What a request to the sandbox costs in resource units: Graph's calls by SharePoint's price list (shared
/// with the client's pacer), downloads 1 and upload fragments 2 (their own hosts in the service), and
/// nothing outside Graph.
enum ResourceCost {
    static func of(method: String, path: String, query: [String: String], service: Service) -> Int {
        switch service {
        case .download: 1
        case .upload: 2
        case .graph: ResourceUnits.cost(method: method, path: path, query: query)
        default: 0
        }
    }
}
