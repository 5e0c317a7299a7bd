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

/// How CRM text and SharePoint names become names on Linux, the same way on every mount.
public enum EntryNaming {
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

    /// `name (Id)`, shortened at a character boundary so the whole stays within 255 bytes; with
    /// `keepingExtension`, the Id goes before the extension (`MSA (01ABC).pdf`), so the file still opens
    /// with its application.
    public static func withID(_ name: String, id: String, keepingExtension: Bool = false) -> String {
        let ext = keepingExtension ? (name as NSString).pathExtension : ""
        let hasExtension = !ext.isEmpty && ext.utf8.count < 16 && ext.count < name.count - 1
        let stem = hasExtension ? String(name.dropLast(ext.count + 1)) : name
        let suffix = " (\(safeID(id)))" + (hasExtension ? ".\(ext)" : "")
        return fit(stem, reserving: suffix.utf8.count) + suffix
    }

    /// An id from the services as a part of a name: the services' ids are letters, digits and a few marks
    /// (Salesforce's 15 or 18 letters and digits, Graph's base32 and `!`), so anything else (a `/`, a
    /// control character, a damaged answer) becomes `_` and an id never takes more than 64 characters.
    public static func safeID(_ id: String) -> String {
        let kept = id.unicodeScalars.prefix(64).map { scalar -> Character in
            scalar.isASCII && (CharacterSet.alphanumerics.contains(scalar) || "!-_".unicodeScalars.contains(scalar)) ? Character(scalar) : "_"
        }
        return kept.isEmpty ? "_" : String(kept)
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
        unique(records.map { (id: $0.id, base: $0.base, keepsExtension: false) })
    }

    /// Names for the entries of one directory, by the same rules as records: sanitised (`/`, NUL and
    /// control characters become `_`; `.`, `..` and the empty name are `_`-prefixed), at most 255 bytes,
    /// and unique by their final form: names several entries share, and a name that equals another
    /// entry's name with its Id (`Acme (001…)` beside two `Acme`), get their Id. With `keepsExtension`
    /// the Id goes before the extension. The same entries get the same names on every mount.
    public static func unique(_ entries: [(id: String, base: String, keepsExtension: Bool)]) -> [String: String] {
        let sanitized = entries.map { (id: $0.id, base: sanitize($0.base), keepsExtension: $0.keepsExtension) }
        var counts: [String: Int] = [:]
        for entry in sanitized { counts[entry.base, default: 0] += 1 }
        var names: [String: String] = [:]
        var plain: [String: (base: String, keepsExtension: Bool)] = [:]
        for entry in sanitized {
            if counts[entry.base]! > 1 || entry.base.utf8.count > maxNameBytes {
                names[entry.id] = withID(entry.base, id: entry.id, keepingExtension: entry.keepsExtension)
            } else {
                names[entry.id] = entry.base
                plain[entry.id] = (entry.base, entry.keepsExtension)
            }
        }
        // A name kept as it is may equal another entry's name with its Id: then it takes its own Id too.
        var holders: [String: Int] = [:]
        for name in names.values { holders[name, default: 0] += 1 }
        for (id, entry) in plain where holders[entry.base, default: 0] > 1 {
            names[id] = withID(entry.base, id: id, keepingExtension: entry.keepsExtension)
        }
        return names
    }
}
