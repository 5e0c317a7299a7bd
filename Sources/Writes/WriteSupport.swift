import Writeback

/// What the mount needs to accept writes: where bytes wait, the engine that sends them (and alone keeps
/// the journal of what is still to send), and which names stay local. A mount without it is read-only.
public struct WriteSupport: Sendable {
    public let staging: StagingArea
    public let engine: WritebackEngine
    public let localOnly: LocalOnlyNames
    /// Where every change made on the services is recorded (nil: nowhere).
    public let audit: AuditLog?
    public let hooks: WriteHooks

    public init(staging: StagingArea, engine: WritebackEngine, localOnly: LocalOnlyNames, audit: AuditLog? = nil, hooks: WriteHooks = WriteHooks()) {
        self.staging = staging
        self.engine = engine
        self.localOnly = localOnly
        self.audit = audit
        self.hooks = hooks
    }
}

/// Test hooks into the write path, for the tests of races a busy machine or a failing disk brings: each
/// runs at its point and may wait there (or throw, failing that step as the disk would). A mount has none.
public struct WriteHooks: Sendable {
    /// Before every new change is journaled (a slow or full disk under SQLite's commit).
    public var beforeJournalAdd: (@Sendable () throws -> Void)?
    /// Before every seal (fsync) of a staged file.
    public var beforeSeal: (@Sendable () throws -> Void)?
    /// In every rename, between looking at the document's changes and acting on them (its upload can start meanwhile).
    public var beforeRenameActs: (@Sendable () async -> Void)?

    public init(beforeJournalAdd: (@Sendable () throws -> Void)? = nil, beforeSeal: (@Sendable () throws -> Void)? = nil,
                beforeRenameActs: (@Sendable () async -> Void)? = nil) {
        self.beforeJournalAdd = beforeJournalAdd
        self.beforeSeal = beforeSeal
        self.beforeRenameActs = beforeRenameActs
    }
}
