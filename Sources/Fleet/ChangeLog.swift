import Foundation
import Freshness
import Logging
import PostgresNIO

/// The fleet's change log in PostgreSQL: what changed in the services (identifiers only), numbered, with
/// a `NOTIFY` on `crmfs_changes` for each batch the relay writes; the relay's own positions in the
/// services' feeds; and the schema version. Mounts only read it (their role can do nothing else).
public struct ChangeLog: Sendable {
    public let connection: PostgresConnection
    /// Where the server is, for messages.
    let address: String
    let logger: Logger

    public init(connection: PostgresConnection, address: String, logger: Logger) {
        self.connection = connection
        self.address = address
        self.logger = logger
    }

    /// `body` on the connection, within a deadline (see `Deadline`).
    func timed<T: Sendable>(within limit: Duration = .seconds(10), _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await Deadline.run(connection, address: address, within: limit, body)
    }

    /// Calls `heard` for each announcement of new entries, and once as soon as it listens (entries logged
    /// before that were not announced to it), until the connection ends.
    public func listen(_ heard: @escaping @Sendable () -> Void) async throws {
        try await connection.listen(on: Self.channel) { notifications in
            heard()
            for try await _ in notifications { heard() }
        }
    }

    /// The channel a batch of new entries is announced on (the payload is the newest sequence number).
    public static let channel = "crmfs_changes"

    // MARK: Schema

    /// The schema this crmfs reads and writes. Each migration moves the log one version on.
    public static let schemaVersion = 1
    static let migrations: [Int: [String]] = [
        1: [
            "CREATE TABLE crmfs_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
            // Who this log is: a mount's position means nothing in another database (restored or made anew).
            "CREATE TABLE crmfs_fleet (key text PRIMARY KEY, value text NOT NULL)",
            "INSERT INTO crmfs_fleet (key, value) VALUES ('identity', md5(random()::text || clock_timestamp()::text))",
            """
            CREATE TABLE change_log (
                seq bigserial PRIMARY KEY,
                source text NOT NULL CHECK (source IN ('drive', 'object')),
                scope text NOT NULL,
                kind text NOT NULL CHECK (kind IN ('created', 'changed', 'deleted')),
                item_id text NOT NULL,
                parent_id text,
                changed_at timestamptz NOT NULL,
                logged_at timestamptz NOT NULL DEFAULT now()
            )
            """,
            "CREATE INDEX change_log_logged_at ON change_log (logged_at)",
            "CREATE TABLE relay_position (feed text PRIMARY KEY, position text NOT NULL, caught_up_at timestamptz NOT NULL DEFAULT now())",
        ],
    ]

    /// The schema version the database has; 0 when it has no change log yet.
    public func version() async throws -> Int {
        try await timed {
            let exists = try await connection.query("SELECT to_regclass('crmfs_schema') IS NOT NULL", logger: logger)
            for try await present in exists.decode(Bool.self) where !present { return 0 }
            let rows = try await connection.query("SELECT COALESCE(max(version), 0) FROM crmfs_schema", logger: logger)
            for try await version in rows.decode(Int.self) { return version }
            return 0
        }
    }

