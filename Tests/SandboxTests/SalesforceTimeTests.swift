import Foundation
@testable import Sandbox
import Testing

/// The sandbox reads Salesforce date-times without a formatter (a query filters thousands of records by
/// them): it must agree with the formatter on every form Salesforce writes and refuse what it cannot read.
@Suite("Salesforce date-times in the sandbox")
struct SalesforceTimeTests {
    static func formatted(_ text: String, _ format: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = format
        return formatter.date(from: text)
    }

    @Test("every form Salesforce writes parses as a formatter reads it")
    func agreesWithFormatter() throws {
        let cases: [(String, String)] = [
            ("2026-11-30T16:41:05.123+0000", "yyyy-MM-dd'T'HH:mm:ss.SSSZ"),
            ("2024-02-29T23:59:59.999-0530", "yyyy-MM-dd'T'HH:mm:ss.SSSZ"),
            ("1999-12-31T00:00:00+0100", "yyyy-MM-dd'T'HH:mm:ssZ"),
            ("2026-03-01T12:00:00.500+05:30", "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"),
            ("2026-01-01T00:00:00Z", "yyyy-MM-dd'T'HH:mm:ssXXX"),
            ("1970-01-01T00:00:00.000Z", "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"),
        ]
        for (text, format) in cases {
            let expected = try #require(Self.formatted(text, format), "\(text)")
            #expect(SalesforceTime.parse(text) == expected, "\(text)")
        }
        let now = Date(timeIntervalSince1970: 1_796_000_000.25)
        #expect(SalesforceTime.parse(SalesforceTime.format(now)) == now)
        #expect(SalesforceTime.parse("2026-11-30") == Self.formatted("2026-11-30", "yyyy-MM-dd"))
    }

    @Test("what is not a date-time is nil")
    func refuses() {
        for text in ["", "2026-11-30T16:41", "2026-13-01T00:00:00Z", "2026-11-30T25:00:00Z", "yesterday"] {
            #expect(SalesforceTime.parse(text) == nil, "\(text)")
        }
    }
}
