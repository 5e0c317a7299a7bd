import Foundation

/// Microsoft Graph, the part crmfs uses: sites, drives, driveItems by id and path, children,
/// content with pre-authenticated download URLs, listItem fields, columns and delta.
final class GraphService: Sendable {
    let store: SandboxStore
    let tokens: TokenRegistry
    let stats: Stats
    let options: SandboxOptions
    let downloads = DownloadGrants()
    let uploads = UploadSessions()
    private let deltaFloor = LockedValue<Int64>(0)

    init(store: SandboxStore, tokens: TokenRegistry, stats: Stats, options: SandboxOptions) {
        self.store = store
        self.tokens = tokens
        self.stats = stats
        self.options = options
    }

    func handle(_ request: SandboxRequest) async throws -> SandboxResponse {
        guard tokens.isValid(request.bearerToken, for: .graph) else {
            stats.increment("graph.401")
            throw GraphErrors.failure(401, "InvalidAuthenticationToken",
                                      request.bearerToken == nil ? "Access token is empty." : "Access token has expired or is not yet valid.",
                                      headers: [("WWW-Authenticate", "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\"")])
        }
        guard ["GET", "PATCH", "DELETE", "POST", "PUT"].contains(request.method) else {
            throw GraphErrors.failure(405, "notSupported", "The \(request.method) method is not supported for this resource.")
        }
        let path = request.path.dropFirst("/v1.0".count)
        if path.hasPrefix("/sites/") { return try site(request, rest: path.dropFirst("/sites/".count)) }
        if path.hasPrefix("/drives/") { return try drive(request, rest: path.dropFirst("/drives/".count)) }
        throw GraphErrors.failure(400, "invalidRequest", "Invalid request: unsupported segment in \(request.path)")
    }

    // MARK: Sites

    private func site(_ request: SandboxRequest, rest: Substring) throws -> SandboxResponse {
        stats.increment("graph.sites")
        let site: SiteRow
        var relation: Substring
        let firstSlash = rest.firstIndex(of: "/") ?? rest.endIndex
        if let colon = rest.firstIndex(of: ":"), colon < firstSlash {
            // sites/{hostname}:/{server-relative-path}[:][/relation]
            let hostname = String(rest[..<colon])
            var remainder = rest[rest.index(after: colon)...]
            let end = remainder.firstIndex(of: ":") ?? remainder.endIndex
            let sitePath = String(remainder[..<end]).removingPercentEncoding ?? String(remainder[..<end])
            remainder = end < remainder.endIndex ? remainder[remainder.index(after: end)...] : ""
            guard let found = try store.site(hostname: hostname, path: sitePath.isEmpty ? "/" : sitePath) else {
                throw GraphErrors.failure(404, "itemNotFound", "Requested site could not be found")
            }
            site = found
            relation = remainder
        } else {
            let id = String(rest[..<firstSlash]).removingPercentEncoding ?? String(rest[..<firstSlash])
            relation = rest[firstSlash...]
            if id == "root" {
                guard let root = try store.site(hostname: "contoso.sharepoint.com", path: "/") else { throw notFound() }
                site = root
            } else {
                guard let found = try store.site(id: id) else { throw GraphErrors.failure(404, "itemNotFound", "Requested site could not be found") }
                site = found
            }
        }
        let parts = relation.split(separator: "/").map { String($0).removingPercentEncoding ?? String($0) }
        switch parts.count {
        case 0: return .json(200, siteJSON(site))
        case 1 where parts[0] == "drives":
            stats.increment("graph.drives")
            return .json(200, ["value": try store.drives(siteID: site.id).map(driveJSON)])
        case 1 where parts[0] == "drive":
            stats.increment("graph.drives")
            guard let drive = try store.drives(siteID: site.id).first(where: \.isDefault) else { throw notFound() }
            return .json(200, driveJSON(drive))
        case 3 where parts[0] == "lists" && parts[2] == "columns":
            stats.increment("graph.columns")
            return .json(200, ["value": try columnsJSON(listID: parts[1])])
        case 2 where parts[0] == "lists":
            guard let drive = try store.drive(listID: parts[1]), drive.siteId == site.id else { throw notFound() }
            return .json(200, listJSON(drive, expandColumns: request.query["$expand"]?.contains("columns") == true))
        default:
            throw GraphErrors.failure(400, "invalidRequest", "Unsupported site segment: \(relation)")
        }
    }

