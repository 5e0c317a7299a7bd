import Foundation

/// Salesforce record writes per docs/wire-facts.md S2, S4 and S7: create (201 with a SaveResult), update
/// (204), upsert by an External ID field (201 inserted, 200 updated), delete (204), with the service's
/// validation errors as arrays. Inserting a ContentVersion creates its ContentDocument, and a
/// `FirstPublishLocationId` links that document to the record, as Files Connect does.
extension SalesforceService {
    func write(_ rest: [String], request: SandboxRequest) throws -> SandboxResponse {
        guard rest.first == "sobjects", rest.count >= 2 else {
            throw failure(405, "METHOD_NOT_ALLOWED", "HTTP Method '\(request.method)' not allowed. Allowed are GET")
        }
        let schema = try writableObject(rest[1])
        switch (request.method, rest.count) {
        case ("POST", 2):
            guard schema.createable else { throw failure(403, "INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object \(schema.name)") }
            let id = try create(schema, values: try fields(request))
            stats.increment("sf.create")
            return .json(201, ["id": id, "success": true, "errors": [Any]()])
        case ("PATCH", 3):
            try requireEdit(request, recordID: rest[2])
            try update(schema, id: rest[2], values: try fields(request))
            stats.increment("sf.update")
            return .empty(204)
        case ("PATCH", 4):
            return try upsert(schema, field: rest[2], value: rest[3], values: try fields(request), request: request)  // segments arrive decoded
        case ("DELETE", 3):
            guard schema.deletable else { throw failure(403, "INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object \(schema.name)") }
            guard let row = try store.record(id: rest[2]), row.type == schema.name else { throw failure(404, "NOT_FOUND", "The requested resource does not exist") }
            guard !row.isDeleted else { throw failure(404, "ENTITY_IS_DELETED", "entity is deleted") }
            try requireEdit(request, recordID: row.id)
            try store.deleteRecord(id: row.id, at: SalesforceTime.format(Date()))
            stats.increment("sf.delete")
            return .empty(204)
        default:
            throw failure(405, "METHOD_NOT_ALLOWED", "HTTP Method '\(request.method)' not allowed for this resource")
        }
    }

    /// A record the caller may read but not edit refuses the write, as Salesforce does (one it may not
    /// even read is not found).
    private func requireEdit(_ request: SandboxRequest, recordID: String) throws {
        guard let row = try store.record(id: recordID) else { return }
        switch try access(for: request, to: row) {
        case .write: return
        case .read: throw failure(400, "INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object id")
        case .none: throw failure(404, "NOT_FOUND", "The requested resource does not exist")
        }
    }

    private func writableObject(_ name: String) throws -> SObjectSchema {
        guard let schema = SalesforceSchema.object(name) else { throw failure(404, "NOT_FOUND", "The requested resource does not exist") }
        return schema
    }

    private func fields(_ request: SandboxRequest) throws -> [String: Any] {
        guard let object = (try? JSONSerialization.jsonObject(with: request.body)) as? [String: Any] else {
            throw failure(400, "JSON_PARSER_ERROR", "The request body is not a JSON object.")
        }
        return object.filter { $0.key != "attributes" }
    }

    /// Inserts a record and returns its id. Validation first, so a refused insert changes nothing.
    func create(_ schema: SObjectSchema, values: [String: Any]) throws -> String {
        var record = try validated(schema, values: values, forInsert: true)
        for field in schema.fields where field.createable && !field.nillable && field.type != "boolean" && record[field.name] == nil {
            throw failure(400, "REQUIRED_FIELD_MISSING", "Required fields are missing: [\(field.name)]", fields: [field.name])
        }
        let now = SalesforceTime.format(Date())
        let id = try store.insertRecord(type: schema.name, keyPrefix: schema.keyPrefix, values: record, at: now)
        if schema.name == "ContentVersion" {
            // The version's document, and the link a FirstPublishLocationId asks for.
            let documentID = try store.insertRecord(type: "ContentDocument", keyPrefix: "069",
                                                    values: ["Title": record["Title"] ?? "", "LatestPublishedVersionId": id], at: now)
            record["ContentDocumentId"] = documentID
            try store.updateRecord(id: id, values: ["ContentDocumentId": documentID], at: now)
            if let location = record["FirstPublishLocationId"] as? String {
                _ = try store.insertRecord(type: "ContentDocumentLink", keyPrefix: "06A",
                                           values: ["ContentDocumentId": documentID, "LinkedEntityId": location, "ShareType": "I", "Visibility": "AllUsers"], at: now)
            }
        }
        return id
    }

    private func update(_ schema: SObjectSchema, id: String, values: [String: Any]) throws {
        guard schema.updateable else { throw failure(403, "INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object \(schema.name)") }
        guard let row = try store.record(id: id), row.type == schema.name else { throw failure(404, "NOT_FOUND", "The requested resource does not exist") }
        guard !row.isDeleted else { throw failure(404, "ENTITY_IS_DELETED", "entity is deleted") }
        try store.updateRecord(id: id, values: try validated(schema, values: values, forInsert: false, updating: id), at: SalesforceTime.format(Date()))
    }

