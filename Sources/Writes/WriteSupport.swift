import Writeback

/// What the mount needs to accept writes: where bytes wait, the engine that sends them (and alone keeps
/// the journal of what is still to send), and which names stay local. A mount without it is read-only.
public struct WriteSupport: Sendable {
    public let staging: StagingArea
    public let engine: WritebackEngine
    public let localOnly: LocalOnlyNames
    /// Where every change made on the services is recorded (nil: nowhere).
    public let audit: AuditLog?

    public init(staging: StagingArea, engine: WritebackEngine, localOnly: LocalOnlyNames, audit: AuditLog? = nil) {
        self.staging = staging
        self.engine = engine
        self.localOnly = localOnly
        self.audit = audit
    }
}