    // MARK: Drives and items

    private func drive(_ request: SandboxRequest, rest: Substring) throws -> SandboxResponse {
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let driveID = String(rest[..<slash]).removingPercentEncoding ?? String(rest[..<slash])
        guard let drive = try store.drive(id: driveID) else {
            throw GraphErrors.failure(404, "itemNotFound", "The provided drive id appears to be malformed, or does not represent a valid drive.")
        }
        let remainder = rest[slash...].drop(while: { $0 == "/" })
        if remainder.isEmpty { stats.increment("graph.drives"); return .json(200, driveJSON(drive)) }
        if remainder == "list" { return .json(200, listJSON(drive, expandColumns: request.query["$expand"]?.contains("columns") == true)) }

        let (item, relation, missing) = try resolve(drive: drive, address: remainder)
        // What the caller may do here (for a name not made yet, in its folder): items it may not see are
        // not found; items it may only read refuse changes.
        var permissions = SharePointPermissions(store: store, user: tokens.user(of: request.bearerToken))
        let access = try permissions.access(to: item)
        guard access > .none else { throw notFound() }
        if request.method != "GET", access < .write {
            stats.increment("graph.accessDenied")
            throw Self.accessDenied()
        }
        switch (request.method, relation) {
        case ("PUT", ["content"]):
            return try simpleUpload(request, drive: drive, target: try uploadTarget(item, missing: missing, byPath: remainder.contains(":")))
        case ("POST", ["createUploadSession"]):
            return try createUploadSession(request, drive: drive, target: try uploadTarget(item, missing: missing, byPath: remainder.contains(":")))
        default:
            if missing != nil { throw notFound() }
        }
        if request.method != "GET" { return try write(request, drive: drive, item: item, relation: relation, permissions: &permissions) }
        let query = ItemQuery(request: request)
        switch relation {
        case []:
            stats.increment("graph.item")
            if let match = request.header("If-None-Match"), match == item.eTag || match == item.cTag { return .empty(304) }
            var json = try itemJSON(item, drive: drive, parentPath: nil, query: query, inDelta: false)
            if !item.isFolder, query.includes("@microsoft.graph.downloadUrl") {
                json["@microsoft.graph.downloadUrl"] = downloads.grant(itemID: item.id, uniqueID: item.uniqueId, origin: request.origin)
            }
            return .json(200, json)
        case ["children"]:
            stats.increment("graph.children")
            return try children(of: item, drive: drive, request: request, query: query, permissions: permissions)
        case ["content"]:
            stats.increment("graph.content")
            guard !item.isFolder else { throw GraphErrors.failure(400, "invalidRequest", "The target item is a folder and has no content.") }
            if let match = request.header("If-None-Match"), match == item.eTag || match == item.cTag { return .empty(304) }
            return .empty(302, headers: [("Location", downloads.grant(itemID: item.id, uniqueID: item.uniqueId, origin: request.origin))])
        case ["listItem"]:
            stats.increment("graph.fields")
            return .json(200, try listItemJSON(item, drive: drive, withFields: request.query["$expand"]?.contains("fields") == true))
        case ["listItem", "fields"]:
            stats.increment("graph.fields")
            return .json(200, try fieldsJSON(item))
        case ["delta"] where item.isRoot:
            stats.increment("graph.delta")
            return try delta(drive: drive, request: request, query: query, permissions: &permissions)
        case ["versions"]:
            // Newest first, the current version included (docs/wire-facts.md G10).
            stats.increment("graph.versions")
            let versions = [(item.version, item.size, item.modified, item.modifiedBy)] + (try store.versions(of: item.id))
            return .json(200, ["value": versions.map { version, size, modified, modifiedBy in
                ["id": "\(version).0", "lastModifiedDateTime": modified, "size": size, "lastModifiedBy": ["user": ["displayName": modifiedBy]]]
            }])
        default:
            throw GraphErrors.failure(400, "invalidRequest", "Unsupported segment '\(relation.joined(separator: "/"))'.")
        }
    }

