import CLinux
import Foundation
import HTTP
import Namespace
import Writeback

/// Documents open for writing: create, open, write, truncate, close, fsync and times. Writes go to the
/// session's staged copy on the kernel's thread; `close` seals the copy and journals it; `fsync` waits
/// for the upload. The lock order is written at the top of WriteSession.swift.
extension LocalWrites {
    /// `create`: a new, empty document in `parent`. If the name turned out to exist after all (it
    /// appeared remotely since the kernel looked), the open flags decide: EEXIST with O_EXCL, else it is
    /// opened (and truncated with O_TRUNC).
    public func create(parent: UInt64, name: String, flags: Int32) async throws -> (NodeSnapshot, WriteSession) {
        _ = try tree.place(ofDirectory: parent)  // EPERM above the records
        let localOnly = try check(name, isFolder: false)
        if let existing = try await tree.child(of: parent, named: name) {
            if flags & O_EXCL != 0 { throw NamespaceError.exists }
            guard existing.type == .file else { throw NamespaceError.isDirectory }
            let session = try await open(existing, truncate: flags & O_TRUNC != 0)
            return (existing, session)
        }
        try await checkCase(name, in: parent, localOnly: localOnly)
        let copy = try newCopy()
        let node = try tree.addLocal(parent: parent, name: name, type: .file, stagedFile: copy.name, localOnly: localOnly)
        // A new file under the name a renamed-away document left: its bytes are that document's next version.
        let shadow = localOnly ? nil : takeShadow(parent: parent, name: name)
        let session = WriteSession(ino: node.ino, copy: copy, dirty: true, itemID: shadow?.itemID, baseETag: shadow?.base.eTag)
        session.withState { $0.baseHash = shadow?.base.hash }
        lock.withLock { document(node.ino) { $0.session = session; $0.takenShadow = shadow } }
        return (node, session)
    }

    /// Opens document `node` for writing: the session already open on it, or a new one whose staged copy
    /// starts empty (O_TRUNC), or takes the document's bytes (local or remote) at the first write: opening
    /// for writing copies nothing (`touch` opens for writing).
    public func open(_ node: NodeSnapshot, truncate: Bool) async throws -> WriteSession {
        guard node.level == .document, node.type == .file else { throw NamespaceError.notPermitted("only documents can be written") }
        try tree.requireWritable(node.ino)
        // A last close still journaling this document decides first what its bytes become: if it fails, they
        // stay with the document as its open session (a session started beside it would drop them).
        await lastCloseEnded(of: node.ino)
        let node = tree.current(node.ino) ?? node  // what that close made of it (its staged bytes)
        if let session = lock.withLock({ () -> WriteSession? in
            guard let session = documents[node.ino]?.session else { return nil }
            return session.withState { state in
                guard !state.submitted else { return nil }
                state.opens += 1
                return session
            }
        }) {
            if truncate {
                do { try self.truncate(session, to: 0) } catch {
                    try? close(session)  // the open this call made, so the session is not held open for ever
                    throw error
                }
            }
            return session
        }
        let copy = try newCopy()
        var source = WriteSession.Source.none
        if !truncate, let staged = node.stagedFile, case let descriptor = Glibc.open(staging.path(of: staged), O_RDONLY | O_CLOEXEC), descriptor >= 0 {
            source = .local(StagedCopy(name: staged, descriptor: descriptor))
        } else if !truncate, let content = node.content, content.size > 0 {
            source = .remote(RemoteFill(content: content, blockSize: Int64(reader.cache.blockSize)))
            // Sparse at the document's size, so the copy's size is right before its bytes arrive.
            guard ftruncate(copy.descriptor, off_t(content.size)) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        }
        let pendingUpload = lock.withLock { documents[node.ino]?.upload }
        // Based on the version the user sees; when an upload of ours is still on its way, the engine
        // fills in the version it makes.
        let session = WriteSession(ino: node.ino, copy: copy, dirty: truncate, itemID: node.itemID ?? itemOfUpload(pendingUpload),
                                   baseETag: pendingUpload == nil ? node.eTag : nil, source: source)
        if pendingUpload == nil { session.withState { $0.baseHash = node.content?.hash } }
        lock.withLock {
            document(node.ino) { document in
                document.session = session
                document.settledNote = nil
            }
        }
        if truncate { tree.setLocal(node.ino, stagedFile: .file(copy.name), size: 0) }
        return session
    }

