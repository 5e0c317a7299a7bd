import Foundation
import HTTP

/// Where a secret comes from. The value itself is read only when a client is built.
public enum SecretSource: Sendable, Equatable {
    /// A file that must be 0600 or stricter; relative paths are resolved against the config file.
    case file(String)
    case environment(String)
}

public struct SalesforceSettings: Sendable {
    public enum Auth: Sendable, Equatable {
        case clientCredentials(secret: SecretSource)
        case refreshToken(tokenFile: String, secret: SecretSource?)
        /// Each user signs in as themselves with `crmfs login` (the device flow); the refresh token it gives
        /// is kept in the state directory (`refreshTokenFile(.salesforce)`).
        case deviceCode

        /// Whether the app signs in as itself.
        public var isClientCredentials: Bool { if case .clientCredentials = self { true } else { false } }
    }

    /// The org's My Domain URL (client credentials require it); the token's `instance_url` wins afterwards.
    public var instanceURL: String
    public var apiVersion: String
    public var clientID: String
    public var auth: Auth
    /// The org's session timeout, if known: tokens are refreshed ahead of it. Otherwise on 401.
    public var sessionTimeout: Double?
    /// A PEM file of the certificate authorities to trust for this service instead of the system's.
    public var caFile: String? = nil
}

public struct GraphSettings: Sendable {
    public enum Auth: Sendable, Equatable {
        /// The app itself (a service account): its client secret.
        case clientCredentials(secret: SecretSource)
        /// Each user signs in as themselves with `crmfs login` (the device flow); the refresh token it gives
        /// is kept in the state directory (`refreshTokenFile(.graph)`).
        case deviceCode

        /// Whether the app signs in as itself.
        public var isClientCredentials: Bool { if case .clientCredentials = self { true } else { false } }
    }

    public var authority: String
    public var endpoint: String
    public var tenant: String
    public var clientID: String
    public var auth: Auth
    /// `contoso.sharepoint.com`
    public var siteHostname: String
    /// `/sites/Sales`
    public var sitePath: String
    /// The document library's name, e.g. `Documents`.
    public var library: String
    /// A PEM file of the certificate authorities to trust for this service instead of the system's.
    public var caFile: String? = nil
    /// The app's SharePoint budget in resource units a minute (crmfs paces itself to most of it); 0: no pacing.
    public var resourceUnitsPerMinute = 1200
}

public struct CacheSettings: Sendable {
    public var directory: String
    public var size: Int64
    public var blockSize: Int64
}

public enum LinkModel: String, Sendable, CaseIterable {
    case folder
    case filesConnect = "files-connect"
    case linkObject = "link-object"
}

/// What to do when a document changed remotely between a user's open and close.
public enum ConflictPolicy: String, Sendable, CaseIterable {
    /// Upload the local copy beside the remote one, as `NAME (conflict DATE HOST).EXT`.
    case keepBoth = "keep-both"
    /// Overwrite the remote change with the local copy.
    case localWins = "local-wins"
    /// Keep the remote document; the local copy is kept in the state directory only.
    case remoteWins = "remote-wins"
}

/// How a CRM value becomes a SharePoint column value.
public enum FieldTransform: String, Sendable, CaseIterable {
    /// The value's text, unchanged.
    case text
    /// A lookup field's record Id (the 18-character form).
    case lookupID = "lookup-id"
    /// A date as `YYYY-MM-DD`.
    case date
    /// A date and time in ISO 8601, UTC.
    case dateTime = "datetime"
    case number
    case boolean
}

public struct FieldMapping: Sendable, Equatable {
    public var crmField: String
    public var spColumn: String
    public var transform: FieldTransform?

    public init(crmField: String, spColumn: String, transform: FieldTransform? = nil) {
        self.crmField = crmField
        self.spColumn = spColumn
        self.transform = transform
    }
}