    /// An upload addressed by item id overwrites that item; one addressed by path names a file in a
    /// folder, and an existing file there is a name conflict, settled by the conflict behaviour.
    private func uploadTarget(_ item: ItemRow, missing: String?, byPath: Bool) throws -> UploadTarget {
        if let missing { return .new(parent: item, name: missing) }
        guard byPath, let parentID = item.parentId, let parent = try store.item(id: parentID) else { return .existing(item) }
        return .new(parent: parent, name: item.name)
    }

    /// Resolves `root`, `items/{id}`, either followed by `:/relative/path:`, then the relation segments.
    /// A path whose last name does not exist yet resolves to its parent and that name, for creating it.
    private func resolve(drive: DriveRow, address: Substring) throws -> (ItemRow, [String], missing: String?) {
        var remainder = address
        var item: ItemRow
        if remainder.hasPrefix("root") {
            guard let root = try store.item(id: drive.rootId) else { throw notFound() }
            item = root
            remainder = remainder.dropFirst(4)
        } else if remainder.hasPrefix("items/") {
            remainder = remainder.dropFirst(6)
            let end = remainder.firstIndex(where: { $0 == "/" || $0 == ":" }) ?? remainder.endIndex
            let id = String(remainder[..<end]).removingPercentEncoding ?? String(remainder[..<end])
            remainder = remainder[end...]
            if id == "root" {
                guard let root = try store.item(id: drive.rootId) else { throw notFound() }
                item = root
            } else {
                guard let found = try store.item(id: id), found.driveId == drive.id, !found.deleted else { throw notFound() }
                item = found
            }
        } else {
            throw GraphErrors.failure(400, "invalidRequest", "Invalid request")
        }
        if remainder.hasPrefix(":") {
            remainder = remainder.dropFirst()
            let end = remainder.firstIndex(of: ":") ?? remainder.endIndex
            let relative = remainder[..<end]
            remainder = end < remainder.endIndex ? remainder[remainder.index(after: end)...] : ""
            let names = relative.split(separator: "/")
            for (index, encoded) in names.enumerated() {
                guard let name = String(encoded).removingPercentEncoding else {
                    throw GraphErrors.failure(400, "invalidRequest", "The path is not correctly encoded.", inner: "invalidPath")
                }
                guard let child = try store.child(of: item.id, named: name) else {
                    guard index == names.count - 1, item.isFolder else { throw notFound() }
                    return (item, remainder.split(separator: "/").map(String.init), name)
                }
                item = child
            }
        }
        let relation = remainder.split(separator: "/").map(String.init)
        return (item, relation, nil)
    }

    private func children(of parent: ItemRow, drive: DriveRow, request: SandboxRequest, query: ItemQuery,
                          permissions: SharePointPermissions) throws -> SandboxResponse {
        let top = min(try query.pageSize(default: options.childrenPageSize, maximum: options.maxPageSize), options.pageCap)
        var offset = 0
        if let token = request.query["$skiptoken"] ?? request.query["$skipToken"] {
            guard let decoded = OpaqueToken.decode(token), decoded.count == 1 else {
                throw GraphErrors.failure(400, "invalidRequest", "Invalid skip token.")
            }
            offset = Int(decoded[0])
        }
        let rows = try store.children(of: parent.id, offset: offset, limit: top + 1, visible: permissions.visibleChildCondition())
        let page = rows.prefix(top)
        let parentPath = parent.isRoot ? [] : try store.pathComponents(of: parent) + [parent.name]
        let withURLs = query.includes("@microsoft.graph.downloadUrl")
        var body: [String: Any] = ["value": try page.map { item in
            var json = try itemJSON(item, drive: drive, parentPath: parentPath, query: query, inDelta: false)
            if withURLs, !item.isFolder {
                json["@microsoft.graph.downloadUrl"] = downloads.grant(itemID: item.id, uniqueID: item.uniqueId, origin: request.origin)
            }
            return json
        }]
        if rows.count > top {
            var parameters = query.passThrough
            parameters.append(("$skiptoken", OpaqueToken.encode([Int64(offset + top)])))
            body["@odata.nextLink"] = "\(request.origin)/v1.0/drives/\(drive.id)/items/\(parent.id)/children?\(QueryString.encode(parameters))"
        }
        return .json(200, body)
    }

