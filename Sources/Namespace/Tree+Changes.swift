import CRM
import Foundation
import Graph

/// What the kernel must forget after a remote change, so long entry and attribute timeouts stay safe.
public enum KernelNotice: Sendable, Hashable {
    /// `name` in directory `parent` went away or now names another node.
    case entry(parent: UInt64, name: String)
    /// A node's attributes (and, for a file, its cached pages) are out of date.
    case inode(UInt64)
}

/// What applying a feed's changes did: what the kernel must forget, and which documents' bytes changed
/// (by item id, the new eTag: blocks of other versions are of no further use).
public struct AppliedChanges: Sendable {
    public var notices: [KernelNotice] = []
    public var changedContent: [String: String] = [:]
    /// Items and records whose change reached the tree (in directories the mount has listed).
    public var applied = 0

    public init() {}

    mutating func merge(_ other: AppliedChanges) {
        notices += other.notices
        changedContent.merge(other.changedContent) { $1 }
        applied += other.applied
    }
}

/// The moment a feed round asks the service, among the mount's own changes (see `Tree.feedMark`).
public struct FeedMark: Sendable {
    let count: UInt64
}

/// Applying the services' change feeds. Only directories the mount has listed change (others are listed
/// when first visited, from the service as it is then); a node with local changes outstanding keeps the
/// mount's view until they are sent; items deleted or moved through the mount stay hidden.
extension Tree {
    /// Taken before a feed round asks the service for changes: see `applyDriveChanges(_:askedAt:)`.
    public func feedMark() -> FeedMark { lock.withLock { FeedMark(count: ownChangeCount) } }

    /// Applies a page of the drive's delta: items in their latest state, by id (the last occurrence wins).
    /// `asked` is the `feedMark` taken before the items were asked for: an item the mount's own change
    /// has changed since is skipped, since the items may show it as it was before; the tree keeps the
    /// mount's view of it, and the library's mirror forgets it (its folders are listed from the service).
    public func applyDriveChanges(_ items: [DriveItem], askedAt asked: FeedMark? = nil) -> AppliedChanges {
        var items = items
        if let asked {
            let overtaken = lock.withLock { items.filter { (ownChangesEnded[$0.id] ?? 0) > asked.count } }
            for item in overtaken { mirror.forget(item.id, parentID: item.parentReference?.id) }
            let ids = Set(overtaken.map(\.id))
            items.removeAll { ids.contains($0.id) }
        }
        guard !items.isEmpty else { return AppliedChanges() }
        mirror.apply(items)
        var overtakenMeanwhile: [DriveItem] = []
        defer { for item in overtakenMeanwhile { mirror.forget(item.id, parentID: item.parentReference?.id) } }
        return lock.withLock {
            var latest: [String: DriveItem] = [:]
            var order: [String] = []
            for item in items {
                // An own change of it that ended since the check above (its item applied already) wins.
                if let asked, (ownChangesEnded[item.id] ?? 0) > asked.count {
                    overtakenMeanwhile.append(item)
                    continue
                }
                if latest[item.id] == nil { order.append(item.id) }
                latest[item.id] = item
            }
            // Kept listings still waiting (a remount's restore) hold what was there before these items: each
            // takes them on top when it comes in, so its first look does not put earlier versions back.
            if !keptListings.isEmpty { for item in latest.values { newerThanKept[item.id] = item } }
            let directories = directoriesByItem()
            // Per listed directory: the items that join, change (a DriveItem) or leave it (nil).
            var moves: [UInt64: [String: DriveItem?]] = [:]
            var result = AppliedChanges()
            var unplacedFolder = false
            for id in order {
                guard let item = latest[id], hiddenItems[id] == nil else { continue }
                let existing = inodes[.item(id)].flatMap { nodes[$0] }
                if let existing, existing.isPinned {
                    if existing.pins > 0 { passedOver[existing.ino] = false }
                    continue
                }
                if item.isDeleted, let record = directories[id].flatMap({ nodes[$0] }), record.level == .record {
                    result.merge(recordFolderGone(record))
                    continue
                }
                let newParent = item.isDeleted ? nil : item.parentReference?.id.flatMap { directories[$0] }
                if let existing, existing.parent != newParent, nodes[existing.parent]?.childIndex[existing.name] == existing.ino {
                    moves[existing.parent, default: [:]][id] = .some(nil)
                }
                if let newParent {
                    moves[newParent, default: [:]][id] = .some(item)
                } else if existing == nil, item.isFolder, !item.isDeleted {
                    unplacedFolder = true
                }
            }
            for (ino, changes) in moves {
                guard let directory = nodes[ino], directory.children != nil else { continue }
                result.merge(relist(directory, changing: changes))
            }
            if unplacedFolder { result.merge(recordFoldersMayHaveAppeared()) }
            return result
        }
    }