    /// The relay's: brings the schema to this version (each migration in a transaction of its own), and
    /// lets `readerRole` read the log. A newer schema than this relay knows is refused.
    public func migrate(readerRole: String?) async throws {
        try await timed(within: .seconds(120)) {
            let current = try await version()
            guard current <= Self.schemaVersion else {
                throw FleetError.schema("the fleet's change log has schema version \(current), newer than this relay knows (\(Self.schemaVersion)): upgrade crmfs here")
            }
            for next in (current + 1)..<(Self.schemaVersion + 1) {
                try await connection.query("BEGIN", logger: logger)
                do {
                    for statement in Self.migrations[next] ?? [] { try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger) }
                    try await connection.query("INSERT INTO crmfs_schema (version) VALUES (\(next))", logger: logger)
                    try await connection.query("COMMIT", logger: logger)
                    logger.info("the change log's schema is at version \(next)")
                } catch {
                    _ = try? await connection.query("ROLLBACK", logger: logger)
                    throw error
                }
            }
            if let readerRole {
                let role = "\"" + readerRole.replacingOccurrences(of: "\"", with: "\"\"") + "\""
                try await connection.query(PostgresQuery(unsafeSQL: "GRANT SELECT ON change_log, crmfs_schema, crmfs_fleet, relay_position TO \(role)"), logger: logger)
            }
        }
    }

    /// A mount's: the schema must be the one it reads.
    public func checkSchema() async throws {
        let found = try await version()
        switch found {
        case 0: throw FleetError.schema("the fleet's database has no change log yet: start the relay (crmfs relay) first")
        case Self.schemaVersion: return
        case ..<Self.schemaVersion:
            throw FleetError.schema("the fleet's change log has schema version \(found), older than this crmfs reads (\(Self.schemaVersion)): upgrade the relay")
        default:
            throw FleetError.schema("the fleet's change log has schema version \(found), newer than this crmfs knows (\(Self.schemaVersion)): upgrade crmfs on this machine")
        }
    }

    /// Whether this connection is encrypted (TLS), as the server sees it.
    public func isEncrypted() async throws -> Bool {
        try await timed {
            let rows = try await connection.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", logger: logger)
            for try await ssl in rows.decode(Bool.self) { return ssl }
            return false
        }
    }

    /// Which log this is (a position is only good in the log that gave it).
    public func identity() async throws -> String {
        try await timed {
            let rows = try await connection.query("SELECT value FROM crmfs_fleet WHERE key = 'identity'", logger: logger)
            for try await value in rows.decode(String.self) { return value }
            throw FleetError.schema("the fleet's change log has no identity: its database was not made by crmfs relay")
        }
    }

    // MARK: Entries

    /// The relay's: adds entries and moves the relay's positions on, in one transaction, and announces them.
    public func append(_ entries: [FeedEntry], positions: [String: String]) async throws {
        try await timed {
            guard !entries.isEmpty || !positions.isEmpty else { return }
            try await connection.query("BEGIN", logger: logger)
            do {
                for entry in entries {
                    let (source, scope) = switch entry.source {
                    case .drive(let drive): ("drive", drive)
                    case .object(let object): ("object", object)
                    }
                    try await connection.query("""
                        INSERT INTO change_log (source, scope, kind, item_id, parent_id, changed_at)
                        VALUES (\(source), \(scope), \(entry.kind.rawValue), \(entry.id), \(entry.parentID), \(entry.changedAt))
                        """, logger: logger)
                }
                for (feed, position) in positions {
                    try await connection.query("""
                        INSERT INTO relay_position (feed, position, caught_up_at) VALUES (\(feed), \(position), now())
                        ON CONFLICT (feed) DO UPDATE SET position = EXCLUDED.position, caught_up_at = now()
                        """, logger: logger)
                }
                // Delivered at commit, and only then: a mount that hears it finds the entries.
                if !entries.isEmpty { try await connection.query(PostgresQuery(unsafeSQL: "NOTIFY \(Self.channel)"), logger: logger) }
                try await connection.query("COMMIT", logger: logger)
            } catch {
                _ = try? await connection.query("ROLLBACK", logger: logger)
                throw error
            }
        }
    }

    /// Entries after `sequence`, oldest first, at most `limit`.
    public func entries(after sequence: Int64, limit: Int = 2000) async throws -> [FeedEntry] {
        try await timed {
            let rows = try await connection.query("""
                SELECT seq, source, scope, kind, item_id, parent_id, changed_at FROM change_log
                WHERE seq > \(sequence) ORDER BY seq LIMIT \(limit)
                """, logger: logger)
            var entries: [FeedEntry] = []
            for try await (seq, source, scope, kind, id, parent, changedAt) in rows.decode((Int64, String, String, String, String, String?, Date).self) {
                guard let kind = FeedEntry.Kind(rawValue: kind) else { continue }
                entries.append(FeedEntry(sequence: seq, source: source == "drive" ? .drive(scope) : .object(scope), kind: kind, id: id,
                                         parentID: parent, changedAt: changedAt))
            }
            return entries
        }
    }

    /// The oldest and newest sequence numbers in the log (0 for none).
    public func bounds() async throws -> (oldest: Int64, newest: Int64) {
        try await timed {
            let rows = try await connection.query("SELECT COALESCE(min(seq), 0), COALESCE(max(seq), 0) FROM change_log", logger: logger)
            for try await bounds in rows.decode((Int64, Int64).self) { return bounds }
            return (0, 0)
        }
    }

    /// The relay's: drops entries logged longer ago than `age` seconds, always keeping the newest (it
    /// tells a mount where the log is).
    @discardableResult
    public func trim(olderThan age: Double) async throws -> Int {
        try await timed {
            let cutoff = Date().addingTimeInterval(-age)
            let rows = try await connection.query("""
                WITH gone AS (DELETE FROM change_log WHERE logged_at < \(cutoff) AND seq < (SELECT max(seq) FROM change_log) RETURNING 1)
                SELECT count(*) FROM gone
                """, logger: logger)
            for try await count in rows.decode(Int.self) { return count }
            return 0
        }
    }

    /// Takes the session-level advisory lock `key` if no other session holds it.
    public func tryAdvisoryLock(_ key: Int64) async throws -> Bool {
        try await timed {
            let rows = try await connection.query("SELECT pg_try_advisory_lock(\(key))", logger: logger)
            for try await held in rows.decode(Bool.self) { return held }
            return false
        }
    }

    /// The relay's positions in the services' feeds, and when each last caught up.
    public func positions() async throws -> [String: (position: String, caughtUp: Date)] {
        try await timed {
            let rows = try await connection.query("SELECT feed, position, caught_up_at FROM relay_position", logger: logger)
            var positions: [String: (position: String, caughtUp: Date)] = [:]
            for try await (feed, position, caughtUp) in rows.decode((String, String, Date).self) { positions[feed] = (position, caughtUp) }
            return positions
        }
    }
}