public struct ObjectSettings: Sendable {
    public var object: String
    public var directory: String
    /// Record directory names: `{Name}`, `{CaseNumber} {Subject}`.
    public var nameTemplate: String
    /// An optional SOQL condition (without WHERE) limiting which records appear.
    public var filter: String?
    public var fields: [String]
    public var link: LinkModel
    /// For the folder model: where a record's documents live in the library, e.g. `Accounts/{Name} ({Id})`.
    public var folderTemplate: String?
    /// CRM fields stamped into SharePoint columns (the shape of a `{crmEntity, crmIdField, mappings, conflictPolicy}` mapping).
    public var mappings: [FieldMapping]
    /// The field holding the record's id (the mapping's `crmIdField`); `Id` in Salesforce.
    public var idField: String
    public var conflictPolicy: ConflictPolicy
    /// Fields of `fields` that `setfattr -n user.crm.FIELD` may change in Salesforce; none by default.
    public var writableFields: [String] = []
}

/// How written documents are sent.
public struct WritebackSettings: Sendable, Equatable {
    /// Upload session fragment size: a multiple of 320 KiB. Each fragment costs a round trip on top of its
    /// bytes, so large ones (Graph takes up to 60 MiB) keep a 100 ms service from slowing a big file down.
    public var fragmentSize: Int64 = 50 << 20
    /// Files up to this size go in one PUT; larger ones (and any whose mtime must travel) in a session.
    public var simpleUploadMax: Int64 = 4 << 20
    /// Documents sent at once. Each costs a few round trips, so the service's latency, not the bytes,
    /// sets how fast many small files go: 20 keeps a 100 ms service busy, and a wave of them has its
    /// columns stamped in two full `$batch` calls.
    public var uploads = 20
    /// File name patterns kept on local disk (nil: crmfs's defaults for editors' and rsync's temporary files).
    public var localOnly: [String]?

    public init() {}
}

/// How soon remote changes show: the change feeds' intervals.
public struct FreshnessSettings: Sendable, Equatable {
    /// Seconds between two reads of the library's delta; 0 turns the feed off.
    public var drivePoll: Double = 5
    /// Seconds between two polls of the CRM's changed and deleted records (every listed object in one call); 0: off.
    public var crmPoll: Double = 60

    public init(drivePoll: Double = 5, crmPoll: Double = 60) {
        self.drivePoll = drivePoll
        self.crmPoll = crmPoll
    }

    /// Whether every kind of remote change reaches the mount through a feed, so the kernel may trust what it caches for long.
    public var feedsEverything: Bool { drivePoll > 0 && crmPoll > 0 }
}

/// A parsed and validated mount.conf.
public struct MountConfig: Sendable {
    public var path: String
    public var salesforce: SalesforceSettings
    public var graph: GraphSettings
    public var cache: CacheSettings
    public var writeback: WritebackSettings
    public var freshness = FreshnessSettings()
    public var objects: [ObjectSettings]
    /// Where the Prometheus metrics are served; nil (the default) serves none.
    public var metrics: MetricsListener?
    /// The fleet's shared change log: with it a mount follows the relay's feed instead of polling.
    public var fleet: FleetSettings?

    /// Resolves a path from the config relative to the config file's directory.
    public func resolve(_ relative: String) -> String {
        if relative.hasPrefix("/") { return relative }
        return URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent(relative).standardizedFileURL.path
    }
}

/// `[fleet]`: the PostgreSQL database holding the fleet's change log (see docs/fleet.md).
public struct FleetSettings: Sendable, Equatable {
    public enum TLSMode: String, Sendable, CaseIterable {
        /// TLS when the server offers it (PostgreSQL's `sslmode=prefer`): the default for loopback and sockets
        /// only, since a server (or anyone in between) that declines TLS would get the password in the clear.
        case prefer
        /// TLS or no connection, the server's certificate checked: the default for every other host.
        case require
        /// Never TLS: for a socket or loopback.
        case disable
    }

    /// A host name or address; a path (starting with `/`) is the directory of the server's Unix socket.
    public var host: String
    public var port = 5432
    public var database = "crmfs"
    public var user: String
    /// The role's password; nil for a role that needs none (peer or trust authentication on a socket).
    public var password: SecretSource?
    /// `require` unless the host is this machine (`FleetSettings.defaultTLS(host:)`).
    public var tls: TLSMode
    /// CA certificates (PEM) the server's certificate is checked against; the system's without it.
    public var caFile: String?
    /// The relay's: how long entries stay in the log. A mount away longer catches up on its own.
    public var retention: Double = 7 * 86_400
    /// The relay's: the role mounts connect as, given read access to the log by the relay's migrations.
    public var readerRole: String?

