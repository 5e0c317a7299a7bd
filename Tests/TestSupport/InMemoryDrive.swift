import CRM
import Foundation
import Graph
import HTTP
import QuickXor

/// A document library in memory, for tests of crmfs's own logic (the tree's listings, the write-back
/// engine's order, concurrency and retries) with no sandbox and no kernel. It keeps the rules the engine relies on:
/// eTags that move with every change and guard `If-Match`, names unique per folder regardless of
/// case (`conflictBehavior`), and errors shaped as Graph's. The wire itself is the sandbox's job.
public final class InMemoryDrive: DriveService, @unchecked Sendable {
    /// One write the engine made, as the drive saw it.
    public struct Call: Sendable, Equatable {
        public enum Kind: String, Sendable { case upload, createFolder, update, updateFields, stampFields, delete }
        public var kind: Kind
        /// The item's name (for an upload or a new folder, the name it goes by).
        public var name: String
    }

    private struct Entry {
        var id: String
        var name: String
        var parentID: String?
        var isFolder: Bool
        var content = Data()
        var version = 1
        var modified: Date?
        var fields: [String: JSONValue] = [:]
        /// Position in the drive's change log (delta).
        var changedAt = 0
        var eTag: String { "\"{\(id)},\(version)\"" }
    }

    private let lock = NSLock()
    private var entries: [String: Entry] = ["root": Entry(id: "root", name: "", parentID: nil, isFolder: true)]
    private var lastID = 0
    private var log: [Call] = []
    private var listings: [String: Int] = [:]
    /// The change log's last position, and items deleted (by id: parent, kind, position).
    private var changeSeq = 0
    private var deletions: [String: (parentID: String?, isFolder: Bool, changedAt: Int)] = [:]
    /// Links to positions below this have expired.
    private var deltaFloor = 0
    /// Reads of an item by id answered with this status instead (the service failing for that item alone).
    private var failingReads: [String: Int] = [:]
    /// Folder listings answered with this status instead (the service unreachable for them).
    private var failingListings: Int?
    /// Reads of each item by id, whatever they answered.
    private var itemReads: [String: Int] = [:]
    /// Runs at the start of every write, outside the drive's lock: a test holds a write there, counts
    /// writes under way, or fails one (throw a `GraphError` as the service would).
    private let beforeWrite: @Sendable (Call) async throws -> Void

    public init(beforeWrite: @escaping @Sendable (Call) async throws -> Void = { _ in }) {
        self.beforeWrite = beforeWrite
    }

    /// Every write started so far, in order.
    public var calls: [Call] { lock.withLock { log } }

    /// Makes a folder (tests set up the library with it); returns its id.
    @discardableResult
    public func addFolder(_ name: String, in parentID: String = "root") -> String {
        lock.withLock { insert(Entry(id: nextID(), name: name, parentID: parentID, isFolder: true)).id }
    }

    /// Adds a document as another client would (any name the service may hold); returns its id.
    @discardableResult
    public func addDocument(_ name: String, in parentID: String = "root", content: Data = Data(), modified: Date? = nil) -> String {
        lock.withLock { insert(Entry(id: nextID(), name: name, parentID: parentID, isFolder: false, content: content, modified: modified)).id }
    }

    /// Renames (and with `parentID` moves) an item as another client would, moving its eTag on.
    public func rename(_ itemID: String, to name: String, in parentID: String? = nil) {
        lock.withLock {
            guard var entry = entries[itemID] else { return }
            entry.name = name
            entry.parentID = parentID ?? entry.parentID
            entry.version += 1
            insert(entry)
        }
    }

    /// Replaces a document's bytes as another client would.
    public func edit(_ itemID: String, content: Data) {
        lock.withLock {
            guard var entry = entries[itemID] else { return }
            entry.content = content
            entry.modified = Date()
            entry.version += 1
            insert(entry)
        }
    }

    /// Deletes an item (and what is below it) as another client would.
    public func removeAsOther(_ itemID: String) {
        lock.withLock { remove(itemID) }
    }

    /// The id of the item called `name` in a folder.
    public func itemID(named name: String, in parentID: String) -> String? {
        lock.withLock { sibling(named: name, in: parentID)?.id }
    }

    /// Every delta link handed out so far stops working (410 with a `Location` to start over), as after the
    /// service's retention window.
    public func expireDeltaLinks() {
        lock.withLock { deltaFloor = changeSeq + 1 }
    }

