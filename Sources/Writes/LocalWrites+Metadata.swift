import Foundation
import Namespace
import Writeback

/// Metadata edits through extended attributes: the tree checks and converts the value, Writeback sends
/// it at once, and the tree takes the service's answer.
extension LocalWrites {
    /// `setfattr user.sp.COLUMN` on a document: after its pending upload (EBUSY while it is still open for
    /// writing); a value SharePoint refuses is EINVAL with its reason.
    public func setColumn(_ ino: UInt64, column: String, text: String?) async throws {
        try tree.requireWritable(ino)
        try await uploaded(ino)
        let edit = try await tree.columnEdit(ino, column: column, text: text)
        do {
            let fields = try await engine.metadata.setColumns(driveID: edit.driveID, itemID: edit.itemID, fields: edit.fields)
            tree.columnsWritten(fields, to: ino)
            audit("setColumn \(column)", ino, itemID: edit.itemID, recordID: nil, outcome: "done")
        } catch let refused as MetadataRefused {
            audit("setColumn \(column)", ino, itemID: edit.itemID, recordID: nil, outcome: "refused: \(refused.reason)")
            throw NamespaceError.invalid(refused.reason)
        }
    }

    /// `setfattr user.crm.FIELD` on a record or its documents, for fields `writable_fields` lists; a value
    /// Salesforce refuses is EINVAL with its reason.
    public func setRecordField(_ ino: UInt64, field: String, text: String?) async throws {
        try tree.requireWritable(ino)
        let edit = try tree.recordFieldEdit(ino, field: field, text: text)
        do {
            let record = try await engine.metadata.setRecordFields(object: edit.objectName, id: edit.recordID, fields: edit.fields,
                                                                  shownFields: edit.shownFields)
            tree.recordWritten(record)
            audit("setRecordField \(field)", ino, itemID: nil, recordID: edit.recordID, outcome: "done")
        } catch let refused as MetadataRefused {
            audit("setRecordField \(field)", ino, itemID: nil, recordID: edit.recordID, outcome: "refused: \(refused.reason)")
            throw NamespaceError.invalid(refused.reason)
        }
    }

    /// Records a metadata edit made at once (not through the engine) in the audit log.
    private func audit(_ operation: String, _ ino: UInt64, itemID: String?, recordID: String?, outcome: String) {
        support.audit?.record(AuditLog.Entry(operation: operation, path: tree.mountPath(of: ino) ?? "", itemId: itemID, recordId: recordID,
                                             outcome: outcome, requester: ChangeRequester.uid))
    }
}
