import Foundation
import SharePointNaming

/// Graph's item writes that need no content: update (rename, move, fileSystemInfo), delete, create folder.
/// Wire behaviour per docs/wire-facts.md G7: If-Match with quoted eTags (412 `resourceModified`), moves within one
/// drive only and never to `"id":"root"`, deletes to the recycle bin (204), conflict behaviour on names.
extension GraphService {
    func write(_ request: SandboxRequest, drive: DriveRow, item: ItemRow, relation: [String], permissions: inout SharePointPermissions) throws -> SandboxResponse {
        switch (request.method, relation) {
        case ("PATCH", []):
            stats.increment("graph.patch")
            try checkPreconditions(request, item: item)
            return try update(item, drive: drive, request: request, permissions: &permissions)
        case ("DELETE", []):
            stats.increment("graph.delete")
            guard !item.isRoot else { throw GraphErrors.failure(403, "accessDenied", "The root folder cannot be deleted.") }
            try checkPreconditions(request, item: item)
            try store.delete(itemID: item.id)
            return .empty(204)
        case ("PATCH", ["listItem", "fields"]):
            return try updateFields(request, item: item, drive: drive)
        case ("POST", ["children"]):
            stats.increment("graph.folder.create")
            guard item.isFolder else { throw GraphErrors.failure(400, "invalidRequest", "The parent item is not a folder.") }
            return try createFolder(in: item, drive: drive, request: request)
        default:
            throw GraphErrors.failure(405, "notSupported", "The \(request.method) method is not supported for this resource.")
        }
    }

    private func update(_ item: ItemRow, drive: DriveRow, request: SandboxRequest, permissions: inout SharePointPermissions) throws -> SandboxResponse {
        let body = try jsonBody(request)
        guard !item.isRoot else { throw GraphErrors.failure(403, "accessDenied", "The root folder cannot be changed.") }
        for key in body.keys where !["name", "parentReference", "fileSystemInfo", "description", "@microsoft.graph.conflictBehavior"].contains(key) {
            throw GraphErrors.failure(400, "invalidRequest", "Property '\(key)' is read-only.", inner: "propertyNotUpdateable")
        }
        var updated = item
        if let name = body["name"] as? String { updated.name = try validName(name, isFolder: item.isFolder) }
        if let reference = body["parentReference"] as? [String: Any] {
            if let driveID = reference["driveId"] as? String, driveID != drive.id {
                throw GraphErrors.failure(400, "invalidRequest", "Moving an item to another drive is not supported; copy it instead.")
            }
            if let parentID = reference["id"] as? String {
                guard parentID != "root" else {
                    throw GraphErrors.failure(400, "invalidRequest", "A move target must be given by the folder's id, not 'root'.")
                }
                guard let parent = try store.item(id: parentID), parent.driveId == drive.id, !parent.deleted, parent.isFolder,
                      try permissions.access(to: parent) > .none else {
                    throw notFound()
                }
                guard try permissions.access(to: parent) == .write else { throw Self.accessDenied() }
                guard try !store.isSelfOrDescendant(parent.id, of: item.id) else {
                    throw GraphErrors.failure(400, "invalidRequest", "A folder cannot be moved into itself.")
                }
                updated.parentId = parent.id
            }
        }
        if let info = body["fileSystemInfo"] as? [String: Any] {
            if let created = info["createdDateTime"] as? String { updated.fsCreated = try graphTime(created) }
            if let modified = info["lastModifiedDateTime"] as? String { updated.fsModified = try graphTime(modified) }
        }
        if updated.parentId != item.parentId || updated.name.caseInsensitiveCompare(item.name) != .orderedSame {
            let claim = try claimName(updated.name, in: updated.parentId!, behaviour: body["@microsoft.graph.conflictBehavior"] as? String ?? "fail",
                                      ignoring: item.id)
            if let replaced = claim.replacing { try store.delete(itemID: replaced.id) }
            updated.name = claim.name
        }
        // Only what the request names changes: a time set beside a rename at the same moment undoes neither.
        let (named, moved) = (body["name"] != nil || updated.name != item.name, updated.parentId != item.parentId)
        let times = body["fileSystemInfo"] as? [String: Any]
        guard let saved = try store.update(itemID: item.id, expecting: guardedVersion(request, item: item), { row in
            if named { row.name = updated.name }
            if moved { row.parentId = updated.parentId }
            if times?["createdDateTime"] != nil { row.fsCreated = updated.fsCreated }
            if times?["lastModifiedDateTime"] != nil { row.fsModified = updated.fsModified }
        }) else { throw notFound() }
        return .json(200, try itemJSON(saved, drive: drive, parentPath: nil, query: ItemQuery(request: request), inDelta: false))
    }