    // MARK: Delta

    private func delta(drive: DriveRow, request: SandboxRequest, query: ItemQuery, permissions: inout SharePointPermissions) throws -> SandboxResponse {
        let top = min(try query.pageSize(default: options.childrenPageSize, maximum: options.maxPageSize), options.pageCap)
        let current = try store.currentChangeSeq()
        let base = "\(request.origin)/v1.0/drives/\(drive.id)/root/delta"
        var after: Int64 = 0
        var upTo = current
        var offset = 0
        if let token = request.query["token"] {
            if token == "latest" {
                return .json(200, ["value": [Any](), "@odata.deltaLink": "\(base)?\(QueryString.encode(query.passThrough + [("token", OpaqueToken.encode([current, -1, 0]))]))"])
            }
            guard let parts = OpaqueToken.decode(token), parts.count == 3 else {
                throw GraphErrors.failure(400, "invalidRequest", "Invalid delta token.")
            }
            after = parts[0]
            upTo = parts[1] < 0 ? current : parts[1]
            offset = Int(parts[2])
            if after < deltaFloor.value {
                throw GraphErrors.failure(410, "resyncRequired", "Resync required. Replace any local items with the server's version (including deletes) if you're sure that the service was up to date with your local changes when you last sync'd. Upload any local changes that the server doesn't know about.",
                                          inner: "resyncChangesApplyDifferences", headers: [("Location", base)])
            }
        }
        let rows = try store.changes(driveID: drive.id, afterSeq: after, upToSeq: upTo, offset: offset, limit: top + 1)
        let page = rows.prefix(top)
        var folders: [String: [String]] = [:]
        // A page keeps its length in changes read, not in items shown: what the caller may not see is left out.
        let shown = permissions.reachesAll ? Array(page) : try page.filter { try permissions.access(to: $0) > .none }
        var body: [String: Any] = ["value": try shown.map { item in
            let parentPath = item.deleted || item.isRoot ? nil : try store.folderPath(item.parentId, memo: &folders)
            return try itemJSON(item, drive: drive, parentPath: parentPath, query: query, inDelta: true)
        }]
        if rows.count > top {
            body["@odata.nextLink"] = "\(base)?\(QueryString.encode(query.passThrough + [("token", OpaqueToken.encode([after, upTo, Int64(offset + top)]))]))"
        } else {
            body["@odata.deltaLink"] = "\(base)?\(QueryString.encode(query.passThrough + [("token", OpaqueToken.encode([upTo, -1, 0]))]))"
        }
        return .json(200, body)
    }

    /// Every delta token issued so far stops working (410 resync), as after the service's retention window.
    func expireDeltaTokens() throws {
        let current = try store.currentChangeSeq()
        deltaFloor.value = current + 1
    }

    // MARK: Download URLs

