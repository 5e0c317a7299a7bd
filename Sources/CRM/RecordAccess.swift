import Foundation
import HTTP

/// What the signed-in user may do with records, from Salesforce's `UserRecordAccess` (api-facts §16.1):
/// at most 200 record Ids to a query, the queries sent together (a composite call holds many). Only a
/// user's own sign-in needs it; the integration user of client credentials reaches everything.
public enum RecordAccess {
    public static let maxIDsPerQuery = 200
    /// The field crmfs keeps the answer under, in the record itself, so it is cached and kept with the
    /// listing: the shape Salesforce gives `UserRecordAccess.HasEditAccess` as a relationship.
    public static let field = "UserRecordAccess"

    /// The Ids among `ids` that `userID` may edit.
    public static func editable(_ ids: [String], userID: String, service: any RecordService) async throws -> Set<String> {
        let unique = Array(Set(ids)).sorted()
        guard !unique.isEmpty else { return [] }
        let queries = stride(from: 0, to: unique.count, by: maxIDsPerQuery).map { start in
            let batch = unique[start..<min(start + maxIDsPerQuery, unique.count)]
            let list = batch.map(SOQLEscaping.literal).joined(separator: ",")
            return RecordQuery("SELECT RecordId, HasEditAccess FROM UserRecordAccess WHERE UserId = \(SOQLEscaping.literal(userID)) AND RecordId IN (\(list))")
        }
        var editable: Set<String> = []
        for answer in try await service.queries(queries) {
            for row in answer where row["HasEditAccess"]?.boolValue == true {
                if let id = row["RecordId"]?.stringValue { editable.insert(id) }
            }
        }
        return editable
    }

    /// `records` with what the signed-in user may do with each, under `field`; unchanged when the service
    /// cannot say who the user is.
    public static func annotate(_ records: [SObjectRecord], service: any RecordService) async throws -> [SObjectRecord] {
        guard !records.isEmpty, let userID = try await service.signedInUserID() else { return records }
        let editable = try await editable(records.compactMap(\.id), userID: userID, service: service)
        return records.map { record in
            var record = record
            if let id = record.id { record.fields[field] = .object(["HasEditAccess": .bool(editable.contains(id))]) }
            return record
        }
    }
}

extension SObjectRecord {
    /// False when the record was checked and the signed-in user may only read it; nil when never checked.
    public var isEditable: Bool? { fields[RecordAccess.field]?["HasEditAccess"]?.boolValue }
}
