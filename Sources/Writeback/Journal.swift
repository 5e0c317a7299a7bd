import Foundation
import GRDB

/// One change made through the mount that the services have not fully seen yet. Each step of sending it
/// (the upload, the CRM link, the columns) updates the row, so a restarted daemon resumes where it stopped.
public struct PendingChange: Codable, FetchableRecord, MutablePersistableRecord, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        case upload, move, delete, createFolder, setColumns
    }

    public enum State: String, Codable, Sendable {
        /// Durable locally, not sent yet.
        case staged
        /// Bytes on their way (an upload session may be open: `uploadURL`, `uploadedBytes`).
        case uploading
        /// The document is up; the CRM link and the columns are being written.
        case linking
        /// The remote copy changed meanwhile; the conflict policy decides.
        case conflict
        /// Retries are exhausted; kept, with `lastError`, until the next attempt.
        case failed
    }

    public static let databaseTableName = "change"

    public var id: Int64?
    public var kind: Kind
    public var state: State
    public var driveID: String
    /// The document or folder, once it exists remotely.
    public var itemID: String?
    /// Where it goes (or moves to).
    public var parentItemID: String?
    /// The same place as a path below the drive root, for a parent that does not exist remotely yet (a
    /// record's folder before its first document, a folder made through the mount): made when the change is sent.
    public var parentPath: String?
    public var name: String
    /// For a move, the place the document leaves (its folder, by item or else by path, and its name in
    /// lower case): a new document given that name waits for the move, and gives up with it.
    public var leaving: String?
    public var recordID: String?
    /// The CRM object of that record (`Account`), for its link model and column mappings.
    public var objectName: String?
    /// The file in the staging area that holds the bytes, for uploads.
    public var stagedFile: String?
    public var size: Int64
    /// The file's mtime, carried by the upload, in whole seconds: SharePoint keeps no more, and a fraction
    /// stored in the journal (milliseconds, rounded) could otherwise round up into the next second, where
    /// rsync would see a different time after a remount.
    public var modified: Date? { didSet { modified = modified.map(Self.wholeSeconds) } }

    static func wholeSeconds(_ date: Date) -> Date { Date(timeIntervalSince1970: floor(date.timeIntervalSince1970)) }
    /// The eTag the local copy was based on: an overwrite says it, so a remote change is never clobbered.
    public var baseETag: String?
    /// The hash (quickXorHash) of the bytes that version held, when known: a 412 on `baseETag` whose
    /// document still holds these bytes was a change of its name, time or columns, not of its content.
    public var baseHash: String?
    /// An open upload session and how far it got, to resume after a restart.
    public var uploadURL: String?
    public var uploadedBytes: Int64 = 0
    /// Column values to set, as JSON.
    public var columns: String?
    public var attempts = 0
    public var lastError: String?
    /// Whether the staged file is known to be on disk. A change recorded by `fsync` is sent while its file
    /// is still being flushed (the last fragment waits for this); one left unsealed by a crash was never
    /// promised durable and is set aside at the next start.
    public var sealed = true
    /// The local user whose call made the change (the kernel's request context; on an `allow_other` mount
    /// not the daemon's user), for the audit log. Nil for changes from before this was kept.
    public var requester: UInt32? = ChangeRequester.uid
    public var createdAt = Date()
    public var updatedAt = Date()

    public init(kind: Kind, driveID: String, name: String, itemID: String? = nil, parentItemID: String? = nil, parentPath: String? = nil, recordID: String? = nil,
                objectName: String? = nil, stagedFile: String? = nil, size: Int64 = 0, modified: Date? = nil, baseETag: String? = nil,
                columns: String? = nil) {
        self.objectName = objectName
        self.kind = kind
        state = .staged
        self.driveID = driveID
        self.name = name
        self.itemID = itemID
        self.parentItemID = parentItemID
        self.parentPath = parentPath
        self.recordID = recordID
        self.stagedFile = stagedFile
        self.size = size
        self.modified = modified.map(Self.wholeSeconds)
        self.baseETag = baseETag
        self.columns = columns
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }

    /// A move that moves nothing: it carries a time set with no bytes to send (`touch`).
    public var isTimeOnly: Bool { kind == .move && parentItemID == nil && parentPath == nil }

    /// Back to its first attempt, as a change not sent yet: a new upload session, no error.
    mutating func startAfresh() {
        state = .staged
        uploadURL = nil
        uploadedBytes = 0
        attempts = 0
        lastError = nil
    }
}