    /// Serves a pre-authenticated download URL: no Authorization header allowed, ranges honoured.
    func download(_ request: SandboxRequest, ignoreRange: Bool) async throws -> SandboxResponse {
        if request.header("Authorization") != nil {
            throw GraphErrors.failure(401, "unauthenticated", "Pre-authenticated download URLs must not carry an Authorization header.")
        }
        guard let grant = downloads.lookup(request.query["tempauth"] ?? "") else {
            throw GraphErrors.failure(401, "unauthenticated", "The download URL has expired or is not valid.")
        }
        guard let item = try store.item(id: grant), !item.deleted else { throw notFound() }
        let content = try ContentGenerator.materialize(item: item, store: store)
        let path = store.blobPath(content.blob)
        var headers: [(String, String)] = [
            ("Content-Type", item.mimeType ?? "application/octet-stream"), ("ETag", item.eTag), ("Accept-Ranges", "bytes"),
            ("Content-Disposition", "attachment; filename*=UTF-8''\(QueryString.escape(item.name))"),
        ]
        stats.increment("graph.download")
        if ignoreRange, request.header("Range") != nil { stats.increment("faults.norange") }
        if let range = request.header("Range"), !ignoreRange {
            switch ByteRange.parse(range, size: item.size) {
            case .some(.none):
                return .json(416, ["error": ["code": "invalidRange", "message": "The requested range is not satisfiable."]],
                             headers: [("Content-Range", "bytes */\(item.size)")])
            case .some(.some(let bounds)):
                headers.append(("Content-Range", "bytes \(bounds.lowerBound)-\(bounds.upperBound)/\(item.size)"))
                let length = bounds.upperBound - bounds.lowerBound + 1
                stats.increment("graph.download.bytes", by: length)
                return SandboxResponse(status: 206, headers: headers, body: .file(path: path, offset: bounds.lowerBound, length: length))
            case .none:
                break  // unparseable or multi-range: serve the whole file, as servers may
            }
        }
        stats.increment("graph.download.bytes", by: item.size)
        return SandboxResponse(status: 200, headers: headers, body: item.size == 0 ? .empty : .file(path: path, offset: 0, length: item.size))
    }

    // MARK: JSON shapes

    static func accessDenied() -> ServiceFailure {
        GraphErrors.failure(403, "accessDenied", "Access denied. You do not have permission to perform this action or access this resource.")
    }

    func notFound() -> ServiceFailure {
        GraphErrors.failure(404, "itemNotFound", "The resource could not be found.")
    }

    private func siteJSON(_ site: SiteRow) -> [String: Any] {
        ["id": site.id, "name": site.name, "displayName": site.displayName, "webUrl": site.webUrl,
         "createdDateTime": site.created, "lastModifiedDateTime": site.created, "siteCollection": ["hostname": site.hostname]]
    }

    private func driveJSON(_ drive: DriveRow) -> [String: Any] {
        ["id": drive.id, "name": drive.name, "description": drive.description, "driveType": "documentLibrary", "webUrl": drive.webUrl,
         "createdDateTime": drive.created, "lastModifiedDateTime": drive.created,
         "createdBy": ["user": ["displayName": "System Account"]], "owner": ["group": ["displayName": "Sales Owners"]],
         "quota": ["deleted": 0, "remaining": 26_388_279_066_624, "state": "normal", "total": 27_487_790_694_400, "used": 0]]
    }

    private func listJSON(_ drive: DriveRow, expandColumns: Bool) -> [String: Any] {
        var json: [String: Any] = ["id": drive.listId, "name": drive.name, "displayName": drive.name, "webUrl": drive.webUrl,
                                   "createdDateTime": drive.created, "list": ["template": "documentLibrary", "hidden": false]]
        if expandColumns { json["columns"] = (try? columnsJSON(listID: drive.listId)) ?? [] }
        return json
    }

