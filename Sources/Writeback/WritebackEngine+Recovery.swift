import Foundation

/// What the engine set aside at start, from a crash or an unclean stop before it.
public struct CrashLeftovers: Sendable {
    /// Changes an `fsync` recorded whose bytes were not all on disk when the crash came (the fsync had
    /// not returned, so nothing was promised): dropped from the journal, their bytes kept aside.
    public var unsealed: [PendingChange] = []
    /// Where staged files that no change names (written but not closed before the crash, or kept local)
    /// were moved: the state directory's `recovered/`.
    public var keptAside: [String] = []
    /// Journal rows this crmfs could not read, set aside (see `WritebackEngine.setAside`).
    public var unreadable: [UnreadableChange] = []
}

extension WritebackEngine {
    /// Sets aside, before the first change is sent, what a crash left in the journal and the staging
    /// area: never sent, never lost. The engine is the journal's one writer, so this is its job too.
    public func setAsideCrashLeftovers() throws -> CrashLeftovers {
        var leftovers = CrashLeftovers()
        leftovers.unreadable = try journal.contents().unreadable
        leftovers.unreadable.forEach(setAside)
        leftovers.unsealed = try journal.discardUnsealed()
        for orphan in try staging.orphans(keeping: journal.stagedFiles()) {
            leftovers.keptAside.append(try staging.keepAside(orphan, as: orphan, in: "recovered"))
        }
        return leftovers
    }
}

extension WritebackEngine {
    /// The journal's changes, oldest first. A row that cannot be read (a value out of this crmfs's range,
    /// written by another version or a damaged disk) is set aside on the way, so it never hides the
    /// others; a journal that cannot be read at all sends nothing this time round (logged once).
    func readJournal() -> [PendingChange] {
        do {
            let (changes, unreadable) = try journal.contents()
            unreadable.forEach(setAside)
            return changes
        } catch {
            if lock.withLock({ journalUnreadable.insert(0).inserted }) {
                logger.error("the journal cannot be read; nothing is sent until it can", metadata: ["error": "\(error)"])
            }
            return []
        }
    }

    /// Sets aside a journal row that cannot be read: its staged bytes go to the state directory's
    /// `recovered/` under the document's name, the row leaves the journal, and the log, `crmfs status`
    /// and the next `crmfs sync` (once) say so. Never sent, never lost. Should that fail, the row stays
    /// (and the failure is logged once); the other changes go on.
    func setAside(_ row: UnreadableChange) {
        do {
            var kept: String?
            if let file = row.stagedFile, access(staging.path(of: file), F_OK) == 0 {
                kept = try staging.keepAside(file, as: row.name, in: "recovered")
            }
            try journal.remove(unreadable: row.id)
            let reason = "the journal could not read this change (\(row.error)); it was not sent"
                + (kept.map { "; its bytes are in the state directory's recovered/\(($0 as NSString).lastPathComponent)" } ?? "")
            lock.withLock { refusals[row.id] = (row.name, reason) }
            logger.error("a change the journal could not read was set aside", metadata: ["name": "\(row.name)", "error": "\(row.error)",
                                                                                         "kept": "\(kept ?? "no bytes")"])
            progressed()
        } catch {
            if lock.withLock({ journalUnreadable.insert(row.id).inserted }) {
                logger.error("a change the journal could not read could not be set aside either", metadata: ["name": "\(row.name)", "error": "\(error)"])
            }
        }
    }
}
