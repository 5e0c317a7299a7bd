import Config
import Foundation
import GRDB
import Namespace

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

    /// Everything kept: the listings (by storage key, encoded; the tree decodes them as it needs them),
    /// the drive's delta link, and the position in the fleet's change log.
    public func load() throws -> (listings: [String: Data], deltaLink: String?, fleetPosition: String?) {
        try pool.read { db in
            var listings: [String: Data] = [:]
            let rows = try Row.fetchCursor(db, sql: "SELECT directory, body FROM listing")
            while let row = try rows.next() { listings[row[0]] = row[1] }
            return (listings, try String.fetchOne(db, sql: "SELECT value FROM feed WHERE name = 'delta'"),
                    try String.fetchOne(db, sql: "SELECT value FROM feed WHERE name = 'fleet'"))
        }
    }

    /// What the last mount learned of the services that does not change between mounts, when it was
    /// learned for a config that asks the same of them (`ServiceFacts.Key`); nil otherwise.
    public func facts(for key: String) throws -> ServiceFacts? {
        guard let text = try pool.read({ db in try String.fetchOne(db, sql: "SELECT value FROM feed WHERE name = 'facts'") }),
              let facts = try? JSONDecoder().decode(ServiceFacts.self, from: Data(text.utf8)), facts.key == key else { return nil }
        return facts
    }

    public func keep(_ facts: ServiceFacts) throws {
        let text = String(decoding: try JSONEncoder().encode(facts), as: UTF8.self)
        try pool.write { db in try db.execute(sql: "INSERT OR REPLACE INTO feed (name, value) VALUES ('facts', ?)", arguments: [text]) }
    }

    /// Forgets the services' facts: the next mount learns them again (and checks the config) before it mounts.
    public func forgetFacts() throws {
        try pool.write { db in try db.execute(sql: "DELETE FROM feed WHERE name = 'facts'") }
    }

    /// Forgets everything kept, so the next mount starts cold (and learns the services' facts again).
    public func forgetAll() throws {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM listing")
            try db.execute(sql: "DELETE FROM feed WHERE name != 'fingerprint'")
        }
    }

    /// Writes changed listings and the feed positions that go with them.
    public func save(_ listings: [DirectoryListing], deltaLink: String?, fleetPosition: String? = nil) throws {
        guard !listings.isEmpty || deltaLink != nil || fleetPosition != nil else { return }
        let bodies = listings.map { ($0.storageKey, $0.encoded()) }
        try pool.write { db in
            for (key, body) in bodies {
                try db.execute(sql: "INSERT OR REPLACE INTO listing (directory, body) VALUES (?, ?)", arguments: [key, body])
            }
            if let deltaLink {
                try db.execute(sql: "INSERT OR REPLACE INTO feed (name, value) VALUES ('delta', ?)", arguments: [deltaLink])
            }
            if let fleetPosition {
                try db.execute(sql: "INSERT OR REPLACE INTO feed (name, value) VALUES ('fleet', ?)", arguments: [fleetPosition])
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
