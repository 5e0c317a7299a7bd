import Foundation
import HTTP

/// One error of Salesforce's error array: `[{"message", "errorCode", "fields"}]`.
public struct SalesforceErrorItem: Sendable, Decodable, Equatable {
    public var message: String
    public var errorCode: String
    public var fields: [String]?
}

/// A Salesforce REST request that failed, with the service's error codes.
public struct SalesforceError: Error, CustomStringConvertible, Sendable {
    public var status: Int
    public var errors: [SalesforceErrorItem]
    public var request: String
    public var attempts: Int?

    public var code: String { errors.first?.errorCode ?? "HTTP_\(status)" }

    public var description: String {
        let detail = errors.map { "\($0.errorCode): \($0.message.trimmingCharacters(in: .whitespacesAndNewlines))" }.joined(separator: "; ")
        return "\(request): HTTP \(status) \(detail.isEmpty ? code : detail)" + (attempts.map { " (after \($0) attempts)" } ?? "")
    }

    init(response: HTTPResponse, request: HTTPRequest, attempts: Int? = nil) {
        status = response.status
        self.request = request.logDescription
        self.attempts = attempts
        if let items = try? JSONDecoder().decode([SalesforceErrorItem].self, from: response.body) {
            errors = items
        } else if let oauth = try? JSONDecoder().decode(JSONValue.self, from: response.body), let code = oauth["error"]?.stringValue {
            errors = [SalesforceErrorItem(message: oauth["error_description"]?.stringValue ?? "", errorCode: code, fields: nil)]
        } else {
            errors = []
        }
    }

    /// A composite subrequest that failed: its status and the error array in its body.
    static func subrequest(status: Int, body: JSONValue?, soql: String) -> SalesforceError {
        var error = SalesforceError(response: HTTPResponse(status: status), request: HTTPRequest(url: "composite query: \(soql.prefix(120))"))
        error.errors = (body?.arrayValue ?? []).compactMap { item in
            item["errorCode"]?.stringValue.map { SalesforceErrorItem(message: item["message"]?.stringValue ?? "", errorCode: $0, fields: nil) }
        }
        return error
    }
}

/// A record as the REST API returns it: its type from `attributes`, and every other field as JSON.
public struct SObjectRecord: Sendable {
    public var type: String
    public var fields: [String: JSONValue]

    public var id: String? { fields["Id"]?.stringValue }

    public subscript(field: String) -> JSONValue? {
        // Dotted paths reach into parent relationships: Account.Name.
        var value: JSONValue? = .object(fields)
        for part in field.split(separator: ".") { value = value?[String(part)] }
        return value
    }

    public init(type: String, fields: [String: JSONValue]) {
        self.type = type
        self.fields = fields
    }

    init(json: [String: JSONValue]) {
        type = json["attributes"]?["type"]?.stringValue ?? ""
        fields = json.filter { $0.key != "attributes" }
    }
}

public struct QueryPage: Sendable {
    public var totalSize: Int
    public var records: [SObjectRecord]
    public var nextRecordsURL: String?
}

public struct SObjectField: Sendable, Decodable {
    public var name: String
    public var label: String
    public var type: String
    public var updateable: Bool
    public var createable: Bool
    public var nillable: Bool
    public var externalId: Bool?
    public var referenceTo: [String]?
    public var relationshipName: String?
}

public struct SObjectDescription: Sendable, Decodable {
    public var name: String
    public var label: String
    public var labelPlural: String?
    public var keyPrefix: String?
    public var queryable: Bool
    public var updateable: Bool
    public var fields: [SObjectField]

    public func field(_ name: String) -> SObjectField? {
        fields.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }
    }
}

/// Salesforce REST: SOQL queries with cursor paging, describe, and single records.
/// The REST base is the `instance_url` that came with the access token.
public final class SalesforceClient: Sendable {
    public let apiVersion: String
    let fallbackInstanceURL: String
    let http: HTTPClient
    let auth: any AccessTokenProvider
    private let usage = UsageTracker()

    public init(instanceURL: String, apiVersion: String = "62.0", http: HTTPClient, auth: any AccessTokenProvider) {
        fallbackInstanceURL = instanceURL.hasSuffix("/") ? String(instanceURL.dropLast()) : instanceURL
        self.apiVersion = apiVersion
        self.http = http
        self.auth = auth
    }

    /// The last `Sforce-Limit-Info` seen, e.g. `api-usage=18/5000`.
    public var lastLimitInfo: String? { usage.value }

    /// Every page of a query's results, following `nextRecordsUrl`. `batchSize` (200–2000) is a hint.
    public func queryPages(_ soql: String, includeDeleted: Bool = false, batchSize: Int? = nil) -> AsyncThrowingStream<QueryPage, Error> {
        let resource = includeDeleted ? "queryAll" : "query"
        return queryPages(continuingAt: "/services/data/v\(apiVersion)/\(resource)?q=\(SOQLEscaping.queryParameter(soql))", batchSize: batchSize)
    }

