import Cache
import Foundation
import HTTP
import Logging
import Namespace
import SharePointNaming
import Writeback

/// The mount's write path, between the kernel's operations and the write-back engine: writes land in
/// staged files, a close makes them durable and journals the change, the tree shows the result at once,
/// and the engine's outcomes update the tree when the services have them. Documents open for writing
/// are `WriteSession`s (LocalWrites+Documents); folders, removals and renames are in LocalWrites+Tree.
/// The lock order is written at the top of WriteSession.swift.
public final class LocalWrites: @unchecked Sendable {
    public let tree: Tree
    let reader: BlockReader
    let support: WriteSupport
    let logger: Logger
    /// How long a closed file waits before its upload starts: tools set the time (`cp -p`, `touch`) or
    /// rename right after closing, and those should travel with the upload rather than after it as an
    /// extra version. The bytes are durable meanwhile; `fsync` and `crmfs sync` do not wait for it.
    let quietPeriod: Duration

    /// Guards the registry below (`LocalWrites.lock` in the lock order).
    let lock = NSLock()
    /// Each document or folder with local writes, one entry per node while it has any (see `LocalDocument`).
    var documents: [UInt64: LocalDocument] = [:]
    /// The node each change not yet done belongs to, for the engine's outcomes.
    var owners: [Int64: ChangeOwner] = [:]
    /// Remote documents renamed to a temporary name, by item (see `Shadow`).
    var shadows: [String: Shadow] = [:]
    /// Sessions in their last close: no longer their document's, not yet handed to the engine. `crmfs sync`
    /// takes them too, or a sync right after a close that failed would miss what it kept (soak seed 1371).
    var closing: [ObjectIdentifier: WriteSession] = [:]
    /// Opens of a document waiting for its last close to end (`lastCloseEnded`), by node.
    var waitingForClose: [UInt64: [CheckedContinuation<Void, Never>]] = [:]

    public var staging: StagingArea { support.staging }
    var engine: WritebackEngine { support.engine }

    public init(tree: Tree, reader: BlockReader, support: WriteSupport, logger: Logger, quietPeriod: Duration = .seconds(1)) {
        self.quietPeriod = quietPeriod
        self.tree = tree
        self.reader = reader
        self.support = support
        self.logger = logger
        support.engine.observe { [weak self] outcome in self?.settled(outcome) }
        restoreFromJournal()
    }

    /// New documents, versions and folders the journal holds from before this mount show in their
    /// directories (as the listings find them) until they are sent.
    private func restoreFromJournal() {
        let outstanding: [PendingChange]
        do {
            outstanding = try support.engine.outstanding()
        } catch {
            // The engine reads the journal again before it sends anything; only the entries go missing here.
            logger.error("could not read the journal: changes not sent yet do not show until they are", metadata: ["error": "\(error)"])
            outstanding = []
        }
        let changes = outstanding.filter { $0.kind == .upload || $0.kind == .createFolder }
        tree.restore(changes.compactMap { change in
            change.id.map {
                RestoredChange(changeID: $0, parentItemID: change.parentItemID, parentPath: change.parentPath, name: change.name,
                               itemID: change.itemID, stagedFile: change.stagedFile, size: change.size, modified: change.modified,
                               isFolder: change.kind == .createFolder)
            }
        }) { [weak self] placed in
            guard let self else { return }
            for (id, ino) in placed {
                // Under the lock, so the change cannot finish unseen between the check and the bookkeeping.
                let current = lock.withLock { () -> PendingChange? in
                    guard let change = try? self.support.engine.change(id: id) else { return nil }
                    register(id, ChangeOwner(ino: ino, parent: self.tree.current(ino)?.parent ?? Tree.rootIno), upload: change.kind == .upload)
                    return change
                }
                if current == nil {
                    // Sent meanwhile: the service's listing has it now.
                    tree.unpin(ino)
                    tree.setLocal(ino, stagedFile: .noFile)
                    if let parent = tree.current(ino)?.parent { tree.expire(parent) }
                }
            }
        }
    }

    // MARK: Names

    /// Refuses a name SharePoint would refuse (unless it stays local), saying which rule.
    public func check(_ name: String, isFolder: Bool) throws -> Bool {
        let localOnly = !isFolder && support.localOnly.isLocalOnly(name)
        if !localOnly, let problem = SharePointNames.problem(with: name, isFolder: isFolder) {
            throw NamespaceError.invalid("'\(name)': \(problem)")
        }
        return localOnly
    }

    /// Refuses a name that differs only in case from another entry SharePoint has in `parent` (it
    /// would be the same name there): EEXIST, with a log line, rather than an upload over the other one.
    func checkCase(_ name: String, in parent: UInt64, localOnly: Bool, other ino: UInt64? = nil) async throws {
        guard !localOnly, let clash = try await tree.caseVariant(of: name, in: parent, other: ino) else { return }
        logger.warning("refused: SharePoint names are case-insensitive", metadata: ["name": "\(name)", "existing": "\(clash.name)"])
        throw NamespaceError.exists
    }

