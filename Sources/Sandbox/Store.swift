import Foundation
import GRDB

/// Everything the sandbox tenant holds, in one SQLite database inside the state directory,
/// so a restarted sandbox serves the same tenant. Graph items keep their latest state only;
/// `changeSeq` orders them for delta, which reports latest states, as the real service does.
final class SandboxStore: Sendable {
    let pool: DatabasePool
    let directory: URL

    init(directory: URL) throws {
        self.directory = directory
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("blobs"), withIntermediateDirectories: true)
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        pool = try DatabasePool(path: directory.appendingPathComponent("sandbox.sqlite").path, configuration: configuration)
        try Self.migrator.migrate(pool)
    }

    func blobPath(_ name: String) -> String { directory.appendingPathComponent("blobs").appendingPathComponent(name).path }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                CREATE TABLE site (id TEXT PRIMARY KEY, hostname TEXT NOT NULL, path TEXT NOT NULL, name TEXT NOT NULL,
                    displayName TEXT NOT NULL, webUrl TEXT NOT NULL, created TEXT NOT NULL);
                CREATE TABLE drive (id TEXT PRIMARY KEY, siteId TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL,
                    webUrl TEXT NOT NULL, listId TEXT NOT NULL, rootId TEXT NOT NULL, created TEXT NOT NULL, isDefault INTEGER NOT NULL);
                CREATE TABLE columnDefinition (listId TEXT NOT NULL, name TEXT NOT NULL, position INTEGER NOT NULL,
                    definition TEXT NOT NULL, PRIMARY KEY (listId, name));
                CREATE TABLE item (id TEXT PRIMARY KEY, driveId TEXT NOT NULL, parentId TEXT, name TEXT NOT NULL,
                    isFolder INTEGER NOT NULL, size INTEGER NOT NULL, version INTEGER NOT NULL, contentVersion INTEGER NOT NULL,
                    created TEXT NOT NULL, modified TEXT NOT NULL, fsCreated TEXT NOT NULL, fsModified TEXT NOT NULL,
                    mimeType TEXT, quickXorHash TEXT, blob TEXT, generator TEXT,
                    listItemId INTEGER NOT NULL, uniqueId TEXT NOT NULL, fields TEXT NOT NULL,
                    createdBy TEXT NOT NULL, modifiedBy TEXT NOT NULL, deleted INTEGER NOT NULL, changeSeq INTEGER NOT NULL);
                CREATE INDEX item_by_parent ON item(parentId, deleted, name COLLATE NOCASE);
                CREATE INDEX item_by_change ON item(driveId, changeSeq);
                CREATE TABLE record (id TEXT PRIMARY KEY, type TEXT NOT NULL, fields TEXT NOT NULL,
                    systemModstamp TEXT NOT NULL, isDeleted INTEGER NOT NULL, seq INTEGER NOT NULL);
                CREATE INDEX record_by_type ON record(type, seq);
                """)
        }
        migrator.registerMigration("v2: versions; sequence indexes") { db in
            try db.execute(sql: """
                CREATE TABLE itemVersion (itemId TEXT NOT NULL, version INTEGER NOT NULL, size INTEGER NOT NULL, modified TEXT NOT NULL,
                    modifiedBy TEXT NOT NULL, blob TEXT, PRIMARY KEY (itemId, version));
                CREATE INDEX item_by_sequence ON item(changeSeq);
                CREATE INDEX record_by_sequence ON record(seq);
                """)
        }
        migrator.registerMigration("v3: permissions and sharing") { db in
            // An item with grants has unique permissions (SharePoint's "broken inheritance"): only the listed
            // principals (a demo user's name, or `*` for everyone) reach it, at `read` or `write`. Items without
            // grants inherit from their folder. Record shares are Salesforce's manual sharing (`Read`/`Edit`).
            try db.execute(sql: """
                CREATE TABLE itemGrant (itemId TEXT NOT NULL, principal TEXT NOT NULL, role TEXT NOT NULL, PRIMARY KEY (itemId, principal));
                CREATE TABLE recordShare (recordId TEXT NOT NULL, userId TEXT NOT NULL, level TEXT NOT NULL, PRIMARY KEY (recordId, userId));
                """)
        }
        return migrator
    }

    // MARK: Permissions and sharing

    /// The grants of an item with unique permissions, by principal; empty when it inherits.
    func grants(of itemID: String) throws -> [String: String] {
        try pool.read { db in
            Dictionary(try Row.fetchAll(db, sql: "SELECT principal, role FROM itemGrant WHERE itemId = ?", arguments: [itemID])
                .map { ($0["principal"], $0["role"]) }, uniquingKeysWith: { first, _ in first })
        }
    }

    /// Gives an item unique permissions: exactly `grants` (principal to role).
    func setGrants(of itemID: String, _ grants: [String: String]) throws {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM itemGrant WHERE itemId = ?", arguments: [itemID])
            for (principal, role) in grants {
                try db.execute(sql: "INSERT INTO itemGrant (itemId, principal, role) VALUES (?, ?, ?)", arguments: [itemID, principal, role])
            }
        }
    }

    /// The records shared with a Salesforce user by hand, with the level (`Read` or `Edit`).
    func shares(with userID: String) throws -> [String: String] {
        try pool.read { db in
            Dictionary(try Row.fetchAll(db, sql: "SELECT recordId, level FROM recordShare WHERE userId = ?", arguments: [userID])
                .map { ($0["recordId"], $0["level"]) }, uniquingKeysWith: { first, _ in first })
        }
    }

    /// Shares a record with a user (`Read`, `Edit`), or stops sharing it (nil).
    func setShare(recordID: String, userID: String, level: String?) throws {
        try pool.write { db in
            if let level {
                try db.execute(sql: "INSERT OR REPLACE INTO recordShare (recordId, userId, level) VALUES (?, ?, ?)", arguments: [recordID, userID, level])
            } else {
                try db.execute(sql: "DELETE FROM recordShare WHERE recordId = ? AND userId = ?", arguments: [recordID, userID])
            }
        }
    }

    /// The live folder holding a record's documents: named `… (Id)`, as the demo's folder templates make them.
    func recordFolder(recordID: String) throws -> ItemRow? {
        try pool.read { db in
            try ItemRow.fetchOne(db, sql: "SELECT * FROM item WHERE isFolder = 1 AND deleted = 0 AND name LIKE ?",
                                 arguments: ["% (\(recordID))"])
        }
    }

    /// Keeps an item's state before a change as one of its versions (SharePoint keeps a version per change).
    private func keepVersion(_ db: Database, of item: ItemRow) throws {
        guard !item.isFolder else { return }
        try db.execute(sql: "INSERT OR REPLACE INTO itemVersion (itemId, version, size, modified, modifiedBy, blob) VALUES (?, ?, ?, ?, ?, ?)",
                       arguments: [item.id, item.version, item.size, item.modified, item.modifiedBy, item.blob])
    }

    /// An item's earlier versions, newest first (the current one is the item itself).
    func versions(of itemID: String) throws -> [(version: Int, size: Int64, modified: String, modifiedBy: String)] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT version, size, modified, modifiedBy FROM itemVersion WHERE itemId = ? ORDER BY version DESC",
                             arguments: [itemID]).map { ($0["version"], $0["size"], $0["modified"], $0["modifiedBy"]) }
        }
    }

    // MARK: Meta

    func meta(_ key: String) throws -> String? {
        try pool.read { db in try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = ?", arguments: [key]) }
    }

    // MARK: Sites and drives

    func site(hostname: String, path: String) throws -> SiteRow? {
        try pool.read { db in
            try SiteRow.fetchOne(db, sql: "SELECT * FROM site WHERE hostname = ? COLLATE NOCASE AND path = ? COLLATE NOCASE", arguments: [hostname, path])
        }
    }

    func site(id: String) throws -> SiteRow? { try pool.read { db in try SiteRow.fetchOne(db, key: id) } }
    func drives(siteID: String) throws -> [DriveRow] {
        try pool.read { db in try DriveRow.fetchAll(db, sql: "SELECT * FROM drive WHERE siteId = ? ORDER BY isDefault DESC, name", arguments: [siteID]) }
    }
    func drive(id: String) throws -> DriveRow? { try pool.read { db in try DriveRow.fetchOne(db, key: id) } }
    func drive(listID: String) throws -> DriveRow? {
        try pool.read { db in try DriveRow.fetchOne(db, sql: "SELECT * FROM drive WHERE listId = ?", arguments: [listID]) }
    }

    func columns(listID: String) throws -> [String] {
        try pool.read { db in
            try String.fetchAll(db, sql: "SELECT definition FROM columnDefinition WHERE listId = ? ORDER BY position", arguments: [listID])
        }
    }

    // MARK: Items

    func item(id: String) throws -> ItemRow? { try pool.read { db in try ItemRow.fetchOne(db, key: id) } }

    func child(of parentID: String, named name: String) throws -> ItemRow? {
        try pool.read { db in
            try ItemRow.fetchOne(db, sql: "SELECT * FROM item WHERE parentId = ? AND deleted = 0 AND name = ? COLLATE NOCASE", arguments: [parentID, name])
        }
    }

    /// A page of a folder's live children that meet the `visible` condition (see SharePointPermissions).
    func children(of parentID: String, offset: Int, limit: Int, visible: (sql: String, arguments: [String]) = ("1", [])) throws -> [ItemRow] {
        try pool.read { db in
            try ItemRow.fetchAll(db, sql: """
                SELECT * FROM item WHERE parentId = ? AND deleted = 0 AND \(visible.sql) ORDER BY name COLLATE NOCASE LIMIT ? OFFSET ?
                """, arguments: StatementArguments([parentID] + visible.arguments.map { $0 as any DatabaseValueConvertible } + [limit, offset]))
        }
    }

    func childCount(of parentID: String) throws -> Int {
        try pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM item WHERE parentId = ? AND deleted = 0", arguments: [parentID]) ?? 0 }
    }

    /// Items of a drive changed after `afterSeq` up to `upToSeq`, in change order: the delta feed.
    func changes(driveID: String, afterSeq: Int64, upToSeq: Int64, offset: Int, limit: Int) throws -> [ItemRow] {
        try pool.read { db in
            try ItemRow.fetchAll(db, sql: """
                SELECT * FROM item WHERE driveId = ? AND changeSeq > ? AND changeSeq <= ? ORDER BY changeSeq LIMIT ? OFFSET ?
                """, arguments: [driveID, afterSeq, upToSeq, limit, offset])
        }
    }

    /// One live file or folder below a drive root, chosen by `roll` (the churn's dice); nil when there is none.
    func randomItem(isFolder: Bool, roll: UInt64) throws -> ItemRow? {
        try pool.read { db in
            let count = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM item WHERE isFolder = ? AND deleted = 0 AND parentId IS NOT NULL",
                                         arguments: [isFolder]) ?? 0
            guard count > 0 else { return nil }
            return try ItemRow.fetchOne(db, sql: "SELECT * FROM item WHERE isFolder = ? AND deleted = 0 AND parentId IS NOT NULL ORDER BY id LIMIT 1 OFFSET ?",
                                        arguments: [isFolder, Int(roll % UInt64(count))])
        }
    }

    func currentChangeSeq() throws -> Int64 {
        try pool.read { db in try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(changeSeq), 0) FROM item") ?? 0 }
    }

    /// Records the materialised content of a generated document: its blob file and hash. Not a change.
    func setContent(itemID: String, blob: String, quickXorHash: String) throws {
        try pool.write { db in
            try db.execute(sql: "UPDATE item SET blob = ?, quickXorHash = ? WHERE id = ?", arguments: [blob, quickXorHash, itemID])
        }
    }

    /// New content for a file, as an edit in SharePoint would make it: new eTag and cTag, new hash,
    /// modification times now, and a change for delta.
    func replaceContent(itemID: String, data: Data, hash: String, modifiedBy: String) throws -> ItemRow? {
        try pool.write { db in
            guard var item = try ItemRow.fetchOne(db, key: itemID), !item.isFolder, !item.deleted else { return nil }
            try keepVersion(db, of: item)
            item.version += 1
            item.contentVersion += 1
            let blob = "\(item.id)-\(item.contentVersion)"
            try data.write(to: URL(fileURLWithPath: blobPath(blob)), options: .atomic)
            let now = GraphTime.format(Date())
            item.blob = blob
            item.quickXorHash = hash
            item.size = Int64(data.count)
            item.modified = now
            item.fsModified = now
            item.modifiedBy = modifiedBy
            item.changeSeq = try nextChangeSeq(db)
            try item.update(db)
            return item
        }
    }

    /// Saves a change of an item's name, parent, times or column values: new eTag (not cTag), modified
    /// now. `change` is applied to the item as it is inside the write, as the service applies each request
    /// whole: two requests at once never undo each other (a column write beside an upload once put the
    /// item's earlier bytes back). `expecting`, the version a request's `If-Match` was checked against,
    /// fails it with 412 when another change came first. Nil when the item is gone.
    func update(itemID: String, expecting: Int? = nil, _ change: (inout ItemRow) throws -> Void) throws -> ItemRow? {
        try pool.write { db in
            guard var updated = try ItemRow.fetchOne(db, key: itemID), !updated.deleted else { return nil }
            if let expecting, updated.version != expecting {
                throw GraphErrors.failure(412, "resourceModified", "ETag does not match current item's value", inner: "entityTagDoesNotMatch")
            }
            try keepVersion(db, of: updated)
            try change(&updated)
            updated.version += 1
            updated.modified = GraphTime.format(Date())
            updated.changeSeq = try nextChangeSeq(db)
            try updated.update(db)
            return updated
        }
    }

    /// Moves an item and everything below it to the recycle bin: gone from listings, a deletion in delta.
    func delete(itemID: String) throws {
        try pool.write { db in
            var pending = [itemID]
            while let id = pending.popLast() {
                pending += try String.fetchAll(db, sql: "SELECT id FROM item WHERE parentId = ? AND deleted = 0", arguments: [id])
                try db.execute(sql: "UPDATE item SET deleted = 1, version = version + 1, changeSeq = ? WHERE id = ?",
                               arguments: [try nextChangeSeq(db), id])
            }
        }
    }

    /// Whether `candidate` is `itemID` or lies below it.
    func isSelfOrDescendant(_ candidate: String, of itemID: String) throws -> Bool {
        try pool.read { db in
            var current: String? = candidate
            while let id = current {
                if id == itemID { return true }
                current = try String.fetchOne(db, sql: "SELECT parentId FROM item WHERE id = ?", arguments: [id])
            }
            return false
        }
    }

    func createFolder(name: String, parent: ItemRow, createdBy: String) throws -> ItemRow {
        try pool.write { db in
            var folder = try newItem(db, name: name, parent: parent, isFolder: true, by: createdBy)
            folder.changeSeq = try nextChangeSeq(db)
            try folder.insert(db)
            return folder
        }
    }

    /// A new item made at run time (not yet saved): fresh ids, the next list item number, times now.
    private func newItem(_ db: Database, name: String, parent: ItemRow, isFolder: Bool, by user: String) throws -> ItemRow {
        let now = GraphTime.format(Date())
        let listItemID = (try Int.fetchOne(db, sql: "SELECT COALESCE(MAX(listItemId), 0) FROM item WHERE driveId = ?", arguments: [parent.driveId]) ?? 0) + 1
        return ItemRow(id: RandomIDs.itemID(), driveId: parent.driveId, parentId: parent.id, name: name, isFolder: isFolder, size: 0,
                       version: 1, contentVersion: 1, created: now, modified: now, fsCreated: now, fsModified: now,
                       mimeType: isFolder ? nil : MimeTypes.forExtension((name as NSString).pathExtension.lowercased()), quickXorHash: nil,
                       blob: nil, generator: nil, listItemId: listItemID, uniqueId: RandomIDs.guid(), fields: "{}", createdBy: user,
                       modifiedBy: user, deleted: false, changeSeq: 0)
    }

    private func nextChangeSeq(_ db: Database) throws -> Int64 {
        (try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(changeSeq), 0) FROM item") ?? 0) + 1
    }

    /// A fresh path for bytes being uploaded, beside the blobs so that committing them is a rename.
    func stagingPath() -> String {
        blobPath("upload-\(RandomIDs.guid())")
    }

    /// Makes staged bytes a file's content: a new version of `existing`, or a new file `name` in `parent`.
    /// fileSystemInfo times come from the upload when it gave them, otherwise now.
    func storeUpload(staging: String, size: Int64, hash: String, over existing: ItemRow?, parent: ItemRow, name: String,
                     fsCreated: String?, fsModified: String?, by user: String) throws -> ItemRow {
        try pool.write { db in
            let now = GraphTime.format(Date())
            var item: ItemRow
            if let existing {
                // As the item is now, inside the write: a rename or column write that came meanwhile stays.
                guard let current = try ItemRow.fetchOne(db, key: existing.id), !current.deleted else {
                    throw GraphErrors.failure(404, "itemNotFound", "The resource could not be found.")
                }
                try keepVersion(db, of: current)
                item = current
                item.version += 1
                item.contentVersion += 1
            } else {
                item = try newItem(db, name: name, parent: parent, isFolder: false, by: user)
            }
            let blob = "\(item.id)-\(item.contentVersion)"
            guard rename(staging, blobPath(blob)) == 0 else { throw CocoaError(.fileWriteUnknown) }
            item.blob = blob
            item.generator = nil
            item.quickXorHash = hash
            item.size = size
            item.modified = now
            item.fsModified = fsModified ?? now
            if let fsCreated { item.fsCreated = fsCreated }
            item.modifiedBy = user
            item.changeSeq = try nextChangeSeq(db)
            try item.save(db)
            return item
        }
    }

    /// The path of an item below its drive root, for `parentReference.path`.
    func pathComponents(of item: ItemRow) throws -> [String] {
        var memo: [String: [String]] = [:]
        return try folderPath(item.parentId, memo: &memo)
    }

    /// The names from below the root down to folder `id` (none for the root), each folder read once per
    /// `memo`: a page of a thousand items walks up the same folders.
    func folderPath(_ id: String?, memo: inout [String: [String]]) throws -> [String] {
        guard let id else { return [] }
        if let known = memo[id] { return known }
        var path: [String] = []
        if let folder = try item(id: id), folder.parentId != nil {
            path = try folderPath(folder.parentId, memo: &memo) + [folder.name]
        }
        memo[id] = path
        return path
    }

    // MARK: Records

    func records(type: String, includeDeleted: Bool) throws -> [RecordRow] {
        try pool.read { db in
            try RecordRow.fetchAll(db, sql: "SELECT * FROM record WHERE type = ? \(includeDeleted ? "" : "AND isDeleted = 0") ORDER BY seq", arguments: [type])
        }
    }

    func record(id: String) throws -> RecordRow? { try pool.read { db in try RecordRow.fetchOne(db, key: id) } }

    /// One live record of `type`, chosen by `roll` (the churn's dice); nil when there is none.
    func randomRecord(type: String, roll: UInt64) throws -> RecordRow? {
        try pool.read { db in
            let count = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM record WHERE type = ? AND isDeleted = 0", arguments: [type]) ?? 0
            guard count > 0 else { return nil }
            return try RecordRow.fetchOne(db, sql: "SELECT * FROM record WHERE type = ? AND isDeleted = 0 ORDER BY seq LIMIT 1 OFFSET ?",
                                          arguments: [type, Int(roll % UInt64(count))])
        }
    }

    /// Inserts a record made at run time: a fresh id (serials above the seeded ones), audit fields now.
    func insertRecord(type: String, keyPrefix: String, values: [String: Any], at now: String) throws -> String {
        try pool.write { db in
            let serial = (try Int.fetchOne(db, sql: "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'recordSerial'") ?? 50_000_000) + 1
            try db.execute(sql: "INSERT OR REPLACE INTO meta (key, value) VALUES ('recordSerial', ?)", arguments: [String(serial)])
            let id = SalesforceID.make(prefix: keyPrefix, serial: serial)
            let fields = RecordRow.withAuditFields(values.filter { !($0.value is NSNull) }, id: id, created: now, modified: now)
            try RecordRow(id: id, type: type, fields: FlatJSON.encode(fields), systemModstamp: now, isDeleted: false,
                          seq: try nextRecordSeq(db)).insert(db)
            return id
        }
    }

    /// Sets fields of a record (NSNull clears one), as a modification now.
    func updateRecord(id: String, values: [String: Any], at now: String) throws {
        try pool.write { db in
            guard var row = try RecordRow.fetchOne(db, key: id) else { return }
            var fields = (try JSONSerialization.jsonObject(with: Data(row.fields.utf8)) as? [String: Any]) ?? [:]
            for (key, value) in values { fields[key] = value is NSNull ? nil : value }
            fields["LastModifiedDate"] = now
            fields["SystemModstamp"] = now
            row.fields = FlatJSON.encode(fields)
            row.systemModstamp = now
            row.seq = try nextRecordSeq(db)
            try row.update(db)
        }
    }

    /// Moves a record to the recycle bin: gone from queries, still in queryAll with IsDeleted = true.
    func deleteRecord(id: String, at now: String) throws {
        try updateRecord(id: id, values: ["IsDeleted": true], at: now)
        try pool.write { db in try db.execute(sql: "UPDATE record SET isDeleted = 1 WHERE id = ?", arguments: [id]) }
    }

    /// Where the record table stands, so a composite request with allOrNone can undo what it wrote.
    struct RecordCheckpoint {
        var sequence: Int64
        var rows: [String: RecordRow]
    }

    /// The sequence and a copy of every record: a sandbox tenant is small enough to copy whole.
    func recordCheckpoint() throws -> RecordCheckpoint {
        try pool.read { db in
            RecordCheckpoint(sequence: try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(seq), 0) FROM record") ?? 0,
                             rows: Dictionary(uniqueKeysWithValues: try RecordRow.fetchAll(db).map { ($0.id, $0) }))
        }
    }

    /// Undoes every record write since the checkpoint: rows made since are removed, changed ones restored.
    func rollBackRecords(to checkpoint: RecordCheckpoint) throws {
        try pool.write { db in
            for row in try RecordRow.fetchAll(db, sql: "SELECT * FROM record WHERE seq > ?", arguments: [checkpoint.sequence]) {
                if let before = checkpoint.rows[row.id] { try before.update(db) } else { try row.delete(db) }
            }
        }
    }

    private func nextRecordSeq(_ db: Database) throws -> Int64 {
        (try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(seq), 0) FROM record") ?? 0) + 1
    }
}

struct SiteRow: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "site"
    var id, hostname, path, name, displayName, webUrl, created: String
}

struct DriveRow: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "drive"
    var id, siteId, name, description, webUrl, listId, rootId, created: String
    var isDefault: Bool
}

struct ItemRow: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "item"
    var id: String
    var driveId: String
    var parentId: String?
    var name: String
    var isFolder: Bool
    var size: Int64
    /// Bumped on any change: the eTag's version.
    var version: Int
    /// Bumped on content changes only: the cTag's version.
    var contentVersion: Int
    var created, modified, fsCreated, fsModified: String
    var mimeType: String?
    var quickXorHash: String?
    /// File name under blobs/ holding the current content, once it exists.
    var blob: String?
    /// How to generate the content of a seeded document that nobody has downloaded yet.
    var generator: String?
    var listItemId: Int
    var uniqueId: String
    /// listItem fields (SharePoint columns) as a JSON object.
    var fields: String
    var createdBy, modifiedBy: String
    var deleted: Bool
    var changeSeq: Int64

    var eTag: String { "\"{\(uniqueId)},\(version)\"" }
    var cTag: String { "\"c:{\(uniqueId)},\(contentVersion)\"" }
    var isRoot: Bool { parentId == nil }
}

extension RecordRow {
    /// A new record's fields with what Salesforce sets itself: Id, owner, audit dates, IsDeleted.
    static func withAuditFields(_ values: [String: Any], id: String, created: String, modified: String) -> [String: Any] {
        var fields = values
        fields["Id"] = id
        fields["OwnerId"] = values["OwnerId"] ?? SalesforceID.make(prefix: "005", serial: 1)
        fields["CreatedDate"] = created
        fields["LastModifiedDate"] = modified
        fields["SystemModstamp"] = modified
        fields["IsDeleted"] = false
        return fields
    }
}

struct RecordRow: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "record"
    var id: String
    var type: String
    /// All field values as a JSON object (Id included).
    var fields: String
    var systemModstamp: String
    var isDeleted: Bool
    var seq: Int64
}
