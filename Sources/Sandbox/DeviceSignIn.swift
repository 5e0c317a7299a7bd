import Foundation

/// A person of the demo tenant, who signs in with a device code (docs/wire-facts.md E1, S1).
public struct SandboxUser: Sendable, Equatable {
    /// What a tester types to approve a code as this user (`sam`).
    public var name: String
    public var displayName: String
    public var title: String
    /// The Entra sign-in name (`sam.rivera@contoso.onmicrosoft.com`).
    public var userPrincipalName: String
    /// The user's Salesforce User Id (`005…`).
    public var salesforceUserID: String
    /// What the user may reach, in Salesforce and in SharePoint (see `Sharing`).
    public var role: Role

    public enum Role: String, Sendable {
        /// Owns half the accounts and opportunities; reads every account and case.
        case salesRep
        /// Owns and edits every case; reads accounts; sees no opportunity not shared with them.
        case supportAgent
        /// Sees and edits everything (Salesforce "Modify All Data"; a SharePoint site owner).
        case manager
    }

    /// The demo tenant's people: a sales rep, a support agent and their manager.
    public static func demo(domain: String) -> [SandboxUser] {
        [("sam", "Sam Rivera", "Sales Representative", 2, Role.salesRep), ("sky", "Sky Chen", "Support Agent", 3, .supportAgent),
         ("morgan", "Morgan Lee", "Sales Manager", 4, .manager)].map {
            SandboxUser(name: $0.0, displayName: $0.1, title: $0.2,
                        userPrincipalName: $0.1.lowercased().replacingOccurrences(of: " ", with: ".") + "@" + domain,
                        salesforceUserID: SalesforceID.make(prefix: "005", serial: $0.3), role: $0.4)
        }
    }

    /// The demo users by Salesforce User Id (the domain does not matter for that).
    static func demo(salesforceUserID id: String) -> SandboxUser? {
        demo(domain: "").first { $0.salesforceUserID == id }
    }
}

/// The device sign-ins in progress and the refresh tokens they led to, for both services. A device code
/// waits for a user to approve its user code (on the verification page, through the admin call, or at
/// once as the user `autoApprove` names); refresh tokens belong to a user until revoked.
final class DeviceSignIns: @unchecked Sendable {
    enum Service: String, Sendable { case entra, salesforce }

    struct Pending {
        var service: Service
        var clientID: String
        var scope: String
        var userCode: String
        var expires: Date
        var lastPoll: Date?
        var approvedBy: SandboxUser?
        var declined = false
    }

    enum Poll {
        case pending, slowDown, declined, expired, unknown
        case approved(SandboxUser, scope: String)
    }

    struct Grant {
        var service: Service
        var clientID: String
        var scope: String
        var user: SandboxUser
    }

    let users: [SandboxUser]
    let interval: Int
    let lifetime: TimeInterval
    private let autoApprove: SandboxUser?
    private let lock = NSLock()
    private var pending: [String: Pending] = [:]  // by device code
    private var refreshTokens: [String: Grant] = [:]
    private let announce: @Sendable (String) -> Void

    init(users: [SandboxUser], interval: Int, lifetime: TimeInterval = 900, autoApprove: String?, announce: @escaping @Sendable (String) -> Void) {
        self.users = users
        self.interval = interval
        self.lifetime = lifetime
        self.autoApprove = autoApprove.flatMap { name in users.first { $0.name == name } }
        self.announce = announce
    }

    func user(named name: String) -> SandboxUser? { users.first { $0.name == name.lowercased() } }

    /// Starts a sign-in; returns the device code and the user code.
    func start(_ service: Service, clientID: String, scope: String, verificationURI: String) -> (deviceCode: String, userCode: String) {
        let deviceCode = (service == .entra ? "DAQABAAEAAAD" : "M0Q") + SandboxCredentials.token(service == .entra ? 120 : 80)
        let letters = Array("BCDFGHJKLMNPQRSTVWXZ23456789")
        var generator = SystemRandomNumberGenerator()
        let userCode = String((0..<(service == .entra ? 9 : 8)).map { _ in letters[Int(generator.next() % UInt64(letters.count))] })
        lock.withLock {
            pending = pending.filter { $0.value.expires > Date() }
            pending[deviceCode] = Pending(service: service, clientID: clientID, scope: scope, userCode: userCode,
                                          expires: Date().addingTimeInterval(lifetime), approvedBy: autoApprove)
        }
        if let autoApprove {
            announce("device sign-in (\(service.rawValue)) \(userCode) approved as \(autoApprove.name)")
        } else {
            announce("device sign-in (\(service.rawValue)) waiting: open \(verificationURI) and enter \(userCode) as one of \(users.map(\.name).joined(separator: ", "))")
        }
        return (deviceCode, userCode)
    }

    /// The user codes no one has approved or declined yet, oldest first.
    func waiting() -> [(userCode: String, service: Service)] {
        lock.withLock {
            pending.values.filter { $0.approvedBy == nil && !$0.declined && $0.expires > Date() }
                .sorted { $0.expires < $1.expires }.map { ($0.userCode, $0.service) }
        }
    }

    /// What the user of a verification page or the admin call decided for `userCode`.
    func decide(userCode: String, user: SandboxUser?, approve: Bool) -> Bool {
        let code = userCode.uppercased().filter { $0 != "-" && $0 != " " }
        return lock.withLock {
            guard let key = pending.first(where: { $0.value.userCode == code && $0.value.expires > Date() })?.key else { return false }
            if approve { pending[key]?.approvedBy = user } else { pending[key]?.declined = true }
            return true
        }
    }

    /// A client's poll: an approved code is redeemed once; one polled sooner than `interval` after the last
    /// poll is told to slow down when the service says so (Salesforce does; Entra documents no such error).
    func poll(_ service: Service, deviceCode: String, clientID: String, enforceInterval: Bool) -> Poll {
        lock.withLock {
            guard var entry = pending[deviceCode], entry.service == service, entry.clientID == clientID else { return .unknown }
            let now = Date()
            guard entry.expires > now else { pending[deviceCode] = nil; return .expired }
            if entry.declined { pending[deviceCode] = nil; return .declined }
            if let user = entry.approvedBy {
                pending[deviceCode] = nil
                return .approved(user, scope: entry.scope)
            }
            defer { entry.lastPoll = now; pending[deviceCode] = entry }
            if enforceInterval, let last = entry.lastPoll, now.timeIntervalSince(last) < Double(interval) { return .slowDown }
            return .pending
        }
    }

    func issueRefreshToken(_ grant: Grant) -> String {
        let token = (grant.service == .entra ? "0.AAAA" : "5Aep861") + SandboxCredentials.token(grant.service == .entra ? 300 : 80)
        lock.withLock { refreshTokens[token] = grant }
        return token
    }

    /// The grant a refresh token carries, if it is still good.
    func grant(of refreshToken: String, service: Service, clientID: String) -> Grant? {
        lock.withLock { refreshTokens[refreshToken].flatMap { $0.service == service && $0.clientID == clientID ? $0 : nil } }
    }

    /// Revokes every refresh token of `user` (an administrator's "revoke sessions"); returns how many.
    func revoke(user: SandboxUser) -> Int {
        lock.withLock {
            let before = refreshTokens.count
            refreshTokens = refreshTokens.filter { $0.value.user != user }
            return before - refreshTokens.count
        }
    }

    func revoke(refreshToken: String) -> Bool { lock.withLock { refreshTokens.removeValue(forKey: refreshToken) != nil } }
}
