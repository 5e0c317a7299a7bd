import Foundation
import Graph
import Namespace
import Writeback

/// Folders, removals and renames through the mount.
extension LocalWrites {
    // MARK: Directories

    public func mkdir(parent: UInt64, name: String) async throws -> NodeSnapshot {
        let place = try tree.place(ofDirectory: parent)
        _ = try check(name, isFolder: true)
        if try await tree.child(of: parent, named: name) != nil { throw NamespaceError.exists }
        try await checkCase(name, in: parent, localOnly: false)
        let node = try tree.addLocal(parent: parent, name: name, type: .directory, stagedFile: nil, localOnly: false)
        let saved = try engine.record(PendingChange(.createFolder, name: name, in: place))
        track(saved.id!, ChangeOwner(ino: node.ino, parent: parent), upload: false)
        return node
    }

    // MARK: Removing

    /// `unlink` and `rmdir`.
    public func remove(parent: UInt64, name: String, directory: Bool) async throws {
        _ = try tree.place(ofDirectory: parent)
        guard var node = try await tree.child(of: parent, named: name) else { throw NamespaceError.notFound }
        if directory {
            guard node.type == .directory else { throw NamespaceError.notDirectory }
            guard try await tree.list(node.ino).isEmpty else { throw NamespaceError.notEmpty }
        } else if node.type == .directory {
            throw NamespaceError.isDirectory
        }
        await lastCloseEnded(of: node.ino)  // a last close under way decides first what its bytes become
        // Taken before `settle` withdraws the upload that names it: a new file renamed over a document stands
        // for that document until its bytes go, and removing it removes the document.
        let stoodFor = remoteItem(of: node)
        let taken = lock.withLock { documents[node.ino]?.takenShadow }
        node = try await settle(node, withdrawing: true)
        tree.detach(node.ino)
        if let session = lock.withLock({ documents[node.ino]?.session }) {
            session.withState { $0.unlinked = true }
            session.fill?.cancel()
            retireIfClosed(session)
        }
        if let shadow = lock.withLock({ shadows.first(where: { $0.value.ino == node.ino })?.value }) {
            lock.withLock { shadows[shadow.itemID] = nil }
            try removeRemote(itemID: shadow.itemID, node: node, parent: shadow.parent)
        } else if node.itemID == nil, let taken, tree.current(taken.ino)?.localOnly == true {
            // Made under the name a document renamed to a temporary name left, and removed before its bytes
            // went: the temporary file (`doc~`) holds that document again, as before the new file was made.
            lock.withLock {
                shadows[taken.itemID] = taken
                document(node.ino) { $0.takenShadow = nil }
            }
        } else if let itemID = remoteItem(of: node)?.itemID ?? stoodFor?.itemID {
            try removeRemote(itemID: itemID, node: node, parent: parent)
        } else if let file = node.stagedFile, lock.withLock({ documents[node.ino]?.session == nil }) {
            try engine.discardStaged(file)
        }
    }

    /// Deletes `itemID`, named `name` in directory `parent` (`node`'s name unless given), for `node`.
    private func removeRemote(itemID: String, node: NodeSnapshot, parent: UInt64, name: String? = nil) throws {
        let place = try tree.place(ofDirectory: parent)
        tree.hide(itemID)
        // Named by its place too: a new document given that name waits for the deletion (and gives up with it).
        let deletion = PendingChange(.delete, name: name ?? node.name, itemID: itemID, in: place)
        // A folder's deletion goes last: what was moved out of it since must leave it first.
        let (saved, withdrawn) = node.type == .directory ? (try engine.record(deletion), try engine.withdrawEdits(of: itemID))
                                                         : try engine.recordDeletion(deletion)
        for id in withdrawn { forget(id) }
        track(saved.id!, ChangeOwner(ino: node.ino, parent: parent, hiddenItem: itemID), upload: false)
    }

    /// The service's document a node stands for, and the version its local state was based on: its own
    /// item, or (until its upload ends and the tree learns it) the item its open copy or journaled upload
    /// replaces: a new file renamed over a document, or given the name a renamed-away document left.
    /// Nil for a name that stays local, and for bytes that will make a new document.
    func remoteItem(of node: NodeSnapshot) -> BaseVersion? {
        guard !node.localOnly else { return nil }
        if let itemID = node.itemID { return BaseVersion(itemID: itemID, eTag: node.eTag, hash: node.content?.hash) }
        let (session, upload) = lock.withLock { (documents[node.ino]?.session, documents[node.ino]?.upload) }
        if let named = session?.withState({ state in state.itemID.map { BaseVersion(itemID: $0, eTag: state.baseETag, hash: state.baseHash) } }) {
            return named
        }
        guard let upload, let change = try? engine.change(id: upload), let itemID = change.itemID else { return nil }
        return BaseVersion(itemID: itemID, eTag: change.baseETag, hash: change.baseHash)
    }

