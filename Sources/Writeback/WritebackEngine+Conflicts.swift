import Config
import CRM
import Foundation
import Graph
import HTTP
import Logging

/// Conflicts: an upload whose document changed remotely, settled by its object's policy; and changes the
/// service refuses for good.
extension WritebackEngine {
    /// A change SharePoint refuses because the user may not make it (403 `accessDenied`: they may only read
    /// the document or its folder) ends here, without retries: an upload's bytes move to the state
    /// directory's `conflicts/` (nothing the user wrote is lost), the change leaves the journal, and the
    /// mount shows the service's copy again, with `user.crmfs.sync` saying what happened. Throws when the
    /// copy cannot be set aside (`conflicts/` not writable, a full disk): the change then stays in the
    /// journal with its bytes and is treated as any failure, retried with backoff and given up after the
    /// last attempt.
    func refuse(_ change: PendingChange, id: Int64, reason: String) throws {
        var note = "error: \(reason) (SharePoint refused the change)"
        do {
            if let file = change.stagedFile {
                let kept = try staging.keepAside(file, as: change.name)
                note = "error: \(reason) (SharePoint refused the change; your copy is in the state directory's conflicts/\((kept as NSString).lastPathComponent))"
            }
            try journal.complete(id: id)
        } catch {
            logger.error("a refused change could not be set aside; it stays in the journal", metadata: ["name": "\(change.name)", "error": "\(error)"])
            throw RefusalNotKept(reason: reason, error: "\(error)")
        }
        lock.withLock { refusals[id] = (change.name, reason) }
        logger.error("the service refused a change; it is not retried", metadata: ["name": "\(change.name)", "reason": "\(reason)",
                                                                                    "kept": "\(change.stagedFile != nil)"])
        finished(.refused(change, note: note))
    }

    /// Settles an upload whose document changed remotely since it was opened, by its object's policy.
    /// Nothing is overwritten silently: keep-both uploads the local copy beside the remote one as
    /// `NAME (conflict YYYY-MM-DD HOST).EXT`; local-wins overwrites; remote-wins keeps the local copy in
    /// the state directory's `conflicts/` and leaves the document as it is. Each says what it did in the log.
    public func resolveConflict(id: Int64, hostname: String = ProcessInfo.processInfo.hostName, now: Date = Date()) async throws {
        guard let change = try journal.change(id: id), change.state == .conflict else { return }
        let policy = change.objectName.flatMap { objects[$0]?.conflictPolicy } ?? .keepBoth
        switch policy {
        case .keepBoth:
            let name = Self.conflictName(change.name, hostname: hostname, date: now)
            // Beside the remote document, wherever it is now.
            var parentID = change.parentItemID
            if let itemID = change.itemID, let current = try await graph.item(driveID: change.driveID, itemID: itemID).parentReference?.id {
                parentID = current
            }
            try journal.update(id: id) { changed in
                changed.state = .staged
                changed.name = name
                changed.parentItemID = parentID
                changed.itemID = nil
                changed.baseETag = nil
                changed.uploadURL = nil
                changed.attempts = 0
            }
            logger.warning("conflict: keeping both", metadata: ["name": "\(change.name)", "local copy": "\(name)"])
        case .localWins:
            try journal.update(id: id) { $0.state = .staged; $0.baseETag = nil; $0.uploadURL = nil; $0.attempts = 0 }
            logger.warning("conflict: the local copy replaces the remote change", metadata: ["name": "\(change.name)"])
        case .remoteWins:
            if let file = change.stagedFile { try staging.keepAside(file, as: Self.conflictName(change.name, hostname: hostname, date: now)) }
            try journal.complete(id: id)
            logger.warning("conflict: the remote copy stays; the local one is kept in the state directory", metadata: ["name": "\(change.name)"])
        }
        kick()
    }

    /// Whether `name` is a keep-both copy's name made from `original` (by `conflictName`, any day and host).
    public static func isConflictCopyName(_ name: String, of original: String) -> Bool {
        let ext = (original as NSString).pathExtension
        let base = ext.isEmpty ? original : String(original.dropLast(ext.count + 1))
        return name.hasPrefix("\(base) (conflict ") && (ext.isEmpty ? name.hasSuffix(")") : name.hasSuffix(").\(ext)"))
    }

    /// `MSA-2026 (conflict 2026-11-23 ws12).pdf`.
    public static func conflictName(_ name: String, hostname: String, date: Date) -> String {
        let day = date.formatted(.iso8601.year().month().day())
        let host = hostname.split(separator: ".").first.map(String.init) ?? hostname
        let ext = (name as NSString).pathExtension
        let base = ext.isEmpty ? name : String(name.dropLast(ext.count + 1))
        return ext.isEmpty ? "\(base) (conflict \(day) \(host))" : "\(base) (conflict \(day) \(host)).\(ext)"
    }
}

/// A change the service refused whose local copy could not be kept aside.
struct RefusalNotKept: Error, CustomStringConvertible {
    var reason: String
    var error: String
    var description: String { "SharePoint refused the change (\(reason)) and the local copy could not be kept aside: \(error)" }
}
