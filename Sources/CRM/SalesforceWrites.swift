import Foundation
import HTTP

/// What a create or upsert answers: the record's id, and for an upsert whether it inserted.
public struct SaveResult: Decodable, Sendable {
    public var id: String
    public var success: Bool
    public var created: Bool?
}

/// Record writes (docs/wire-facts.md S4, S7). Upsert by an External ID field is the idempotent way to keep
/// a link row: repeating it after a crash updates the row instead of adding a second.
extension SalesforceClient {
    /// Inserts a record; returns its id.
    public func create(_ object: String, fields: [String: JSONValue]) async throws -> String {
        let response = try await send("POST", "/services/data/v\(apiVersion)/sobjects/\(object)", json: fields, expecting: [201])
        return try decode(SaveResult.self, response).id
    }

    /// Sets the given fields of a record (`.null` clears one).
    public func update(_ object: String, id: String, fields: [String: JSONValue]) async throws {
        _ = try await send("PATCH", "/services/data/v\(apiVersion)/sobjects/\(object)/\(id)", json: fields, expecting: [200, 204])
    }

    /// Inserts or updates the record whose `field` (an External ID) is `value`.
    public func upsert(_ object: String, externalIDField field: String, value: String, fields: [String: JSONValue]) async throws -> (id: String, created: Bool) {
        let path = "/services/data/v\(apiVersion)/sobjects/\(object)/\(field)/\(SOQLEscaping.pathSegment(value))"
        let response = try await send("PATCH", path, json: fields, expecting: [200, 201, 204])
        if response.status == 204 {
            // Older API versions answer an update with no body: find the id by the external id.
            let rows = try await query("SELECT Id FROM \(object) WHERE \(field) = \(SOQLEscaping.literal(value))")
            guard let id = rows.first?.id else { throw SalesforceError(response: response, request: HTTPRequest(method: "PATCH", url: path)) }
            return (id, false)
        }
        let result = try decode(SaveResult.self, response)
        return (result.id, result.created ?? (response.status == 201))
    }

    /// Deletes a record. One that is already deleted or gone counts as done, so a repeated delete is harmless.
    public func delete(_ object: String, id: String) async throws {
        do {
            _ = try await send("DELETE", "/services/data/v\(apiVersion)/sobjects/\(object)/\(id)", expecting: [204])
        } catch let error as SalesforceError where error.status == 404 && ["NOT_FOUND", "ENTITY_IS_DELETED"].contains(error.code) {
            return
        }
    }
}

/// One subrequest of a composite request; `url` is relative to the instance and may use `@{ref.field}`.
public struct CompositeSubrequest: Sendable {
    public var method: String
    public var url: String
    public var referenceID: String
    public var body: [String: JSONValue]?

    public init(method: String, url: String, referenceID: String, body: [String: JSONValue]? = nil) {
        self.method = method
        self.url = url
        self.referenceID = referenceID
        self.body = body
    }
}

/// One subrequest's answer: its status and body (a SaveResult, a record, or the error array).
public struct CompositeResult: Decodable, Sendable {
    public var referenceId: String
    public var httpStatusCode: Int
    public var body: JSONValue?
}

extension SalesforceClient {
    /// Runs up to 25 subrequests as one API call. With `allOrNone`, one failure undoes them all.
    public func composite(_ subrequests: [CompositeSubrequest], allOrNone: Bool) async throws -> [CompositeResult] {
        let requests: [JSONValue] = subrequests.map { subrequest in
            var entry: [String: JSONValue] = ["method": .string(subrequest.method), "url": .string(subrequest.url),
                                              "referenceId": .string(subrequest.referenceID)]
            if let body = subrequest.body { entry["body"] = .object(body) }
            return .object(entry)
        }
        let response = try await send("POST", "/services/data/v\(apiVersion)/composite",
                                      json: ["allOrNone": .bool(allOrNone), "compositeRequest": .array(requests)], expecting: [200])
        struct Envelope: Decodable { var compositeResponse: [CompositeResult] }
        return try decode(Envelope.self, response).compositeResponse
    }
}