    /// The pages of a query from `path` (a query URL, or a `nextRecordsUrl`) on.
    func queryPages(continuingAt path: String, batchSize: Int? = nil) -> AsyncThrowingStream<QueryPage, Error> {
        AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    var path: String? = path
                    while let current = path {
                        let page = try await getPage(current, batchSize: batchSize)
                        continuation.yield(page)
                        path = page.nextRecordsURL
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    public func query(_ soql: String, includeDeleted: Bool = false, batchSize: Int? = nil) async throws -> [SObjectRecord] {
        var all: [SObjectRecord] = []
        for try await page in queryPages(soql, includeDeleted: includeDeleted, batchSize: batchSize) { all += page.records }
        return all
    }

    public func describe(_ object: String) async throws -> SObjectDescription {
        let response = try await get("/services/data/v\(apiVersion)/sobjects/\(object)/describe")
        return try decode(SObjectDescription.self, response)
    }

    public func record(_ object: String, id: String, fields: [String]? = nil) async throws -> SObjectRecord {
        var path = "/services/data/v\(apiVersion)/sobjects/\(object)/\(id)"
        if let fields, !fields.isEmpty { path += "?fields=\(fields.joined(separator: ","))" }
        let response = try await get(path)
        return SObjectRecord(json: try decode([String: JSONValue].self, response))
    }

    // MARK: Plumbing

    private func getPage(_ path: String, batchSize: Int?) async throws -> QueryPage {
        var headers = HTTPHeaders()
        if let batchSize { headers["Sforce-Query-Options"] = "batchSize=\(batchSize)" }
        let response = try await get(path, headers: headers)
        let json = try decode(JSONValue.self, response)
        let records = (json["records"]?.arrayValue ?? []).compactMap { $0.objectValue }.map(SObjectRecord.init(json:))
        return QueryPage(totalSize: json["totalSize"]?.intValue ?? records.count, records: records,
                         nextRecordsURL: json["done"]?.boolValue == false ? json["nextRecordsUrl"]?.stringValue : nil)
    }

    public func signedInUserID() async throws -> String? { try await auth.token().userID }

    /// GETs a path relative to the instance URL (as `nextRecordsUrl` is).
    private func get(_ path: String, headers: HTTPHeaders = HTTPHeaders()) async throws -> HTTPResponse {
        try await send("GET", path, headers: headers, expecting: [200])
    }

    /// Sends a request to a path relative to the instance URL; any status but `expecting` is a SalesforceError.
    func send(_ method: String, _ path: String, headers: HTTPHeaders = HTTPHeaders(), json: [String: JSONValue]? = nil,
              expecting statuses: Set<Int>) async throws -> HTTPResponse {
        let base = try await auth.token().instanceURL ?? fallbackInstanceURL
        var headers = headers
        headers["Accept"] = "application/json"
        var body = RequestBody.none
        if let json {
            headers["Content-Type"] = "application/json"
            body = .bytes(try JSONEncoder().encode(json))
        }
        let request = HTTPRequest(method: method, url: base + path, headers: headers, body: body, isIdempotent: method != "POST")
        let response: HTTPResponse
        do {
            response = try await http.send(request, auth: auth)
        } catch HTTPError.retriesExhausted(_, let attempts, _, let last?) {
            ServiceMetrics.request(service: "salesforce", status: last.status)
            throw SalesforceError(response: last, request: request, attempts: attempts)
        } catch {
            ServiceMetrics.request(service: "salesforce", status: nil)
            throw error
        }
        ServiceMetrics.request(service: "salesforce", status: response.status)
        if let info = response.headers["Sforce-Limit-Info"] { usage.value = info }
        guard statuses.contains(response.status) else { throw SalesforceError(response: response, request: request) }
        return response
    }

    func decode<T: Decodable>(_ type: T.Type, _ response: HTTPResponse) throws -> T {
        try JSONDecoder().decode(T.self, from: response.body)
    }
}

final class UsageTracker: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: String?
    var value: String? {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}

public enum SOQLEscaping {
    /// Quotes a value for a SOQL string literal.
    public static func literal(_ value: String) -> String {
        "'" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'") + "'"
    }

    static func queryParameter(_ soql: String) -> String {
        soql.addingPercentEncoding(withAllowedCharacters: unreserved.union(CharacterSet(charactersIn: ","))) ?? soql
    }

    /// Percent-encodes one URL path segment (an external id value such as a drive item id).
    static func pathSegment(_ value: String) -> String {
        value.addingPercentEncoding(withAllowedCharacters: unreserved) ?? value
    }

    private static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
}