    /// Writes `length` bytes at `offset` with `put`, which writes them to the staged copy's descriptor and
    /// returns the count (or a negative errno). On a kernel request thread: it may wait for the remote
    /// blocks the write covers in part.
    public func write(_ session: WriteSession, at offset: Int64, length: Int, _ put: (Int32) -> Int) throws -> Int {
        try prepare(session, offset: offset, length: Int64(length))
        while true {
            try startOver(session)
            // Shared with other writers; an fsync handing the copy over waits for this write, or this
            // write sees the copy handed over and starts over.
            let written = session.shared { () -> Int? in
                let copy = session.withState { $0.submitted ? nil : $0.copy }
                guard let copy else { return nil }
                let written = put(copy.descriptor)
                guard written >= 0 else { return written }
                // Large writes start going to disk as they come, so the fsync at close finds little left to do.
                let flush = session.withState { state -> Bool in
                    state.dirty = true
                    state.changedBytes = true
                    state.unflushedBytes += written
                    guard state.unflushedBytes >= Self.writebackStep else { return false }
                    state.unflushedBytes = 0
                    return true
                }
                if flush { _ = crmfs_start_writeback(copy.descriptor) }
                return written
            }
            guard let written else { continue }
            guard written >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: Int32(-written)) ?? .EIO) }
            tree.wrote(session.ino, through: offset + Int64(written))
            return written
        }
    }

    /// `ftruncate` through an open handle, on a kernel request thread.
    public func truncate(_ session: WriteSession, to size: Int64) throws {
        if size > 0 {
            try completeCopyBlocking(session)
        } else {
            session.fill?.cancel()
            session.withState { $0.source = .none }
        }
        try startOver(session)
        let copy = try session.exclusive { () -> StagedCopy in
            let copy = session.copy
            guard ftruncate(copy.descriptor, off_t(size)) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            session.withState { state in
                state.dirty = true
                state.changedBytes = true
            }
            return copy
        }
        tree.setLocal(session.ino, stagedFile: .file(copy.name), size: size, modified: Date())
    }

    /// `truncate(2)` by path: as opening, truncating and closing.
    public func truncate(_ node: NodeSnapshot, to size: Int64) async throws {
        let session = try await open(node, truncate: size == 0)
        do {
            if size != 0 {
                try await completeCopy(session)
                try truncate(session, to: size)
            }
        } catch {
            try? close(session)
            throw error
        }
        // Journaled before it returns, as a close is: a failure (a full disk) is this call's.
        try close(session)
    }

    // MARK: The staged copy

    /// Before a write of `offset..<offset+length`: the staged copy holds the document's bytes there.
    /// A local source is copied whole (it is on this disk); a remote one only in the blocks the write
    /// covers in part, and the rest is copied in the background.
    private func prepare(_ session: WriteSession, offset: Int64, length: Int64) throws {
        switch session.withState({ $0.source }) {
        case .none:
            // Nothing to copy (an empty document opened without O_TRUNC): the copy is the document from its
            // first write, for other handles too, which would otherwise read the service's empty version at the new size.
            tree.showStaged(session.ino, file: session.copy.name)
        case .local:
            try copyLocalSource(session)
        case .remote(let fill):
            try fill.ready(offset: offset, length: length, overwrite: true) { index in try fetchBlocking(index, of: fill, into: session) }
            startBackgroundCopy(session, fill)
            finishCopyIfComplete(session, fill)
        }
    }

    /// Before a read through a writing handle of `offset..<offset+length`: the staged copy holds the
    /// document's bytes there (the user's writes, and the document's own around them). Returns the copy
    /// to read, held open for the read.
    public func readable(_ session: WriteSession, offset: Int64, length: Int64) throws -> OpenStagedCopy {
        switch session.withState({ $0.source }) {
        case .none: break
        case .local: try copyLocalSource(session)
        case .remote(let fill):
            try fill.ready(offset: offset, length: length, overwrite: false) { index in try fetchBlocking(index, of: fill, into: session) }
            startBackgroundCopy(session, fill)
            finishCopyIfComplete(session, fill)
        }
        return OpenStagedCopy(copy: session.copy)
    }

    /// Copies an earlier version's staged file into the session's copy, once.
    private func copyLocalSource(_ session: WriteSession) throws {
        let copied = try session.exclusive { () -> StagedCopy? in
            guard case .local(let file) = session.withState({ $0.source }) else { return nil }
            let copy = session.copy
            try copyFile(from: file.descriptor, into: copy.descriptor)
            session.withState { $0.source = .none }
            return copy
        }
        if let copied { tree.setLocal(session.ino, stagedFile: .file(copied.name)) }
    }

    /// The whole document in the staged copy, waiting on this (kernel) thread.
    func completeCopyBlocking(_ session: WriteSession) throws {
        guard let fill = try copyToComplete(session) else { return }
        try fill.waitUntilComplete()
        finishCopyIfComplete(session, fill)
    }

    /// The whole document in the staged copy, awaited on a task.
    func completeCopy(_ session: WriteSession) async throws {
        guard let fill = try copyToComplete(session) else { return }
        try await fill.complete()
        finishCopyIfComplete(session, fill)
    }

    /// Copies a local source now; for a remote one, (re)starts its background copy and returns it to wait for.
    private func copyToComplete(_ session: WriteSession) throws -> RemoteFill? {
        switch session.withState({ $0.source }) {
        case .none: return nil
        case .local:
            try copyLocalSource(session)
            return nil
        case .remote(let fill):
            fill.clearFailure()
            startBackgroundCopy(session, fill, again: true)
            return fill
        }
    }

    /// Copies the blocks no write asked for yet, in order, on a thread of its own (each block is fetched
    /// through the cache with the client's retries). A failure stops it; what needs the whole copy
    /// starts it again.
    private func startBackgroundCopy(_ session: WriteSession, _ fill: RemoteFill, again: Bool = false) {
        guard fill.startBackground(again: again) else { return }
        DispatchQueue.global(qos: .utility).async { [self] in
            while let index = fill.claimNext() {
                do {
                    try fetchBlocking(index, of: fill, into: session)
                    fill.finished(index, error: nil)
                } catch {
                    logger.warning("copying a document's remote bytes stopped", metadata: ["item": "\(fill.content.itemID)", "error": "\(error)"])
                    fill.finished(index, error: error)
                    break
                }
            }
            fill.backgroundEnded()
            finishCopyIfComplete(session, fill)
        }
    }

    /// Once every block is in, the copy is the document's local bytes: readers opening it now read it.
    private func finishCopyIfComplete(_ session: WriteSession, _ fill: RemoteFill) {
        // A cancelled copy (truncated to nothing, removed, closed unwritten) counts as complete but holds holes.
        guard fill.isComplete, !fill.isCancelled else { return }
        let copy = session.withState { state -> StagedCopy? in
            guard case .remote(let current) = state.source, current === fill else { return nil }
            state.source = .none
            return state.copy
        }
        if let copy, !session.withState({ $0.unlinked }) { tree.setLocal(session.ino, stagedFile: .file(copy.name)) }
    }

    /// Fetches one block of the remote document and writes it into the session's copy. Blocks the calling
    /// thread (never a task's) while a task downloads it.
    private func fetchBlocking(_ index: Int64, of fill: RemoteFill, into session: WriteSession) throws {
        let done = DispatchSemaphore(value: 0)
        let result = BlockResult()
        Task {
            do { result.bytes = try await reader.blockBytes(fill.content, index: index) } catch { result.error = error }
            done.signal()
        }
        done.wait()
        if let error = result.error { throw error }
        let bytes = result.bytes ?? Data()
        try session.shared {
            // Cancelled while it was fetched (truncated to nothing, removed): its bytes must not land in the copy.
            guard !fill.isCancelled else { return }
            let descriptor = session.copy.descriptor
            try bytes.withUnsafeBytes { try pwriteAll(descriptor, $0, at: off_t(index * fill.blockSize)) }
        }
    }

    /// A write after `fsync` handed the staged copy to the engine goes to a fresh copy of it.
    func startOver(_ session: WriteSession) throws {
        guard session.withState({ $0.submitted }) else { return }  // every write comes here: the common case costs one lock
        // The item the handed-over bytes made, when their upload is done already (a new document's first
        // version): the next version replaces it. One still under way tells later changes itself.
        let knownItem = tree.current(session.ino)?.itemID
        let fresh = try session.exclusive { () -> StagedCopy? in
            guard session.withState({ $0.submitted }) else { return nil }
            let fresh = try newCopy()
            do { try copyFile(from: session.copy.descriptor, into: fresh.descriptor) } catch {
                try? staging.remove(fresh.name)
                throw error
            }
            session.withState { state in
                state.copy = fresh
                state.changeID = nil
                state.submitted = false
                state.baseETag = nil
                state.baseHash = nil
                state.itemID = state.itemID ?? knownItem
            }
            return fresh
        }
        if let fresh { tree.setLocal(session.ino, stagedFile: .file(fresh.name)) }
    }

    private func newCopy() throws -> StagedCopy {
        let (name, descriptor) = try staging.create()
        return StagedCopy(name: name, descriptor: descriptor)
    }

    // MARK: Close and fsync

    /// `flush` (every close): the bytes are on disk and the change is in the journal before this returns.
    /// On a kernel request thread: it waits for a remote copy still under way.
    public func commit(_ session: WriteSession) throws {
        let (dirty, unlinked) = session.withState { ($0.dirty, $0.unlinked) }
        if unlinked { return }
        // No bytes: a time noted alone (touch) rides on a pending upload, or goes as a metadata update.
        guard dirty else { return try sendNotedTime(session) }
        try completeCopyBlocking(session)
        // Looked at again with the copy held alone: a rename recording these bytes meanwhile (a late
        // release racing it) has sealed and recorded them already, and a second change of the same
        // staged file would lose it to the first one's upload. A file removed meanwhile ended its copy
        // unfinished (`RemoteFill.cancel`): nothing of it goes.
        try session.exclusive { if session.withState({ $0.dirty && !$0.unlinked }) { try sealAndRecord(session) } }
    }

    /// Makes the session's copy durable and journals it; a failed flush is noted for `user.crmfs.sync`.
    /// With the copy held alone.
    private func sealAndRecord(_ session: WriteSession) throws {
        let copy = session.copy
        do {
            try staging.seal(copy.name, descriptor: copy.descriptor)
            session.withState { $0.dirty = false }
            try record(session, sealed: true)
        } catch {
            // Sealed but not journaled (a full disk fails SQLite's commit) is not durable either: the bytes
            // stay dirty, to be sealed and recorded again. A change already recorded for this document
            // (at an earlier flush) waits for that, as after a failed fsync: held, and reported by
            // `user.crmfs.sync` and `crmfs sync`, which must not wait for it.
            let changeID = session.withState { state -> Int64? in
                state.dirty = true
                state.sealFailure = "\(error)"
                return state.submitted ? nil : state.changeID
            }
            if let changeID { engine.sealFailed(changeID, reason: "\(error)") }
            throw error
        }
        session.withState { $0.sealFailure = nil }
    }

    /// Journals the session's bytes as an upload (or updates its change not started yet). `sealed` says
    /// whether they are on disk already. With the session's copy held alone.
    private func record(_ session: WriteSession, sealed: Bool) throws {
        guard let node = tree.current(session.ino), !node.localOnly else { return }
        var (copy, changeID, itemID, baseETag, baseHash) = session.withState { ($0.copy, $0.changeID, $0.itemID, $0.baseETag, $0.baseHash) }
        if itemID == nil, let made = node.itemID {
            // Opened while our upload of an earlier version was on its way, which has made the document
            // since: these bytes are its next version, based on the version that upload made.
            itemID = made
            baseETag = node.eTag
            baseHash = node.content?.hash
            session.withState { state in
                state.itemID = made
                state.baseETag = node.eTag
                state.baseHash = node.content?.hash
            }
        } else if itemID == nil, let named = itemOfUpload(lock.withLock({ documents[session.ino]?.upload })) {
            // The upload on its way names an item the node does not know yet (a document renamed over
            // another, a new file under the name a renamed-away one left): these bytes are that item's next
            // version, based on the version the upload makes (the engine fills it in).
            itemID = named
            session.withState { $0.itemID = named }
        }
        let size = copy.size
        if let id = changeID, try engine.amend(id, { change in
            change.size = size
            change.modified = node.timeSet ? node.modified : nil
            change.name = node.name
            change.sealed = sealed
        }) {
            session.withState { $0.timesChanged = false }
            return
        }
        var change = PendingChange(.upload, name: node.name, itemID: itemID, in: try tree.place(ofDirectory: node.parent))
        change.requester = session.requester ?? change.requester
        change.stagedFile = copy.name
        change.size = size
        change.modified = node.timeSet ? node.modified : nil
        change.baseETag = baseETag
        change.baseHash = baseETag == nil ? nil : baseHash
        change.sealed = sealed
        let previous = lock.withLock { documents[session.ino]?.upload }
        // A time of this document still waiting (or given up) would land on the new version, which carries its own.
        let previousItem = try previous.flatMap { try engine.change(id: $0) }?.itemID
        if let itemID = change.itemID ?? previousItem {
            for id in try engine.withdrawEdits(of: itemID, timesOnly: true) { forget(id) }
        }
        let opens = lock.withLock { session.withState { $0.opens } }
        let saved: PendingChange
        if let previous {
            // A newer version of a document whose previous one has not started: the previous one need not go
            // (replaced in one step: if this one cannot be journaled, that one still goes).
            let recorded = try engine.record(change, replacing: previous, held: opens > 0)
            saved = recorded.saved
            if recorded.replaced { forget(previous) }
        } else {
            saved = try engine.record(change, held: opens > 0)
        }
        track(saved.id!, ChangeOwner(ino: session.ino, parent: node.parent), upload: true)
        session.withState { state in
            state.changeID = saved.id
            state.timesChanged = false
        }
    }

    /// `release` of the last handle: the change may go.
    public func close(_ session: WriteSession) throws {
        let last = lock.withLock { () -> Bool in
            let opens = session.withState { state -> Int in
                state.opens -= 1
                return state.opens
            }
            guard opens <= 0 else { return false }
            document(session.ino) { if $0.session === session { $0.session = nil } }
            closing[ObjectIdentifier(session)] = session
            return true
        }
        guard last else { return }
        defer { closed(session) }
        // Bytes written (or a time set) since the last flush are journaled first.
        do {
            try commit(session)
        } catch {
            // Not durable (a full disk, or the document's earlier bytes could not be copied in an outage): the
            // session stays with its document, so its bytes are not dropped, and `crmfs sync` or a later close
            // tries again.
            lock.withLock { document(session.ino) { if $0.session == nil { $0.session = session } } }
            throw error
        }
        // Decided with the copy held alone: a rename or hand-over recording this document's change right
        // now has either recorded it already, held (it saw the file open), and it is released here; or it
        // has yet to look at the open count, which is zero now, and records it unheld.
        let release = session.exclusive { () -> Int64? in
            let (unlinked, changeID, changedBytes, submitted, copy) = session.withState { ($0.unlinked, $0.changeID, $0.changedBytes, $0.submitted, $0.copy) }
            if unlinked || !changedBytes {
                // Removed while open, or opened for writing and never written: its copy goes nowhere
                // (unless a change already carries it). A change a flush recorded while the file was being
                // removed (held, as the file was open) goes with it.
                session.fill?.cancel()
                if unlinked, !submitted, let changeID, (try? engine.withdraw(changeID)) == true {
                    forget(changeID)
                    session.withState { $0.changeID = nil }
                } else if changeID == nil {
                    try? engine.discardStaged(copy.name)
                }
                return nil
            }
            // (A change an fsync handed over is on its way already.)
            return submitted ? nil : changeID
        }
        if let release { engine.release(release, after: quietPeriod) }
    }

    /// Returns once no last close of document `ino` is under way (see `open`).
    func lastCloseEnded(of ino: UInt64) async {
        while lock.withLock({ closing.values.contains { $0.ino == ino } }) {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let waiting = lock.withLock { () -> Bool in
                    guard closing.values.contains(where: { $0.ino == ino }) else { return false }
                    waitingForClose[ino, default: []].append(continuation)
                    return true
                }
                if !waiting { continuation.resume() }
            }
        }
    }

    /// A last close has ended (its bytes journaled, or kept with the document after a failure): opens
    /// waiting for it go on.
    private func closed(_ session: WriteSession) {
        let waiters = lock.withLock { () -> [CheckedContinuation<Void, Never>] in
            closing[ObjectIdentifier(session)] = nil
            guard !closing.values.contains(where: { $0.ino == session.ino }) else { return [] }
            return waitingForClose.removeValue(forKey: session.ino) ?? []
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Lets go of a session kept after its last close could not make its bytes durable (see `close`) once
    /// nothing is left for it to do: its bytes handed over, or its file removed (with its copy, unless a
    /// change carries it). A session still open is left alone.
    func retireIfClosed(_ session: WriteSession) {
        let retired = lock.withLock { () -> Bool in
            guard session.withState({ $0.opens <= 0 }), documents[session.ino]?.session === session else { return false }
            document(session.ino) { $0.session = nil }
            return true
        }
        guard retired else { return }
        let (unlinked, changeID, copy) = session.withState { ($0.unlinked, $0.changeID, $0.copy) }
        if unlinked && changeID == nil { try? engine.discardStaged(copy.name) }
    }

    /// How many written bytes make the staged file's pages start for the disk.
    static let writebackStep = 16 << 20

    /// `fsync`: returns once this file's bytes are uploaded and linked (at once for a local-only file).
    /// New bytes are journaled unsealed and start uploading while the disk flush runs beside them; only
    /// the last fragment waits for the flush. A crash before it ends sets the change aside at the next start
    /// (fsync had not returned, so nothing was promised). A failed flush fails this fsync with its errno,
    /// keeps the bytes staged, and holds the change (and only it) until the next close seals them.
    public func fsync(_ session: WriteSession) async throws {
        let (dirty, unlinked, timesChanged) = session.withState { ($0.dirty, $0.unlinked, $0.timesChanged) }
        if dirty, !unlinked, tree.current(session.ino)?.localOnly == false {
            try await completeCopy(session)
            let handedOver = try session.exclusive { () -> (Int64, StagedCopy)? in
                // Looked at again with the copy held: a file removed or renamed over while the copy completed
                // sends nothing.
                if session.withState({ $0.unlinked }) { return nil }
                do {
                    try record(session, sealed: false)
                } catch {
                    // Not journaled (a full disk fails SQLite's commit): the bytes stay dirty, so the next
                    // close or `crmfs sync` records them; until then `user.crmfs.sync` says why.
                    session.withState { $0.sealFailure = "\(error)" }
                    throw error
                }
                return session.withState { state in
                    state.dirty = false
                    guard let id = state.changeID else { return nil }
                    state.submitted = true
                    return (id, state.copy)
                }
            }
            if let (id, copy) = handedOver {
                engine.release(id)
                do {
                    try await seal(copy)
                    try engine.sealed(id)
                } catch {
                    // The bytes stay in the copy; the next close seals them and amends the change, once its
                    // upload attempt has stopped (until then the copy stays handed over: a flush meanwhile
                    // must not record a second change of the same bytes).
                    engine.sealFailed(id, reason: "\(error)")
                    await engine.notRunning(id)
                    session.withState { state in
                        state.sealFailure = "\(error)"
                        guard state.changeID == id else { return }  // a write started a new copy meanwhile
                        state.dirty = true
                        state.submitted = false
                    }
                    throw error
                }
            }
        } else if dirty || timesChanged {
            try await completeCopy(session)
            try commit(session)
        } else {
            let copy = session.copy
            try staging.seal(copy.name, descriptor: copy.descriptor)
        }
        guard let id = session.withState({ state -> Int64? in
            state.submitted = state.changeID != nil || state.submitted
            return state.changeID
        }) else { return }
        engine.release(id)
        try await engine.wait(for: id, tryingAgain: true)
    }

    /// Seals an open document's bytes so far into its change and hands that change to the engine (later
    /// writes start a new copy); returns the change, or nil when it has none to send.
    func handOver(_ session: WriteSession) async throws -> Int64? {
        // A time set with no bytes since (one a failed close left) goes as it would at a close.
        try sendNotedTime(session)
        guard session.withState({ !$0.unlinked && $0.changedBytes }), tree.current(session.ino)?.localOnly == false else { return nil }
        try await completeCopy(session)
        return try session.exclusive { () -> Int64? in
            // Removed while its copy was awaited (which that ended unfinished): nothing of it goes.
            if session.withState({ $0.unlinked }) { return nil }
            if session.withState({ $0.dirty }) { try sealAndRecord(session) }
            return session.withState { state in
                guard let id = state.changeID else { return nil }
                state.submitted = true
                return id
            }
        }
    }

    /// The staged copy's fsync, on a thread of its own: it can take a second, and tasks must not block.
    private func seal(_ copy: StagedCopy) async throws {
        let staging = self.staging
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try staging.seal(copy.name, descriptor: copy.descriptor) })
            }
        }
    }

    // MARK: Times

    /// `utimens`: the time travels with the document's upload when one is open with bytes not journaled
    /// yet, or pending; otherwise it goes as a metadata update of its own (which SharePoint counts as a
    /// version). Not held in an open handle with nothing unsent (after its fsync, say): nothing there keeps
    /// the feed from putting the service's time back over it before the close.
    public func setModified(_ node: NodeSnapshot, to date: Date) throws {
        try tree.requireWritable(node.ino)
        tree.setLocal(node.ino, modified: date, timeSet: true)
        guard !noteTime(of: node.ino, onlyWithBytes: true), let current = tree.current(node.ino) else { return }
        do {
            try timeChanged(current)
        } catch {
            // Not journaled (a full disk): a handle still open keeps it for its close or `crmfs sync`, as bytes.
            guard noteTime(of: node.ino, onlyWithBytes: false) else { throw error }
        }
    }

    /// Notes a time in the document's open session (to go with its upload, or alone at its close), if it has
    /// one (with bytes not journaled yet, for `onlyWithBytes`). Under the registry's lock, so a last close
    /// cannot take the session away between the check and the note; checked and noted in one step, so an
    /// fsync recording the bytes meanwhile takes the time with them.
    private func noteTime(of ino: UInt64, onlyWithBytes: Bool) -> Bool {
        lock.withLock {
            guard let session = documents[ino]?.session else { return false }
            return session.withState { state -> Bool in
                guard state.dirty || !onlyWithBytes else { return false }
                state.timesChanged = true
                return true
            }
        }
    }

    /// Journals the time noted in a session with no bytes waiting (taken once, by whichever close or sync
    /// comes first; put back when it cannot be journaled, for the next to try).
    private func sendNotedTime(_ session: WriteSession) throws {
        let taken = session.withState { state -> Bool in
            guard !state.unlinked, !state.dirty, state.timesChanged else { return false }
            state.timesChanged = false
            return true
        }
        guard taken else { return }
        do {
            if let node = tree.current(session.ino) { try timeChanged(node) }
        } catch {
            session.withState { $0.timesChanged = true }
            throw error
        }
    }

    /// A document's time changed with no bytes to send: it rides on the pending upload when that has not
    /// started; otherwise it is a metadata update, which learns the document's item from the upload under
    /// way when there is one.
    private func timeChanged(_ node: NodeSnapshot) throws {
        guard !node.localOnly, node.level == .document else { return }
        let date = node.modified
        let upload = lock.withLock { documents[node.ino]?.upload }
        if let upload, try engine.amend(upload, { $0.modified = date }) { return }
        guard node.itemID != nil || upload != nil else { return }
        // Named by item, with no parent: a move that moves nothing, carrying only the time.
        var change = PendingChange(.move, name: node.name, itemID: node.itemID ?? itemOfUpload(upload), of: try tree.place(ofDirectory: node.parent))
        change.modified = date
        change.baseETag = upload == nil ? node.eTag : nil  // with an upload under way, it learns the version that makes
        let saved = try engine.record(change)
        track(saved.id!, ChangeOwner(ino: node.ino, parent: node.parent), upload: false)
    }

    /// The item the journaled upload `id` writes, when it names one: a node whose upload is on its way is
    /// that item's document before the tree learns it (changes of it are matched by item, not by place).
    func itemOfUpload(_ id: Int64?) -> String? {
        guard let id else { return nil }
        return (try? engine.change(id: id))?.itemID
    }

    /// A remote document renamed to a temporary name, taken back by a new file of its old name.
    func takeShadow(parent: UInt64, name: String) -> Shadow? {
        lock.withLock {
            guard let shadow = shadows.values.first(where: { $0.parent == parent && $0.name == name }) else { return nil }
            shadows[shadow.itemID] = nil
            return shadow
        }
    }
}

/// An open staged copy's descriptor, kept open while the holder lives.
public struct OpenStagedCopy: Sendable {
    let copy: StagedCopy
    public var descriptor: Int32 { copy.descriptor }
}

/// A block's bytes (or why not) handed back from a task to the thread that waits for it.
private final class BlockResult: @unchecked Sendable {
    var bytes: Data?
    var error: Error?
}
