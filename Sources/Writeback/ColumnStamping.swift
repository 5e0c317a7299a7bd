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
            guard let date = value.stringValue.flatMap(ServiceTime.parse) else { return nil }
            let moment = transform == .date ? Date(timeIntervalSince1970: (date.timeIntervalSince1970 / 86_400).rounded(.down) * 86_400) : date
            return .string(moment.formatted(.iso8601))
        }
    }
}
