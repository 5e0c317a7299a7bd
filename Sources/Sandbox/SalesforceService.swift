import Foundation

/// Salesforce REST, the part crmfs uses: OAuth token, versions, describe, record GET,
/// SOQL query/queryAll with server-side cursors, limits, getUpdated/getDeleted.
final class SalesforceService: Sendable {
    static let versions = ["58.0", "59.0", "60.0", "61.0", "62.0"]

    let store: SandboxStore
    let tokens: TokenRegistry
    let stats: Stats
    let options: SandboxOptions
    let credentials: SandboxCredentials
    let signIns: DeviceSignIns
    let cursors = QueryCursors()
    private let apiUsage = LockedValue<Int>(0)

    init(store: SandboxStore, tokens: TokenRegistry, stats: Stats, options: SandboxOptions, credentials: SandboxCredentials, signIns: DeviceSignIns) {
        self.signIns = signIns
        self.store = store
        self.tokens = tokens
        self.stats = stats
        self.options = options
        self.credentials = credentials
    }

    private var userID: String { SalesforceID.make(prefix: "005", serial: 1) }

    // MARK: OAuth

    func token(_ request: SandboxRequest) throws -> SandboxResponse {
        guard request.method == "POST" else { throw oauthError(400, "invalid_request", "must use HTTP POST") }
        var form = Dictionary(FormDecoding.decode(String(decoding: request.body, as: UTF8.self)), uniquingKeysWith: { $1 })
        if let basic = BasicAuth.decode(request.header("Authorization")) {
            form["client_id"] = basic.user
            form["client_secret"] = basic.password
        }
        guard form["client_id"] == credentials.salesforceClientID else {
            throw oauthError(400, "invalid_client_id", "client identifier invalid")
        }
        if form["response_type"] == "device_code" { return startDeviceSignIn(form, request: request) }
        // The integration user, unless the token is a user's own (device sign-in, or a refresh token it led to).
        var user: SandboxUser?
        switch form["grant_type"] {
        case "client_credentials":
            guard form["client_secret"] == credentials.salesforceClientSecret else { throw oauthError(400, "invalid_client", "invalid client credentials") }
        case "device":
            switch signIns.poll(.salesforce, deviceCode: form["code"] ?? "", clientID: credentials.salesforceClientID, enforceInterval: true) {
            case .approved(let approver, _): user = approver
            case .pending: throw oauthError(400, "authorization_pending", "authorization pending")
            case .slowDown: throw oauthError(400, "slow_down", "polling too frequently")
            case .declined: throw oauthError(400, "access_denied", "end-user denied authorization")
            case .expired, .unknown: throw oauthError(400, "invalid_grant", "expired authorization code")
            }
        case "refresh_token":
            let token = form["refresh_token"] ?? ""
            if token != credentials.salesforceRefreshToken {
                guard let granted = signIns.grant(of: token, service: .salesforce, clientID: credentials.salesforceClientID) else {
                    throw oauthError(400, "invalid_grant", "expired access/refresh token")
                }
                user = granted.user
            }
            if let secret = form["client_secret"], secret != credentials.salesforceClientSecret {
                throw oauthError(400, "invalid_client", "invalid client credentials")
            }
        case nil:
            throw oauthError(400, "unsupported_grant_type", "grant type not supported")
        case let other?:
            throw oauthError(400, "unsupported_grant_type", "grant type not supported: \(other)")
        }
        stats.increment("token")
        stats.increment("token.salesforce")
        let token = tokens.issue(.salesforce, token: "\(credentials.orgID)!AQ" + SandboxCredentials.token(96), user: user)
        // Salesforce sends no expires_in: the session timeout governs, invisibly.
        var body: [String: Any] = [
            "access_token": token, "signature": Data(SandboxCredentials.token(32).utf8).base64EncodedString(), "scope": "api",
            "instance_url": request.origin, "id": "\(request.origin)/id/\(credentials.orgID)/\(user?.salesforceUserID ?? userID)", "token_type": "Bearer",
            "issued_at": String(Int64(Date().timeIntervalSince1970 * 1000)),
        ]
        if form["grant_type"] == "device", let user {
            body["scope"] = "refresh_token api"
            body["refresh_token"] = signIns.issueRefreshToken(.init(service: .salesforce, clientID: credentials.salesforceClientID, scope: "refresh_token api", user: user))
        }
        return .json(200, body)
    }

