import Foundation
import HTTP

/// What crmfs asks of a SharePoint document library: the site and library it mounts, items, folders,
/// columns, content and uploads. `GraphClient` is the real one; the tests' in-memory drive stands in
/// for it where a test is about crmfs's own logic (the tree's listings, the engine's scheduling)
/// rather than the wire.
public protocol DriveService: Sendable {
    func site(hostname: String, path: String) async throws -> Site
    func drives(siteID: String) async throws -> [Drive]
    func list(driveID: String) async throws -> ListInfo
    func columns(siteID: String, listID: String) async throws -> [ColumnDefinition]
    func item(driveID: String, itemID: String, expandFields: Bool) async throws -> DriveItem
    func item(driveID: String, path: String, expandFields: Bool) async throws -> DriveItem
    func children(driveID: String, itemID: String, pageSize: Int, expandFields: Bool) async throws -> [DriveItem]
    func fields(driveID: String, itemID: String) async throws -> [String: JSONValue]
    /// One page of the drive's changes from `link` (a delta or next link exactly as given; nil enumerates
    /// the whole drive). A 410 throws a `GraphError` whose `location` starts over.
    func delta(driveID: String, link: String?, pageSize: Int) async throws -> DeltaPage
    /// A delta link that starts from now, without enumerating what exists.
    func latestDeltaLink(driveID: String) async throws -> String
    /// The short-lived pre-authenticated URL of a document's content.
    func downloadLocation(driveID: String, itemID: String) async throws -> String
    /// The documents in a folder's first page of `limit` children, with their content URLs, in one request.
    func folderDocuments(driveID: String, folderID: String, limit: Int) async throws -> [ListedDocument]
    /// `range` of the content at `location`, written into `descriptor` from its offset 0.
    func download(location: String, range: ClosedRange<Int64>, into descriptor: Int32) async throws -> Download
    func createFolder(driveID: String, parentID: String, name: String, conflictBehavior: ConflictBehavior) async throws -> DriveItem
    func update(driveID: String, itemID: String, name: String?, parentID: String?, modified: Date?,
                ifMatch: String?, conflictBehavior: ConflictBehavior?) async throws -> DriveItem
    func updateFields(driveID: String, itemID: String, fields: [String: JSONValue], ifMatch: String?) async throws -> [String: JSONValue]
    /// Column values of several documents written at once; each answered, in order, by its document as it
    /// is afterwards (the write made a new version).
    func stampFields(_ updates: [FieldsUpdate]) async -> [Result<DriveItem, Error>]
    func delete(driveID: String, itemID: String, ifMatch: String?) async throws
    /// Several items as they are now, by id: nil for one gone or hidden from the caller.
    func items(driveID: String, ids: [String]) async throws -> [String: DriveItem?]
    /// Several items as they are now, by id, each answered on its own: nil for one gone or hidden from the
    /// caller, the failure for one that could not be read (the others are answered all the same).
    func itemResults(driveID: String, ids: [String]) async throws -> [String: Result<DriveItem?, Error>]
    func simpleUpload(driveID: String, to destination: UploadDestination, file path: String, size: Int64, options: UploadOptions) async throws -> DriveItem
    func sessionUpload(driveID: String, to destination: UploadDestination, file path: String, size: Int64, options: UploadOptions,
                       resuming: String?, onSession: @Sendable (String) throws -> Void,
                       beforeLastFragment: @Sendable () async throws -> Void) async throws -> DriveItem
}

/// The calls as crmfs makes them, with the defaults `GraphClient` has.
extension DriveService {
    /// A service that cannot list URLs answers none: each document's URL is asked for on its own.
    public func folderDocuments(driveID: String, folderID: String, limit: Int) async throws -> [ListedDocument] { [] }

    /// Two requests per document, for a service without batches.
    public func stampFields(_ updates: [FieldsUpdate]) async -> [Result<DriveItem, Error>] {
        var results: [Result<DriveItem, Error>] = []
        for update in updates {
            results.append(await Result(asyncCatching: {
                _ = try await updateFields(driveID: update.driveID, itemID: update.itemID, fields: update.fields, ifMatch: nil)
                return try await item(driveID: update.driveID, itemID: update.itemID)
            }))
        }
        return results
    }

    /// One request per item, for a service without batches.
    public func items(driveID: String, ids: [String]) async throws -> [String: DriveItem?] {
        var items: [String: DriveItem?] = [:]
        for id in ids {
            do {
                items[id] = .some(try await item(driveID: driveID, itemID: id))
            } catch let error as GraphError where error.status == 404 || error.status == 403 {
                items[id] = .some(nil)
            }
        }
        return items
    }

    /// One request per item, for a service without batches; each failure is that item's alone.
    public func itemResults(driveID: String, ids: [String]) async throws -> [String: Result<DriveItem?, Error>] {
        var results: [String: Result<DriveItem?, Error>] = [:]
        for id in ids {
            do {
                results[id] = .success(try await item(driveID: driveID, itemID: id))
            } catch let error as GraphError where error.status == 404 || error.status == 403 {
                results[id] = .success(nil)
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                results[id] = .failure(error)
            }
        }
        return results
    }

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