    /// Waits for a node's change that is being sent, so what follows knows the item it made; with
    /// `withdrawing` (the node is going away), withdraws its uploads and folder creations whose bytes are
    /// not on the service (also one that failed, or whose attempt under way fails meanwhile). Returns the
    /// node as it is then.
    private func settle(_ node: NodeSnapshot, withdrawing: Bool) async throws -> NodeSnapshot {
        let ids = lock.withLock { documents[node.ino]?.changes ?? [] }
        for id in ids.sorted() {
            guard let change = try engine.change(id: id) else { continue }
            if change.state == .staged && !withdrawing { continue }
            if withdrawing, change.kind == .upload || change.kind == .createFolder, try await engine.whenNotSending(id, { try engine.withdraw(id) }) {
                forget(id)
                if change.kind == .upload { tree.setLocal(node.ino, stagedFile: .noFile) }
                continue
            }
            try? await engine.wait(for: id)
        }
        return tree.current(node.ino) ?? node
    }

    // MARK: Renaming

    public func rename(parent: UInt64, name: String, to newParent: UInt64, newName: String, noReplace: Bool) async throws {
        _ = try tree.place(ofDirectory: parent)  // EPERM for records and objects
        let to = try tree.place(ofDirectory: newParent)
        guard let found = try await tree.child(of: parent, named: name) else { throw NamespaceError.notFound }
        // Its upload ending while this rename runs must not put it back where the service has it, nor may a feed
        // round (soak seed 1356): held until the rename has journaled its move (see `renamed`).
        lock.withLock { document(found.ino) { $0.renaming += 1 } }
        tree.pin(found.ino)
        defer { renamed(found.ino) }
        let targetLocal = try check(newName, isFolder: found.type == .directory)
        let target = try await tree.child(of: newParent, named: newName)
        try await checkCase(newName, in: newParent, localOnly: targetLocal, other: found.ino)
        if let target {
            if target.ino == found.ino { return }
            if noReplace { throw NamespaceError.exists }
            if target.type == .directory && found.type != .directory { throw NamespaceError.isDirectory }
            if target.type != .directory && found.type == .directory { throw NamespaceError.notDirectory }
            if target.type == .directory, try await !tree.list(target.ino).isEmpty { throw NamespaceError.notEmpty }
        }
        var replacedItem: BaseVersion?
        if let target {
            let stoodFor = remoteItem(of: target)
            await lastCloseEnded(of: target.ino)  // a last close under way decides first what its bytes become
            let settled = try await settle(target, withdrawing: true)
            replacedItem = remoteItem(of: settled) ?? stoodFor
            if let file = settled.stagedFile, lock.withLock({ documents[settled.ino]?.session == nil }) { try? engine.discardStaged(file) }
            // Its session goes with it, as at unlink: open (what its writers write now goes nowhere, as in
            // POSIX, where they write to the replaced file) or kept after a last close that could not make it
            // durable. Its bytes must not go up later under the name the renamed document took.
            if let session = lock.withLock({ documents[settled.ino]?.session }) {
                let stillOpen = session.withState { state -> Bool in
                    state.unlinked = true
                    return state.opens > 0
                }
                // Its open handles go on reading it (the copy goes on filling as they read), as POSIX's replaced file.
                if !stillOpen { session.fill?.cancel() }
                retireIfClosed(session)
            }
        }
        let source = try await settle(found, withdrawing: false)
        await support.hooks.beforeRenameActs?()
        try tree.move(source.ino, to: newParent, name: newName)

        let shadow = lock.withLock { shadows.first(where: { $0.value.ino == source.ino })?.value }
        let sourceItem = shadow?.base ?? remoteItem(of: source)
        switch (sourceItem != nil, targetLocal) {
        case (true, true) where shadow == nil:
            // A document renamed to a temporary name: the service keeps it where it was, for now.
            lock.withLock { shadows[sourceItem!.itemID] = Shadow(ino: source.ino, base: sourceItem!, parent: parent, name: name) }
            tree.setLocal(source.ino, localOnly: true)
        case (true, true):
            break  // a temporary name to another temporary name
        case (false, true):
            // Bytes not sent yet become local-only: their upload is withdrawn, and its staged file stays the document's.
            for id in lock.withLock({ documents[source.ino]?.changes ?? [] }) where try engine.withdraw(id, keepingFile: true) { forget(id) }
            tree.setLocal(source.ino, localOnly: true)
        case (true, false):
            let itemID = sourceItem!.itemID
            if let shadow { lock.withLock { shadows[shadow.itemID] = nil } }
            if let replacedItem, replacedItem.itemID != itemID {
                try removeRemote(itemID: replacedItem.itemID, node: source, parent: newParent, name: newName)
            }
            tree.setLocal(source.ino, localOnly: false)
            // A temporary name given back: the document never left its place in SharePoint.
            if shadow?.parent != newParent || shadow?.name != newName {
                var move = PendingChange(.move, name: newName, itemID: itemID, in: to)
                move.baseETag = sourceItem!.eTag  // the version it was made on (see `WritebackEngine.rebase`)
                // Where the service holds it until the move goes: its place before a temporary name, if it had one.
                if let from = try? tree.place(ofDirectory: shadow?.parent ?? parent) { move.leave(shadow?.name ?? name, in: from) }
                let saved = try engine.record(move)
                track(saved.id!, ChangeOwner(ino: source.ino, parent: newParent), upload: false)
            }
            if let shadow { try await sendWrittenAside(source.ino, base: shadow.base) }
        case (false, false):
            // Not on the service yet (a new document, or a temporary file given its final name): its bytes
            // go up under the new name, replacing the document that had it.
            tree.setLocal(source.ino, localOnly: false)
            let taken = replacedItem == nil ? takeShadow(parent: newParent, name: newName) : nil
            if let taken { lock.withLock { document(source.ino) { $0.takenShadow = taken } } }
            let reused = replacedItem ?? taken?.base
            if source.type == .directory {
                for id in lock.withLock({ documents[source.ino]?.changes ?? [] }) {
                    try engine.amend(id) { change in
                        change.name = newName
                        change.put(in: to)
                    }
                }
            } else {
                // The replaced document's own time, if still waiting, would land on the new version.
                if let reused { for id in try engine.withdrawEdits(of: reused.itemID, timesOnly: true) { forget(id) } }
                try await restage(source.ino, replacing: reused)
            }
        }
    }