    /// The device flow's first step (docs/wire-facts.md S1): a code for the user to enter at the verification page.
    private func startDeviceSignIn(_ form: [String: String], request: SandboxRequest) -> SandboxResponse {
        let verificationURI = request.origin + "/setup/connect"
        let started = signIns.start(.salesforce, clientID: credentials.salesforceClientID, scope: form["scope"] ?? "api", verificationURI: verificationURI)
        return .json(200, ["device_code": started.deviceCode, "user_code": started.userCode, "verification_uri": verificationURI, "interval": signIns.interval])
    }

    private func oauthError(_ status: Int, _ code: String, _ description: String) -> ServiceFailure {
        ServiceFailure(response: .json(status, ["error": code, "error_description": description]))
    }

    // MARK: REST

    func handle(_ request: SandboxRequest) async throws -> SandboxResponse {
        let segments = request.segments  // ["services", "data", "v62.0", ...]
        if segments.count == 2 {
            return .json(200, Self.versions.map { ["label": "Winter '25", "url": "/services/data/v\($0)", "version": $0] })
        }
        guard segments.count >= 3, segments[2].hasPrefix("v"), Self.versions.contains(String(segments[2].dropFirst())) else {
            throw error(404, "NOT_FOUND", "The requested resource does not exist")
        }
        guard tokens.isValid(request.bearerToken, for: .salesforce) else {
            stats.increment("sf.401")
            throw error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        }
        let used = apiUsageIncrement()
        stats.increment("sf.calls")
        let limitHeader = [("Sforce-Limit-Info", "api-usage=\(used)/\(options.salesforceDailyLimit)")]
        guard used <= options.salesforceDailyLimit else {
            throw ServiceFailure(response: .json(403, [["message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"]], headers: limitHeader))
        }
        let version = segments[2]
        let rest = Array(segments.dropFirst(3))
        var response: SandboxResponse
        do {
            if request.method == "POST", rest == ["composite"] {
                response = try composite(request, version: version)
            } else {
                response = request.method == "GET" ? try route(rest, request: request, version: version) : try write(rest, request: request)
            }
        } catch let failure as ServiceFailure {
            response = failure.response
        }
        response.headers += limitHeader
        return response
    }

    private func apiUsageIncrement() -> Int {
        var result = 0
        let usage = apiUsage
        usage.value = { result = usage.value + 1; return result }()
        return result
    }

    func route(_ rest: [String], request: SandboxRequest, version: String) throws -> SandboxResponse {
        switch rest.count {
        case 1 where rest[0] == "sobjects":
            stats.increment("sf.describe")
            return .json(200, ["encoding": "UTF-8", "maxBatchSize": 200,
                               "sobjects": SalesforceSchema.objects.values.sorted { $0.name < $1.name }.map { objectSummary($0, version: version) }])
        case 1 where rest[0] == "limits":
            return .json(200, ["DailyApiRequests": ["Max": options.salesforceDailyLimit, "Remaining": max(0, options.salesforceDailyLimit - apiUsage.value)]])
        case 1 where rest[0] == "query" || rest[0] == "queryAll":
            stats.increment("sf.query")
            guard let soql = request.query["q"] else { throw error(400, "MALFORMED_QUERY", "A query string must be provided.") }
            return try query(soql, includeDeleted: rest[0] == "queryAll", request: request, version: version)
        case 2 where rest[0] == "query" || rest[0] == "queryAll":
            stats.increment("sf.query")
            return try continueQuery(locator: rest[1], version: version)
        case 2 where rest[0] == "sobjects":
            let schema = try object(rest[1])
            return .json(200, ["objectDescribe": objectSummary(schema, version: version), "recentItems": [Any]()])
        case 3 where rest[0] == "sobjects" && rest[2] == "describe":
            stats.increment("sf.describe")
            if let since = request.header("If-Modified-Since"), HTTPDateParsing.parse(since) != nil { return .empty(304) }
            return .json(200, describe(try object(rest[1]), version: version))
        case 3 where rest[0] == "sobjects" && (rest[2] == "updated" || rest[2] == "deleted"):
            return try changes(try object(rest[1]), deleted: rest[2] == "deleted", request: request)
        case 3 where rest[0] == "sobjects":
            stats.increment("sf.record")
            let schema = try object(rest[1])
            guard let row = try store.record(id: rest[2]), row.type == schema.name, !row.isDeleted,
                  try access(for: request, to: row) > .none else {
                throw error(404, "NOT_FOUND", "The requested resource does not exist")
            }
            let fields = request.query["fields"].map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
            if let fields { for field in fields where schema.field(field) == nil { throw invalidField(field, schema.name) } }
            return .json(200, render(row, schema: schema, fields: fields ?? schema.fields.map(\.name), version: version))
        default:
            throw error(404, "NOT_FOUND", "The requested resource does not exist")
        }
    }