    /// Applies the service's state of items the mount's own changes just sent (a version, a move, a
    /// deletion), as a feed round would; the kernel is told to forget the names that went or changed
    /// meanwhile, as it is of a round's (it may hold an entry for the entry timeout).
    public func applySent(_ items: [DriveItem]) {
        let applied = applyDriveChanges(items)
        guard !applied.notices.isEmpty else { return }
        lock.withLock { for notice in applied.notices { kernelMustForget(notice) } }
    }

    /// Whether the feed's position may be kept with the listings taken now: not while a node a round passed
    /// over (see `passedOver`) is still held by the mount's journaled changes, since a remount resuming from
    /// that position would never hear again what the round said of it, and its kept listing has the older
    /// version; nor at the first keep after they end (the node takes the item its change made just after
    /// the change lets go of it), whose listings hold that item at the latest.
    public func feedPositionKeepable() -> Bool {
        lock.withLock {
            for (ino, ended) in passedOver {
                guard let node = nodes[ino], !(ended && node.pins == 0) else { passedOver[ino] = nil; continue }
                passedOver[ino] = node.pins == 0
            }
            return passedOver.isEmpty
        }
    }

    /// The drive's delta has enumerated the whole library (a first mount, or a resync): folders never
    /// listed are answered from what it returned from now on.
    public func libraryEnumerated() {
        mirror.markComplete()
    }

    /// The drive's feed is enumerating the whole library (a first mount): tree walks may wait for it.
    public func libraryEnumerationStarted() {
        mirror.enumerationStarted()
    }

    /// The enumeration stopped short (it starts over at the next round): walks waiting for it list folder by folder.
    public func libraryEnumerationFailed() {
        mirror.enumerationStopped()
    }

    /// After a resync (the feed's position expired): every listed directory is made to match a full
    /// enumeration, `seen` being every item id it returned; listed items it did not return are gone.
    public func removeItems(notIn seen: Set<String>) -> AppliedChanges {
        lock.withLock {
            var result = AppliedChanges()
            for directory in Array(nodes.values) where directory.type == .directory && directory.children != nil {
                var gone: [String: DriveItem?] = [:]
                for child in directory.children ?? [] {
                    guard let node = nodes[child.ino], !node.isPinned, case .item(let id) = node.key, !seen.contains(id) else { continue }
                    gone[id] = .some(nil)
                }
                if !gone.isEmpty { result.merge(relist(directory, changing: gone)) }
            }
            return result
        }
    }

    /// The object directories the mount has listed, with the newest `SystemModstamp` seen in each: what the
    /// CRM feed asks about (an object nobody opened costs nothing).
    public func listedObjects() -> [(index: Int, changedUpTo: Date?)] {
        lock.withLock {
            config.objects.indices.compactMap { index in
                guard let node = inodes[.object(index)].flatMap({ nodes[$0] }), node.children != nil else { return nil }
                return (index, node.recordsChangedUpTo)
            }
        }
    }

    /// The records of every listed object, by object: whose access the CRM feed asks again.
    public func listedRecordIDs() -> [String] {
        lock.withLock {
            config.objects.indices.flatMap { index -> [String] in
                guard let directory = inodes[.object(index)].flatMap({ nodes[$0] }), let children = directory.children else { return [] }
                return children.compactMap { nodes[$0.ino]?.recordID }
            }
        }
    }

