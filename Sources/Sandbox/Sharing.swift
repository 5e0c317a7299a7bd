import Foundation

/// How far a user reaches a record or an item: not at all, to read it, or to change it.
enum Access: Int, Comparable, Sendable {
    case none, read, write

    static func < (lhs: Access, rhs: Access) -> Bool { lhs.rawValue < rhs.rawValue }

    /// A SharePoint grant's role (`read`, `write`, `none`).
    init?(role: String) {
        switch role.lowercased() {
        case "read": self = .read
        case "write", "edit": self = .write
        case "none": self = .none
        default: return nil
        }
    }

    var role: String { ["none", "read", "write"][rawValue] }
}

/// Salesforce sharing in the demo org, as a small real org would set it up: organisation-wide defaults per
/// object, owners, a manager with "Modify All Data", support agents who modify every case, and manual
/// shares. App-only callers (client credentials: the integration user) reach everything.
struct SalesforceSharing {
    /// Organisation-wide defaults of the objects with sharing settings; every other object is public
    /// read/write (`SharePoint_Document__c` rows, for instance).
    static let orgWideDefaults: [String: Access] = ["Account": .read, "Opportunity": .none, "Case": .read]

    let user: SandboxUser?
    /// Manual shares with the user, by record Id.
    let shares: [String: Access]

    init(user: SandboxUser?, store: SandboxStore) throws {
        self.user = user
        shares = try user.map { try store.shares(with: $0.salesforceUserID).compactMapValues { Access(role: $0) } } ?? [:]
    }

    func access(to type: String, id: String, fields: [String: Any]) -> Access {
        guard let user else { return .write }
        if user.role == .manager || fields["OwnerId"] as? String == user.salesforceUserID { return .write }
        if user.role == .supportAgent && type == "Case" { return .write }
        return max(shares[id] ?? .none, Self.orgWideDefaults[type] ?? .write)
    }

    /// `MaxAccessLevel` of UserRecordAccess.
    static func maxAccessLevel(_ access: Access, owner: Bool) -> String {
        switch access {
        case .none: "None"
        case .read: "Read"
        case .write: owner ? "All" : "Edit"
        }
    }
}

/// SharePoint permissions in the demo site: members may change everything, except below items with unique
/// permissions (`itemGrant`), which only their principals reach; a site owner (the manager) reaches all.
/// App-only callers (`Sites.ReadWrite.All`) reach everything.
struct SharePointPermissions {
    let store: SandboxStore
    let user: SandboxUser?
    /// Effective access by item id, worked out once per request.
    private var memo: [String: Access] = [:]

    init(store: SandboxStore, user: SandboxUser?) {
        self.store = store
        self.user = user
    }

    /// Whether every item is open to the caller, so no check is needed.
    var reachesAll: Bool { user == nil || user?.role == .manager }

    mutating func access(to item: ItemRow) throws -> Access {
        guard let user, user.role != .manager else { return .write }
        if let known = memo[item.id] { return known }
        let grants = try store.grants(of: item.id)
        let access: Access
        if !grants.isEmpty {
            access = (grants[user.name] ?? grants["*"]).flatMap { Access(role: $0) } ?? .none
        } else if let parentID = item.parentId, let parent = try store.item(id: parentID) {
            access = try self.access(to: parent)
        } else {
            access = .write  // the library root: site members edit
        }
        memo[item.id] = access
        return access
    }

    /// The SQL condition that keeps a child (`item`) the caller can see, given that its folder is visible to
    /// them: it inherits, or its unique permissions name them or everyone with some access.
    func visibleChildCondition() -> (sql: String, arguments: [String]) {
        guard let user, user.role != .manager else { return ("1", []) }
        return ("""
            (NOT EXISTS (SELECT 1 FROM itemGrant g WHERE g.itemId = item.id) OR EXISTS (SELECT 1 FROM itemGrant g
             WHERE g.itemId = item.id AND g.role != 'none' AND (g.principal = ? OR (g.principal = '*'
             AND NOT EXISTS (SELECT 1 FROM itemGrant h WHERE h.itemId = item.id AND h.principal = ?)))))
            """, [user.name, user.name])
    }

    /// Grants an item's record folder gets in the demo: its owner writes; everyone reads what the object's
    /// organisation-wide default lets them read.
    static func recordFolderGrants(object: String, owner: SandboxUser?) -> [String: String] {
        var grants: [String: String] = [:]
        if let owner { grants[owner.name] = Access.write.role }
        if let everyone = SalesforceSharing.orgWideDefaults[object], everyone > .none { grants["*"] = everyone.role }
        return grants
    }
}
