import Foundation
import HTTP

/// What crmfs asks of the CRM: queries (one or several at once), records and their writes. `SalesforceClient` is
/// the real one; a test about crmfs's own logic may stand in another.
public protocol RecordService: Sendable {
    func query(_ soql: String, includeDeleted: Bool, batchSize: Int?) async throws -> [SObjectRecord]
    /// Several queries at the cost of as few calls as the service allows; answers in the queries' order.
    func queries(_ queries: [RecordQuery]) async throws -> [[SObjectRecord]]
    func record(_ object: String, id: String, fields: [String]?) async throws -> SObjectRecord
    func create(_ object: String, fields: [String: JSONValue]) async throws -> String
    func update(_ object: String, id: String, fields: [String: JSONValue]) async throws
    func upsert(_ object: String, externalIDField field: String, value: String, fields: [String: JSONValue]) async throws -> (id: String, created: Bool)
    func delete(_ object: String, id: String) async throws
    /// The org's daily API allowance as the last answer reported it (`Sforce-Limit-Info`), if any.
    var apiUsage: APIUsage? { get }
    /// The User Id the calls run as, when the sign-in says (a user's own sign-in does).
    func signedInUserID() async throws -> String?
}

/// Calls made today against the org's daily allowance.
public struct APIUsage: Sendable, Equatable {
    public var used: Int
    public var limit: Int

    public init(used: Int, limit: Int) {
        self.used = used
        self.limit = limit
    }

    /// `api-usage=18/5000`, as in `Sforce-Limit-Info`.
    public init?(header: String) {
        guard let range = header.range(of: "api-usage=") else { return nil }
        let parts = header[range.upperBound...].prefix { $0 != "," && $0 != ";" }.split(separator: "/")
        guard parts.count == 2, let used = Int(parts[0].trimmingCharacters(in: .whitespaces)),
              let limit = Int(parts[1].trimmingCharacters(in: .whitespaces)), limit > 0 else { return nil }
        self.init(used: used, limit: limit)
    }

    public var fractionUsed: Double { Double(used) / Double(limit) }
}

/// The calls as the write-back side makes them, with the defaults `SalesforceClient` has.
extension RecordService {
    public func query(_ soql: String) async throws -> [SObjectRecord] {
        try await query(soql, includeDeleted: false, batchSize: nil)
    }

    public func record(_ object: String, id: String) async throws -> SObjectRecord {
        try await record(object, id: id, fields: nil)
    }

    public var apiUsage: APIUsage? { nil }

    public func signedInUserID() async throws -> String? { nil }

    /// One call per query, for a service without a way to send them together.
    public func queries(_ queries: [RecordQuery]) async throws -> [[SObjectRecord]] {
        var results: [[SObjectRecord]] = []
        for query in queries { results.append(try await self.query(query.soql, includeDeleted: query.includeDeleted, batchSize: nil)) }
        return results
    }
}

extension SalesforceClient: RecordService {
    public var apiUsage: APIUsage? { lastLimitInfo.flatMap(APIUsage.init(header:)) }
}