    /// `PATCH /sobjects/{Object}/{ExternalIdField}/{value}`: the one idempotent way to write a link row.
    private func upsert(_ schema: SObjectSchema, field name: String, value: String, values: [String: Any], request: SandboxRequest) throws -> SandboxResponse {
        guard let field = schema.field(name), field.externalId || field.name == "Id" else {
            throw failure(404, "NOT_FOUND", "Provided external ID field does not exist or is not accessible: \(name)")
        }
        let matches = try store.records(type: schema.name, includeDeleted: false).filter { row in
            ((try? JSONSerialization.jsonObject(with: Data(row.fields.utf8))) as? [String: Any])?[field.name] as? String == value
        }
        if matches.count > 1 {
            return .json(300, matches.map { "/services/data/v62.0/sobjects/\(schema.name)/\($0.id)" })
        }
        if let existing = matches.first {
            try requireEdit(request, recordID: existing.id)
            try update(schema, id: existing.id, values: values.filter { $0.key.caseInsensitiveCompare(field.name) != .orderedSame })
            stats.increment("sf.update")
            return .json(200, ["id": existing.id, "success": true, "errors": [Any](), "created": false])
        }
        var insert = values
        if field.name != "Id" { insert[field.name] = value }
        let id = try create(schema, values: insert)
        stats.increment("sf.create")
        return .json(201, ["id": id, "success": true, "errors": [Any](), "created": true])
    }

    /// Fields by their canonical names, checked against the object's schema.
    private func validated(_ schema: SObjectSchema, values: [String: Any], forInsert: Bool, updating id: String? = nil) throws -> [String: Any] {
        var record: [String: Any] = [:]
        for (name, value) in values {
            guard let field = schema.field(name) else {
                throw failure(400, "INVALID_FIELD", "No such column '\(name)' on sobject of type \(schema.name)", fields: [name])
            }
            guard forInsert ? field.createable : field.updateable else {
                throw failure(400, "INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create/update fields: \(field.name). Please check the security settings of this field and verify that it is read/write for your profile or permission set.", fields: [field.name])
            }
            if value is NSNull {
                guard field.nillable else { throw failure(400, "REQUIRED_FIELD_MISSING", "Required fields are missing: [\(field.name)]", fields: [field.name]) }
                record[field.name] = NSNull()
                continue
            }
            switch field.type {
            case "string", "textarea", "url", "phone", "email", "picklist", "id":
                guard let text = value as? String else { throw badValue(field, value) }
                if field.length > 0, text.count > field.length {
                    throw failure(400, "STRING_TOO_LONG", "\(field.label): data value too large: \(text.prefix(40)) (max length=\(field.length))", fields: [field.name])
                }
                if field.unique, try isTaken(schema, field: field.name, value: text, except: id) {
                    throw failure(400, "DUPLICATE_VALUE", "duplicate value found: \(field.name) duplicates value on record with id: \(text)", fields: [field.name])
                }
            case "reference":
                guard let text = value as? String, text.count == 15 || text.count == 18 else {
                    throw failure(400, "MALFORMED_ID", "\(field.label): id value of incorrect type: \(value)", fields: [field.name])
                }
                guard let target = try store.record(id: text), !target.isDeleted else {
                    throw failure(400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", fields: [field.name])
                }
            case "double", "currency", "percent", "int":
                // JSON numbers arrive as NSNumber, which on Linux also casts to Bool: store plain numbers.
                guard let number = value as? NSNumber, !(value is String) else { throw badValue(field, value) }
                record[field.name] = field.type == "int" ? number.intValue as Any : number.doubleValue as Any
                continue
            case "boolean":
                guard let flag = value as? Bool else { throw badValue(field, value) }
                record[field.name] = flag
                continue
            case "date", "datetime":
                guard value is String else { throw badValue(field, value) }
            default:
                break
            }
            record[field.name] = value
        }
        return record
    }

    private func isTaken(_ schema: SObjectSchema, field: String, value: String, except id: String?) throws -> Bool {
        try store.records(type: schema.name, includeDeleted: false).contains { row in
            row.id != id && ((try? JSONSerialization.jsonObject(with: Data(row.fields.utf8))) as? [String: Any])?[field] as? String == value
        }
    }

    private func badValue(_ field: FieldSchema, _ value: Any) -> ServiceFailure {
        failure(400, "INVALID_TYPE_ON_FIELD_IN_RECORD", "\(field.label): value not of required type: \(value)", fields: [field.name])
    }

    func failure(_ status: Int, _ code: String, _ message: String, fields: [String]? = nil) -> ServiceFailure {
        var entry: [String: Any] = ["message": message, "errorCode": code]
        if let fields { entry["fields"] = fields }
        return ServiceFailure(response: .json(status, [entry]))
    }
}
