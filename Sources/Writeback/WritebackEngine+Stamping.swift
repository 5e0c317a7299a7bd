import Config
import CRM
import Foundation
import Graph
import HTTP
import Logging

/// Column stamping: a record's mapped fields written into its documents' SharePoint columns.
extension WritebackEngine {
    /// A record's fields, read once per `recordTTL` however many documents of it are sent (an rsync of a
    /// tree into one record would otherwise read the record once per file).
    func recordFields(_ objectName: String, id: String) async throws -> [String: JSONValue] {
        let key = "\(objectName)/\(id)"
        if let (fields, at) = lock.withLock({ records[key] }), ContinuousClock.now - at < Self.recordTTL { return fields }
        let fields = try await salesforce.record(objectName, id: id).fields
        lock.withLock {
            let now = ContinuousClock.now
            records = records.filter { now - $0.value.1 < Self.recordTTL }
            records[key] = (fields, now)
        }
        return fields
    }

    static let recordTTL: Duration = .seconds(30)

    /// Writes the record's mapped fields into the document's columns, only those that differ: each
    /// column write is a new version in SharePoint, so an overwrite of a stamped document makes none.
    /// A new document has no column values yet, so they are not read first. Returns whether any
    /// column was written.
    func stamp(_ item: DriveItem, driveID: String, objectName: String, recordID: String, mappings: [FieldMapping], isNew: Bool) async throws -> Bool {
        let wanted = ColumnStamping.values(for: mappings, record: try await recordFields(objectName, id: recordID))
        let current = isNew ? [:] : try await graph.fields(driveID: driveID, itemID: item.id)
        let changed = wanted.filter { current[$0.key] != $0.value }
        if changed.isEmpty { return false }
        _ = try await stamps.write(driveID: driveID, itemID: item.id, fields: changed)
        return true
    }
}