    /// Reads of `itemID` by id answer `status` from now on (a `GraphError` as the service's); nil answers them again.
    public func failReads(of itemID: String, with status: Int?) {
        lock.withLock { failingReads[itemID] = status }
    }

    /// A `beforeWrite` for a service out for calls of `kind` (all of them when nil) while `out` holds: each
    /// is answered 503, as Graph does.
    public static func unavailable(for kind: Call.Kind?, while out: Locked<Bool>) -> @Sendable (Call) async throws -> Void {
        { call in
            if out.value, kind == nil || call.kind == kind { throw unavailable(call) }
        }
    }

    /// Graph's answer to `call` while the service is out (503).
    public static func unavailable(_ call: Call) -> GraphError {
        error(503, "serviceNotAvailable", "\(call.kind.rawValue) \(call.name)")
    }

    /// Folder listings answer `status` from now on (the service cannot be reached); nil answers them again.
    public func failListings(with status: Int?) {
        lock.withLock { failingListings = status }
    }

    /// How many times an item was read by its id (a read of an id the drive does not have counts too).
    public func reads(of itemID: String) -> Int {
        lock.withLock { itemReads[itemID] ?? 0 }
    }

    /// How many times a folder's children were listed.
    public func listings(of folderID: String) -> Int {
        lock.withLock { listings[folderID] ?? 0 }
    }

    /// A document's bytes, by its path from the root.
    public func content(at path: String) -> Data? {
        lock.withLock { try? find(path: path) }.map(\.content)
    }

    /// The mtime the document at `path` holds (`fileSystemInfo.lastModifiedDateTime`).
    public func modified(at path: String) -> Date? {
        lock.withLock { try? find(path: path) }?.modified
    }

    /// Names in a folder.
    public func names(in folderID: String) -> Set<String> {
        lock.withLock { Set(entries.values.filter { $0.parentID == folderID }.map(\.name)) }
    }

    // MARK: DriveService

    public static let siteID = "memory.sharepoint.com,site"
    public static let driveID = "b!memory-drive"

    public func site(hostname: String, path: String) async throws -> Site {
        try Self.decode(["id": Self.siteID, "name": path])
    }

    public func drives(siteID: String) async throws -> [Drive] {
        [try Self.decode(["id": Self.driveID, "name": "Documents"])]
    }

    public func list(driveID: String) async throws -> ListInfo {
        try Self.decode(["id": "memory-list", "name": "Documents"])
    }

    public func columns(siteID: String, listID: String) async throws -> [ColumnDefinition] { [] }

    public func downloadLocation(driveID: String, itemID: String) async throws -> String {
        try lock.withLock { "memory://content/\(try existing(itemID).id)" }
    }

    public func download(location: String, range: ClosedRange<Int64>, into descriptor: Int32) async throws -> Download {
        let id = String(location.dropFirst("memory://content/".count))
        let content = try lock.withLock { try existing(id) }.content
        let window = content.dropFirst(Int(range.lowerBound)).prefix(Int(range.count))
        let written = window.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
        guard written == window.count else { throw POSIXError(.EIO) }
        return Download(byteCount: Int64(window.count), totalSize: Int64(content.count))
    }

    public func item(driveID: String, itemID: String, expandFields: Bool) async throws -> DriveItem {
        try lock.withLock {
            itemReads[itemID, default: 0] += 1
            if let status = failingReads[itemID] { throw Self.error(status, "generalException", "item \(itemID)") }
            return try Self.item(try existing(itemID))
        }
    }

    public func item(driveID: String, path: String, expandFields: Bool) async throws -> DriveItem {
        try lock.withLock { try Self.item(try find(path: path)) }
    }

    public func children(driveID: String, itemID: String, pageSize: Int, expandFields: Bool) async throws -> [DriveItem] {
        try lock.withLock {
            _ = try existing(itemID)
            if let status = failingListings { throw Self.error(status, "serviceNotAvailable", "children of \(itemID)") }
            listings[itemID, default: 0] += 1
            return try entries.values.filter { $0.parentID == itemID }.sorted { $0.name < $1.name }.map(Self.item)
        }
    }

    public func fields(driveID: String, itemID: String) async throws -> [String: JSONValue] {
        try lock.withLock { try existing(itemID).fields }
    }