    /// A rename of node `ino` ended. When an upload of it ended meanwhile and nothing of it is left to send
    /// (the rename failed before journaling a move), the node goes where the service has it.
    private func renamed(_ ino: UInt64) {
        let sent = lock.withLock { () -> DriveItem? in
            document(ino) { document in
                document.renaming -= 1
                guard document.renaming == 0 else { return nil }
                defer { document.sentWhileRenaming = nil }
                return document.changes.isEmpty ? document.sentWhileRenaming : nil
            }
        }
        tree.unpin(ino)
        if let sent { tree.applySent([sent]) }
    }

    /// Whether a change recorded after change `id` names `name` (case aside, as SharePoint compares).
    private func recordedLater(than id: Int64, named name: String) throws -> Bool {
        try engine.outstanding().contains { ($0.id ?? 0) > id && $0.name.caseInsensitiveCompare(name) == .orderedSame }
    }

    /// Puts a document's local bytes (staged, or being written) into a new upload change for its current
    /// name and place, as the next version of `base` when given.
    private func restage(_ ino: UInt64, replacing base: BaseVersion?) async throws {
        var (itemID, baseETag, baseHash) = (base?.itemID, base?.eTag, base?.hash)
        guard let node = tree.current(ino) else { return }
        let place = try tree.place(ofDirectory: node.parent)
        if let session = lock.withLock({ documents[ino]?.session }) {
            // Open for writing: its bytes so far become the change (held until the last close).
            try await completeCopy(session)
            let amended = try session.exclusive { () -> Bool in
                let id = session.withState { state -> Int64? in
                    state.itemID = itemID ?? state.itemID
                    state.baseETag = baseETag
                    state.baseHash = baseHash
                    return state.changeID
                }
                let size = session.copy.size  // bytes written under a name that stays local recorded nothing
                if let id, try engine.amend(id, { change in
                    change.name = node.name
                    change.put(in: place)
                    change.itemID = itemID ?? change.itemID
                    change.baseETag = baseETag
                    change.baseHash = baseHash
                    change.size = size
                }) {
                    return true
                }
                // Its change is under way (or there is none yet): the bytes go again, from a copy of their own.
                session.withState { state in
                    state.submitted = state.submitted || state.changeID != nil
                    state.changeID = nil
                    state.dirty = true
                    state.changedBytes = true
                }
                return false
            }
            if !amended {
                try startOver(session)
                try commit(session)
            }
            return
        }
        for id in lock.withLock({ documents[ino]?.changes ?? [] }) where try engine.change(id: id)?.kind == .upload {
            if try recordedLater(than: id, named: node.name) {
                // Amended, it would go before that change (the deletion of the document the name had, say) and
                // meet the name still taken: it goes again after it instead, with the same staged file.
                let withdrawn = try engine.change(id: id)
                if try await engine.whenNotSending(id, { try engine.withdraw(id, keepingFile: true) }) {
                    forget(id)
                    itemID = itemID ?? withdrawn?.itemID
                    baseETag = baseETag ?? withdrawn?.baseETag
                    baseHash = baseHash ?? withdrawn?.baseHash
                    continue
                }
            }
            // Keep the bytes: withdrawing would delete the staged file, so a change not sent is amended
            // instead (also one that failed, or whose attempt under way fails meanwhile): one change per staged file.
            if try await engine.whenNotSending(id, {
                try engine.amend(id) { change in
                    change.name = node.name
                    change.put(in: place)
                    change.itemID = itemID ?? change.itemID
                    change.baseETag = baseETag ?? change.baseETag
                    change.baseHash = baseHash ?? change.baseHash
                    // Closed under a name that stays local after more writes, its file holds more than was recorded.
                    if let file = change.stagedFile, let size = stagedSize(file) { change.size = size }
                }
            }) {
                return
            }
            try? await engine.wait(for: id)
        }
        // Its upload started, or even finished, since the rename looked: it went up under the old name, and
        // its success removed the staged file (a second upload of it would find nothing). The document is on
        // the service now, and moves like any other (over the document it replaces, if any).
        if let sent = tree.current(ino), let sentID = sent.itemID {
            if let itemID, itemID != sentID { try removeRemote(itemID: itemID, node: sent, parent: node.parent) }
            // To the name and place the rename gave it (`node`), which the tree still shows (see `renaming`).
            var move = PendingChange(.move, name: node.name, itemID: sentID, in: place)
            move.baseETag = sent.eTag
            let saved = try engine.record(move)
            track(saved.id!, ChangeOwner(ino: ino, parent: node.parent), upload: false)
            return
        }
        try journalStagedBytes(of: node, base: itemID.map { BaseVersion(itemID: $0, eTag: baseETag, hash: baseHash) })
    }

