import Config
import CRM
import Foundation
import Graph
import HTTP

/// Keeps the CRM side right after an upload, by the object's link model. Every step is idempotent: a
/// repeat after a crash finds what the first attempt made instead of adding a second link.
/// - `folder`: the record's folder is the link; `ensureFolder` creates it on first write.
/// - `link-object`: a `SharePoint_Document__c` row upserted by its `Item_Id__c` (an External ID).
/// - `files-connect`: an external ContentVersion (found again by `ExternalDocumentInfo2` = item id) whose
///   document is linked to the record with a ContentDocumentLink (and unlinked from the record of
///   the same object it moved away from).
public final class Linker: Sendable {
    public static let linkObject = "SharePoint_Document__c"
    /// The link object's fields this writes (`Item_Id__c` is its External ID).
    public static let linkObjectFields = ["Item_Id__c", "Record_Id__c", "Object_Type__c", "Drive_Id__c", "Web_Url__c", "ETag__c", "Size__c", "Last_Synced__c"]

    let graph: any DriveService
    let salesforce: any RecordService
    /// Folder ids by path, found or made lately.
    private let folders = SingleFlight<String>(keepFor: .seconds(60))

    public init(graph: any DriveService, salesforce: any RecordService) {
        self.graph = graph
        self.salesforce = salesforce
    }

    /// The folder at `path` below the drive root, made (with its parents) when missing; returns its id.
    /// Many documents copied at once into a record whose folder does not exist yet ask at the same
    /// moment: the folder is looked up and made once, and its id remembered for a minute.
    public func ensureFolder(driveID: String, path: String) async throws -> String {
        let names = path.split(separator: "/").map(String.init)
        guard !names.isEmpty else { return "root" }
        let key = "\(driveID)/\(names.joined(separator: "/").lowercased())"
        return try await folders.value(for: key) {
            do {
                return try await self.graph.item(driveID: driveID, path: names.joined(separator: "/")).id
            } catch let error as GraphError where error.isNotFound {
                let parentID = try await self.ensureFolder(driveID: driveID, path: names.dropLast().joined(separator: "/"))
                do {
                    return try await self.graph.createFolder(driveID: driveID, parentID: parentID, name: names.last!, conflictBehavior: .fail).id
                } catch let error as GraphError where error.status == 409 {
                    return try await self.graph.item(driveID: driveID, path: names.joined(separator: "/")).id  // made meanwhile
                }
            }
        }
    }

    /// Links an uploaded document to its record.
    public func link(_ item: DriveItem, driveID: String, recordID: String, objectName: String, model: LinkModel) async throws {
        switch model {
        case .folder:
            return
        case .linkObject:
            _ = try await salesforce.upsert(Self.linkObject, externalIDField: "Item_Id__c", value: item.id, fields: [
                "Name": .string(String((item.name ?? item.id).prefix(80))), "Record_Id__c": .string(recordID), "Object_Type__c": .string(objectName),
                "Drive_Id__c": .string(driveID), "Web_Url__c": item.webUrl.map(JSONValue.string) ?? .null, "ETag__c": item.eTag.map(JSONValue.string) ?? .null,
                "Size__c": .number(Double(item.byteSize)), "Last_Synced__c": .string(Date().formatted(.iso8601)),
            ])
        case .filesConnect:
            try await linkFilesConnect(item, recordID: recordID)
        }
    }

    /// Removes a deleted document's links; ones already gone are fine.
    public func unlink(itemID: String, model: LinkModel) async throws {
        switch model {
        case .folder:
            return
        case .linkObject:
            for row in try await salesforce.query("SELECT Id FROM \(Self.linkObject) WHERE Item_Id__c = \(SOQLEscaping.literal(itemID))") {
                if let id = row.id { try await salesforce.delete(Self.linkObject, id: id) }
            }
        case .filesConnect:
            let versions = try await salesforce.query(
                "SELECT ContentDocumentId FROM ContentVersion WHERE ExternalDocumentInfo2 = \(SOQLEscaping.literal(itemID))")
            for document in Set(versions.compactMap { $0["ContentDocumentId"]?.stringValue }) {
                for link in try await salesforce.query("SELECT Id FROM ContentDocumentLink WHERE ContentDocumentId = \(SOQLEscaping.literal(document))") {
                    if let id = link.id { try await salesforce.delete("ContentDocumentLink", id: id) }
                }
                try await salesforce.delete("ContentDocument", id: document)
            }
        }
    }

    private func linkFilesConnect(_ item: DriveItem, recordID: String) async throws {
        let existing = try await salesforce.query(
            "SELECT Id, ContentDocumentId FROM ContentVersion WHERE ExternalDocumentInfo2 = \(SOQLEscaping.literal(item.id))")
        guard let document = existing.first?["ContentDocumentId"]?.stringValue else {
            guard let source = try await salesforce.query("SELECT Id FROM ExternalDataSource LIMIT 1").first?.id else {
                throw SalesforceLinkError.noExternalDataSource
            }
            _ = try await salesforce.create("ContentVersion", fields: [
                "Title": .string(item.name ?? item.id), "PathOnClient": .string(item.name ?? item.id), "ContentLocation": "E",
                "ExternalDataSourceId": .string(source), "ExternalDocumentInfo1": item.webUrl.map(JSONValue.string) ?? .null,
                "ExternalDocumentInfo2": .string(item.id), "FirstPublishLocationId": .string(recordID),
            ])
            return
        }
        let links = try await salesforce.query(
            "SELECT Id, LinkedEntityId FROM ContentDocumentLink WHERE ContentDocumentId = \(SOQLEscaping.literal(document))")
        if !links.contains(where: { $0["LinkedEntityId"]?.stringValue == recordID }) {
            _ = try await salesforce.create("ContentDocumentLink", fields: [
                "ContentDocumentId": .string(document), "LinkedEntityId": .string(recordID), "ShareType": "I", "Visibility": "AllUsers",
            ])
        }
        // Moved from another record of the same object (same key prefix): that record no longer has it.
        // Links to users, groups and other objects are not ours to touch.
        for link in links {
            guard let entity = link["LinkedEntityId"]?.stringValue, entity != recordID, entity.prefix(3) == recordID.prefix(3), let id = link.id else { continue }
            try await salesforce.delete("ContentDocumentLink", id: id)
        }
    }
}

public enum SalesforceLinkError: Error, CustomStringConvertible {
    case noExternalDataSource

    public var description: String {
        "Files Connect needs an ExternalDataSource for the SharePoint site in Salesforce; none is defined"
    }
}