    /// Changes after the link's position, each item once in its latest state; nil enumerates everything.
    /// Links are `memory://delta/POSITION`; one page per call.
    public func delta(driveID: String, link: String?, pageSize: Int) async throws -> DeltaPage {
        try lock.withLock {
            let link = link == "memory://delta/enumerate" ? nil : link
            let after = link.map { Int($0.dropFirst("memory://delta/".count)) ?? -1 } ?? 0
            guard after >= 0 else { throw Self.error(400, "invalidRequest", "delta \(link ?? "")") }
            if link != nil, after < deltaFloor {
                var gone = Self.error(410, "resyncRequired", "delta \(link ?? "")")
                gone.location = "memory://delta/enumerate"
                throw gone
            }
            var changed: [(Int, DriveItem)] = try entries.values.filter { link == nil || $0.changedAt > after }.map { ($0.changedAt, try Self.item($0)) }
            if link != nil {
                changed += try deletions.filter { $0.value.changedAt > after }.map { id, gone in
                    var json: [String: Any] = ["id": id, "deleted": ["state": "deleted"], gone.isFolder ? "folder" : "file": [String: Any]()]
                    if let parent = gone.parentID { json["parentReference"] = ["id": parent] }
                    return (gone.changedAt, try Self.decode(json))
                }
            }
            return DeltaPage(items: changed.sorted { $0.0 < $1.0 }.map(\.1), nextLink: nil, deltaLink: "memory://delta/\(changeSeq)")
        }
    }

    public func latestDeltaLink(driveID: String) async throws -> String {
        lock.withLock { "memory://delta/\(changeSeq)" }
    }

    public func createFolder(driveID: String, parentID: String, name: String, conflictBehavior: ConflictBehavior) async throws -> DriveItem {
        try await started(.createFolder, name)
        return try lock.withLock {
            _ = try existing(parentID)
            if let taken = sibling(named: name, in: parentID) {
                guard conflictBehavior == .replace else { throw Self.error(409, "nameAlreadyExists", "createFolder \(name)") }
                remove(taken.id)
            }
            return try Self.item(insert(Entry(id: nextID(), name: name, parentID: parentID, isFolder: true)))
        }
    }

    public func update(driveID: String, itemID: String, name: String?, parentID: String?, modified: Date?,
                       ifMatch: String?, conflictBehavior: ConflictBehavior?) async throws -> DriveItem {
        try await started(.update, name ?? itemID)
        return try lock.withLock {
            var entry = try existing(itemID)
            try Self.check(ifMatch, against: entry, "update \(entry.name)")
            let newName = name ?? entry.name, newParent = parentID ?? entry.parentID
            if let taken = newParent.flatMap({ sibling(named: newName, in: $0) }), taken.id != itemID {
                guard conflictBehavior == .replace else { throw Self.error(409, "nameAlreadyExists", "update \(newName)") }
                remove(taken.id)
            }
            entry.name = newName
            entry.parentID = newParent
            entry.modified = modified ?? entry.modified
            entry.version += 1
            return try Self.item(insert(entry))
        }
    }

    public func updateFields(driveID: String, itemID: String, fields: [String: JSONValue], ifMatch: String?) async throws -> [String: JSONValue] {
        let name = lock.withLock { entries[itemID]?.name } ?? itemID
        try await started(.updateFields, name)
        return try lock.withLock {
            var entry = try existing(itemID)
            try Self.check(ifMatch, against: entry, "updateFields \(entry.name)")
            entry.fields.merge(fields) { $1 }
            entry.version += 1
            return insert(entry).fields
        }
    }

    /// One call for the lot (a `$batch`, to Graph), named by its documents' names joined with commas.
    public func stampFields(_ updates: [FieldsUpdate]) async -> [Result<DriveItem, Error>] {
        let names = lock.withLock { updates.map { entries[$0.itemID]?.name ?? $0.itemID } }
        do { try await started(.stampFields, names.joined(separator: ",")) } catch { return updates.map { _ in .failure(error) } }
        return updates.map { update in
            Result {
                try lock.withLock {
                    var entry = try existing(update.itemID)
                    entry.fields.merge(update.fields) { $1 }
                    entry.version += 1
                    return try Self.item(insert(entry))
                }
            }
        }
    }

    public func delete(driveID: String, itemID: String, ifMatch: String?) async throws {
        let name = lock.withLock { entries[itemID]?.name } ?? itemID
        try await started(.delete, name)
        try lock.withLock {
            try Self.check(ifMatch, against: try existing(itemID), "delete \(name)")
            remove(itemID)
        }
    }

