import CRM
import Foundation
import Graph

/// Where a change made in a directory goes in the library: the folder's item when it exists remotely,
/// and always its path below the drive root (a record's folder may not exist before its first document).
public struct WritePlace: Sendable, Equatable {
    public var driveID: String
    public var parentItemID: String?
    public var parentPath: String
    public var recordID: String
    /// The record's CRM object (`Account`).
    public var objectName: String
}

/// A new document or folder, or a new version, that the journal still holds from before this mount
/// started: shown where it belongs once that directory is listed, so a restart does not hide what the
/// user wrote until it is uploaded.
public struct RestoredChange: Sendable {
    public var changeID: Int64
    public var parentItemID: String?
    public var parentPath: String?
    public var name: String
    public var itemID: String?
    public var stagedFile: String?
    public var size: Int64
    public var modified: Date?
    public var isFolder: Bool

    public init(changeID: Int64, parentItemID: String?, parentPath: String?, name: String, itemID: String?, stagedFile: String?,
                size: Int64, modified: Date?, isFolder: Bool) {
        self.changeID = changeID
        self.parentItemID = parentItemID
        self.parentPath = parentPath
        self.name = name
        self.itemID = itemID
        self.stagedFile = stagedFile
        self.size = size
        self.modified = modified
        self.isFolder = isFolder
    }
}

/// The mount's own changes to the table: files and folders made, renamed, written and removed through it.
/// These change only what the mount shows; sending them to the services is the write-back engine's job.
extension Tree {
    /// The place for documents in directory `ino`. Only record directories and folders below them hold
    /// documents; the root and object directories mirror the CRM and answer EPERM.
    public func place(ofDirectory ino: UInt64) throws -> WritePlace {
        try lock.withLock {
            guard let directory = nodes[ino] else { throw NamespaceError.notFound }
            guard directory.type == .directory else { throw NamespaceError.notDirectory }
            switch directory.key {
            case .root:
                throw NamespaceError.notPermitted("the top level holds one directory per configured CRM object; it cannot be changed")
            case .object(let index):
                throw NamespaceError.notPermitted("\(config.objects[index].directory) lists \(config.objects[index].object) records from Salesforce; records are not made or renamed through the mount")
            case .record, .item, .local:
                guard let objectIndex = directory.objectIndex, let recordID = directory.recordID else { throw NamespaceError.notFound }
                try requireWritable(directory)
                let object = config.objects[objectIndex]
                guard let template = object.folderTemplate, let path = try path(of: directory, recordFolder: template) else {
                    throw NamespaceError.notPermitted("\(object.directory) has no `folder` template in the config, so its documents have nowhere to go")
                }
                let parentItemID: String? = switch directory.key {
                case .record: directory.folderItemID
                case .item(let id): id
                default: nil
                }
                return WritePlace(driveID: driveID, parentItemID: parentItemID, parentPath: path, recordID: recordID, objectName: object.object)
            }
        }
    }

    /// Refuses, at once, a change to something the signed-in user may only read (before anything is staged
    /// or queued: the service would refuse it anyway).
    public func requireWritable(_ ino: UInt64) throws {
        try lock.withLock {
            guard let node = nodes[ino] else { throw NamespaceError.notFound }
            try requireWritable(node)
        }
    }

    /// (Lock held.)
    func requireWritable(_ node: Node) throws {
        guard snapshot(of: node).readOnly, let recordID = node.recordID else { return }
        let record = inodes[.record(recordID)].flatMap { nodes[$0] }
        throw NamespaceError.accessDenied("you may read but not edit the record \(record?.name ?? recordID) (\(recordID)) in Salesforce")
    }

    /// A directory's path below the drive root (lock held).
    func path(of directory: Node, recordFolder template: String) throws -> String? {
        var names: [String] = []
        var current = directory
        while true {
            switch current.key {
            case .record(let id):
                guard let record = current.record else { return nil }
                return ([Self.folderPath(template, record: record, recordID: id)] + names.reversed()).joined(separator: "/")
            case .item, .local:
                names.append(current.name)
                guard let parent = nodes[current.parent] else { throw NamespaceError.notFound }
                current = parent
            case .root, .object:
                return nil
            }
        }
    }

    /// A node's path below the mount point (`Accounts/Acme Corp/Contracts/MSA-2026.pdf`); nil once it is gone.
    public func mountPath(of ino: UInt64) -> String? {
        lock.withLock {
            var names: [String] = []
            var current = nodes[ino]
            while let node = current, node.ino != Self.rootIno {
                names.append(node.name)
                current = nodes[node.parent]
            }
            return current == nil ? nil : names.reversed().joined(separator: "/")
        }
    }

