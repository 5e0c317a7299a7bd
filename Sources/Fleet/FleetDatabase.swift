import Config
import Foundation
import HTTP
import Logging
import NIOSSL
import PostgresNIO

/// Connections to the fleet's PostgreSQL database as `[fleet]` describes it: TLS always (the default for any
/// host but this machine), where the server offers it (loopback's default), or never (loopback and sockets
/// only when there is a password), the role's password from a 0600 file or the environment.
public struct FleetDatabase: Sendable {
    public let settings: FleetSettings
    private let configuration: PostgresConnection.Configuration
    private let logger: Logger

    /// Reads the password and the CA file now: a problem with either is a config error naming the key.
    public init(config: MountConfig, settings: FleetSettings, logger: Logger = Logger(label: "crmfs.fleet")) throws {
        self.settings = settings
        self.logger = logger
        // The loader refuses it already; settings made otherwise are held to the same rule.
        if let problem = settings.cleartextPasswordProblem {
            throw ConfigError(file: config.path, line: nil, key: "fleet.tls", message: problem)
        }
        let password: String?
        do {
            switch settings.password {
            case .file(let path)?: password = try Secret.load(file: config.resolve(path)).exposedValue
            case .environment(let name)?: password = try Secret.load(environment: name).exposedValue
            case nil: password = nil
            }
        } catch {
            let key = settings.password.map { if case .file = $0 { "fleet.password_file" } else { "fleet.password_env" } }
            throw ConfigError(file: config.path, line: nil, key: key, message: "\(error)")
        }
        if settings.host.hasPrefix("/") {
            configuration = PostgresConnection.Configuration(unixSocketPath: "\(settings.host)/.s.PGSQL.\(settings.port)", username: settings.user,
                                                             password: password, database: settings.database)
        } else {
            var tls = TLSConfiguration.makeClientConfiguration()
            if let caFile = settings.caFile { tls.trustRoots = .file(config.resolve(caFile)) }
            let mode: PostgresConnection.Configuration.TLS
            do {
                switch settings.tls {
                case .disable: mode = .disable
                case .prefer: mode = .prefer(try NIOSSLContext(configuration: tls))
                case .require: mode = .require(try NIOSSLContext(configuration: tls))
                }
            } catch {
                throw ConfigError(file: config.path, line: nil, key: "fleet.ca_file", message: "cannot use the CA certificates: \(error)")
            }
            var configuration = PostgresConnection.Configuration(host: settings.host, port: settings.port, username: settings.user,
                                                                 password: password, database: settings.database, tls: mode)
            configuration.options.connectTimeout = .seconds(5)
            self.configuration = configuration
        }
    }

    /// A new connection; the caller closes it.
    public func connect() async throws -> PostgresConnection {
        do {
            return try await PostgresConnection.connect(configuration: configuration, id: Int.random(in: 1...Int(Int32.max)), logger: logger)
        } catch {
            throw FleetError.unreachable(address: settings.address, reason: Self.describe(error))
        }
    }

    /// The change log on a new connection, for as long as `body` runs; the connection is closed after it.
    public func withChangeLog<T>(_ body: (ChangeLog) async throws -> T) async throws -> T {
        let connection = try await connect()
        defer { Self.discard(connection) }
        return try await body(ChangeLog(connection: connection, address: settings.address, logger: logger))
    }

    /// Closes a connection that is done with (or broken) without waiting: one the server dropped may never
    /// answer. It is kept until the close completes (a connection must be closed before it goes).
    public static func discard(_ connection: PostgresConnection) {
        (connection.close() as EventLoopFuture<Void>).whenComplete { _ in withExtendedLifetime(connection) {} }
    }

    /// What went wrong, in a line: PostgreSQL's own message where there is one.
    public static func describe(_ error: Error) -> String {
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] { return message }
            // A refused certificate, a reset connection: what lies under postgres-nio's code says it.
            if let underlying = error.underlying { return "\(error.code) (\(underlying))" }
            return "\(error.code)"
        }
        return "\(error)"
    }
}

/// The fleet's database could not be used (or followed).
public enum FleetError: Error, CustomStringConvertible, Equatable {
    case unreachable(address: String, reason: String)
    /// The change log's schema is not one this crmfs knows.
    case schema(String)
    /// The log, or the details of its changes, could not be read round after round: a mount polls on its own.
    case stalled(String)

    public var description: String {
        switch self {
        case .unreachable(let address, let reason): "PostgreSQL at \(address) cannot be reached: \(reason)"
        case .schema(let message): message
        case .stalled(let message): message
        }
    }
}
