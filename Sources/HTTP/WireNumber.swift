import Foundation

/// Numbers as the services send them (header values, JSON numbers, numbers in JSON strings) made into numbers
/// crmfs can compute with: finite and within the range the caller names, or no number at all. Swift stops the
/// process on an integer overflow and on turning inf, nan or an out-of-range Double into an integer, and a
/// stopped daemon is ENOTCONN for every user of the mount: a number off the wire reaches arithmetic, an
/// integer conversion or a Duration only through here (or a range check of its own).
public enum WireNumber {
    /// A decimal number in text (`12`, `-3.5`, `1e3`, blanks around it) clamped into `range`; one too large
    /// for a Double (`1e400`) is the bound it passes. Nil for anything else: the words and hex floats Swift's
    /// `Double(_:)` also takes (`inf`, `nan`, `0x1p63`), other text, the empty string.
    public static func double(_ text: String?, in range: ClosedRange<Double>) -> Double? {
        guard let text else { return nil }
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty, trimmed.utf8.allSatisfy({ decimalBytes.contains($0) }), let value = Double(trimmed) else { return nil }
        // Only digits, signs, points and exponents got this far: an infinity is an overflow, not the word.
        if value.isInfinite { return value > 0 ? range.upperBound : range.lowerBound }
        return double(value, in: range)
    }

    /// A JSON number, or a number in a JSON string (some services quote theirs), clamped into `range`.
    public static func double(json: JSONValue?, in range: ClosedRange<Double>) -> Double? {
        switch json {
        case .number(let value)?: double(value, in: range)
        case .string(let text)?: double(text, in: range)
        default: nil
        }
    }

    /// `value` clamped into `range`; nil when it is not finite (a clamped nan would still be nan).
    public static func double(_ value: Double, in range: ClosedRange<Double>) -> Double? {
        value.isFinite ? min(max(value, range.lowerBound), range.upperBound) : nil
    }

    /// `value` rounded and clamped into `range`; nil when it is not finite. The bounds are compared as
    /// Doubles before converting: `Int64(_:)` traps at 2^63, which is what `Double(Int64.max)` rounds to.
    public static func int64(_ value: Double, in range: ClosedRange<Int64>) -> Int64? {
        guard value.isFinite else { return nil }
        if value <= Double(range.lowerBound) { return range.lowerBound }
        if value >= Double(range.upperBound) { return range.upperBound }
        return min(max(Int64(value.rounded()), range.lowerBound), range.upperBound)
    }

    /// A whole number in text (an optional sign, then digits, blanks around it) clamped into `range`: one with
    /// more digits than Int64 holds is the bound it passes. Nil for anything else (`1.5`, `1e3`, `0x10`, words).
    public static func int64(_ text: String?, in range: ClosedRange<Int64>) -> Int64? {
        guard let text else { return nil }
        var digits = Substring(text.trimmingCharacters(in: .whitespaces))
        let negative = digits.first == "-"
        if negative || digits.first == "+" { digits = digits.dropFirst() }
        guard !digits.isEmpty, digits.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
        guard let magnitude = Int64(digits) else { return negative ? range.lowerBound : range.upperBound }
        return min(max(negative ? -magnitude : magnitude, range.lowerBound), range.upperBound)
    }

    /// A JSON number, or a number in a JSON string, rounded and clamped into `range`; nil when it is none.
    public static func int(json: JSONValue?, in range: ClosedRange<Int>) -> Int? {
        double(json: json, in: anyFinite).flatMap { int64($0, in: Int64(range.lowerBound)...Int64(range.upperBound)) }.map { Int($0) }
    }

    /// Seconds in text (a `RateLimit-Reset`) as a Duration from 0 to `longest` (not negative); nil when the
    /// text is no number.
    public static func duration(seconds text: String?, longest: Duration) -> Duration? {
        double(text, in: 0...longest.seconds).flatMap { int64($0 * 1000, in: 0...Int64.max) }.map { Duration.milliseconds($0) }
    }

    /// What a decimal number is written with: digits, signs, the point and the exponent.
    private static let decimalBytes = Set("0123456789+-.eE".utf8)
    private static let anyFinite = -Double.greatestFiniteMagnitude...Double.greatestFiniteMagnitude
}