    /// Waits until document `ino` is in SharePoint (its pending upload done), for edits that need its item.
    /// A document still open for writing has no final bytes yet: EBUSY.
    public func uploaded(_ ino: UInt64) async throws {
        let (open, upload) = lock.withLock { (documents[ino]?.session != nil, documents[ino]?.upload) }
        guard let upload else { return }
        if open { throw POSIXError(.EBUSY) }
        engine.release(upload)
        try await engine.wait(for: upload, tryingAgain: true)
    }

    // MARK: Status

    /// `user.crmfs.sync` of a document.
    public func syncStatus(_ node: NodeSnapshot) -> String {
        if node.localOnly { return "local-only" }
        let document = lock.withLock { documents[node.ino] } ?? LocalDocument()
        let (session, changes, note) = (document.session, document.changes, document.settledNote)
        if let session {
            let (dirty, changeID, sealFailure) = session.withState { ($0.dirty, $0.changeID, $0.sealFailure) }
            if let sealFailure { return "error: \(SealFailure(reason: sealFailure))" }
            if dirty || changeID == nil && node.itemID == nil { return "pending" }
        }
        for id in changes.sorted() {
            if let status = engine.status(of: id) { return status.description }
        }
        return note ?? "clean"
    }

    /// `crmfs sync`, as sync(1) is for a disk: everything written before it is sent, files still open for
    /// writing included (their bytes so far are sealed and handed over, as by `fsync`; later writes go to
    /// a new copy). Returns once those changes are done; throws when some gave up or could not be sealed.
    public func drain() async throws {
        var problems: [String] = []
        let sessions = lock.withLock { () -> [WriteSession] in
            var seen = Set<ObjectIdentifier>()
            return (documents.values.compactMap(\.session) + closing.values).filter { seen.insert(ObjectIdentifier($0)).inserted }
        }
        for session in sessions {
            do {
                if let id = try await handOver(session) { engine.release(id) }
                retireIfClosed(session)
            } catch {
                problems.append("\(error)")
            }
        }
        try await engine.drain()
        problems += engine.givenUp.values.sorted()
        if !problems.isEmpty { throw WritebackError.gaveUp(problems.joined(separator: "; ")) }
    }

    // MARK: Engine outcomes

    func track(_ id: Int64, _ owner: ChangeOwner, upload: Bool) {
        lock.withLock { register(id, owner, upload: upload) }
        tree.pin(owner.ino)
    }

    /// Reads or changes node `ino`'s entry, with the lock held; an entry left with nothing in it goes.
    func document<T>(_ ino: UInt64, _ body: (inout LocalDocument) throws -> T) rethrows -> T {
        var document = documents[ino] ?? LocalDocument()
        defer { documents[ino] = document.isEmpty ? nil : document }
        return try body(&document)
    }

    /// Books a change under its node (lock held).
    func register(_ id: Int64, _ owner: ChangeOwner, upload: Bool) {
        owners[id] = owner
        document(owner.ino) { document in
            document.changes.insert(id)
            if upload { document.upload = id }
        }
    }

    /// Forgets a change that was withdrawn or is done; returns who it belonged to.
    @discardableResult
    func forget(_ id: Int64) -> ChangeOwner? {
        guard let owner = lock.withLock({ () -> ChangeOwner? in
            guard let owner = owners.removeValue(forKey: id) else { return nil }
            document(owner.ino) { document in
                document.changes.remove(id)
                if document.upload == id { document.upload = nil }
            }
            return owner
        }) else { return nil }
        tree.unpin(owner.ino)
        return owner
    }