    /// The entry `name` of a loaded directory, without counting a kernel reference.
    public func child(of parent: UInt64, named name: String) async throws -> NodeSnapshot? {
        _ = try await list(parent)
        return lock.withLock {
            nodes[parent]?.childIndex[name].flatMap { nodes[$0] }.map { snapshot(of: $0) }
        }
    }

    /// Another entry of a directory whose name differs from `name` only in case, and that SharePoint
    /// has or will have (local-only entries never reach it): SharePoint names are case-insensitive.
    public func caseVariant(of name: String, in parent: UInt64, other ino: UInt64? = nil) async throws -> NodeSnapshot? {
        _ = try await list(parent)
        return lock.withLock {
            nodes[parent]?.children?.lazy
                .filter { $0.name != name && $0.ino != ino && $0.name.caseInsensitiveCompare(name) == .orderedSame }
                .compactMap { self.nodes[$0.ino] }
                .first { !$0.localOnly }
                .map(snapshot(of:))
        }
    }

    /// A node, as the mount sees it now (no refresh).
    public func current(_ ino: UInt64) -> NodeSnapshot? {
        lock.withLock { nodes[ino].map(snapshot(of:)) }
    }

    /// Adds a file or folder made through the mount; counts the kernel reference its reply makes.
    public func addLocal(parent: UInt64, name: String, type: NodeType, stagedFile: String?, localOnly: Bool, modified: Date = Date()) throws -> NodeSnapshot {
        try lock.withLock {
            guard let directory = nodes[parent] else { throw NamespaceError.notFound }
            let key = NodeKey.local(nextLocalKey)
            nextLocalKey += 1
            let node = node(for: key, parent: parent, name: name, type: type)
            node.objectIndex = directory.objectIndex
            node.recordID = directory.recordID
            node.stagedFile = stagedFile
            node.localOnly = localOnly
            node.modified = modified
            node.changed = modified
            node.created = modified
            node.lookups += 1
            if type == .directory { setChildren(node, []) }
            insert(node, into: directory)
            return snapshot(of: node)
        }
    }

    /// What a node's staged bytes become: a staged file's, or none (the service's bytes again).
    public enum StagedFileChange: Sendable {
        case file(String)
        case noFile
    }

    /// New local facts of a node: its staged bytes, size, mtime, whether it stays local (nil: unchanged).
    /// A time given without `timeSet` is the time of a write (not set explicitly).
    public func setLocal(_ ino: UInt64, stagedFile: StagedFileChange? = nil, size: Int64? = nil, modified: Date? = nil, timeSet: Bool = false,
                         localOnly: Bool? = nil) {
        lock.withLock {
            guard let node = nodes[ino] else { return }
            switch stagedFile {
            case .file(let name): node.stagedFile = name
            case .noFile: node.stagedFile = nil
            case nil: break
            }
            if let size { node.size = size }
            if let modified {
                node.modified = modified
                node.timeSet = timeSet
            }
            if let localOnly { node.localOnly = localOnly }
            node.changed = Date()
        }
    }

    /// A write reached byte `end` of a file just now: it grows to there if shorter. (Every write calls
    /// this, so it takes the lock once and builds nothing.)
    public func wrote(_ ino: UInt64, through end: Int64) {
        let now = Date()
        lock.withLock {
            guard let node = nodes[ino] else { return }
            node.size = max(node.size, end)
            node.modified = now
            node.timeSet = false
            node.changed = now
        }
    }

    /// Node `ino` shows staged file `file` unless it shows one already (a later copy's, say).
    public func showStaged(_ ino: UInt64, file: String) {
        lock.withLock {
            guard let node = nodes[ino], node.stagedFile == nil else { return }
            node.stagedFile = file
        }
    }

    /// Outstanding changes keep the mount's view of a node until the service has them.
    public func pin(_ ino: UInt64) { lock.withLock { nodes[ino]?.pins += 1 } }
    /// A change of node `ino` ended (sent, withdrawn or given up): the feed may change it again, except
    /// from a round asked for before now (see `feedMark`).
    public func unpin(_ ino: UInt64) {
        lock.withLock {
            guard let node = nodes[ino], node.pins > 0 else { return }
            node.pins -= 1
            if case .item(let itemID) = node.key { ownChangeEnded(itemID) }
        }
    }

    /// The service has a change of the mount's own to these items now (an upload, the column stamp after
    /// it, a move, a deletion), whichever node showed them, or none yet (a restart's journal sends changes
    /// before their folders are listed): a feed round asked for before now must not put an earlier state
    /// back (see `feedMark`).
    public func noteOwnChangesEnded(_ itemIDs: [String]) {
        guard !itemIDs.isEmpty else { return }
        lock.withLock { for itemID in itemIDs { ownChangeEnded(itemID) } }
    }

