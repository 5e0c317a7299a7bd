import CRM
import Foundation
import HTTP

/// The extended attributes of a node: `user.crm.<Field>` (the record's mapped fields),
/// `user.sp.<Column>` (a document's SharePoint columns) and `user.crmfs.*` (crmfs's own facts).
/// Null values are left out, so asking for one answers ENODATA.
enum ExtendedAttributes {
    static func of(_ node: Node, tree: Tree, recordNode: Node?) -> [(name: String, value: String)] {
        var attributes: [(String, String)] = []
        if let objectIndex = node.objectIndex, let record = (node.record ?? recordNode?.record) {
            for field in tree.config.objects[objectIndex].fields {
                let value = record[field]
                if let value, !value.isNull { attributes.append(("user.crm.\(field)", FieldText.display(value))) }
            }
        }
        if let fields = node.item?.listItem?.fields {
            for (column, value) in fields.sorted(by: { $0.key < $1.key }) where !column.hasPrefix("@") && !value.isNull {
                attributes.append(("user.sp.\(column)", FieldText.display(value)))
            }
        }
        switch node.key {
        case .root:
            break
        case .object(let index):
            attributes.append(("user.crmfs.object", tree.config.objects[index].object))
        case .record(let id):
            attributes.append(("user.crmfs.record_id", id))
            attributes.append(("user.crmfs.web_url", "\(tree.recordURLBase)/\(id)"))
        case .item(let id):
            attributes.append(("user.crmfs.item_id", id))
            attributes.append(("user.crmfs.drive_id", node.item?.parentReference?.driveId ?? tree.driveID))
            if let url = node.item?.webUrl { attributes.append(("user.crmfs.web_url", url)) }
            if let eTag = node.item?.eTag { attributes.append(("user.crmfs.etag", eTag)) }
            if let hash = node.item?.file?.hashes?.quickXorHash { attributes.append(("user.crmfs.quickxorhash", hash)) }
            if let record = node.recordID { attributes.append(("user.crmfs.record_id", record)) }
            if node.type == .file { attributes.append(("user.crmfs.sync", "clean")) }
        case .local:
            if let record = node.recordID { attributes.append(("user.crmfs.record_id", record)) }
            if node.type == .file { attributes.append(("user.crmfs.sync", node.localOnly ? "local-only" : "pending")) }
        }
        // Under a user's own sign-in: what they may do with the record (and so with its documents).
        if let editable = (node.record ?? recordNode?.record)?.isEditable {
            attributes.append(("user.crmfs.access", editable ? "edit" : "read"))
        }
        return attributes
    }
}
