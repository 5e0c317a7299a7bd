/// Sizes as people write them: `4096`, `64KiB`, `4MiB`, `1GiB`, `10MB` (decimal), `1.5GiB`.
public enum ByteSize {
    public static func parse(_ text: String) -> Int64? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let digits = trimmed.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
        guard !digits.isEmpty, let number = Double(digits), number >= 0 else { return nil }
        let unit = trimmed.dropFirst(digits.count).trimmingCharacters(in: .whitespaces).lowercased()
        let multipliers: [String: Double] = [
            "": 1, "b": 1,
            "k": 1024, "kib": 1024, "kb": 1000,
            "m": Double(1 << 20), "mib": Double(1 << 20), "mb": 1e6,
            "g": Double(1 << 30), "gib": Double(1 << 30), "gb": 1e9,
            "t": Double(1 << 40), "tib": Double(1 << 40), "tb": 1e12,
        ]
        guard let multiplier = multipliers[unit] else { return nil }
        // `9000000TiB` does not fit in 64 bits: no size rather than a crash.
        return Int64(exactly: (number * multiplier).rounded())
    }

    public static func format(_ bytes: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var index = 0
        while value >= 1024, index < units.count - 1 { value /= 1024; index += 1 }
        return index == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[index])
    }
}

import Foundation