    /// Notes that the mount's own change of `itemID` ended now (lock held).
    func ownChangeEnded(_ itemID: String) {
        // Bounded: the newest 5,000 are kept, so only a round asked for that many own changes ago is unguarded.
        if ownChangesEnded.count >= 10_000 {
            let oldestKept = ownChangeCount - 5_000
            ownChangesEnded = ownChangesEnded.filter { $0.value > oldestKept }
        }
        ownChangeCount += 1
        ownChangesEnded[itemID] = ownChangeCount
    }

    /// A listing skips `itemID` until `reveal`: it was deleted or replaced through the mount and the service may not know yet.
    public func hide(_ itemID: String) { lock.withLock { hiddenItems[itemID, default: 0] += 1 } }
    public func reveal(_ itemID: String) {
        lock.withLock {
            guard let count = hiddenItems[itemID] else { return }
            hiddenItems[itemID] = count > 1 ? count - 1 : nil
            ownChangeEnded(itemID)  // a round asked for before the deletion went must not bring it back
        }
    }

    /// The service now has this node as `item` (an upload or a folder creation finished): it keeps its
    /// inode number and is known by the item from now on. `stagedFile` is dropped if it is still the one sent.
    /// A document whose time was not set explicitly shows the service's from now on (SharePoint stamps a
    /// PUT with the time of the upload), as every other mount and a remount do; the kernel forgets the
    /// attributes it holds when they changed (the time, or the size of a document SharePoint rewrote). A
    /// time set explicitly travelled with the upload and stays as the user set it.
    public func adopt(_ ino: UInt64, item: DriveItem, sentFile: String?) {
        lock.withLock {
            guard let node = nodes[ino] else { return }
            if let other = inodes[.item(item.id)], other != ino, let duplicate = nodes[other] {
                // A listing saw the new item before we heard of it: the node the user has wins.
                if let parent = nodes[duplicate.parent] { remove(duplicate, from: parent) }
                nodes[other] = nil
            }
            if node.key != .item(item.id) {
                inodes[node.key] = nil
                node.key = .item(item.id)
                inodes[node.key] = ino
                // A folder a stop's journal made after a restart may hold what that mount sent into it
                // before it stopped (its uploads named the folder by path): the next lookup lists it.
                if node.type == .directory, node.childrenKept { node.childrenLoadedAt = nil }
            }
            let keepMine = node.stagedFile != nil && node.stagedFile != sentFile
            node.item = item
            changedListings.insert(node.parent)
            if !keepMine {
                node.stagedFile = nil
                let shown = (size: node.size, modified: node.modified)
                if node.type == .file, item.size != nil { node.size = item.byteSize }
                if node.type == .file, !node.timeSet, let modified = FieldText.date(item.fileSystemInfo?.lastModifiedDateTime) {
                    node.modified = modified
                    node.changed = FieldText.date(item.lastModifiedDateTime) ?? modified
                }
                // The kernel may hold the attributes it had at the close (for the attribute timeout).
                if node.type == .file, node.size != shown.size || node.modified != shown.modified { kernelMustForget(.inode(ino)) }
            }
            node.fetchedAt = Date()
        }
    }

    /// A record directory's folder exists now (made for its first document).
    public func folderMade(_ ino: UInt64, itemID: String) {
        lock.withLock {
            guard let node = nodes[ino] else { return }
            if case .record = node.key, node.folderItemID == nil {
                node.folderItemID = itemID
                changedListings.insert(ino)
            }
        }
    }

    /// Moves a node in the table to `name` in `parent`, as rename(2); returns the node it replaced, if any.
    @discardableResult
    public func move(_ ino: UInt64, to parent: UInt64, name: String) throws -> NodeSnapshot? {
        try lock.withLock {
            guard let node = nodes[ino], let from = nodes[node.parent], let to = nodes[parent] else { throw NamespaceError.notFound }
            var replaced: NodeSnapshot?
            if let existing = to.childIndex[name], existing != ino, let target = nodes[existing] {
                replaced = snapshot(of: target)
                remove(target, from: to)
            }
            remove(node, from: from)
            node.parent = parent
            node.name = name
            node.objectIndex = to.objectIndex
            node.recordID = to.recordID
            node.changed = Date()
            insert(node, into: to)
            return replaced
        }
    }

