import CRM
import Config
import Foundation
import Graph
import HTTP

/// Metadata edits through extended attributes: `user.sp.COLUMN` on documents, `user.crm.FIELD` on
/// records where the config allows it. They go to the service at once, so a value it refuses fails the
/// `setfattr` with its reason instead of failing later where nobody sees it.
extension Tree {
    /// Sets (or with nil clears) a SharePoint column of document `ino`. The text is converted by the
    /// column's type: numbers, `true`/`false`, ISO 8601 dates, text.
    public func setColumn(_ ino: UInt64, column: String, text: String?) async throws {
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
        let fields: [String: JSONValue]
        do {
            fields = try await graph.updateFields(driveID: driveOfItem, itemID: itemID, fields: [column: value])
        } catch let error as GraphError where error.status == 400 {
            throw NamespaceError.invalid(error.message)
        }
        lock.withLock { nodes[ino]?.item?.listItem?.fields = fields }
    }

    /// Sets (or clears) field `field` of record `ino` in Salesforce, if the object's `writable_fields` allow it.
    public func setRecordField(_ ino: UInt64, field: String, text: String?) async throws {
        let (object, recordID) = try lock.withLock { () -> (ObjectSettings, String) in
            guard let node = nodes[ino], let index = node.objectIndex, let recordID = node.recordID else {
                throw NamespaceError.notPermitted("only records and their documents have CRM fields")
            }
            return (config.objects[index], recordID)
        }
        let objectName = object.object
        guard let name = object.writableFields.first(where: { $0.caseInsensitiveCompare(field) == .orderedSame }) else {
            throw NamespaceError.notPermitted("\(objectName).\(field) is not in writable_fields in the config")
        }
        do {
            try await salesforce.update(objectName, id: recordID, fields: [name: text.map(JSONValue.string) ?? .null])
        } catch let error as SalesforceError where error.status == 400 {
            throw NamespaceError.invalid("\(error)")
        }
        let record = try await salesforce.record(objectName, id: recordID, fields: queryFields(for: object))
        lock.withLock {
            guard let recordIno = inodes[.record(recordID)], let node = nodes[recordIno] else { return }
            node.record = record
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
