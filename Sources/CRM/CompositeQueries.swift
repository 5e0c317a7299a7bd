import Foundation
import HTTP

/// A SOQL query to run beside others in one call.
public struct RecordQuery: Sendable, Hashable {
    public var soql: String
    /// `queryAll`: deleted and archived records too.
    public var includeDeleted: Bool

    public init(_ soql: String, includeDeleted: Bool = false) {
        self.soql = soql
        self.includeDeleted = includeDeleted
    }
}

extension SalesforceClient {
    /// Runs the queries as composite requests (5 to a call, the most queries Salesforce lets one composite
    /// hold; each call counts once against the allowance however many it holds: what keeps a poll of every
    /// object at one call), following `nextRecordsUrl` of a long answer.
    public func queries(_ queries: [RecordQuery]) async throws -> [[SObjectRecord]] {
        var results: [[SObjectRecord]] = []
        var start = 0
        while start < queries.count {
            let chunk = Array(queries[start..<min(start + Self.maxCompositeQueries, queries.count)])
            let subrequests = chunk.enumerated().map { index, query in
                CompositeSubrequest(method: "GET", url: "/services/data/v\(apiVersion)/\(query.includeDeleted ? "queryAll" : "query")?q=\(SOQLEscaping.queryParameter(query.soql))",
                                    referenceID: "q\(index)")
            }
            let answers = Dictionary(try await composite(subrequests, allOrNone: false).map { ($0.referenceId, $0) }, uniquingKeysWith: { first, _ in first })
            for index in chunk.indices {
                guard let answer = answers["q\(index)"], answer.httpStatusCode == 200, let body = answer.body else {
                    throw SalesforceError.subrequest(status: answers["q\(index)"]?.httpStatusCode ?? 0, body: answers["q\(index)"]?.body, soql: chunk[index].soql)
                }
                var records = (body["records"]?.arrayValue ?? []).compactMap { $0.objectValue }.map(SObjectRecord.init(json:))
                if body["done"]?.boolValue == false, let next = body["nextRecordsUrl"]?.stringValue {
                    for try await page in queryPages(continuingAt: next) { records += page.records }
                }
                results.append(records)
            }
            start += chunk.count
        }
        return results
    }

    /// A composite holds up to 25 subrequests, of which at most 5 may be queries (docs/wire-facts.md S5).
    static let maxCompositeQueries = 5
}
