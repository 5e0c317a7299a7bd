import Foundation
import QuickXor
import SharePointNaming

/// The credentials of the sandbox tenant: made once at seeding, kept in the database,
/// and written into the generated mount.conf's 0600 secret files.
struct SandboxCredentials {
    var tenantID: String
    var tenantDomain = "contoso.onmicrosoft.com"
    var graphClientID: String
    var graphClientSecret: String
    var salesforceClientID: String
    var salesforceClientSecret: String
    var salesforceRefreshToken: String
    var orgID = "00D8d000000SbXqEAK"

    static func generate() -> SandboxCredentials {
        SandboxCredentials(
            tenantID: UUID().uuidString.lowercased(), graphClientID: UUID().uuidString.lowercased(),
            graphClientSecret: token(40), salesforceClientID: "3MVG9" + token(80),
            salesforceClientSecret: token(64), salesforceRefreshToken: "5Aep861" + token(80))
    }

    static func token(_ length: Int) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
        var generator = SystemRandomNumberGenerator()
        return String((0..<length).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] })
    }

    var metaEntries: [(String, String)] {
        [("tenantId", tenantID), ("tenantDomain", tenantDomain), ("graphClientId", graphClientID), ("graphClientSecret", graphClientSecret),
         ("sfClientId", salesforceClientID), ("sfClientSecret", salesforceClientSecret), ("sfRefreshToken", salesforceRefreshToken),
         ("sfOrgId", orgID)]
    }

    static func load(from store: SandboxStore) throws -> SandboxCredentials {
        func value(_ key: String) throws -> String {
            guard let value = try store.meta(key) else { throw SandboxError.notSeeded }
            return value
        }
        return SandboxCredentials(
            tenantID: try value("tenantId"), tenantDomain: try value("tenantDomain"), graphClientID: try value("graphClientId"),
            graphClientSecret: try value("graphClientSecret"), salesforceClientID: try value("sfClientId"),
            salesforceClientSecret: try value("sfClientSecret"), salesforceRefreshToken: try value("sfRefreshToken"),
            orgID: try value("sfOrgId"))
    }
}

enum SandboxError: Error, CustomStringConvertible {
    case notSeeded
    case badOption(String)

    var description: String {
        switch self {
        case .notSeeded: return "sandbox state is incomplete; remove the state directory and start again"
        case .badOption(let message): return message
        }
    }
}

/// Graph's timestamps: ISO 8601 UTC with a Z. Formatters are costly to make, so each is made once and shared under a lock.
enum GraphTime {
    private static let lock = NSLock()
    nonisolated(unsafe) private static let plain: ISO8601DateFormatter = {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter
    }()
    nonisolated(unsafe) private static let fractional: ISO8601DateFormatter = {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }()

    static func format(_ date: Date) -> String { lock.withLock { plain.string(from: date) } }
    static func formatPrecise(_ date: Date) -> String { lock.withLock { fractional.string(from: date) } }
    static func parse(_ text: String) -> Date? {
        lock.withLock { plain.date(from: text) ?? fractional.date(from: text) }
    }
}

/// Salesforce's record timestamps: `2013-05-20T20:49:32.000+0000`.
enum SalesforceTime {
    private static let lock = NSLock()
    private static let formats = ["yyyy-MM-dd'T'HH:mm:ss.SSSZ", "yyyy-MM-dd'T'HH:mm:ssZ", "yyyy-MM-dd'T'HH:mm:ss.SSSXXX", "yyyy-MM-dd'T'HH:mm:ssXXX", "yyyy-MM-dd"]
    nonisolated(unsafe) private static let formatters: [DateFormatter] = formats.map { format in
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = format
        return formatter
    }

    static func format(_ date: Date) -> String { lock.withLock { formatters[0].string(from: date) } }
    static func parse(_ text: String) -> Date? {
        if let date = parseCanonical(text) { return date }
        return lock.withLock {
            for formatter in formatters { if let date = formatter.date(from: text) { return date } }
            return nil
        }
    }

