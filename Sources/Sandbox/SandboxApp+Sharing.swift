import Foundation

/// Admin calls that change who reaches what, as an administrator would in Salesforce's sharing settings
/// and SharePoint's "Manage access".
extension SandboxApp {
    /// `POST /_sandbox/items/{id}/permissions` `{"user": "sam" or "*", "role": "read" | "write" | "none"}`:
    /// gives the item unique permissions (starting from those it inherited, as SharePoint's "stop
    /// inheriting" does) and sets the user's role.
    func grant(itemID: String, _ request: SandboxRequest) -> SandboxResponse {
        guard let object = try? JSONSerialization.jsonObject(with: request.body) as? [String: Any],
              let principal = object["user"] as? String, let role = (object["role"] as? String).flatMap(Access.init(role:)) else {
            return .json(400, ["error": "body must be {\"user\": NAME or \"*\", \"role\": \"read\" | \"write\" | \"none\"}"])
        }
        guard principal == "*" || signIns.user(named: principal) != nil else { return .json(404, ["error": "no such user \(principal)"]) }
        do {
            guard var item = try store.item(id: itemID) else { return .json(404, ["error": "no such item"]) }
            var grants = try store.grants(of: item.id)
            while grants.isEmpty, let parentID = item.parentId, let parent = try store.item(id: parentID) {
                item = parent
                grants = try store.grants(of: parent.id)
            }
            if grants.isEmpty { grants = ["*": Access.write.role] }
            grants[principal.lowercased()] = role.role
            try store.setGrants(of: itemID, grants)
            return .json(200, ["id": itemID, "grants": grants])
        } catch {
            return .json(500, ["error": "\(error)"])
        }
    }

    /// `POST /_sandbox/records/{id}/share` `{"user": "sky", "level": "Read" | "Edit" | "None"}`: a manual
    /// share in Salesforce, and the same access to the record's folder in SharePoint (the demo keeps the two
    /// in step, as a tenant that syncs permissions would).
    func share(recordID: String, _ request: SandboxRequest) -> SandboxResponse {
        guard let object = try? JSONSerialization.jsonObject(with: request.body) as? [String: Any],
              let name = object["user"] as? String, let level = (object["level"] as? String).flatMap(Access.init(role:)) else {
            return .json(400, ["error": "body must be {\"user\": NAME, \"level\": \"Read\" | \"Edit\" | \"None\"}"])
        }
        guard let user = signIns.user(named: name) else { return .json(404, ["error": "no such user \(name)"]) }
        do {
            guard try store.record(id: recordID) != nil else { return .json(404, ["error": "no such record"]) }
            try store.setShare(recordID: recordID, userID: user.salesforceUserID, level: level == .none ? nil : (level == .write ? "Edit" : "Read"))
            var folderID: String?
            if let folder = try store.recordFolder(recordID: recordID) {
                var grants = try store.grants(of: folder.id)
                if !grants.isEmpty {
                    grants[user.name] = level == .none ? nil : level.role
                    try store.setGrants(of: folder.id, grants)
                }
                folderID = folder.id
            }
            return .json(200, ["record": recordID, "user": user.name, "level": level.role, "folder": folderID as Any? ?? NSNull()])
        } catch {
            return .json(500, ["error": "\(error)"])
        }
    }
}
