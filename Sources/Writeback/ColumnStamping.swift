import Config
import Foundation
import HTTP

/// The SharePoint column values a document gets from its record: each mapping's CRM field, transformed.
/// Fields the record does not have (or has empty) are left out rather than cleared.
public enum ColumnStamping {
    public static func values(for mappings: [FieldMapping], record: [String: JSONValue]) -> [String: JSONValue] {
        var columns: [String: JSONValue] = [:]
        for mapping in mappings {
            guard let value = field(mapping.crmField, in: record), value != .null,
                  let converted = convert(value, mapping.transform ?? .text) else { continue }
            columns[mapping.spColumn] = converted
        }
        return columns
    }

    /// A field by name, case-insensitively (Salesforce field names are), dotted paths into relationships.
    static func field(_ name: String, in record: [String: JSONValue]) -> JSONValue? {
        var current: JSONValue? = .object(record)
        for part in name.split(separator: ".") {
            guard case .object(let object)? = current else { return nil }
            current = object.first { $0.key.caseInsensitiveCompare(String(part)) == .orderedSame }?.value
        }
        return current
    }

    static func convert(_ value: JSONValue, _ transform: FieldTransform) -> JSONValue? {
        switch transform {
        case .text, .lookupID:
            if case .string = value { return value }
            return .string(value.description)
        case .number:
            if case .number = value { return value }
            return value.stringValue.flatMap(Double.init).map(JSONValue.number)
        case .boolean:
            if case .bool = value { return value }
            return value.stringValue.map { .bool(["true", "1", "yes"].contains($0.lowercased())) }
        case .date, .dateTime:
            guard let text = value.stringValue, let date = parseDate(text) else { return nil }
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = TimeZone(identifier: "UTC")!
            let moment = transform == .date ? calendar.startOfDay(for: date) : date
            return .string(moment.formatted(Date.ISO8601FormatStyle(timeZone: TimeZone(identifier: "UTC")!)))
        }
    }

    /// Salesforce dates (`2026-01-31`) and datetimes (`2026-01-31T10:00:00.000+0000`).
    static func parseDate(_ text: String) -> Date? {
        if text.count == 10 { return try? Date(text + "T00:00:00Z", strategy: .iso8601) }
        let normalized = text.hasSuffix("+0000") ? String(text.dropLast(5)) + "Z" : text
        return (try? Date(normalized, strategy: .iso8601)) ?? (try? Date(normalized, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
    }
}