    public func simpleUpload(driveID: String, to destination: UploadDestination, file path: String, size: Int64,
                             options: UploadOptions) async throws -> DriveItem {
        try await upload(destination, file: path, size: size, options: options)
    }

    public func sessionUpload(driveID: String, to destination: UploadDestination, file path: String, size: Int64, options: UploadOptions,
                              resuming: String?, onSession: @Sendable (String) throws -> Void,
                              beforeLastFragment: @Sendable () async throws -> Void) async throws -> DriveItem {
        try onSession("memory://upload/\(UUID().uuidString)")
        try await beforeLastFragment()
        return try await upload(destination, file: path, size: size, options: options)
    }

    // MARK: Inside

    private func upload(_ destination: UploadDestination, file path: String, size: Int64, options: UploadOptions) async throws -> DriveItem {
        let name: String = switch destination {
        case .child(_, let name): name
        case .item(let id): lock.withLock { entries[id]?.name } ?? id
        }
        try await started(.upload, name)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path)).prefix(Int(size))
        return try lock.withLock {
            var entry: Entry
            switch destination {
            case .item(let id):
                entry = try existing(id)
            case .child(let parentID, let name):
                _ = try existing(parentID)
                if let taken = sibling(named: name, in: parentID) {
                    guard options.conflictBehavior == .replace else { throw Self.error(409, "nameAlreadyExists", "upload \(name)") }
                    entry = taken
                } else {
                    entry = Entry(id: nextID(), name: name, parentID: parentID, isFolder: false, version: 0)
                }
            }
            try Self.check(options.ifMatch, against: entry, "upload \(name)")
            entry.content = Data(bytes)
            entry.modified = options.modified ?? Date()
            entry.version += 1
            return try Self.item(insert(entry))
        }
    }

    private func started(_ kind: Call.Kind, _ name: String) async throws {
        lock.withLock { log.append(Call(kind: kind, name: name)) }
        try await beforeWrite(Call(kind: kind, name: name))
    }

    private func nextID() -> String {
        lastID += 1
        return String(format: "01MEMORY%06d", lastID)
    }

    @discardableResult
    private func insert(_ entry: Entry) -> Entry {
        var entry = entry
        changeSeq += 1
        entry.changedAt = changeSeq
        entries[entry.id] = entry
        return entry
    }

    private func remove(_ id: String) {
        for child in entries.values where child.parentID == id { remove(child.id) }
        if let entry = entries.removeValue(forKey: id) {
            changeSeq += 1
            deletions[id] = (entry.parentID, entry.isFolder, changeSeq)
        }
    }

    private func existing(_ id: String) throws -> Entry {
        guard let entry = entries[id] else { throw Self.error(404, "itemNotFound", "item \(id)") }
        return entry
    }

    private func sibling(named name: String, in parentID: String) -> Entry? {
        entries.values.first { $0.parentID == parentID && $0.name.caseInsensitiveCompare(name) == .orderedSame }
    }

    private func find(path: String) throws -> Entry {
        var current = entries["root"]!
        for part in path.split(separator: "/") {
            guard let next = sibling(named: String(part), in: current.id) else { throw Self.error(404, "itemNotFound", "path \(path)") }
            current = next
        }
        return current
    }

    private static func check(_ ifMatch: String?, against entry: Entry, _ request: String) throws {
        if let ifMatch, ifMatch != entry.eTag { throw error(412, "resourceModified", request) }
    }

    private static func error(_ status: Int, _ code: String, _ request: String) -> GraphError {
        GraphError(status: status, code: code, request: "in-memory drive: \(request)")
    }

    /// The item as Graph would describe it.
    private static func item(_ entry: Entry) throws -> DriveItem {
        var json: [String: Any] = ["id": entry.id, "name": entry.name, "eTag": entry.eTag, "size": entry.content.count]
        if let parentID = entry.parentID { json["parentReference"] = ["id": parentID] }
        if entry.parentID == nil { json["root"] = [String: Any]() }
        if entry.isFolder {
            json["folder"] = ["childCount": 0]
        } else {
            json["file"] = ["hashes": ["quickXorHash": QuickXorHash.hash(entry.content)]]
        }
        if let modified = entry.modified {
            json["fileSystemInfo"] = ["lastModifiedDateTime": ISO8601DateFormatter().string(from: modified)]
        }
        return try decode(json)
    }

    private static func decode<Model: Decodable>(_ json: [String: Any]) throws -> Model {
        try JSONDecoder().decode(Model.self, from: try JSONSerialization.data(withJSONObject: json))
    }
}
