import Foundation

/// A `{Field}` template: record directory names (`{CaseNumber} {Subject}`) and folder paths (`Accounts/{Name} ({Id})`).
public struct Template: Sendable, Hashable {
    public let text: String

    public init(_ text: String) { self.text = text }

    /// The field names it refers to, in order, each once.
    public var fields: [String] {
        var fields: [String] = []
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            let field = String(rest[rest.index(after: open)..<close])
            if !fields.contains(field) { fields.append(field) }
            rest = rest[rest.index(after: close)...]
        }
        return fields
    }

    public func expand(_ value: (String) -> String) -> String {
        var result = ""
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            result += rest[..<open]
            result += value(String(rest[rest.index(after: open)..<close]))
            rest = rest[rest.index(after: close)...]
        }
        return result + rest
    }
}

/// How CRM text becomes a directory name on Linux, the same way on every mount.
public enum RecordNaming {
    /// Longest name a Linux file system takes, in bytes.
    public static let maxNameBytes = 255

    /// Makes `text` a single path component: `/`, NUL and control characters become `_`,
    /// `.` and `..` and the empty name become `_`-prefixed, surrounding whitespace goes.
    public static func sanitize(_ text: String) -> String {
        var result = String(String.UnicodeScalarView(text.unicodeScalars.map { scalar in
            scalar == "/" || scalar.value < 0x20 || scalar.value == 0x7F ? "_" : scalar
        }))
        result = result.trimmingCharacters(in: .whitespaces)
        if result.isEmpty || result == "." || result == ".." { result = "_" + result }
        return result
    }

    /// `name (Id)`, shortened at a character boundary so the whole stays within 255 bytes.
    public static func withID(_ name: String, id: String) -> String {
        let suffix = " (\(id))"
        return fit(name, reserving: suffix.utf8.count) + suffix
    }

    /// Cuts `name` to fit in 255 bytes less `reserving`, never inside a character.
    public static func fit(_ name: String, reserving: Int = 0) -> String {
        let limit = maxNameBytes - reserving
        guard name.utf8.count > limit else { return name }
        var result = ""
        for character in name {
            if result.utf8.count + String(character).utf8.count > limit { break }
            result.append(character)
        }
        return result.trimmingCharacters(in: .whitespaces)
    }

    /// Names for a set of records: the template's expansion, sanitised. A name longer than 255 bytes
    /// is shortened and keeps the record Id; names that several records share all get their Id appended.
    /// Depends only on the records themselves, so the same record gets the same name on every mount.
    public static func names(for records: [(id: String, base: String)]) -> [String: String] {
        var counts: [String: Int] = [:]
        let bases = records.map { (id: $0.id, base: sanitize($0.base)) }
        for record in bases { counts[record.base, default: 0] += 1 }
        var names: [String: String] = [:]
        for record in bases {
            let needsID = counts[record.base]! > 1 || record.base.utf8.count > maxNameBytes
            names[record.id] = needsID ? withID(record.base, id: record.id) : record.base
        }
        return names
    }
}
