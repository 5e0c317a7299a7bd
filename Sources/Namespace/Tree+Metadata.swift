import CRM
import Config
import Foundation
import Graph
import HTTP

/// What a metadata edit through an extended attribute would change: `user.sp.COLUMN` on documents,
/// `user.crm.FIELD` on records where the config allows it. The tree checks and converts the value; the
/// write itself is Writeback's (the tree never writes to the services), and its result comes back here.
public struct ColumnEdit: Sendable {
    public let driveID: String
    public let itemID: String
    public let fields: [String: JSONValue]
}

public struct RecordFieldEdit: Sendable {
    public let objectName: String
    public let recordID: String
    public let fields: [String: JSONValue]
    /// The fields the tree shows of such a record, to read it back.
    public let shownFields: [String]
}

extension Tree {
    /// The edit that sets (or with nil clears) SharePoint column `column` of document `ino`. The text is
    /// converted by the column's type: numbers, `true`/`false`, ISO 8601 dates, text.
    public func columnEdit(_ ino: UInt64, column: String, text: String?) async throws -> ColumnEdit {
        let (itemID, driveOfItem) = try lock.withLock { () -> (String, String) in
            guard let node = nodes[ino] else { throw NamespaceError.notFound }
            guard case .item(let id) = node.key else {
                throw NamespaceError.notPermitted(node.level == .document ? "it is not in SharePoint yet" : "only documents and folders have SharePoint columns")
            }
            return (id, node.item?.parentReference?.driveId ?? driveID)
        }
        let definitions = try await columns()
        guard let definition = definitions.first(where: { $0.name == column }) else {
            let writable = definitions.filter { $0.readOnly != true && $0.type != nil && $0.type != "calculated" }.map(\.name)
            throw NamespaceError.invalid("the library has no column '\(column)'; writable ones: \(writable.joined(separator: ", "))")
        }
        guard definition.readOnly != true, definition.type != "calculated", definition.type != nil else {
            throw NamespaceError.notPermitted("column '\(column)' is read-only")
        }
        let value = try text.map { try Self.columnValue($0, type: definition.type ?? "text", column: column) } ?? .null
        return ColumnEdit(driveID: driveOfItem, itemID: itemID, fields: [column: value])
    }

    /// The service's column values of document `ino` after an edit.
    public func columnsWritten(_ fields: [String: JSONValue], to ino: UInt64) {
        lock.withLock {
            guard let node = nodes[ino] else { return }
            node.item?.listItem?.fields = fields
            changedListings.insert(node.parent)
        }
    }

    /// The edit that sets (or clears) field `field` of record `ino` in Salesforce, if the object's
    /// `writable_fields` allow it.
    public func recordFieldEdit(_ ino: UInt64, field: String, text: String?) throws -> RecordFieldEdit {
        let (object, recordID) = try lock.withLock { () -> (ObjectSettings, String) in
            guard let node = nodes[ino], let index = node.objectIndex, let recordID = node.recordID else {
                throw NamespaceError.notPermitted("only records and their documents have CRM fields")
            }
            return (config.objects[index], recordID)
        }
        guard let name = object.writableFields.first(where: { $0.caseInsensitiveCompare(field) == .orderedSame }) else {
            throw NamespaceError.notPermitted("\(object.object).\(field) is not in writable_fields in the config")
        }
        return RecordFieldEdit(objectName: object.object, recordID: recordID, fields: [name: text.map(JSONValue.string) ?? .null],
                               shownFields: queryFields(for: object))
    }

    /// A record as Salesforce has it after an edit.
    public func recordWritten(_ record: SObjectRecord) {
        lock.withLock {
            guard let id = record.id, let recordIno = inodes[.record(id)], let node = nodes[recordIno] else { return }
            node.record = record
            changedListings.insert(node.parent)
        }
    }

    private func columns() async throws -> [ColumnDefinition] {
        if let known = lock.withLock({ columnDefinitions }) { return known }
        let list = try await graph.list(driveID: driveID)
        let definitions = try await graph.columns(siteID: siteID, listID: list.id)
        lock.withLock { columnDefinitions = definitions }
        return definitions
    }

    static func columnValue(_ text: String, type: String, column: String) throws -> JSONValue {
        switch type {
        case "number", "currency":
            guard let number = Double(text.trimmingCharacters(in: .whitespaces)) else { throw NamespaceError.invalid("column '\(column)' takes a number, not '\(text)'") }
            return .number(number)
        case "boolean":
            switch text.lowercased() {
            case "true", "yes", "1": return .bool(true)
            case "false", "no", "0": return .bool(false)
            default: throw NamespaceError.invalid("column '\(column)' takes true or false, not '\(text)'")
            }
        case "dateTime":
            guard ServiceTime.parse(text) != nil || ServiceTime.parse(text + "T00:00:00Z") != nil else {
                throw NamespaceError.invalid("column '\(column)' takes an ISO 8601 date (2026-11-23 or 2026-11-23T10:00:00Z), not '\(text)'")
            }
            return .string(text.count == 10 ? text + "T00:00:00Z" : text)
        default:
            return .string(text)
        }
    }
}