    private func columnsJSON(listID: String) throws -> [Any] {
        let definitions = try store.columns(listID: listID)
        guard !definitions.isEmpty else { throw GraphErrors.failure(404, "itemNotFound", "List does not exist.") }
        return definitions.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) }
    }

    func itemJSON(_ item: ItemRow, drive: DriveRow, parentPath: [String]?, query: ItemQuery, inDelta: Bool) throws -> [String: Any] {
        var json: [String: Any] = ["id": item.id]
        var parentReference: [String: Any] = ["driveId": drive.id, "driveType": "documentLibrary", "siteId": drive.siteId]
        if let parentID = item.parentId { parentReference["id"] = parentID }
        if item.deleted && inDelta {
            json["deleted"] = ["state": "deleted"]
            json["parentReference"] = parentReference
            json[item.isFolder ? "folder" : "file"] = [String: Any]()
            return json
        }
        let components = try parentPath ?? (item.isRoot ? [] : store.pathComponents(of: item))
        let ownComponents = item.isRoot ? components : components + [item.name]
        json["name"] = item.name
        json["eTag"] = item.eTag
        if !item.isFolder && !inDelta { json["cTag"] = item.cTag }
        json["size"] = item.size
        json["createdDateTime"] = item.created
        json["lastModifiedDateTime"] = item.modified
        json["webUrl"] = ([drive.webUrl] + ownComponents.map(QueryString.escapePathSegment)).joined(separator: "/")
        json["createdBy"] = ["user": ["displayName": item.createdBy]]
        json["lastModifiedBy"] = ["user": ["displayName": item.modifiedBy]]
        if !item.isRoot {
            if !inDelta {
                let encoded = components.map(QueryString.escapePathSegment).joined(separator: "/")
                parentReference["path"] = "/drives/\(drive.id)/root:" + (encoded.isEmpty ? "" : "/\(encoded)")
            }
            json["parentReference"] = parentReference
        }
        json["fileSystemInfo"] = ["createdDateTime": item.fsCreated, "lastModifiedDateTime": item.fsModified]
        if item.isFolder {
            json["folder"] = ["childCount": try store.childCount(of: item.id)]
        } else {
            var file: [String: Any] = ["mimeType": item.mimeType ?? "application/octet-stream"]
            if let hash = item.quickXorHash { file["hashes"] = ["quickXorHash": hash] }
            json["file"] = file
        }
        if item.isRoot { json["root"] = [String: Any]() }
        json["sharepointIds"] = ["listId": drive.listId, "listItemId": String(item.listItemId), "listItemUniqueId": item.uniqueId.lowercased(),
                                 "siteId": drive.siteId.split(separator: ",").dropFirst().first.map(String.init) ?? "",
                                 "siteUrl": drive.webUrl.components(separatedBy: "/Shared%20Documents").first ?? drive.webUrl]
        if let select = query.select {
            json = json.filter { select.contains($0.key) }
            json["id"] = item.id
        }
        if query.expandFields, !item.isRoot {
            json["listItem"] = try listItemJSON(item, drive: drive, withFields: true)
        }
        return json
    }

    private func listItemJSON(_ item: ItemRow, drive: DriveRow, withFields: Bool) throws -> [String: Any] {
        var json: [String: Any] = [
            "@odata.etag": item.eTag, "id": String(item.listItemId), "eTag": item.eTag,
            "createdDateTime": item.created, "lastModifiedDateTime": item.modified,
            "contentType": ["id": item.isFolder ? "0x0120" : "0x0101", "name": item.isFolder ? "Folder" : "Document"],
            "parentReference": ["id": drive.listId, "siteId": drive.siteId],
        ]
        if withFields { json["fields"] = try fieldsJSON(item) }
        return json
    }

    func fieldsJSON(_ item: ItemRow) throws -> [String: Any] {
        var fields = (try JSONSerialization.jsonObject(with: Data(item.fields.utf8)) as? [String: Any]) ?? [:]
        fields["@odata.etag"] = item.eTag
        fields["id"] = String(item.listItemId)
        fields["FileLeafRef"] = item.name
        fields["LinkFilename"] = item.name
        fields["ContentType"] = item.isFolder ? "Folder" : "Document"
        fields["Created"] = item.created
        fields["Modified"] = item.modified
        fields["AuthorLookupId"] = "11"
        fields["EditorLookupId"] = "11"
        fields["_UIVersionString"] = "\(item.version).0"
        if item.isFolder {
            fields["ItemChildCount"] = "0"
            fields["FolderChildCount"] = String(try store.childCount(of: item.id))
        } else {
            fields["FileSizeDisplay"] = String(item.size)
            fields["DocIcon"] = (item.name as NSString).pathExtension
        }
        return fields
    }
}

/// The OData options of an item request that shape its answer, and carry over into next links.
struct ItemQuery {
    var select: Set<String>?
    var expandFields: Bool
    var top: String?
    var passThrough: [(String, String)] = []