    private func settled(_ outcome: ChangeOutcome) {
        if let audit = support.audit {
            let owner = outcome.change.id.flatMap { id in lock.withLock { owners[id] } }
            audit.record(AuditLog.entry(for: outcome, path: owner.flatMap { tree.mountPath(of: $0.ino) }))
        }
        switch outcome {
        case .done(let change, let item):
            guard let id = change.id else { return }
            // Before anything shows the item as sent: a round asked for earlier must not undo it.
            tree.noteOwnChangesEnded([item?.id, change.itemID].compactMap { $0 })
            guard let owner = forget(id) else {
                tree.forgetRestored(id)
                // Sent (from a restart's journal) before its directory was listed: the library's view takes
                // the item now, so the first listing shows what was sent, not what the last feed round saw.
                if let item {
                    tree.applySent([item])
                } else if change.kind == .delete, let itemID = change.itemID {
                    tree.applySent([.deleted(id: itemID)])
                }
                return
            }
            if let hidden = owner.hiddenItem { tree.reveal(hidden) }
            if change.parentPath != nil, let folderID = change.parentItemID { tree.folderMade(owner.parent, itemID: folderID) }
            guard let item else { return }
            if change.kind == .upload, let node = tree.current(owner.ino),
               owner.keptBoth || (node.name != change.name && WritebackEngine.isConflictCopyName(change.name, of: node.name)) {
                // Kept both after a conflict: the copy went up under its own name; the user's name shows the remote
                // one. (Not told by the names: the node may have been renamed since its change was recorded.)
                tree.setLocal(owner.ino, stagedFile: node.stagedFile == change.stagedFile ? .noFile : nil)
                tree.expire(owner.parent)
                return
            }
            let settledAll = change.kind == .upload && lock.withLock {
                document(owner.ino) { document in
                    document.takenShadow = nil
                    if document.renaming > 0 { document.sentWhileRenaming = item }
                    return document.changes.isEmpty && document.renaming == 0
                }
            }
            tree.adopt(owner.ino, item: item, sentFile: change.stagedFile)
            // Nothing of the mount's own is left to send for it: it is where the service holds it. (A
            // restart's journal names the place a version was written at; the stopped mount may have moved
            // the document since, and the move went.)
            if settledAll { tree.applySent([item]) }
            if change.storedDifferently(in: item) {
                // SharePoint rewrote it as it stored it (Office property promotion): its copy is the document now.
                let note = "clean (SharePoint rewrote it on upload: \(change.size) bytes sent, \(item.size ?? 0) stored)"
                lock.withLock { document(owner.ino) { $0.settledNote = note } }
            }
        case .conflict(let change, let policy):
            guard let id = change.id else { return }
            guard let owner = lock.withLock({ owners[id] }) else {
                if policy == .remoteWins { tree.forgetRestored(id) }  // set aside before its folder was listed
                return
            }
            let note: String
            switch policy {
            case .keepBoth:
                note = "conflict: the remote copy changed; yours is uploaded as \(WritebackEngine.conflictName(change.name, hostname: ProcessInfo.processInfo.hostName, date: Date()))"
                lock.withLock { owners[id]?.keptBoth = true }
            case .localWins: note = "conflict: the remote copy changed; yours replaced it"
            case .remoteWins:
                note = "conflict: the remote copy changed and was kept; yours is in the state directory's conflicts/"
                forget(id)
                tree.setLocal(owner.ino, stagedFile: .noFile)
                tree.expire(owner.parent)
            }
            lock.withLock { document(owner.ino) { $0.settledNote = note } }
        case .refused(let change, let note):
            // The service's copy is the document again; the user's bytes are kept aside (see `refuse`).
            guard let id = change.id else { return }
            guard let owner = forget(id) else {
                tree.forgetRestored(id)  // set aside before its folder was listed
                return
            }
            if let hidden = owner.hiddenItem { tree.reveal(hidden) }
            if change.kind == .upload { tree.revertToService(owner.ino) } else { tree.expire(owner.parent) }
            lock.withLock { document(owner.ino) { $0.settledNote = note } }
        case .gaveUp(let change, let reason):
            logger.error("not sent after retries; kept in the journal", metadata: ["name": "\(change.name)", "error": "\(reason)"])
        }
    }

    /// Copies every byte readable through `source` (an open staged file: its upload may have removed its
    /// name meanwhile) into `descriptor`.
    func copyFile(from source: Int32, into descriptor: Int32) throws {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var offset: off_t = 0
        while true {
            let count = buffer.withUnsafeMutableBytes { pread(source, $0.baseAddress, $0.count, offset) }
            guard count >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            if count == 0 { return }
            try buffer.withUnsafeBytes { try pwriteAll(descriptor, UnsafeRawBufferPointer(rebasing: $0[..<count]), at: offset) }
            offset += off_t(count)
        }
    }
}

extension PendingChange {
    /// A change of the record and object `place` belongs to, with no parent (it stays where it is).
    init(_ kind: Kind, name: String, itemID: String? = nil, of place: WritePlace) {
        self.init(kind: kind, driveID: place.driveID, name: name, itemID: itemID, recordID: place.recordID, objectName: place.objectName)
    }

    /// A change that goes into `place`.
    init(_ kind: Kind, name: String, itemID: String? = nil, in place: WritePlace) {
        self.init(kind, name: name, itemID: itemID, of: place)
        put(in: place)
    }

    /// Leaves `name` in `place`, named both ways the folder can be (see `leaving`).
    mutating func leave(_ name: String, in place: WritePlace) {
        leaving = [place.parentItemID, place.parentPath].compactMap { $0.map { "\($0)/\(name.lowercased())" } }.joined(separator: "\n")
    }

    /// Goes into `place`: its folder by item, or by path while that folder is not made yet; its record.
    mutating func put(in place: WritePlace) {
        parentItemID = place.parentItemID
        parentPath = place.parentItemID == nil ? place.parentPath : nil
        recordID = place.recordID
        objectName = place.objectName
    }
}