    /// Applies what the signed-in user may do with the listed records now (`UserRecordAccess`): a record
    /// whose edit access changed shows its new mode; one they may no longer read (or that no answer
    /// mentions: the service leaves out what the caller cannot read) goes, as if deleted.
    public func applyRecordAccess(_ levels: [String: RecordAccess.Level], asked: [String]) -> AppliedChanges {
        let perObject = lock.withLock { () -> [Int: (changed: [SObjectRecord], gone: [String])] in
            var result: [Int: (changed: [SObjectRecord], gone: [String])] = [:]
            for id in asked {
                guard let node = inodes[.record(id)].flatMap({ nodes[$0] }), let index = node.objectIndex, let record = node.record else { continue }
                guard let level = levels[id], level.read else {
                    result[index, default: ([], [])].gone.append(id)
                    continue
                }
                if record.isEditable != level.edit { result[index, default: ([], [])].changed.append(record.withAccess(editable: level.edit)) }
            }
            return result
        }
        var applied = AppliedChanges()
        for (index, change) in perObject.sorted(by: { $0.key < $1.key }) {
            applied.merge(applyRecordChanges(objectIndex: index, changed: change.changed, shown: nil, deleted: change.gone))
        }
        // The documents below a record whose edit access changed show new modes too.
        let retuned = Set(perObject.values.flatMap { $0.changed.compactMap(\.id) })
        if !retuned.isEmpty {
            applied.notices += lock.withLock { nodes.values.filter { $0.recordID.map(retuned.contains) == true }.map { KernelNotice.inode($0.ino) } }
        }
        return applied
    }

    /// Applies the CRM feed's answer for one object: records changed since its mark (`changed`, with
    /// `shown` the Ids among them the object's filter still selects; nil without a filter) and records deleted.
    public func applyRecordChanges(objectIndex: Int, changed: [SObjectRecord], shown: Set<String>?, deleted: [String]) -> AppliedChanges {
        lock.withLock {
            guard let directory = inodes[.object(objectIndex)].flatMap({ nodes[$0] }), let children = directory.children else { return AppliedChanges() }
            var records: [String: SObjectRecord] = [:]
            var order: [String] = []
            for child in children {
                guard let node = nodes[child.ino], let record = node.record, let id = node.recordID else { continue }
                records[id] = record
                order.append(id)
            }
            var touched: [String] = []
            for record in changed {
                guard let id = record.id else { continue }
                if let stamp = FieldText.date(record["SystemModstamp"]), stamp > directory.recordsChangedUpTo ?? .distantPast {
                    directory.recordsChangedUpTo = stamp
                }
                if shown.map({ !$0.contains(id) }) ?? false {
                    if records.removeValue(forKey: id) != nil { touched.append(id) }
                    continue
                }
                if records[id]?.fields == record.fields { continue }
                if records[id] == nil { order.append(id) }
                records[id] = record
                touched.append(id)
            }
            for id in deleted where records.removeValue(forKey: id) != nil { touched.append(id) }
            guard !touched.isEmpty else { return AppliedChanges() }
            let before = children
            applyRecords(order.compactMap { records[$0] }, to: directory, objectIndex: objectIndex)
            var result = entryNotices(directory, before: before)
            result.notices += touched.compactMap { inodes[.record($0)] }.map(KernelNotice.inode)
            result.applied = touched.count
            return result
        }
    }

    // MARK: Helpers (call with the lock held)

    /// Directory nodes by the drive item whose children they show: folders by their own id, records by their folder's.
    func directoriesByItem() -> [String: UInt64] {
        var directories: [String: UInt64] = [:]
        for node in nodes.values where node.type == .directory {
            switch node.key {
            case .item(let id): directories[id] = node.ino
            case .record: if let folder = node.folderItemID { directories[folder] = node.ino }
            default: break
            }
        }
        return directories
    }