    /// Bytes written while a document had a name that stays local (which journals nothing), given its
    /// name back: they go now, as its next version. Those an upload journaled before carries already.
    private func sendWrittenAside(_ ino: UInt64, base: BaseVersion) async throws {
        if lock.withLock({ documents[ino]?.session }) != nil { return try await restage(ino, replacing: base) }
        guard let node = tree.current(ino), let file = node.stagedFile else { return }
        let changes = lock.withLock { documents[ino]?.changes ?? [] }
        if try changes.contains(where: { try engine.change(id: $0)?.stagedFile == file }) { return }
        try journalStagedBytes(of: node, base: base)
    }

    private func stagedSize(_ file: String) -> Int64? {
        ((try? FileManager.default.attributesOfItem(atPath: staging.path(of: file)))?[.size] as? NSNumber)?.int64Value
    }

    /// Journals the node's staged file as an upload at its name and place (as `base`'s next version when given).
    private func journalStagedBytes(of node: NodeSnapshot, base: BaseVersion?) throws {
        guard let file = tree.current(node.ino)?.stagedFile else { return }
        let size = stagedSize(file) ?? node.size
        var change = PendingChange(.upload, name: node.name, itemID: base?.itemID, in: try tree.place(ofDirectory: node.parent))
        change.stagedFile = file
        change.size = size
        change.modified = node.timeSet ? node.modified : nil
        change.baseETag = base?.eTag
        change.baseHash = base?.hash
        let saved = try engine.record(change)
        track(saved.id!, ChangeOwner(ino: node.ino, parent: node.parent), upload: true)
    }
}