    init(request: SandboxRequest) {
        if let select = request.query["$select"] {
            self.select = Set(select.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
            passThrough.append(("$select", select))
        }
        let expand = request.query["$expand"] ?? ""
        expandFields = expand.contains("listItem") && expand.contains("fields")
        if !expand.isEmpty { passThrough.append(("$expand", expand)) }
        top = request.query["$top"]
        if let top { passThrough.append(("$top", top)) }
    }

    func includes(_ property: String) -> Bool { select?.contains(property) ?? true }

    func pageSize(default fallback: Int, maximum: Int) throws -> Int {
        guard let top else { return fallback }
        guard let value = Int(top), value >= 1, value <= maximum else {
            throw GraphErrors.failure(400, "invalidRequest", "Invalid value for $top: \(top). It must be between 1 and \(maximum).")
        }
        return value
    }
}

/// Short-lived `tempauth` grants behind download URLs.
final class DownloadGrants: @unchecked Sendable {
    private let lock = NSLock()
    private var grants: [String: (itemID: String, expires: Date)] = [:]
    private var pruneAt = 10_000
    let lifetime: TimeInterval = 3600

    func grant(itemID: String, uniqueID: String, origin: String) -> String {
        let token = SandboxCredentials.token(48)
        lock.withLock {
            let now = Date()
            // Pruned when the table has doubled since the last pruning: a listing grants a URL per document.
            if grants.count > pruneAt {
                grants = grants.filter { $0.value.expires > now }
                pruneAt = max(10_000, grants.count * 2)
            }
            grants[token] = (itemID, now.addingTimeInterval(lifetime))
        }
        return "\(origin)/_layouts/15/download.aspx?UniqueId=\(uniqueID.lowercased())&Translate=false&tempauth=\(token)&ApiVersion=2.0"
    }

    /// Every URL granted so far stops working (an hour has passed).
    func expireAll() { lock.withLock { grants.removeAll() } }

    func lookup(_ token: String) -> String? {
        lock.withLock {
            guard let grant = grants[token], grant.expires > Date() else { return nil }
            return grant.itemID
        }
    }
}

/// Opaque, unguessable-looking continuation tokens that carry a few integers.
enum OpaqueToken {
    static func encode(_ values: [Int64]) -> String {
        let text = "s1." + values.map(String.init).joined(separator: ".") + "." + SandboxCredentials.token(12)
        return Data(text.utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    static func decode(_ token: String) -> [Int64]? {
        var base64 = token.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        guard let data = Data(base64Encoded: base64) else { return nil }
        let parts = String(decoding: data, as: UTF8.self).split(separator: ".")
        guard parts.count >= 2, parts.first == "s1" else { return nil }
        let numbers = parts.dropFirst().dropLast().compactMap { Int64($0) }
        return numbers.count == parts.count - 2 ? numbers : nil
    }
}

enum QueryString {
    private static let unreserved: CharacterSet = {
        var set = CharacterSet()
        set.insert(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        return set
    }()

    static func escape(_ value: String) -> String { value.addingPercentEncoding(withAllowedCharacters: unreserved) ?? value }
    static func escapePathSegment(_ value: String) -> String { escape(value) }

    static func encode(_ parameters: [(String, String)]) -> String {
        parameters.map { "\(escape($0.0))=\(escape($0.1))" }.joined(separator: "&")
    }
}

enum ByteRange {
    /// `.none`: not a single range we serve (answer 200 with everything); `.some(nil)`: unsatisfiable (416).
    static func parse(_ header: String, size: Int64) -> ClosedRange<Int64>?? {
        guard header.hasPrefix("bytes="), !header.contains(",") else { return .none }
        let spec = header.dropFirst(6)
        let parts = spec.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return .none }
        if parts[0].isEmpty {
            guard let suffix = Int64(parts[1]), suffix > 0 else { return .some(nil) }
            return size == 0 ? .some(nil) : .some(max(0, size - suffix)...(size - 1))
        }
        guard let start = Int64(parts[0]) else { return .none }
        let end = parts[1].isEmpty ? size - 1 : min(Int64(parts[1]) ?? -1, size - 1)
        guard start < size, start <= end else { return .some(nil) }
        return .some(start...end)
    }
}

final class LockedValue<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}
