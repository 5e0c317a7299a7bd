import Writeback

/// What the mount needs to accept writes: where bytes wait, the journal of what is still to send, the
/// engine that sends it, and which names stay local. A mount without it is read-only.
public struct WriteSupport: Sendable {
    public let staging: StagingArea
    public let journal: Journal
    public let engine: WritebackEngine
    public let localOnly: LocalOnlyNames

    public init(staging: StagingArea, journal: Journal, engine: WritebackEngine, localOnly: LocalOnlyNames) {
        self.staging = staging
        self.journal = journal
        self.engine = engine
        self.localOnly = localOnly
    }
}