    /// `yyyy-MM-ddTHH:mm:ss[.SSS](Z|±hhmm|±hh:mm)`, what the sandbox writes and clients send, read without
    /// a formatter: a query filtering 30,000 records by `SystemModstamp` parses each one, and through
    /// `DateFormatter` that took the sandbox a second of CPU the mount under test should have had.
    private static func parseCanonical(_ text: String) -> Date? {
        let bytes = Array(text.utf8)
        guard bytes.count >= 20 else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for index in range {
                guard (48...57).contains(bytes[index]) else { return nil }
                value = value * 10 + Int(bytes[index] - 48)
            }
            return value
        }
        guard bytes[4] == 45, bytes[7] == 45, bytes[10] == 84, bytes[13] == 58, bytes[16] == 58,
              let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
              let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 60 else { return nil }
        var index = 19
        var millis = 0
        if bytes[index] == 46 {
            guard bytes.count >= 24, let fraction = number(20..<23) else { return nil }
            millis = fraction
            index = 23
        }
        var offset = 0
        switch bytes[index] {
        case 90 where index + 1 == bytes.count: break  // Z
        case 43, 45:
            let rest = bytes.count - index - 1
            let sign = bytes[index] == 45 ? -1 : 1
            if rest == 4, let hours = number(index + 1..<index + 3), let minutes = number(index + 3..<index + 5) {
                offset = sign * (hours * 3600 + minutes * 60)
            } else if rest == 5, bytes[index + 3] == 58, let hours = number(index + 1..<index + 3), let minutes = number(index + 4..<index + 6) {
                offset = sign * (hours * 3600 + minutes * 60)
            } else {
                return nil
            }
        default: return nil
        }
        // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
        let shiftedYear = month <= 2 ? year - 1 : year
        let era = (shiftedYear >= 0 ? shiftedYear : shiftedYear - 399) / 400
        let yearOfEra = shiftedYear - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146097 + dayOfEra - 719468
        let seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset
        return Date(timeIntervalSince1970: Double(seconds) + Double(millis) / 1000)
    }
}

enum MimeTypes {
    static func forExtension(_ ext: String) -> String {
        switch ext {
        case "pdf": return "application/pdf"
        case "docx": return "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        case "xlsx": return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        case "pptx": return "application/vnd.openxmlformats-officedocument.presentationml.presentation"
        case "txt", "md": return "text/plain"
        case "csv": return "text/csv"
        case "png": return "image/png"
        case "zip": return "application/zip"
        case "eml": return "message/rfc822"
        default: return "application/octet-stream"
        }
    }
}

/// Seeded documents have no bytes until someone reads them: then their content is generated
/// once from the item's generator key, written to a blob file and hashed, and served from there.
/// (SharePoint, too, may report no hash until a file has been downloaded once.)
enum ContentGenerator {
    private static let lock = NSLock()

    static func materialize(item: ItemRow, store: SandboxStore) throws -> (blob: String, hash: String) {
        if let blob = item.blob, let hash = item.quickXorHash { return (blob, hash) }
        // One generator at a time: concurrent first reads of one file must not race on its blob.
        lock.lock()
        defer { lock.unlock() }
        if let current = try store.item(id: item.id), let blob = current.blob, let hash = current.quickXorHash { return (blob, hash) }
        let blob = "\(item.id)-\(item.contentVersion)"
        let hash = try write(generator: item.generator ?? item.id, size: item.size, name: item.name, to: store.blobPath(blob))
        try store.setContent(itemID: item.id, blob: blob, quickXorHash: hash)
        return (blob, hash)
    }

    /// Writes `size` deterministic bytes for `generator`, with a header that suits the file type, and returns their quickXorHash.
    static func write(generator: String, size: Int64, name: String, to path: String) throws -> String {
        let temporary = path + ".partial"
        FileManager.default.createFile(atPath: temporary, contents: nil)
        guard let handle = FileHandle(forWritingAtPath: temporary) else { throw CocoaError(.fileWriteUnknown) }
        var rng = SeededGenerator(seed: generator.utf8.reduce(UInt64(14_695_981_039_346_656_037)) { ($0 ^ UInt64($1)) &* 1_099_511_628_211 })
        var hasher = QuickXorHash()
        var remaining = size
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var first = true
        let isText = ["txt", "md", "csv", "eml"].contains((name as NSString).pathExtension.lowercased())
        while remaining > 0 {
            let count = Int(min(Int64(buffer.count), remaining))
            buffer.withUnsafeMutableBytes { raw in
                let words = raw.bindMemory(to: UInt64.self)
                for index in 0..<(count + 7) / 8 { words[index] = rng.next() }
            }
            if isText {
                let letters: [UInt8] = Array("abcdefghijklmnopqrstuvwxyz      \n".utf8)
                for index in 0..<count { buffer[index] = letters[Int(buffer[index]) % letters.count] }
            }
            if first {
                let header = Array(header(for: name).utf8)
                for (index, byte) in header.prefix(count).enumerated() { buffer[index] = byte }
                first = false
            }
            let slice = Data(buffer[0..<count])
            handle.write(slice)
            hasher.update(slice)
            remaining -= Int64(count)
        }
        try handle.synchronize()
        try handle.close()
        if rename(temporary, path) != 0 { throw CocoaError(.fileWriteUnknown) }
        return hasher.finalize()
    }

    private static func header(for name: String) -> String {
        switch (name as NSString).pathExtension.lowercased() {
        case "pdf": return "%PDF-1.7\n% crmfs sandbox document: \(name)\n"
        case "docx", "xlsx", "pptx", "zip": return "PK\u{03}\u{04}"
        case "png": return "\u{89}PNG\r\n\u{1A}\n"
        default: return "crmfs sandbox document: \(name)\n"
        }
    }
}