    /// Shows the service's copy of a document again after the service refused the mount's change of it:
    /// its staged bytes are no longer what it holds, and a document the service never had goes. The kernel
    /// is told to forget the name (for one that went) and the node's attributes and pages.
    public func revertToService(_ ino: UInt64) {
        lock.withLock {
            guard let node = nodes[ino] else { return }
            node.stagedFile = nil
            node.timeSet = false
            kernelMustForget(.inode(ino))
            guard let parent = nodes[node.parent] else { return }
            parent.childrenLoadedAt = nil
            kernelMustListAgain(parent.ino)
            if node.item == nil {
                remove(node, from: parent)
                kernelMustForget(.entry(parent: parent.ino, name: node.name))
            }
        }
    }

    /// Takes a node out of its directory (unlink, rmdir). Its number lives on while the kernel holds it.
    public func detach(_ ino: UInt64) {
        lock.withLock {
            guard let node = nodes[ino], let parent = nodes[node.parent] else { return }
            remove(node, from: parent)
        }
    }

    /// Lists the directory from the services at its next use (the kernel's too).
    public func expire(_ ino: UInt64) {
        lock.withLock {
            guard let node = nodes[ino] else { return }
            node.childrenLoadedAt = nil
            kernelMustListAgain(ino)
        }
    }

    /// Changes from the journal to show as their directories are listed; `placed` hears which node each became
    /// (the node is pinned already).
    public func restore(_ changes: [RestoredChange], placed: @escaping @Sendable ([(changeID: Int64, ino: UInt64)]) -> Void) {
        lock.withLock {
            restoredChanges = changes
            restoredPlaced = placed
        }
    }

    /// A restored change ended (sent, or set aside) before its directory was listed: nothing to show any more.
    public func forgetRestored(_ changeID: Int64) {
        lock.withLock { restoredChanges.removeAll { $0.changeID == changeID } }
    }

    /// Reports the restored changes a listing just placed.
    func reportRestored(_ placed: [(changeID: Int64, ino: UInt64)]) {
        guard !placed.isEmpty, let handler = lock.withLock({ restoredPlaced }) else { return }
        handler(placed)
    }

    // MARK: Table (lock held)

    /// Puts the restored changes that belong in `directory` into it.
    func placeRestored(in directory: Node) -> [(changeID: Int64, ino: UInt64)] {
        guard !restoredChanges.isEmpty, let objectIndex = directory.objectIndex, let template = config.objects[objectIndex].folderTemplate else { return [] }
        let itemID: String? = switch directory.key {
        case .record: directory.folderItemID
        case .item(let id): id
        default: nil
        }
        let path = try? path(of: directory, recordFolder: template)
        var placed: [(changeID: Int64, ino: UInt64)] = []
        restoredChanges.removeAll { change in
            let node: Node
            if let known = change.itemID {
                // A new version of a document the service has shows where the listings find it, not in the folder
                // it was recorded in: the document may have moved since (a move journaled after it, sent or not),
                // and a second node of one item would outlive both changes.
                guard let ino = inodes[.item(known)], let existing = nodes[ino], existing.parent == directory.ino else { return false }
                node = existing
            } else {
                guard (itemID != nil && change.parentItemID == itemID) || (path != nil && change.parentPath == path) else { return false }
                let key = NodeKey.local(nextLocalKey)
                nextLocalKey += 1
                node = self.node(for: key, parent: directory.ino, name: change.name, type: change.isFolder ? .directory : .file)
                node.objectIndex = directory.objectIndex
                node.recordID = directory.recordID
                node.created = change.modified ?? Date()
                if change.isFolder {
                    setChildren(node, [])
                    node.childrenKept = true  // what the stop's journal put in it may be there already (see `adopt`)
                }
                insert(node, into: directory)
            }
            node.stagedFile = change.stagedFile ?? node.stagedFile
            if !change.isFolder { node.size = change.size }
            node.modified = change.modified ?? node.modified
            node.timeSet = change.modified != nil
            node.changed = node.modified
            node.pins += 1
            placed.append((change.changeID, node.ino))
            return true
        }
        return placed
    }

    func insert(_ node: Node, into directory: Node) {
        // Adding an entry does not make the rest of the listing any fresher: its load time stays.
        let loadedAt = directory.childrenLoadedAt
        var children = (directory.children ?? []).filter { $0.name != node.name && $0.ino != node.ino }.map { ($0.name, $0.ino) }
        children.append((node.name, node.ino))
        setChildren(directory, children)
        directory.childrenLoadedAt = loadedAt
    }

    private func remove(_ node: Node, from directory: Node) {
        let loadedAt = directory.childrenLoadedAt
        setChildren(directory, (directory.children ?? []).filter { $0.ino != node.ino }.map { ($0.name, $0.ino) })
        directory.childrenLoadedAt = loadedAt
    }
}