    public init(host: String, user: String) {
        self.host = host
        self.user = user
        self.tls = Self.defaultTLS(host: host)
    }

    /// Whether `host` is this machine: a Unix socket's directory, `localhost`, 127.0.0.0/8 or ::1.
    public static func isLocal(host: String) -> Bool { host.hasPrefix("/") || Loopback.isLoopback(host: host) }

    /// `prefer` for this machine, `require` for any other host: the password never crosses the network
    /// where a server (or anyone in between) could decline TLS.
    public static func defaultTLS(host: String) -> TLSMode { isLocal(host: host) ? .prefer : .require }

    /// Why `tls` may not be used with `password` to `host`, or nil: a password goes to another machine only
    /// over TLS that cannot be declined.
    public var cleartextPasswordProblem: String? {
        guard tls != .require, password != nil, !Self.isLocal(host: host) else { return nil }
        let how = tls == .disable ? "\"disable\" would send" : "\"prefer\" would send, whenever the server or anyone in between declines TLS,"
        return "\(how) the password to \(host) unencrypted; use require (prefer and disable are for loopback and sockets)"
    }

    /// Where the server listens, for messages.
    public var address: String { host.hasPrefix("/") ? "\(host)/.s.PGSQL.\(port)" : "\(host):\(port)" }
}

/// Where a mount serves its metrics: this machine only.
public enum MetricsListener: Sendable, Equatable {
    /// A Unix socket (0600); a relative path is in the state directory.
    case unixSocket(String)
    /// A loopback address and port.
    case tcp(host: String, port: Int)
}

/// A config problem: which file, where, which key, and what is wrong.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var line: Int?
    public var key: String?
    public var message: String

    public init(file: String, line: Int?, key: String?, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    public var description: String {
        var text = file
        if let line { text += ":\(line)" }
        text += ": "
        if let key { text += "\(key): " }
        return text + message
    }
}

public enum Durations {
    /// `90`, `90s`, `15m`, `2h`, `1d` as seconds.
    public static func parse(_ text: String) -> Double? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        if let last = trimmed.last, let unit = units[last], let value = Double(trimmed.dropLast()), value >= 0 { return value * unit }
        if let value = Double(trimmed), value >= 0 { return value }
        return nil
    }
}

/// The services a user signs in to.
public enum SignInService: String, Sendable, CaseIterable {
    case graph, salesforce

    /// How the service is named to a user.
    public var displayName: String { self == .graph ? "Microsoft 365 (SharePoint)" : "Salesforce" }
}

extension MountConfig {
    /// The services this config signs in to as the user (`auth = "device-code"`), in the order `crmfs login` asks.
    public var userSignIns: [SignInService] {
        var services: [SignInService] = []
        if case .deviceCode = graph.auth { services.append(.graph) }
        if case .deviceCode = salesforce.auth { services.append(.salesforce) }
        return services
    }

    /// Whether the CRM is reached as a person (a refresh token or `crmfs login`) rather than as the
    /// integration user: then records carry what that person may do with them.
    public var salesforceSignsInAsUser: Bool {
        if case .clientCredentials = salesforce.auth { return false }
        return true
    }

    /// Where a user's sign-ins are kept: `credentials/` in the state directory (0700, files 0600).
    public var credentialsDirectory: String { (resolve(cache.directory) as NSString).appendingPathComponent("credentials") }

    /// The file naming the account the user signed in to `service` as (what `crmfs login` was told).
    public func accountFile(_ service: SignInService) -> String {
        (credentialsDirectory as NSString).appendingPathComponent("\(service.rawValue)-account")
    }

    /// The file holding the refresh token of the user's sign-in to `service`.
    public func refreshTokenFile(_ service: SignInService) -> String {
        (credentialsDirectory as NSString).appendingPathComponent("\(service.rawValue)-refresh-token")
    }
}
