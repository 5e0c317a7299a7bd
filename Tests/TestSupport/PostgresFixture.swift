import Foundation

/// A PostgreSQL cluster for the fleet's tests, made by `packaging/test-postgres.sh` (a temporary directory,
/// 127.0.0.1, password authentication, no system service). `.ci/run` starts one for the whole run and
/// names it in `CRMFS_TEST_POSTGRES` (`DIR:PORT`); without it, the first test that needs one starts one for
/// this process, stopped when the process exits. A test that stops and starts PostgreSQL makes its own.
public final class PostgresFixture: Sendable {
    public let directory: String
    public let port: Int

    private init(directory: String, port: Int) {
        self.directory = directory
        self.port = port
    }

    /// The cluster every test shares (each takes a database and roles of its own: `makeFleet`).
    public static func shared() async throws -> PostgresFixture {
        try await SharedCluster.instance.get()
    }

    /// A cluster of the caller's own; `stop()` it when done.
    public static func start() async throws -> PostgresFixture {
        var lastError = ""
        for _ in 0..<5 {
            let port = Int.random(in: 20_000..<32_000)  // below the ephemeral ports sandboxes and clients get
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("crmfs-pg-\(UUID().uuidString)").path
            let started = try await Tools.run(script, ["start", directory, "\(port)"], timeLimit: .seconds(120))
            if started.status == 0 { return PostgresFixture(directory: directory, port: port) }
            lastError = started.errors + ((try? String(contentsOfFile: "\(directory)/server.log", encoding: .utf8)) ?? "")
            _ = try? await Tools.run(script, ["stop", directory])
            try? FileManager.default.removeItem(atPath: directory)
        }
        throw MountFailure(message: "PostgreSQL did not start: \(lastError)")
    }

    /// Stops the server (fast shutdown: connections are cut), keeping its data.
    public func stop() async throws {
        _ = try await Tools.run(Self.script, ["stop", directory], timeLimit: .seconds(60))
    }

    /// Starts the stopped server again on the same port.
    public func restart() async throws {
        let started = try await Tools.run(Self.script, ["restart", directory, "\(port)"], timeLimit: .seconds(60))
        guard started.status == 0 else { throw MountFailure(message: "PostgreSQL did not start again: \(started.errors)") }
    }

    /// The certificate of the CA that signed the server's (the cluster offers TLS, as a real one would).
    public var certificateAuthority: String { "\(directory)/ca.pem" }

    /// Stops the server and removes its directory.
    public func remove() async {
        try? await stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Runs `sql` as the superuser; psql's output (tuples only, unaligned).
    @discardableResult
    public func psql(_ sql: String, database: String = "postgres") async throws -> String {
        let result = try await psql(sql, as: "postgres", passwordFile: "\(directory)/password", database: database)
        guard result.status == 0 else { throw MountFailure(message: "psql: \(sql): \(result.errors)") }
        return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Runs `sql` as `user` (whose password is in `passwordFile`), whatever it answers.
    func psql(_ sql: String, as user: String, passwordFile: String, database: String) async throws -> Tools.Result {
        let password = try String(contentsOfFile: passwordFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        return try await Tools.run("/usr/bin/env", ["PGPASSWORD=\(password)", "psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
                                                    "-h", "127.0.0.1", "-p", "\(port)", "-U", user, "-d", database, "-c", sql],
                                   timeLimit: .seconds(60))
    }

    /// A database and two roles of its own: the relay's (owner, writes the log) and the mounts' (reads
    /// it, nothing else), with their passwords in 0600 files in `directory`.
    public func makeFleet(in directory: URL) async throws -> FleetDatabaseFixture {
        let name = "fleet_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(12).lowercased()
        let fleet = FleetDatabaseFixture(cluster: self, database: name, relayRole: "\(name)_relay", mountRole: "\(name)_mount",
                                         relayPasswordFile: directory.appendingPathComponent("\(name)-relay-password").path,
                                         mountPasswordFile: directory.appendingPathComponent("\(name)-mount-password").path)
        for (role, file) in [(fleet.relayRole, fleet.relayPasswordFile), (fleet.mountRole, fleet.mountPasswordFile)] {
            let password = UUID().uuidString
            FileManager.default.createFile(atPath: file, contents: Data(password.utf8), attributes: [.posixPermissions: 0o600])
            try await psql("CREATE ROLE \(role) LOGIN PASSWORD '\(password)'")
        }
        try await psql("CREATE DATABASE \(name) OWNER \(fleet.relayRole)")
        try await psql("REVOKE ALL ON DATABASE \(name) FROM PUBLIC")
        try await psql("GRANT CONNECT ON DATABASE \(name) TO \(fleet.mountRole)")
        return fleet
    }

    static var script: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("packaging/test-postgres.sh").path
    }
}

/// One fleet's database on a test cluster, and the `[fleet]` sections that reach it.
public struct FleetDatabaseFixture: Sendable {
    public let cluster: PostgresFixture
    public let database: String
    public let relayRole: String
    public let mountRole: String
    public let relayPasswordFile: String
    public let mountPasswordFile: String

    /// `[fleet]` for the relay (which grants the mounts' role read access).
    public var relaySection: String {
        section(user: relayRole, passwordFile: relayPasswordFile) + "reader_role = \"\(mountRole)\"\n"
    }

    /// `[fleet]` for a mount.
    public var mountSection: String { section(user: mountRole, passwordFile: mountPasswordFile) }

    /// Runs `sql` in the fleet's database as the mounts' role, as a mount's credentials would let anyone.
    public func psqlAsMount(_ sql: String) async throws -> Tools.Result {
        try await cluster.psql(sql, as: mountRole, passwordFile: mountPasswordFile, database: database)
    }

    private func section(user: String, passwordFile: String) -> String {
        """

        [fleet]
        host = "127.0.0.1"
        port = \(cluster.port)
        database = "\(database)"
        user = "\(user)"
        password_file = "\(passwordFile)"
        ca_file = "\(cluster.certificateAuthority)"

        """
    }
}

/// The process's shared cluster: the run's (`CRMFS_TEST_POSTGRES`) or one started on first use.
private actor SharedCluster {
    static let instance = SharedCluster()
    private var cluster: PostgresFixture?

    func get() async throws -> PostgresFixture {
        if let cluster { return cluster }
        let made: PostgresFixture
        if let named = ProcessInfo.processInfo.environment["CRMFS_TEST_POSTGRES"], let colon = named.lastIndex(of: ":"),
           let port = Int(named[named.index(after: colon)...]) {
            made = PostgresFixture.existing(directory: String(named[..<colon]), port: port)
        } else {
            made = try await PostgresFixture.start()
            let stop = "\(PostgresFixture.script) stop '\(made.directory)' >/dev/null 2>&1; rm -rf '\(made.directory)'"
            SharedCluster.stopAtExit = stop
            atexit { if let command = SharedCluster.stopAtExit { _ = system(command) } }
        }
        cluster = made
        return made
    }

    nonisolated(unsafe) static var stopAtExit: String?
}

extension PostgresFixture {
    fileprivate static func existing(directory: String, port: Int) -> PostgresFixture { PostgresFixture(directory: directory, port: port) }
}
