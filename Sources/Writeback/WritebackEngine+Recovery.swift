import Foundation

/// What the engine set aside at start, from a crash or an unclean stop before it.
public struct CrashLeftovers: Sendable {
    /// Changes an `fsync` recorded whose bytes were not all on disk when the crash came (the fsync had
    /// not returned, so nothing was promised): dropped from the journal, their bytes kept aside.
    public var unsealed: [PendingChange] = []
    /// Where staged files that no change names (written but not closed before the crash, or kept local)
    /// were moved: the state directory's `recovered/`.
    public var keptAside: [String] = []
}

extension WritebackEngine {
    /// Sets aside, before the first change is sent, what a crash left in the journal and the staging
    /// area: never sent, never lost. The engine is the journal's one writer, so this is its job too.
    public func setAsideCrashLeftovers() throws -> CrashLeftovers {
        var leftovers = CrashLeftovers()
        leftovers.unsealed = try journal.discardUnsealed()
        for orphan in try staging.orphans(keeping: journal.stagedFiles()) {
            leftovers.keptAside.append(try staging.keepAside(orphan, as: orphan, in: "recovered"))
        }
        return leftovers
    }
}