    /// Lists `directory` again from what it showed with `changes` applied (an item by id: its new state, or nil
    /// for gone), by the same rules as a listing from the service; returns what the kernel must forget.
    /// Items applied while a remount's kept listings waited, on top of the listing of `directory` (its
    /// folder's id `folderID`) just restored. Lock held.
    func applyNewerThanKept(to directory: Node, folderID: String?) {
        guard !newerThanKept.isEmpty, let folderID else { return }
        let shown = Set((directory.children ?? []).compactMap { child -> String? in
            guard case .item(let id) = nodes[child.ino]?.key else { return nil }
            return id
        })
        var changes: [String: DriveItem?] = [:]
        for item in newerThanKept.values {
            let here = !item.isDeleted && item.parentReference?.id == folderID
            if here { changes[item.id] = .some(item) } else if shown.contains(item.id) { changes[item.id] = .some(nil) }
        }
        if !changes.isEmpty { _ = relist(directory, changing: changes) }
    }

    private func relist(_ directory: Node, changing changes: [String: DriveItem?]) -> AppliedChanges {
        let before = directory.children ?? []
        var items: [DriveItem] = []
        var known: Set<String> = []
        var previous: [String: (eTag: String?, size: Int64, modified: Date)] = [:]
        for child in before {
            guard let node = nodes[child.ino], !node.isPinned, case .item(let id) = node.key, var item = node.item else { continue }
            known.insert(id)
            previous[id] = (item.eTag, node.size, node.modified)
            if let change = changes[id] {
                guard let change else { continue }
                item = Self.merged(change, over: item)
            }
            items.append(item)
        }
        for (id, change) in changes where !known.contains(id) {
            guard let change else { continue }
            if let node = inodes[.item(id)].flatMap({ nodes[$0] }), let old = node.item {
                previous[id] = (old.eTag, node.size, node.modified)
                items.append(Self.merged(change, over: old))
            } else {
                items.append(change)
            }
        }
        applyItems(items, to: directory)
        var result = entryNotices(directory, before: before)
        for id in changes.keys {
            guard let was = previous[id], let node = inodes[.item(id)].flatMap({ nodes[$0] }) else { continue }
            if was.eTag != node.item?.eTag || was.size != node.size || was.modified != node.modified {
                result.notices.append(.inode(node.ino))
                if node.type == .file, was.eTag != node.item?.eTag, let eTag = node.item?.eTag { result.changedContent[id] = eTag }
            }
        }
        result.applied = changes.count
        return result
    }

    /// A delta item carries no list item fields: the columns known stay while the version is the same,
    /// and are fetched again when first asked for after it changed.
    private static func merged(_ change: DriveItem, over old: DriveItem) -> DriveItem {
        var item = change
        if item.listItem == nil, change.eTag == old.eTag { item.listItem = old.listItem }
        return item
    }

    /// Names that left `directory` or now mean another node, and the directory itself when any did.
    private func entryNotices(_ directory: Node, before: [(name: String, ino: UInt64)]) -> AppliedChanges {
        var result = AppliedChanges()
        for entry in before where directory.childIndex[entry.name] != entry.ino {
            result.notices.append(.entry(parent: directory.ino, name: entry.name))
        }
        let names = Set(before.map(\.name))
        if !result.notices.isEmpty || directory.children?.contains(where: { !names.contains($0.name) }) == true {
            result.notices.append(.inode(directory.ino))
        }
        return result
    }

    /// A record's folder was deleted: the record shows no documents but those with local changes.
    private func recordFolderGone(_ record: Node) -> AppliedChanges {
        record.folderItemID = nil
        guard record.children != nil else { return AppliedChanges() }
        var gone: [String: DriveItem?] = [:]
        for child in record.children ?? [] {
            if let node = nodes[child.ino], !node.isPinned, case .item(let id) = node.key { gone[id] = .some(nil) }
        }
        var result = relist(record, changing: gone)
        result.applied += 1
        return result
    }

    /// A folder appeared where the mount shows nothing: it may be the folder of a record listed as empty,
    /// so those records are listed again on their next visit.
    private func recordFoldersMayHaveAppeared() -> AppliedChanges {
        var result = AppliedChanges()
        recordFolders.forgetListings()
        for node in nodes.values where node.level == .record && node.folderItemID == nil && node.childrenLoadedAt != nil {
            node.childrenLoadedAt = nil
            result.notices.append(.inode(node.ino))
        }
        return result
    }
}
