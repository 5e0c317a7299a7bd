import CRM
import Foundation
import Graph
import HTTP

/// Metadata edits made through extended attributes, sent at once (not journaled): a value the service
/// refuses must fail the `setfattr` with its reason, not fail later where nobody sees it.
public struct MetadataWrites: Sendable {
    let graph: any DriveService
    let salesforce: any RecordService

    public init(graph: any DriveService, salesforce: any RecordService) {
        self.graph = graph
        self.salesforce = salesforce
    }

    /// Writes SharePoint column values of an item; returns all its column values as the service has them.
    public func setColumns(driveID: String, itemID: String, fields: [String: JSONValue]) async throws -> [String: JSONValue] {
        do {
            return try await graph.updateFields(driveID: driveID, itemID: itemID, fields: fields)
        } catch let error as GraphError where error.status == 400 {
            throw MetadataRefused(reason: error.message)
        }
    }

    /// Writes record fields in Salesforce; returns the record read back with `shownFields`.
    public func setRecordFields(object: String, id: String, fields: [String: JSONValue], shownFields: [String]) async throws -> SObjectRecord {
        do {
            try await salesforce.update(object, id: id, fields: fields)
        } catch let error as SalesforceError where error.status == 400 {
            throw MetadataRefused(reason: "\(error)")
        }
        return try await salesforce.record(object, id: id, fields: shownFields)
    }
}

/// The service refused a metadata value (a wrong type, a validation rule), with its reason.
public struct MetadataRefused: Error, CustomStringConvertible, Sendable {
    public var reason: String
    public var description: String { reason }
}
