import Foundation

/// The timestamps Graph and Salesforce send, read into dates.
public enum ServiceTime {
    /// ISO 8601 as the services write it: `2026-01-15T10:20:30Z`, with fractional seconds, with a
    /// `+0000`/`+00:00` offset (Salesforce), or a bare date. Parsed by hand: strict (trailing text is
    /// refused, which Foundation's parse style accepts) and cheap enough for ten thousand records per listing.
    public static func parse(_ text: String) -> Date? {
        let bytes = Array(text.utf8)
        var position = 0
        func number(_ digits: Int) -> Int? {
            guard position + digits <= bytes.count else { return nil }
            var value = 0
            for byte in bytes[position..<position + digits] {
                guard (0x30...0x39).contains(byte) else { return nil }
                value = value * 10 + Int(byte - 0x30)
            }
            position += digits
            return value
        }
        func expect(_ character: UInt8) -> Bool {
            guard position < bytes.count, bytes[position] == character else { return false }
            position += 1
            return true
        }
        guard let year = number(4), expect(0x2D), let month = number(2), expect(0x2D), let day = number(2),
              (1...12).contains(month), (1...31).contains(day) else { return nil }
        var seconds = Double(daysFromCivil(year: year, month: month, day: day)) * 86_400
        if position == bytes.count { return Date(timeIntervalSince1970: seconds) }
        guard expect(0x54), let hour = number(2), expect(0x3A), let minute = number(2), expect(0x3A), let second = number(2),
              hour < 24, minute < 60, second < 61 else { return nil }
        seconds += Double(hour * 3600 + minute * 60 + second)
        if expect(0x2E) {
            var scale = 0.1
            while position < bytes.count, (0x30...0x39).contains(bytes[position]) {
                seconds += Double(bytes[position] - 0x30) * scale
                scale /= 10
                position += 1
            }
        }
        if expect(0x5A) {
            // UTC
        } else if position < bytes.count, bytes[position] == 0x2B || bytes[position] == 0x2D {
            let sign: Double = bytes[position] == 0x2D ? -1 : 1
            position += 1
            guard let offsetHours = number(2) else { return nil }
            _ = expect(0x3A)
            guard let offsetMinutes = number(2) else { return nil }
            seconds -= sign * Double(offsetHours * 3600 + offsetMinutes * 60)
        } else {
            return nil
        }
        return position == bytes.count ? Date(timeIntervalSince1970: seconds) : nil
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    private static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