extension PendingChange.State {
    /// Waiting to be sent, or failed and waiting to be retried: it can still be amended or withdrawn when
    /// it is not being sent. (Not one left `uploading` by a stop: its last fragment may have landed, so it
    /// goes on, and what follows uses the item it made.)
    var notSent: Bool { self == .staged || self == .failed }
}

/// The local user a kernel request came from, for the changes made while serving it (set by the FUSE
/// adapter around each operation; see `PendingChange.requester`).
public enum ChangeRequester {
    @TaskLocal public static var uid: UInt32?
}

/// A journal row that cannot be read as a change: what can still be learned of it, to set it aside.
public struct UnreadableChange: Sendable, Equatable {
    public var id: Int64
    public var name: String
    public var stagedFile: String?
    public var error: String

    init(row: Row, error: Error) {
        // Each column as it is stored: converting a value that does not fit would stop the process.
        func text(_ column: String) -> String? { String.fromDatabaseValue(row[column] as DatabaseValue) }
        id = Int64.fromDatabaseValue(row["id"] as DatabaseValue) ?? 0
        name = text("name") ?? "change \(id)"
        stagedFile = text("stagedFile")
        self.error = "\(error)"
    }
}

/// The durable list of pending changes, in SQLite (WAL, synchronous=FULL: a change recorded before
/// `close` returns survives power loss), in the state directory. Changes are sent in the order made.
public final class Journal: Sendable {
    private let pool: DatabasePool
    /// Test hook, run before every new change is recorded: the tests of races around a change being
    /// recorded use it to hold or slow the recording (as a slow or busy disk would), or to fail it (as a
    /// full disk fails SQLite's commit).
    private let beforeAdd: (@Sendable () throws -> Void)?

