import CFuse
import Cache
import Foundation
import Logging
import Namespace
import SharePointNaming
import Writeback

/// The mount's write path, between the kernel's operations and the write-back engine: writes land in
/// staged files, a close makes them durable and journals the change, the tree shows the result at once,
/// and the engine's outcomes update the tree when the services have them.
final class LocalWrites: @unchecked Sendable {
    let tree: Tree
    let reader: BlockReader
    let support: WriteSupport
    let logger: Logger

    private let lock = NSLock()
    private var sessions: [UInt64: WriteSession] = [:]
    private var owners: [Int64: ChangeOwner] = [:]
    /// Each document's newest upload not yet done.
    private var uploads: [UInt64: Int64] = [:]
    /// Every change not yet done, per node.
    private var pending: [UInt64: Set<Int64>] = [:]
    private var shadows: [String: Shadow] = [:]
    private var conflictNotes: [UInt64: String] = [:]

    var staging: StagingArea { support.staging }
    var engine: WritebackEngine { support.engine }

    init(tree: Tree, reader: BlockReader, support: WriteSupport, logger: Logger) {
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
        let changes = ((try? support.journal.outstanding()) ?? []).filter { $0.kind == .upload || $0.kind == .createFolder }
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
                    guard let change = try? self.support.journal.change(id: id) else { return nil }
                    register(id, ChangeOwner(ino: ino, parent: self.tree.current(ino)?.parent ?? Tree.rootIno), upload: change.kind == .upload)
                    return change
                }
                if current == nil {
                    // Sent meanwhile: the service's listing has it now.
                    tree.unpin(ino)
                    tree.setLocal(ino, stagedFile: .some(nil))
                    if let parent = tree.current(ino)?.parent { tree.expire(parent) }
                }
            }
        }
    }

    // MARK: Names

    /// Refuses a name SharePoint would refuse (unless it stays local), saying which rule.
    func check(_ name: String, isFolder: Bool) throws -> Bool {
        let localOnly = !isFolder && support.localOnly.isLocalOnly(name)
        if !localOnly, let problem = SharePointNames.problem(with: name, isFolder: isFolder) {
            throw NamespaceError.invalid("'\(name)': \(problem)")
        }
        return localOnly
    }

    // MARK: Files

    /// `create`: a new, empty document in `parent`. If the name turned out to exist after all (it
    /// appeared remotely since the kernel looked), the open flags decide: EEXIST with O_EXCL, else it is
    /// opened (and truncated with O_TRUNC).
    func create(parent: UInt64, name: String, flags: Int32) async throws -> (NodeSnapshot, WriteSession) {
        _ = try tree.place(ofDirectory: parent)  // EPERM above the records
        let localOnly = try check(name, isFolder: false)
        if let existing = try await tree.child(of: parent, named: name) {
            if flags & O_EXCL != 0 { throw NamespaceError.exists }
            guard existing.type == .file else { throw NamespaceError.isDirectory }
            let session = try await open(existing, truncate: flags & O_TRUNC != 0)
            return (existing, session)
        }
        let (file, descriptor) = try staging.create()
        let node = try tree.addLocal(parent: parent, name: name, type: .file, stagedFile: file, localOnly: localOnly)
        // A new file under the name a renamed-away document left: its bytes are that document's next version.
        let shadow = localOnly ? nil : takeShadow(parent: parent, name: name)
        let session = WriteSession(ino: node.ino, stagedFile: file, descriptor: descriptor, dirty: true,
                                   itemID: shadow?.itemID, baseETag: shadow?.eTag)
        lock.withLock { sessions[node.ino] = session }
        return (node, session)
    }

    /// Opens document `node` for writing: the session already open on it, or a new one whose staged file
    /// starts empty (O_TRUNC), from the local bytes, or from the remote bytes at the first write.
    func open(_ node: NodeSnapshot, truncate: Bool) async throws -> WriteSession {
        guard node.level == .document, node.type == .file else { throw NamespaceError.notPermitted("only documents can be written") }
        if let session = lock.withLock({ () -> WriteSession? in
            guard let session = sessions[node.ino], !session.submitted else { return nil }
            session.opens += 1
            return session
        }) {
            if truncate { try self.truncate(session, to: 0) }
            return session
        }
        let (file, descriptor) = try staging.create()
        do {
            if !truncate, let current = node.stagedFile { try copyFile(staging.path(of: current), into: descriptor) }
        } catch {
            Glibc.close(descriptor)
            try? staging.remove(file)
            throw error
        }
        let pendingUpload = lock.withLock { uploads[node.ino] }
        // Based on the version the user sees; when an upload of ours is still on its way, the engine
        // fills in the version it makes.
        let session = WriteSession(ino: node.ino, stagedFile: file, descriptor: descriptor, dirty: truncate,
                                   itemID: node.itemID, baseETag: pendingUpload == nil ? node.eTag : nil)
        if !truncate && node.stagedFile == nil, let content = node.content, content.size > 0 { session.uncopied = content }
        lock.withLock {
            sessions[node.ino] = session
            conflictNotes[node.ino] = nil
        }
        if session.uncopied == nil { tree.setLocal(node.ino, stagedFile: .some(file), size: truncate ? 0 : nil) }
        return session
    }

    /// Before the first change through a session, the staged file gets the remote bytes. Blocks the
    /// calling thread, so it is called only on the kernel's request threads, never on a task.
    func prepare(_ session: WriteSession) throws {
        guard session.uncopied != nil else { return }
        try session.copyIfNeeded { content, descriptor in
            let done = DispatchSemaphore(value: 0)
            let outcome = LockedResult()
            Task {
                do { try await self.reader.copy(content, into: descriptor) } catch { outcome.error = error }
                done.signal()
            }
            done.wait()
            if let error = outcome.error { throw error }
        }
        tree.setLocal(session.ino, stagedFile: .some(session.stagedFile))
    }

    /// Writes at `offset` with `put`, which writes to the staged file's descriptor and returns the count
    /// (or a negative errno).
    func write(_ session: WriteSession, at offset: Int64, _ put: (Int32) -> Int) throws -> Int {
        try prepare(session)
        try startOver(session)
        let written = put(session.descriptor)
        guard written >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: Int32(-written)) ?? .EIO) }
        session.dirty = true
        // Large writes start going to disk as they come, so the fsync at close finds little left to do.
        session.unflushedBytes += written
        if session.unflushedBytes >= Self.writebackStep {
            session.unflushedBytes = 0
            _ = crmfs_start_writeback(session.descriptor)
        }
        tree.wrote(session.ino, through: offset + Int64(written))
        return written
    }

    func truncate(_ session: WriteSession, to size: Int64) throws {
        if size > 0 { try prepare(session) } else { session.uncopied = nil }
        try startOver(session)
        guard ftruncate(session.descriptor, off_t(size)) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        session.dirty = true
        tree.setLocal(session.ino, size: size, modified: Date())
    }

    /// A write after `fsync` handed the staged file to the engine goes to a fresh copy.
    private func startOver(_ session: WriteSession) throws {
        guard session.submitted else { return }
        let (file, descriptor) = try staging.create()
        do { try copyFile(staging.path(of: session.stagedFile), into: descriptor) } catch {
            Glibc.close(descriptor)
            try? staging.remove(file)
            throw error
        }
        Glibc.close(session.descriptor)
        session.stagedFile = file
        session.descriptor = descriptor
        session.changeID = nil
        session.submitted = false
        session.baseETag = nil
        tree.setLocal(session.ino, stagedFile: .some(file))
    }

    /// `flush` (every close): the bytes are on disk and the change is in the journal before this returns.
    func commit(_ session: WriteSession) throws {
        if !session.dirty && session.timesChanged, !session.unlinked, let node = tree.current(session.ino) {
            // Only the time changed (touch): a metadata update, not a new upload of the same bytes.
            session.timesChanged = false
            try sendTime(of: node)
            return
        }
        guard session.dirty, !session.unlinked else { return }
        try staging.seal(session.stagedFile, descriptor: session.descriptor)
        session.dirty = false
        try record(session, sealed: true)
    }

    /// Journals the session's bytes as an upload (or updates the change not started yet). `sealed`
    /// says whether they are on disk already.
    private func record(_ session: WriteSession, sealed: Bool) throws {
        guard let node = tree.current(session.ino), !node.localOnly else { return }
        let size = session.size
        if let id = session.changeID, try engine.amend(id, { change in
            change.size = size
            change.modified = node.timeSet ? node.modified : nil
            change.name = node.name
            change.sealed = sealed
        }) {
            session.timesChanged = false
            return
        }
        var change = PendingChange(.upload, name: node.name, itemID: session.itemID, in: try tree.place(ofDirectory: node.parent))
        change.stagedFile = session.stagedFile
        change.size = size
        change.modified = node.timeSet ? node.modified : nil
        change.baseETag = session.baseETag
        change.sealed = sealed
        // A newer version of a document whose previous one has not started: the previous one need not go.
        if let previous = lock.withLock({ uploads[session.ino] }), let earlier = try support.journal.change(id: previous),
           earlier.stagedFile != session.stagedFile, try engine.withdraw(previous) {
            change.itemID = change.itemID ?? earlier.itemID
            change.baseETag = earlier.baseETag
            forget(previous)
        }
        let saved = try engine.record(change, held: session.opens > 0)
        track(saved.id!, ChangeOwner(ino: session.ino, parent: node.parent), upload: true)
        session.changeID = saved.id
        session.timesChanged = false
    }

    /// `release` of the last handle: the change may go.
    func close(_ session: WriteSession) throws {
        let last = lock.withLock { () -> Bool in
            session.opens -= 1
            guard session.opens <= 0 else { return false }
            if sessions[session.ino] === session { sessions[session.ino] = nil }
            return true
        }
        guard last else { return }
        defer { Glibc.close(session.descriptor) }
        if session.unlinked {
            // Removed while open: its bytes go nowhere, unless a change already carries them.
            if session.changeID == nil { try? staging.remove(session.stagedFile) }
            return
        }
        try commit(session)
        // (A change an fsync handed over is on its way already.)
        if let id = session.changeID, !session.submitted { engine.release(id, after: Self.quietPeriod) }
    }

    /// How long a closed file waits before its upload starts: tools set the time (`cp -p`, `touch`) or
    /// rename right after closing, and those should travel with the upload rather than after it as an
    /// extra version. The bytes are durable meanwhile; `fsync` and `crmfs sync` do not wait for it.
    static let quietPeriod: Duration = .seconds(1)

    /// How many written bytes make the staged file's pages start for the disk.
    static let writebackStep = 16 << 20

    /// `fsync`: returns once this file's bytes are uploaded and linked (at once for a local-only file).
    /// New bytes are journaled unsealed and start uploading while the disk flush runs beside them; only
    /// the last fragment waits for the flush. A crash before it ends sets the change aside at the next start
    /// (fsync had not returned, so nothing was promised).
    func fsync(_ session: WriteSession) async throws {
        if session.dirty, !session.unlinked, tree.current(session.ino)?.localOnly == false {
            session.dirty = false
            try record(session, sealed: false)
            if let id = session.changeID {
                session.submitted = true
                engine.release(id)
                try await seal(session)
                try support.journal.update(id: id) { $0.sealed = true }
            }
        } else if session.dirty || session.timesChanged {
            try commit(session)
        } else {
            try staging.seal(session.stagedFile, descriptor: session.descriptor)
        }
        guard let id = session.changeID else { return }
        session.submitted = true
        engine.release(id)
        try await engine.wait(for: id)
    }

    /// The staged file's fsync, on a thread of its own: it can take a second, and tasks must not block.
    private func seal(_ session: WriteSession) async throws {
        let (staging, file, descriptor) = (self.staging, session.stagedFile, session.descriptor)
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try staging.seal(file, descriptor: descriptor) })
            }
        }
    }

    /// `truncate(2)` by path: as opening, truncating and closing.
    func truncate(_ node: NodeSnapshot, to size: Int64) async throws {
        let session = try await open(node, truncate: size == 0)
        defer { try? close(session) }
        if size != 0 {
            // On a task: the copy is awaited here, never waited for by blocking the pool.
            if let content = session.uncopied {
                try await reader.copy(content, into: session.descriptor)
                session.uncopied = nil
            }
            try truncate(session, to: size)
        }
        session.dirty = true
    }

    /// `utimens`: the time travels with the document's next upload; a document with nothing to upload is
    /// given it by a metadata update (which SharePoint counts as a version).
    func setModified(_ node: NodeSnapshot, to date: Date) throws {
        tree.setLocal(node.ino, modified: date, timeSet: true)
        if let session = lock.withLock({ sessions[node.ino] }) {
            session.timesChanged = true  // goes with the session's upload, or alone at its close
            return
        }
        if let upload = lock.withLock({ uploads[node.ino] }), try engine.amend(upload, { $0.modified = date }) { return }
        if let current = tree.current(node.ino) { try sendTime(of: current) }
    }

    /// A document's mtime by a metadata update (SharePoint counts it as a version).
    private func sendTime(of node: NodeSnapshot) throws {
        let date = node.modified
        guard !node.localOnly, let itemID = node.itemID, node.level == .document else { return }
        // Named by item, with no parent: a move that moves nothing, carrying only the time.
        var change = PendingChange(.move, name: node.name, itemID: itemID, of: try tree.place(ofDirectory: node.parent))
        change.modified = date
        let saved = try engine.record(change)
        track(saved.id!, ChangeOwner(ino: node.ino, parent: node.parent), upload: false)
    }

    // MARK: Directories

    func mkdir(parent: UInt64, name: String) async throws -> NodeSnapshot {
        let place = try tree.place(ofDirectory: parent)
        _ = try check(name, isFolder: true)
        if try await tree.child(of: parent, named: name) != nil { throw NamespaceError.exists }
        let node = try tree.addLocal(parent: parent, name: name, type: .directory, stagedFile: nil, localOnly: false)
        let saved = try engine.record(PendingChange(.createFolder, name: name, in: place))
        track(saved.id!, ChangeOwner(ino: node.ino, parent: parent), upload: false)
        return node
    }

    // MARK: Removing

    /// `unlink` and `rmdir`.
    func remove(parent: UInt64, name: String, directory: Bool) async throws {
        _ = try tree.place(ofDirectory: parent)
        guard var node = try await tree.child(of: parent, named: name) else { throw NamespaceError.notFound }
        if directory {
            guard node.type == .directory else { throw NamespaceError.notDirectory }
            guard try await tree.list(node.ino).isEmpty else { throw NamespaceError.notEmpty }
        } else if node.type == .directory {
            throw NamespaceError.isDirectory
        }
        node = try await settle(node, withdrawing: true)
        tree.detach(node.ino)
        if let session = lock.withLock({ sessions[node.ino] }) { session.unlinked = true }
        if let shadow = lock.withLock({ shadows.first(where: { $0.value.ino == node.ino })?.value }) {
            lock.withLock { shadows[shadow.itemID] = nil }
            try removeRemote(itemID: shadow.itemID, node: node, parent: shadow.parent)
        } else if let itemID = node.itemID, !node.localOnly {
            try removeRemote(itemID: itemID, node: node, parent: parent)
        } else if let file = node.stagedFile, lock.withLock({ sessions[node.ino] == nil }) {
            try staging.remove(file)
        }
    }

    private func removeRemote(itemID: String, node: NodeSnapshot, parent: UInt64) throws {
        let place = try tree.place(ofDirectory: parent)
        tree.hide(itemID)
        let saved = try engine.record(PendingChange(.delete, name: node.name, itemID: itemID, of: place))
        track(saved.id!, ChangeOwner(ino: node.ino, parent: parent, hiddenItem: itemID), upload: false)
    }

    /// Waits for a node's change that is being sent, so what follows knows the item it made; with
    /// `withdrawing` (the node is going away), first withdraws its uploads and folder creations that have
    /// not started. Returns the node as it is then.
    private func settle(_ node: NodeSnapshot, withdrawing: Bool) async throws -> NodeSnapshot {
        let ids = lock.withLock { pending[node.ino] ?? [] }
        for id in ids.sorted() {
            guard let change = try support.journal.change(id: id) else { continue }
            if change.state == .staged && !withdrawing { continue }
            if withdrawing, change.kind == .upload || change.kind == .createFolder, try engine.withdraw(id) {
                forget(id)
                if change.kind == .upload { tree.setLocal(node.ino, stagedFile: .some(nil)) }
                continue
            }
            try? await engine.wait(for: id)
        }
        return tree.current(node.ino) ?? node
    }

    // MARK: Renaming

    func rename(parent: UInt64, name: String, to newParent: UInt64, newName: String, noReplace: Bool) async throws {
        _ = try tree.place(ofDirectory: parent)  // EPERM for records and objects
        let to = try tree.place(ofDirectory: newParent)
        guard let found = try await tree.child(of: parent, named: name) else { throw NamespaceError.notFound }
        let targetLocal = try check(newName, isFolder: found.type == .directory)
        let target = try await tree.child(of: newParent, named: newName)
        if let target {
            if target.ino == found.ino { return }
            if noReplace { throw NamespaceError.exists }
            if target.type == .directory && found.type != .directory { throw NamespaceError.isDirectory }
            if target.type != .directory && found.type == .directory { throw NamespaceError.notDirectory }
            if target.type == .directory, try await !tree.list(target.ino).isEmpty { throw NamespaceError.notEmpty }
        }
        var replacedItem: (id: String, eTag: String?)?
        if let target {
            let settled = try await settle(target, withdrawing: true)
            if let itemID = settled.itemID, !settled.localOnly { replacedItem = (itemID, settled.eTag) }
            if let file = settled.stagedFile, lock.withLock({ sessions[settled.ino] == nil }) { try? staging.remove(file) }
        }
        let source = try await settle(found, withdrawing: false)
        try tree.move(source.ino, to: newParent, name: newName)

        let shadow = lock.withLock { shadows.first(where: { $0.value.ino == source.ino })?.value }
        let sourceRemote = !source.localOnly && source.itemID != nil
        switch (sourceRemote || shadow != nil, targetLocal) {
        case (true, true) where shadow == nil:
            // A document renamed to a temporary name: the service keeps it where it was, for now.
            lock.withLock { shadows[source.itemID!] = Shadow(ino: source.ino, itemID: source.itemID!, eTag: source.eTag, parent: parent, name: name) }
            tree.setLocal(source.ino, localOnly: true)
        case (true, true):
            break  // a temporary name to another temporary name
        case (false, true):
            // Bytes not sent yet become local-only: their upload is withdrawn.
            for id in lock.withLock({ pending[source.ino] ?? [] }) where try engine.withdraw(id) { forget(id) }
            tree.setLocal(source.ino, localOnly: true)
        case (true, false):
            let itemID = shadow?.itemID ?? source.itemID!
            if let shadow { lock.withLock { shadows[shadow.itemID] = nil } }
            if let replacedItem, replacedItem.id != itemID {
                try removeRemote(itemID: replacedItem.id, node: source, parent: newParent)
            }
            tree.setLocal(source.ino, localOnly: false)
            // A temporary name given back: the document never left its place in SharePoint.
            if shadow?.parent != newParent || shadow?.name != newName {
                let saved = try engine.record(PendingChange(.move, name: newName, itemID: itemID, in: to))
                track(saved.id!, ChangeOwner(ino: source.ino, parent: newParent), upload: false)
            }
        case (false, false):
            // Not on the service yet (a new document, or a temporary file given its final name): its bytes
            // go up under the new name, replacing the document that had it.
            tree.setLocal(source.ino, localOnly: false)
            let reused = replacedItem ?? takeShadow(parent: newParent, name: newName).map { ($0.itemID, $0.eTag) }
            if source.type == .directory {
                for id in lock.withLock({ pending[source.ino] ?? [] }) {
                    try engine.amend(id) { change in
                        change.name = newName
                        change.put(in: to)
                    }
                }
            } else {
                try restage(source.ino, itemID: reused?.id, baseETag: reused?.eTag)
            }
        }
    }

    /// Puts a document's local bytes (staged, or being written) into a new upload change for its current
    /// name and place, replacing `itemID` when given.
    private func restage(_ ino: UInt64, itemID: String?, baseETag: String?) throws {
        if let session = lock.withLock({ sessions[ino] }) {
            session.itemID = itemID ?? session.itemID
            session.baseETag = baseETag
            if let id = session.changeID, try engine.withdraw(id) { forget(id) }
            session.changeID = nil
            session.dirty = true
            session.submitted = false
            try commit(session)
            return
        }
        guard let node = tree.current(ino), let file = node.stagedFile else { return }
        let place = try tree.place(ofDirectory: node.parent)
        for id in lock.withLock({ pending[ino] ?? [] }) {
            // Keep the bytes: withdrawing would delete the staged file, so a change not started is amended instead.
            if try support.journal.change(id: id)?.kind == .upload, try engine.amend(id, { change in
                change.name = node.name
                change.put(in: place)
                change.itemID = itemID ?? change.itemID
                change.baseETag = baseETag ?? change.baseETag
            }) {
                return
            }
        }
        let size = ((try? FileManager.default.attributesOfItem(atPath: staging.path(of: file)))?[.size] as? NSNumber)?.int64Value ?? node.size
        var change = PendingChange(.upload, name: node.name, itemID: itemID, in: place)
        change.stagedFile = file
        change.size = size
        change.modified = node.timeSet ? node.modified : nil
        change.baseETag = baseETag
        let saved = try engine.record(change)
        track(saved.id!, ChangeOwner(ino: ino, parent: node.parent), upload: true)
    }

    private func takeShadow(parent: UInt64, name: String) -> Shadow? {
        lock.withLock {
            guard let shadow = shadows.values.first(where: { $0.parent == parent && $0.name == name }) else { return nil }
            shadows[shadow.itemID] = nil
            return shadow
        }
    }

    /// Waits until document `ino` is in SharePoint (its pending upload done), for edits that need its item.
    /// A document still open for writing has no final bytes yet: EBUSY.
    func uploaded(_ ino: UInt64) async throws {
        let (open, upload) = lock.withLock { (sessions[ino] != nil, uploads[ino]) }
        guard let upload else { return }
        if open { throw POSIXError(.EBUSY) }
        engine.release(upload)
        try await engine.wait(for: upload)
    }

    // MARK: Status

    /// `user.crmfs.sync` of a document.
    func syncStatus(_ node: NodeSnapshot) -> String {
        if node.localOnly { return "local-only" }
        let (session, changes, note) = lock.withLock { (sessions[node.ino], pending[node.ino] ?? [], conflictNotes[node.ino]) }
        if let session, session.dirty || session.changeID == nil && node.itemID == nil { return "pending" }
        for id in changes.sorted() {
            if let status = engine.status(of: id) { return status.description }
        }
        return note ?? "clean"
    }

    /// `crmfs sync`: returns once every change is sent; throws when some gave up.
    func drain() async throws {
        try await engine.drain()
        let failed = engine.givenUp
        if !failed.isEmpty { throw WritebackError.gaveUp(failed.values.sorted().joined(separator: "; ")) }
    }

    // MARK: Engine outcomes

    private func track(_ id: Int64, _ owner: ChangeOwner, upload: Bool) {
        lock.withLock { register(id, owner, upload: upload) }
        tree.pin(owner.ino)
    }

    /// Books a change under its node (lock held).
    private func register(_ id: Int64, _ owner: ChangeOwner, upload: Bool) {
        owners[id] = owner
        pending[owner.ino, default: []].insert(id)
        if upload { uploads[owner.ino] = id }
    }

    /// Forgets a change that was withdrawn or is done; returns who it belonged to.
    @discardableResult
    private func forget(_ id: Int64) -> ChangeOwner? {
        guard let owner = lock.withLock({ () -> ChangeOwner? in
            guard let owner = owners.removeValue(forKey: id) else { return nil }
            pending[owner.ino]?.remove(id)
            if pending[owner.ino]?.isEmpty == true { pending[owner.ino] = nil }
            if uploads[owner.ino] == id { uploads[owner.ino] = nil }
            return owner
        }) else { return nil }
        tree.unpin(owner.ino)
        return owner
    }

    private func settled(_ outcome: ChangeOutcome) {
        switch outcome {
        case .done(let change, let item):
            guard let id = change.id else { return }
            guard let owner = forget(id) else {
                tree.forgetRestored(id)
                return
            }
            if let hidden = owner.hiddenItem { tree.reveal(hidden) }
            if change.parentPath != nil, let folderID = change.parentItemID { tree.folderMade(owner.parent, itemID: folderID) }
            guard let item else { return }
            if change.kind == .upload, let node = tree.current(owner.ino), node.name != change.name {
                // Kept both after a conflict: the copy went up under its own name; the user's name shows the remote one.
                tree.setLocal(owner.ino, stagedFile: node.stagedFile == change.stagedFile ? .some(nil) : nil)
                tree.expire(owner.parent)
                return
            }
            tree.adopt(owner.ino, item: item, sentFile: change.stagedFile)
        case .conflict(let change, let policy):
            guard let id = change.id, let owner = lock.withLock({ owners[id] }) else { return }
            let note: String
            switch policy {
            case .keepBoth: note = "conflict: the remote copy changed; yours is uploaded as \(WritebackEngine.conflictName(change.name, hostname: ProcessInfo.processInfo.hostName, date: Date()))"
            case .localWins: note = "conflict: the remote copy changed; yours replaced it"
            case .remoteWins:
                note = "conflict: the remote copy changed and was kept; yours is in the state directory's conflicts/"
                forget(id)
                tree.setLocal(owner.ino, stagedFile: .some(nil))
                tree.expire(owner.parent)
            }
            lock.withLock { conflictNotes[owner.ino] = note }
        case .gaveUp(let change, let reason):
            logger.error("not sent after retries; kept in the journal", metadata: ["name": "\(change.name)", "error": "\(reason)"])
        }
    }

    private func copyFile(_ path: String, into descriptor: Int32) throws {
        let source = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard source >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { Glibc.close(source) }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var offset: off_t = 0
        while true {
            let count = buffer.withUnsafeMutableBytes { pread(source, $0.baseAddress, $0.count, offset) }
            guard count >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            if count == 0 { return }
            guard buffer.withUnsafeBytes({ pwrite(descriptor, $0.baseAddress, count, offset) }) == count else {
                throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
            }
            offset += off_t(count)
        }
    }
}

/// An error handed back from a task to the thread that waits for it.
private final class LockedResult: @unchecked Sendable {
    var error: Error?
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

    /// Goes into `place`: its folder by item, or by path while that folder is not made yet; its record.
    mutating func put(in place: WritePlace) {
        parentItemID = place.parentItemID
        parentPath = place.parentItemID == nil ? place.parentPath : nil
        recordID = place.recordID
        objectName = place.objectName
    }
}
