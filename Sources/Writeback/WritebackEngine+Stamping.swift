import Config
import CRM
import Foundation
import Graph
import HTTP
import Logging

/// Column stamping: a record's mapped fields written into its documents' SharePoint columns.
extension WritebackEngine {
    /// A record's fields, read once per 30 s however many documents of it are sent, side by side
    /// or one after another (an rsync of a tree into one record would otherwise read it once per file).
    func recordFields(_ objectName: String, id: String) async throws -> [String: JSONValue] {
        try await records.value(for: "\(objectName)/\(id)") { [salesforce] in
            try await salesforce.record(objectName, id: id).fields
        }
    }

    /// Writes the record's mapped fields into the document's columns, only those that differ: each
    /// column write is a new version in SharePoint, so an overwrite of a stamped document makes none.
    /// A new document has no column values yet, so they are not read first. Returns the document as it
    /// is after the write (its eTag moved on), or nil when no column needed writing.
    func stamp(_ item: DriveItem, driveID: String, objectName: String, recordID: String, mappings: [FieldMapping], isNew: Bool) async throws -> DriveItem? {
        let wanted = ColumnStamping.values(for: mappings, record: try await recordFields(objectName, id: recordID))
        let current = isNew ? [:] : try await graph.fields(driveID: driveID, itemID: item.id)
        let changed = wanted.filter { current[$0.key] != $0.value }
        if changed.isEmpty { return nil }
        return try await stamps.write(driveID: driveID, itemID: item.id, fields: changed)
    }
}
