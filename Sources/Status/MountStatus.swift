import Foundation

/// What a running mount says of itself: who it is signed in as, what it is sending, what waits or went
/// wrong, how fresh it is, what it spends of the services' budgets and of its cache. The daemon answers
/// it on its status socket; `crmfs status` shows it, or prints it as JSON for scripts (these field names).
public struct MountStatus: Codable, Sendable, Equatable {
    public struct SignIn: Codable, Sendable, Equatable {
        /// `graph` or `salesforce`.
        public var service: String
        /// `user` (the user's own sign-in) or `app` (the config's client credentials).
        public var kind: String
        /// Who, when known (the account `crmfs login` signed in as).
        public var account: String?
        /// Why it does not work now (revoked, expired); nil while it works.
        public var problem: String?

        public init(service: String, kind: String, account: String?, problem: String?) {
            self.service = service
            self.kind = kind
            self.account = account
            self.problem = problem
        }
    }

    public struct Upload: Codable, Sendable, Equatable {
        public var name: String
        public var bytesSent: Int64
        public var bytes: Int64
        public var bytesPerSecond: Double?
        public var secondsLeft: Double?

        public init(name: String, bytesSent: Int64, bytes: Int64, bytesPerSecond: Double?, secondsLeft: Double?) {
            self.name = name
            self.bytesSent = bytesSent
            self.bytes = bytes
            self.bytesPerSecond = bytesPerSecond
            self.secondsLeft = secondsLeft
        }
    }

    public struct Problem: Codable, Sendable, Equatable {
        public var name: String
        public var reason: String

        public init(name: String, reason: String) {
            self.name = name
            self.reason = reason
        }
    }

    public var mountpoint: String
    public var config: String
    public var stateDirectory: String
    public var pid: Int32
    public var mountedAt: Date
    public var readOnly: Bool
    public var signIns: [SignIn]
    public var uploads: [Upload]
    /// Changes recorded and not sent yet (uploads under way included).
    public var waiting: Int
    /// Local copies kept in the state directory's `conflicts/` (remote-wins conflicts, refused changes).
    public var conflicts: [String]
    /// Changes that gave up after retries or that the service refused.
    public var failed: [Problem]
    /// When the library's change feed and the CRM's last caught up.
    public var libraryCaughtUp: Date?
    public var crmCaughtUp: Date?
    /// With a fleet: how the mount learns of changes (`following the fleet's change feed …` or
    /// `polling on its own: REASON`); nil for a mount without one.
    public var fleet: String?
    /// Graph resource units spent in the last minute, and the configured budget (nil when not paced).
    public var graphUnitsLastMinute: Int?
    public var graphUnitsPerMinute: Int?
    /// Salesforce API calls used today and the org's daily allowance, as its last answer said.
    public var salesforceCallsToday: Int?
    public var salesforceDailyLimit: Int?
    public var cacheBytes: Int64
    public var cacheLimit: Int64

    public init(mountpoint: String, config: String, stateDirectory: String, pid: Int32, mountedAt: Date, readOnly: Bool,
                signIns: [SignIn], uploads: [Upload], waiting: Int, conflicts: [String], failed: [Problem],
                libraryCaughtUp: Date?, crmCaughtUp: Date?, graphUnitsLastMinute: Int?, graphUnitsPerMinute: Int?,
                salesforceCallsToday: Int?, salesforceDailyLimit: Int?, cacheBytes: Int64, cacheLimit: Int64) {
        self.mountpoint = mountpoint
        self.config = config
        self.stateDirectory = stateDirectory
        self.pid = pid
        self.mountedAt = mountedAt
        self.readOnly = readOnly
        self.signIns = signIns
        self.uploads = uploads
        self.waiting = waiting
        self.conflicts = conflicts
        self.failed = failed
        self.libraryCaughtUp = libraryCaughtUp
        self.crmCaughtUp = crmCaughtUp
        self.graphUnitsLastMinute = graphUnitsLastMinute
        self.graphUnitsPerMinute = graphUnitsPerMinute
        self.salesforceCallsToday = salesforceCallsToday
        self.salesforceDailyLimit = salesforceDailyLimit
        self.cacheBytes = cacheBytes
        self.cacheLimit = cacheLimit
    }

    /// The JSON both ends speak: ISO 8601 dates, sorted keys (stable for scripts and diffs).
    public static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }

    public static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }

    /// The socket's name in the state directory.
    public static let socketName = "status.sock"
}
