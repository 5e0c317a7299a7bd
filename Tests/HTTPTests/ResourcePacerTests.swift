import Foundation
import HTTP
import Testing

/// The budget pacer on its own: what it lets through at once, and when it holds requests back. Each
/// check is a lower bound on when the last request may go, which no scheduling delay can break.
@Suite("resource pacer")
struct ResourcePacerTests {
    @Test("a burst within a tenth of the budget goes at once; beyond it, requests wait for the budget to refill")
    func paces() async throws {
        let started = ContinuousClock.now
        let pacer = ResourcePacer(unitsPerMinute: 600)  // 8 units a second, 60 at once
        for _ in 0..<60 { try await pacer.admit(cost: 1) }
        try await pacer.admit(cost: 8)
        #expect(ContinuousClock.now - started >= .seconds(1), "68 units take at least a second at 80 % of 600 a minute")
        #expect(pacer.totalWait > .zero)
    }

    @Test("a 429 with Retry-After holds every request until then (throttled requests count, so none is sent meanwhile)")
    func throttlingHoldsEveryone() async throws {
        let pacer = ResourcePacer(unitsPerMinute: 60_000)
        let throttled = ContinuousClock.now
        pacer.observe(HTTPResponse(status: 429, headers: ["Retry-After": "2"]))
        async let first: Void = pacer.admit(cost: 1)
        async let second: Void = pacer.admit(cost: 1)
        _ = try await (first, second)
        #expect(ContinuousClock.now - throttled >= .seconds(2), "both waited out the Retry-After")
    }

    @Test("RateLimit-Remaining running out holds requests until RateLimit-Reset; plenty left changes nothing")
    func rateLimitHeaders() async throws {
        let pacer = ResourcePacer(unitsPerMinute: 60_000)
        pacer.observe(HTTPResponse(status: 200, headers: ["RateLimit-Limit": "60000", "RateLimit-Remaining": "50000", "RateLimit-Reset": "30"]))
        try await pacer.admit(cost: 1)
        #expect(pacer.totalWait == .zero)
        let low = ContinuousClock.now
        pacer.observe(HTTPResponse(status: 200, headers: ["RateLimit-Limit": "60000", "RateLimit-Remaining": "3", "RateLimit-Reset": "1"]))
        try await pacer.admit(cost: 1)
        #expect(ContinuousClock.now - low >= .seconds(1))
    }
}
