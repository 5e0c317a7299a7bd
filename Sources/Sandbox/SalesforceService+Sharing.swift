import Foundation

/// Sharing as the caller meets it: queries return only the records the caller may read, a record it may
/// not read is not found, and `UserRecordAccess` (docs/wire-facts.md S6) tells what a user may do with up to 200
/// records at once.
extension SalesforceService {
    func sharing(for request: SandboxRequest) throws -> SalesforceSharing {
        try SalesforceSharing(user: tokens.user(of: request.bearerToken), store: store)
    }

    func access(for request: SandboxRequest, to row: RecordRow) throws -> Access {
        let sharing = try sharing(for: request)
        guard sharing.user != nil else { return .write }
        let fields = (try? JSONSerialization.jsonObject(with: Data(row.fields.utf8)) as? [String: Any]) ?? [:]
        return sharing.access(to: row.type, id: row.id, fields: fields)
    }

    static let maxUserRecordAccessIDs = 200

    /// `SELECT RecordId, HasEditAccess, … FROM UserRecordAccess WHERE UserId = '005…' AND RecordId IN (…)`:
    /// one user, at most 200 records; records the caller itself may not read are left out.
    func userRecordAccess(_ query: SOQLQuery, request: SandboxRequest, version: String) throws -> SandboxResponse {
        var userIDs: [String] = []
        var recordIDs: [String]?
        func collect(_ expression: SOQLQuery.Expression) {
            switch expression {
            case .and(let lhs, let rhs):
                collect(lhs)
                collect(rhs)
            case .comparison(let field, "=", .string(let value)) where field.caseInsensitiveCompare("UserId") == .orderedSame:
                userIDs.append(value)
            case .comparison(let field, "=", .string(let value)) where field.caseInsensitiveCompare("RecordId") == .orderedSame:
                recordIDs = (recordIDs ?? []) + [value]
            case .isIn(let field, let values, false) where field.caseInsensitiveCompare("RecordId") == .orderedSame:
                recordIDs = (recordIDs ?? []) + values.compactMap { if case .string(let id) = $0 { id } else { nil } }
            default:
                break
            }
        }
        if let filter = query.filter { collect(filter) }
        guard userIDs.count == 1, let recordIDs else {
            throw failure(400, "MALFORMED_QUERY", "UserRecordAccess: the query must filter on a single UserId and on RecordId")
        }
        guard recordIDs.count <= Self.maxUserRecordAccessIDs else {
            throw failure(400, "MALFORMED_QUERY", "Number of records exceeds limit: \(Self.maxUserRecordAccessIDs)")
        }
        let known = ["RecordId", "HasReadAccess", "HasEditAccess", "HasDeleteAccess", "HasTransferAccess", "HasAllAccess", "MaxAccessLevel"]
        for field in query.fields where !known.contains(where: { $0.caseInsensitiveCompare(field) == .orderedSame }) {
            throw failure(400, "INVALID_FIELD", "No such column '\(field)' on entity 'UserRecordAccess'.")
        }
        let caller = try sharing(for: request)
        // The integration user reaches everything; a demo user by their sharing; anyone else nothing.
        let subjectUser = SandboxUser.demo(salesforceUserID: userIDs[0])
        let subject = try SalesforceSharing(user: subjectUser, store: store)
        let isIntegrationUser = userIDs[0] == SalesforceID.make(prefix: "005", serial: 1)
        let evaluator = SOQLEvaluator { _ in nil }
        var records: [[String: Any]] = []
        for id in recordIDs {
            guard let row = try store.record(id: id), !row.isDeleted else { continue }
            let fields = (try? JSONSerialization.jsonObject(with: Data(row.fields.utf8)) as? [String: Any]) ?? [:]
            guard caller.access(to: row.type, id: row.id, fields: fields) > .none else { continue }
            let access: Access = subjectUser != nil || isIntegrationUser ? subject.access(to: row.type, id: row.id, fields: fields) : .none
            let full = access == .write && (isIntegrationUser || subjectUser?.role == .manager || fields["OwnerId"] as? String == userIDs[0])
            let values: [String: Any] = [
                "UserId": userIDs[0], "RecordId": row.id, "HasReadAccess": access >= .read, "HasEditAccess": access >= .write,
                "HasDeleteAccess": full, "HasTransferAccess": full, "HasAllAccess": full,
                "MaxAccessLevel": SalesforceSharing.maxAccessLevel(access, owner: full),
            ]
            if let filter = query.filter, !evaluator.matches(values, filter) { continue }
            var out: [String: Any] = ["attributes": ["type": "UserRecordAccess"]]
            for field in query.fields {
                let name = known.first { $0.caseInsensitiveCompare(field) == .orderedSame } ?? field
                out[name] = values[name]
            }
            records.append(out)
        }
        return .json(200, cursors.firstPage(records: records, batchSize: batchSize(request), version: version))
    }
}