    // MARK: Query

    /// Record Ids written as literals in a query (`Id IN ('001…', …)`).
    static func quotedRecordIDs(in soql: String) -> [String] {
        soql.split(separator: "'").enumerated().compactMap { index, part in
            index % 2 == 1 && (part.count == 15 || part.count == 18) && part.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) ? String(part) : nil
        }
    }

    private func query(_ soql: String, includeDeleted: Bool, request: SandboxRequest, version: String) throws -> SandboxResponse {
        let parsed: SOQLQuery
        do { parsed = try SOQLParser.parse(soql) } catch let e as SOQLError { throw error(400, e.code, e.message) }
        if parsed.object.caseInsensitiveCompare("UserRecordAccess") == .orderedSame {
            return try userRecordAccess(parsed, request: request, version: version)
        }
        let sharing = try sharing(for: request)
        // Which caller named which records (for tests: a fleet mount asks only about records it holds).
        for id in Self.quotedRecordIDs(in: soql) { stats.increment("sf.askedByID.\(sharing.user?.name ?? "app").\(id)") }
        guard let schema = SalesforceSchema.object(parsed.object) else {
            throw error(400, "INVALID_TYPE", "\nsObject type '\(parsed.object)' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.")
        }
        for field in parsed.fields + parsed.orderBy.map(\.field) { try checkField(field, schema: schema) }
        if let filter = parsed.filter { try checkFields(in: filter, schema: schema) }

        var parentCache: [String: [String: Any]] = [:]
        let evaluator = SOQLEvaluator { id in
            if let cached = parentCache[id] { return cached }
            guard let row = try? self.store.record(id: id) else { return nil }
            var fields = (try? JSONSerialization.jsonObject(with: Data(row.fields.utf8)) as? [String: Any]) ?? [:]
            fields["attributes"] = ["type": row.type]
            parentCache[id] = fields
            return fields
        }
        var matched: [(row: RecordRow, fields: [String: Any])] = []
        for row in try store.records(type: schema.name, includeDeleted: includeDeleted) {
            var fields = (try JSONSerialization.jsonObject(with: Data(row.fields.utf8)) as? [String: Any]) ?? [:]
            fields["attributes"] = ["type": row.type]
            if let filter = parsed.filter, !evaluator.matches(fields, filter) { continue }
            guard sharing.user == nil || sharing.access(to: row.type, id: row.id, fields: fields) > .none else { continue }
            matched.append((row, fields))
        }
        if !parsed.orderBy.isEmpty {
            matched.sort { lhs, rhs in
                for order in parsed.orderBy {
                    let a = evaluator.value(lhs.fields, order.field), b = evaluator.value(rhs.fields, order.field)
                    let aNull = a == nil || a is NSNull, bNull = b == nil || b is NSNull
                    if aNull != bNull { return aNull == order.nullsFirst }
                    let result = evaluator.sortKey(a, b)
                    if result != .orderedSame { return order.ascending ? result == .orderedAscending : result == .orderedDescending }
                }
                return false
            }
        }
        if let offset = parsed.offset { matched = Array(matched.dropFirst(offset)) }
        if let limit = parsed.limit { matched = Array(matched.prefix(limit)) }
        if parsed.isCount { return .json(200, ["totalSize": matched.count, "done": true, "records": [Any]()]) }

        // The schema's own spelling of each field, looked up once per query rather than per record.
        let canonical = Dictionary(parsed.fields.map { ($0, schema.field($0)?.name ?? $0) }, uniquingKeysWith: { first, _ in first })
        let records: [[String: Any]] = matched.map { entry in
            var out: [String: Any] = ["attributes": ["type": schema.name, "url": "/services/data/\(version)/sobjects/\(schema.name)/\(entry.row.id)"]]
            for field in parsed.fields {
                if field.contains(".") {
                    nest(&out, path: field, value: evaluator.value(entry.fields, field), schema: schema, version: version, record: entry.fields)
                } else {
                    let name = canonical[field] ?? field
                    out[name] = entry.fields[name] ?? NSNull()
                }
            }
            return out
        }
        let batch = batchSize(request)
        return .json(200, cursors.firstPage(records: records, batchSize: batch, version: version))
    }

    private func continueQuery(locator: String, version: String) throws -> SandboxResponse {
        guard let page = cursors.page(locator: locator, version: version) else {
            throw error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        }
        return .json(200, page)
    }

    func batchSize(_ request: SandboxRequest) -> Int {
        var size = options.queryBatchSize
        if let header = request.header("Sforce-Query-Options"),
           let value = header.split(separator: ",").first(where: { $0.trimmingCharacters(in: .whitespaces).hasPrefix("batchSize=") }),
           let requested = Int(value.split(separator: "=")[1]) {
            size = min(size, max(200, min(2000, requested)))
        }
        return max(1, min(size, 2000))
    }

    /// Puts `Account.Name` into the record as `"Account": {"attributes": {...}, "Name": ...}`.
    private func nest(_ out: inout [String: Any], path: String, value: Any?, schema: SObjectSchema, version: String, record: [String: Any]) {
        let parts = path.split(separator: ".").map(String.init)
        guard let reference = schema.relationship(parts[0]), let relationship = reference.relationshipName else { return }
        guard let parentID = record[reference.name] as? String else { out[relationship] = NSNull(); return }
        var parent = out[relationship] as? [String: Any]
            ?? ["attributes": ["type": reference.referenceTo.first ?? "", "url": "/services/data/\(version)/sobjects/\(reference.referenceTo.first ?? "")/\(parentID)"]]
        parent[parts[1]] = value ?? NSNull()
        out[relationship] = parent
    }

    private func checkField(_ path: String, schema: SObjectSchema) throws {
        let parts = path.split(separator: ".").map(String.init)
        if parts.count == 1 {
            guard schema.field(parts[0]) != nil else { throw invalidField(parts[0], schema.name) }
            return
        }
        guard parts.count == 2, let reference = schema.relationship(parts[0]),
              let target = SalesforceSchema.object(reference.referenceTo.first ?? ""), target.field(parts[1]) != nil else {
            throw error(400, "INVALID_FIELD", "\nDidn't understand relationship '\(parts[0])' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names.")
        }
    }

    private func checkFields(in expression: SOQLQuery.Expression, schema: SObjectSchema) throws {
        switch expression {
        case .and(let a, let b), .or(let a, let b): try checkFields(in: a, schema: schema); try checkFields(in: b, schema: schema)
        case .not(let e): try checkFields(in: e, schema: schema)
        case .comparison(let field, _, _), .isIn(let field, _, _): try checkField(field, schema: schema)
        }
    }

    private func invalidField(_ field: String, _ object: String) -> ServiceFailure {
        error(400, "INVALID_FIELD", "\nNo such column '\(field)' on entity '\(object)'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.")
    }

    // MARK: getUpdated / getDeleted

    private func changes(_ schema: SObjectSchema, deleted: Bool, request: SandboxRequest) throws -> SandboxResponse {
        guard let startText = request.query["start"], let endText = request.query["end"],
              let start = SalesforceTime.parse(startText), let end = SalesforceTime.parse(endText), start < end else {
            throw error(400, "INVALID_REPLICATION_DATE", "start and end must be valid dates, with start before end")
        }
        let window = deleted ? 15.0 : 30.0
        if start < Date().addingTimeInterval(-window * 86_400) {
            throw error(400, "INVALID_REPLICATION_DATE", "startDate cannot be more than \(Int(window)) days ago")
        }
        let rows = try store.records(type: schema.name, includeDeleted: true).filter { row in
            guard row.isDeleted == deleted, let stamp = SalesforceTime.parse(row.systemModstamp) else { return false }
            return stamp >= start && stamp < end
        }
        let latest = SalesforceTime.format(min(end, Date()))
        if deleted {
            return .json(200, ["deletedRecords": rows.map { ["id": $0.id, "deletedDate": $0.systemModstamp] },
                               "earliestDateAvailable": SalesforceTime.format(Date().addingTimeInterval(-window * 86_400)), "latestDateCovered": latest])
        }
        return .json(200, ["ids": rows.map(\.id), "latestDateCovered": latest])
    }

    // MARK: Shapes

    private func object(_ name: String) throws -> SObjectSchema {
        guard let schema = SalesforceSchema.object(name) else {
            throw error(404, "NOT_FOUND", "The requested resource does not exist")
        }
        return schema
    }

    private func render(_ row: RecordRow, schema: SObjectSchema, fields: [String], version: String) -> [String: Any] {
        let values = (try? JSONSerialization.jsonObject(with: Data(row.fields.utf8)) as? [String: Any]) ?? [:]
        var out: [String: Any] = ["attributes": ["type": schema.name, "url": "/services/data/\(version)/sobjects/\(schema.name)/\(row.id)"]]
        for name in fields {
            let canonical = schema.field(name)?.name ?? name
            out[canonical] = values[canonical] ?? NSNull()
        }
        return out
    }

    private func objectSummary(_ schema: SObjectSchema, version: String) -> [String: Any] {
        ["name": schema.name, "label": schema.label, "labelPlural": schema.labelPlural, "custom": schema.custom,
         "keyPrefix": schema.keyPrefix, "queryable": schema.queryable, "createable": schema.createable,
         "updateable": schema.updateable, "deletable": schema.deletable, "searchable": true,
         "urls": ["sobject": "/services/data/\(version)/sobjects/\(schema.name)",
                  "describe": "/services/data/\(version)/sobjects/\(schema.name)/describe",
                  "rowTemplate": "/services/data/\(version)/sobjects/\(schema.name)/{ID}"]]
    }

    private func describe(_ schema: SObjectSchema, version: String) -> [String: Any] {
        var json = objectSummary(schema, version: version)
        json["fields"] = schema.fields.map { field -> [String: Any] in
            ["name": field.name, "label": field.label, "type": field.type, "length": field.length, "updateable": field.updateable,
             "createable": field.createable, "nillable": field.nillable, "custom": field.custom, "calculated": field.calculated,
             "autoNumber": field.autoNumber, "defaultValue": NSNull(), "externalId": field.externalId, "unique": field.unique,
             "picklistValues": field.picklist.map { ["value": $0, "label": $0, "active": true, "defaultValue": false] },
             "referenceTo": field.referenceTo, "relationshipName": field.relationshipName ?? NSNull()]
        }
        json["childRelationships"] = [Any]()
        json["recordTypeInfos"] = [Any]()
        return json
    }

    private func error(_ status: Int, _ code: String, _ message: String) -> ServiceFailure {
        ServiceFailure(response: .json(status, [["message": message, "errorCode": code]]))
    }
}

