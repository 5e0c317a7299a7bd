import Foundation
@testable import Namespace
import Testing

@Suite("field text")
struct FieldTextTests {
    @Test("ISO 8601 dates in the services' forms", arguments: [
        ("2026-01-15T10:20:30Z", 1_768_472_430.0),
        ("2026-01-15T10:20:30.250Z", 1_768_472_430.25),
        ("2026-01-15T10:20:30.000+0000", 1_768_472_430.0),  // Salesforce
        ("2026-01-15T12:20:30+02:00", 1_768_472_430.0),
        ("2026-01-15T05:20:30-0500", 1_768_472_430.0),
        ("2024-02-29", 1_709_164_800.0),
        ("1969-12-31T23:59:59Z", -1.0),
    ])
    func dates(text: String, seconds: Double) {
        #expect(FieldText.date(text)?.timeIntervalSince1970 == seconds)
    }

    @Test("text that is not a date is refused", arguments: ["", "yesterday", "2026-13-01", "2026-01-15T10:20", "2026-01-15T10:20:30", "2026-01-15T10:20:30Zjunk"])
    func notDates(text: String) {
        #expect(FieldText.date(text) == nil)
    }
}
