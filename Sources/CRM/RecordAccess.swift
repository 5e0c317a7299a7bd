import Foundation
import HTTP

/// What the signed-in user may do with records, from Salesforce's `UserRecordAccess` (docs/wire-facts.md S6):
/// at most 200 record Ids to a query, the queries sent together (a composite call holds many). Only a
/// user's own sign-in needs it; the integration user of client credentials reaches everything.
public enum RecordAccess {
    public static let maxIDsPerQuery = 200
    /// The field crmfs keeps the answer under, in the record itself, so it is cached and kept with the
    /// listing: the shape Salesforce gives `UserRecordAccess.HasEditAccess` as a relationship.
    public static let field = "UserRecordAccess"

    /// What a user may do with one record.
    public struct Level: Sendable, Equatable {
        public var read: Bool
        public var edit: Bool
    }

    /// The queries that ask what `userID` may do with `ids`: 200 Ids each.
    public static func queries(_ ids: [String], userID: String) -> [RecordQuery] {
        let unique = Array(Set(ids)).sorted()
        return stride(from: 0, to: unique.count, by: maxIDsPerQuery).map { start in
            let list = unique[start..<min(start + maxIDsPerQuery, unique.count)].map(SOQLEscaping.literal).joined(separator: ",")
            return RecordQuery("SELECT RecordId, HasReadAccess, HasEditAccess FROM UserRecordAccess WHERE UserId = \(SOQLEscaping.literal(userID)) AND RecordId IN (\(list))")
        }
    }

    /// The answers of `queries`, by record Id. A record left out (the caller may not read it) is absent.
    public static func levels(_ answers: [[SObjectRecord]]) -> [String: Level] {
        var levels: [String: Level] = [:]
        for row in answers.joined() {
            guard let id = row["RecordId"]?.stringValue else { continue }
            levels[id] = Level(read: row["HasReadAccess"]?.boolValue == true, edit: row["HasEditAccess"]?.boolValue == true)
        }
        return levels
    }

    /// The Ids among `ids` that `userID` may edit.
    public static func editable(_ ids: [String], userID: String, service: any RecordService) async throws -> Set<String> {
        guard !ids.isEmpty else { return [] }
        return Set(levels(try await service.queries(queries(ids, userID: userID))).filter(\.value.edit).keys)
    }

    /// `records` with what the signed-in user may do with each, under `field`; unchanged when the service
    /// cannot say who the user is.
    public static func annotate(_ records: [SObjectRecord], service: any RecordService) async throws -> [SObjectRecord] {
        guard !records.isEmpty, let userID = try await service.signedInUserID() else { return records }
        let editable = try await editable(records.compactMap(\.id), userID: userID, service: service)
        return records.map { record in record.id.map { record.withAccess(editable: editable.contains($0)) } ?? record }
    }
}

extension SObjectRecord {
    /// This record with what the signed-in user may do with it.
    public func withAccess(editable: Bool) -> SObjectRecord {
        var record = self
        record.fields[RecordAccess.field] = .object(["HasEditAccess": .bool(editable)])
        return record
    }

    /// False when the record was checked and the signed-in user may only read it; nil when never checked.
    public var isEditable: Bool? { fields[RecordAccess.field]?["HasEditAccess"]?.boolValue }
}
