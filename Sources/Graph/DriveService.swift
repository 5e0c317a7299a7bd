import Foundation
import HTTP

/// What the write-back side asks of a SharePoint document library: items, folders, columns and
/// uploads. `GraphClient` is the real one; the tests' in-memory drive stands in for it where a test is
/// about crmfs's own logic (the engine's scheduling) rather than the wire.
public protocol DriveService: Sendable {
    func item(driveID: String, itemID: String, expandFields: Bool) async throws -> DriveItem
    func item(driveID: String, path: String, expandFields: Bool) async throws -> DriveItem
    func children(driveID: String, itemID: String, pageSize: Int, expandFields: Bool) async throws -> [DriveItem]
    func fields(driveID: String, itemID: String) async throws -> [String: JSONValue]
    func createFolder(driveID: String, parentID: String, name: String, conflictBehavior: ConflictBehavior) async throws -> DriveItem
    func update(driveID: String, itemID: String, name: String?, parentID: String?, modified: Date?,
                ifMatch: String?, conflictBehavior: ConflictBehavior?) async throws -> DriveItem
    func updateFields(driveID: String, itemID: String, fields: [String: JSONValue], ifMatch: String?) async throws -> [String: JSONValue]
    func delete(driveID: String, itemID: String, ifMatch: String?) async throws
    func simpleUpload(driveID: String, to destination: UploadDestination, file path: String, size: Int64, options: UploadOptions) async throws -> DriveItem
    func sessionUpload(driveID: String, to destination: UploadDestination, file path: String, size: Int64, options: UploadOptions,
                       resuming: String?, onSession: @Sendable (String) throws -> Void,
                       beforeLastFragment: @Sendable () async throws -> Void) async throws -> DriveItem
}

/// The calls as the write-back side makes them, with the defaults `GraphClient` has.
extension DriveService {
    public func item(driveID: String, itemID: String) async throws -> DriveItem {
        try await item(driveID: driveID, itemID: itemID, expandFields: false)
    }

    public func item(driveID: String, path: String) async throws -> DriveItem {
        try await item(driveID: driveID, path: path, expandFields: false)
    }

    public func children(driveID: String, itemID: String) async throws -> [DriveItem] {
        try await children(driveID: driveID, itemID: itemID, pageSize: 200, expandFields: false)
    }

    public func createFolder(driveID: String, parentID: String, name: String) async throws -> DriveItem {
        try await createFolder(driveID: driveID, parentID: parentID, name: name, conflictBehavior: .fail)
    }

    public func update(driveID: String, itemID: String, name: String? = nil, parentID: String? = nil, modified: Date? = nil,
                       conflictBehavior: ConflictBehavior? = nil) async throws -> DriveItem {
        try await update(driveID: driveID, itemID: itemID, name: name, parentID: parentID, modified: modified, ifMatch: nil, conflictBehavior: conflictBehavior)
    }

    public func updateFields(driveID: String, itemID: String, fields: [String: JSONValue]) async throws -> [String: JSONValue] {
        try await updateFields(driveID: driveID, itemID: itemID, fields: fields, ifMatch: nil)
    }

    public func delete(driveID: String, itemID: String) async throws {
        try await delete(driveID: driveID, itemID: itemID, ifMatch: nil)
    }
}

extension GraphClient: DriveService {}