/// Server-side query cursors: what `nextRecordsUrl` points at. They live in memory for 15 minutes.
final class QueryCursors: @unchecked Sendable {
    private struct Cursor { var records: [[String: Any]]; var batchSize: Int; var touched: Date }
    private let lock = NSLock()
    private var cursors: [String: Cursor] = [:]

    func firstPage(records: [[String: Any]], batchSize: Int, version: String) -> [String: Any] {
        guard records.count > batchSize else { return ["totalSize": records.count, "done": true, "records": records] }
        let locator = "01g8d00000" + SandboxCredentials.token(8)
        lock.withLock {
            let now = Date()
            cursors = cursors.filter { now.timeIntervalSince($0.value.touched) < 900 }
            cursors[locator] = Cursor(records: records, batchSize: batchSize, touched: now)
        }
        return ["totalSize": records.count, "done": false, "nextRecordsUrl": "/services/data/\(version)/query/\(locator)-\(batchSize)",
                "records": Array(records.prefix(batchSize))]
    }

    func page(locator: String, version: String) -> [String: Any]? {
        guard let dash = locator.lastIndex(of: "-"), let offset = Int(locator[locator.index(after: dash)...]) else { return nil }
        let id = String(locator[..<dash])
        return lock.withLock { () -> [String: Any]? in
            guard var cursor = cursors[id], offset <= cursor.records.count else { return nil }
            cursor.touched = Date()
            cursors[id] = cursor
            let end = min(cursor.records.count, offset + cursor.batchSize)
            var page: [String: Any] = ["totalSize": cursor.records.count, "done": end == cursor.records.count,
                                       "records": Array(cursor.records[offset..<end])]
            if end < cursor.records.count { page["nextRecordsUrl"] = "/services/data/\(version)/query/\(id)-\(end)" }
            return page
        }
    }
}

enum HTTPDateParsing {
    static func parse(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return formatter.date(from: text)
    }
}