    private func createFolder(in parent: ItemRow, drive: DriveRow, request: SandboxRequest) throws -> SandboxResponse {
        let body = try jsonBody(request)
        guard body["folder"] is [String: Any] else {
            throw GraphErrors.failure(400, "invalidRequest", "Only folders can be created here; upload files to their content.")
        }
        guard let requested = body["name"] as? String else { throw GraphErrors.failure(400, "invalidRequest", "A name is required.") }
        let claim = try claimName(try validName(requested, isFolder: true), in: parent.id,
                                  behaviour: body["@microsoft.graph.conflictBehavior"] as? String ?? "fail")
        if let replaced = claim.replacing { try store.delete(itemID: replaced.id) }
        let created = try store.createFolder(name: claim.name, parent: parent, createdBy: "crmfs sandbox app")
        return .json(201, try itemJSON(created, drive: drive, parentPath: nil, query: ItemQuery(request: request), inDelta: false))
    }

    // MARK: Rules

    /// If-Match must be a quoted entity tag matching the item's eTag or cTag.
    func checkPreconditions(_ request: SandboxRequest, item: ItemRow) throws {
        guard let match = request.header("If-Match"), match != "*" else { return }
        guard match.hasPrefix("\""), match.hasSuffix("\""), match.count >= 2 else {
            throw GraphErrors.failure(400, "invalidRequest", "ETags must be quoted strings.", inner: "malformedEntityTag")
        }
        guard match == item.eTag || match == item.cTag else {
            throw GraphErrors.failure(412, "resourceModified", "ETag does not match current item's value", inner: "entityTagDoesNotMatch")
        }
    }

    /// The version a request's `If-Match` named (its eTag), for the write to check again as it saves.
    func guardedVersion(_ request: SandboxRequest, item: ItemRow) -> Int? {
        request.header("If-Match") == item.eTag ? item.version : nil
    }

    func validName(_ name: String, isFolder: Bool) throws -> String {
        if let problem = SharePointNames.problem(with: name, isFolder: isFolder) {
            throw GraphErrors.failure(400, "invalidRequest", "The provided name is not valid: \(problem).", inner: "invalidPath")
        }
        return name
    }

    /// Settles a name taken in a folder by the conflict behaviour: `fail` is 409 `nameAlreadyExists`,
    /// `rename` picks a free name, `replace` keeps the name and says which item it replaces (the caller
    /// deletes it, or uploads over it).
    func claimName(_ name: String, in parentID: String, behaviour: String, ignoring itemID: String? = nil) throws -> (name: String, replacing: ItemRow?) {
        guard let taken = try store.child(of: parentID, named: name), taken.id != itemID else { return (name, nil) }
        switch behaviour {
        case "replace": return (name, taken)
        case "rename": return (try availableName(name, in: parentID), nil)
        default: throw nameConflict(name)
        }
    }

    /// `name 1.ext`, `name 2.ext`, … : the first free one, as `rename` conflict behaviour picks.
    private func availableName(_ name: String, in parentID: String) throws -> String {
        let base = (name as NSString).deletingPathExtension, ext = (name as NSString).pathExtension
        for number in 1... {
            let candidate = ext.isEmpty ? "\(base) \(number)" : "\(base) \(number).\(ext)"
            if try store.child(of: parentID, named: candidate) == nil { return candidate }
        }
        return name
    }

    private func nameConflict(_ name: String) -> ServiceFailure {
        GraphErrors.failure(409, "nameAlreadyExists", "The specified item name already exists. Name: \(name)")
    }

    func jsonBody(_ request: SandboxRequest) throws -> [String: Any] {
        if request.body.isEmpty { return [:] }
        guard let object = (try? JSONSerialization.jsonObject(with: request.body)) as? [String: Any] else {
            throw GraphErrors.failure(400, "invalidRequest", "The request body is not a JSON object.")
        }
        return object
    }

    private func graphTime(_ text: String) throws -> String {
        guard let date = GraphTime.parse(text) else {
            throw GraphErrors.failure(400, "invalidRequest", "'\(text)' is not a valid date and time.")
        }
        return GraphTime.format(date)
    }
}