    public init(path: String, beforeAdd: (@Sendable () throws -> Void)? = nil) throws {
        self.beforeAdd = beforeAdd
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        // SQLite creates the journal and its -wal and -shm files with the process's umask: they hold
        // pre-authenticated upload URLs, so none of them may be readable by anyone else.
        let previous = umask(0o077)
        defer { umask(previous) }
        pool = try DatabasePool(path: path, configuration: configuration)
        try Self.migrator.migrate(pool)
        for file in [path, path + "-wal", path + "-shm"] { chmod(file, 0o600) }
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "change") { table in
                table.autoIncrementedPrimaryKey("id")
                table.column("kind", .text).notNull()
                table.column("state", .text).notNull()
                table.column("driveID", .text).notNull()
                table.column("itemID", .text)
                table.column("parentItemID", .text)
                table.column("name", .text).notNull()
                table.column("recordID", .text)
                table.column("stagedFile", .text)
                table.column("size", .integer).notNull()
                table.column("modified", .datetime)
                table.column("baseETag", .text)
                table.column("uploadURL", .text)
                table.column("uploadedBytes", .integer).notNull()
                table.column("columns", .text)
                table.column("attempts", .integer).notNull()
                table.column("lastError", .text)
                table.column("createdAt", .datetime).notNull()
                table.column("updatedAt", .datetime).notNull()
            }
            try db.create(index: "change_by_item", on: "change", columns: ["itemID"])
        }
        migrator.registerMigration("v2: object of the record") { db in
            try db.alter(table: "change") { table in table.add(column: "objectName", .text) }
        }
        migrator.registerMigration("v3: parent by path") { db in
            try db.alter(table: "change") { table in table.add(column: "parentPath", .text) }
        }
        migrator.registerMigration("v4: sealed staged files") { db in
            try db.alter(table: "change") { table in table.add(column: "sealed", .boolean).notNull().defaults(to: true) }
        }
        migrator.registerMigration("v5: requesting user") { db in
            try db.alter(table: "change") { table in
                table.add(column: "requester", .integer)
                table.add(column: "baseHash", .text)
            }
        }
        migrator.registerMigration("v6: the place a move leaves") { db in
            try db.alter(table: "change") { table in table.add(column: "leaving", .text) }
        }
        return migrator
    }

    /// Records a change; once this returns it is on disk.
    @discardableResult
    public func add(_ change: PendingChange) throws -> PendingChange {
        try beforeAdd?()
        return try pool.write { db in
            var saved = change
            try saved.insert(db)
            return saved
        }
    }

    /// Records a change in place of change `previous`, in one transaction: if the new row cannot be
    /// written, the old one stays.
    public func add(_ change: PendingChange, replacing previous: Int64) throws -> PendingChange {
        try beforeAdd?()
        return try pool.write { db in
            _ = try PendingChange.deleteOne(db, key: previous)
            var saved = change
            try saved.insert(db)
            return saved
        }
    }

    /// Changes not yet done, oldest first; rows that cannot be read are left out (see `contents`).
    public func outstanding() throws -> [PendingChange] { try contents().changes }

    /// Every row, oldest first: the changes, and apart from them the rows this crmfs cannot read (a value
    /// out of its range, written by another version or a damaged disk). One such row must not hide the rest.
    public func contents() throws -> (changes: [PendingChange], unreadable: [UnreadableChange]) {
        try pool.read { db in
            var changes: [PendingChange] = []
            var unreadable: [UnreadableChange] = []
            for row in try Row.fetchAll(db, sql: "SELECT * FROM change ORDER BY id") {
                do {
                    changes.append(try PendingChange(row: row))
                } catch {
                    unreadable.append(UnreadableChange(row: row, error: error))
                }
            }
            return (changes, unreadable)
        }
    }

    /// Change `id`; nil when it is done, or when its row cannot be read (`contents` reports those).
    public func change(id: Int64) throws -> PendingChange? {
        try pool.read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM change WHERE id = ?", arguments: [id]) else { return nil }
            return try? PendingChange(row: row)
        }
    }

    /// Removes a row that cannot be read, once its bytes are kept elsewhere.
    public func remove(unreadable id: Int64) throws {
        try pool.write { db in try db.execute(sql: "DELETE FROM change WHERE id = ?", arguments: [id]) }
    }

    /// Applies `update` to a change and saves it (its `updatedAt` is now). A change already done is left alone.
    @discardableResult
    public func update(id: Int64, _ update: (inout PendingChange) -> Void) throws -> PendingChange? {
        try pool.write { db in
            guard var change = try PendingChange.fetchOne(db, key: id) else { return nil }
            update(&change)
            change.updatedAt = Date()
            try change.update(db)
            return change
        }
    }

    /// Applies `update` to every change still waiting to be sent that matches `filter`, in one transaction.
    public func updateWaiting(where filter: (PendingChange) -> Bool, _ update: (inout PendingChange) -> Void) throws {
        try pool.write { db in
            for var change in try PendingChange.filter(Column("state") == PendingChange.State.staged.rawValue).fetchAll(db) where filter(change) {
                update(&change)
                change.updatedAt = Date()
                try change.update(db)
            }
        }
    }

    /// Changes of item `itemID` not under way (waiting, or failed and waiting to be retried) that were
    /// based on version `old` are based on `new` from now on; the others are left alone.
    public func rebase(itemID: String, from old: String, to new: String, except id: Int64) throws {
        try pool.write { db in
            let states = [PendingChange.State.staged.rawValue, PendingChange.State.failed.rawValue]
            for var change in try PendingChange.filter(Column("itemID") == itemID && Column("baseETag") == old && states.contains(Column("state"))).fetchAll(db)
            where change.id != id {
                change.baseETag = new
                change.updatedAt = Date()
                try change.update(db)
            }
        }
    }

    /// Forgets a change whose every step is done.
    public func complete(id: Int64) throws {
        _ = try pool.write { db in try PendingChange.deleteOne(db, key: id) }
    }

    /// Removes the changes whose staged file never became durable (a crash during the `fsync` that
    /// recorded them) and returns them: their bytes were never promised.
    public func discardUnsealed() throws -> [PendingChange] {
        try pool.write { db in
            let unsealed = try PendingChange.filter(Column("sealed") == false).fetchAll(db)
            for change in unsealed { try change.delete(db) }
            return unsealed
        }
    }

    /// The changes of item `itemID`, oldest first (one query by its column, not the whole journal).
    public func changes(of itemID: String) throws -> [PendingChange] {
        try pool.read { db in try PendingChange.filter(Column("itemID") == itemID).order(Column("id")).fetchAll(db) }
    }

    /// Whether a change names staged file `file`.
    public func names(stagedFile file: String) throws -> Bool {
        try pool.read { db in try PendingChange.filter(Column("stagedFile") == file).fetchCount(db) > 0 }
    }

    /// Staged files the journal still needs.
    public func stagedFiles() throws -> Set<String> {
        try pool.read { db in Set(try String.fetchAll(db, sql: "SELECT stagedFile FROM change WHERE stagedFile IS NOT NULL")) }
    }

    public var count: Int {
        get throws { try pool.read { db in try PendingChange.fetchCount(db) } }
    }

    /// The journal's SQLite settings, for tests and `crmfs check`.
    public func pragma(_ name: String) throws -> String? {
        try pool.read { db in try String.fetchOne(db, sql: "PRAGMA \(name)") }
    }
}
