import Config
import Foundation
import GRDB
import Namespace
import Synchronization

/// The tree's listings and the change feeds' positions, kept in the state directory (`metadata.sqlite`)
/// so a remount shows the last known tree at once and catches up from where the feeds stopped. A cache:
/// losing it costs a cold mount, never data (that is the journal's job). Listings and the drive's delta link
/// are written in one transaction, the link read before the listings, so the kept link is never newer
/// than the kept tree (an older one only replays changes, which applying again does no harm).
/// The kept tree belongs to one configuration: a config that shows it differently starts afresh.
public final class MetadataStore: Sendable {
    private let pool: DatabasePool
    private let fingerprint: String

    public init(path: String, config: MountConfig) throws {
        fingerprint = Self.fingerprint(of: config)
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        let previous = umask(0o077)
        defer { umask(previous) }
        pool = try DatabasePool(path: path, configuration: configuration)
        try Self.migrator.migrate(pool)
        for file in [path, path + "-wal", path + "-shm"] { chmod(file, 0o600) }
        try pool.write { db in
            let kept = try String.fetchOne(db, sql: "SELECT value FROM feed WHERE name = 'fingerprint'")
            if kept != fingerprint {
                try db.execute(sql: "DELETE FROM listing")
                try db.execute(sql: "DELETE FROM feed")
                try db.execute(sql: "INSERT INTO feed (name, value) VALUES ('fingerprint', ?)", arguments: [fingerprint])
            }
        }
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "listing") { table in
                table.primaryKey("directory", .text)
                table.column("body", .blob).notNull()
            }
            try db.create(table: "feed") { table in
                table.primaryKey("name", .text)
                table.column("value", .text).notNull()
            }
        }
        return migrator
    }

    /// What decides how the kept tree looks: the library and each object's query, names and folders.
    static func fingerprint(of config: MountConfig) -> String {
        var parts = [config.graph.siteHostname, config.graph.sitePath, config.graph.library, config.salesforce.instanceURL]
        for object in config.objects {
            parts += [object.object, object.directory, object.nameTemplate, object.filter ?? "", object.folderTemplate ?? "",
                      object.fields.joined(separator: ","), object.mappings.map(\.crmField).joined(separator: ",")]
        }
        return parts.joined(separator: "\u{1F}")
    }

    /// Everything kept: the listings, the drive's delta link.
    public func load() throws -> (listings: [DirectoryListing], deltaLink: String?) {
        let (bodies, link) = try pool.read { db in
            (try Data.fetchAll(db, sql: "SELECT body FROM listing"), try String.fetchOne(db, sql: "SELECT value FROM feed WHERE name = 'delta'"))
        }
        return (Self.decode(bodies), link)
    }

    /// Tens of thousands of listings: decoded on every core, a slice each.
    private static func decode(_ bodies: [Data]) -> [DirectoryListing] {
        let slices = max(1, min(ProcessInfo.processInfo.activeProcessorCount, bodies.count / 256))
        let decoded = Mutex([[DirectoryListing]](repeating: [], count: slices))
        DispatchQueue.concurrentPerform(iterations: slices) { slice in
            let decoder = JSONDecoder()
            let range = stride(from: slice, to: bodies.count, by: slices)
            let listings = range.compactMap { try? decoder.decode(DirectoryListing.self, from: bodies[$0]) }
            decoded.withLock { $0[slice] = listings }
        }
        return decoded.withLock { $0.flatMap { $0 } }
    }

    /// Writes changed listings and the delta link that goes with them.
    public func save(_ listings: [DirectoryListing], deltaLink: String?) throws {
        guard !listings.isEmpty || deltaLink != nil else { return }
        let encoder = JSONEncoder()
        let bodies = try listings.map { ($0.storageKey, try encoder.encode($0)) }
        try pool.write { db in
            for (key, body) in bodies {
                try db.execute(sql: "INSERT OR REPLACE INTO listing (directory, body) VALUES (?, ?)", arguments: [key, body])
            }
            if let deltaLink {
                try db.execute(sql: "INSERT OR REPLACE INTO feed (name, value) VALUES ('delta', ?)", arguments: [deltaLink])
            }
        }
    }

    /// Drops listings a restore found no place for (folders and records gone since).
    public func keepOnly(_ keys: Set<String>) throws {
        try pool.write { db in
            let all = try String.fetchAll(db, sql: "SELECT directory FROM listing")
            for key in all where !keys.contains(key) {
                try db.execute(sql: "DELETE FROM listing WHERE directory = ?", arguments: [key])
            }
        }
    }
}
