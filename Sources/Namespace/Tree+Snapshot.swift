import CRM
import Foundation
import Graph
import HTTP

/// One directory's listing as the services gave it, to keep between mounts: an object's records, or a
/// record's or folder's documents. A remount rebuilds the tree from these at once, then the change
/// feeds bring it up to date.
public struct DirectoryListing: Sendable, Codable {
    public enum Key: Sendable, Codable, Hashable {
        case object(Int)
        case record(String)
        case item(String)
    }

    public var key: Key
    /// An object's records (their fields).
    public var records: [[String: JSONValue]]?
    /// A record's or folder's documents and sub-folders (without download URLs, which are short-lived credentials).
    public var items: [DriveItem]?
    /// A record's folder in the library; nil when it has none yet.
    public var folderItemID: String?
    /// For an object: the newest `SystemModstamp` among its records, where the CRM feed goes on from.
    public var changedUpTo: Date?

    public init(key: Key, records: [[String: JSONValue]]? = nil, items: [DriveItem]? = nil, folderItemID: String? = nil, changedUpTo: Date? = nil) {
        self.key = key
        self.records = records
        self.items = items
        self.folderItemID = folderItemID
        self.changedUpTo = changedUpTo
    }

    public var storageKey: String {
        switch key {
        case .object(let index): "object:\(index)"
        case .record(let id): "record:\(id)"
        case .item(let id): "item:\(id)"
        }
    }
}

extension Tree {
    /// The listings that changed since the last call (all of them the first time), as they are now.
    public func takeChangedListings() -> [DirectoryListing] {
        lock.withLock {
            let dirty = changedListings
            changedListings.removeAll()
            return dirty.compactMap { ino in nodes[ino].flatMap { $0.children == nil ? nil : listing(of: $0) } }
        }
    }

    /// Rebuilds the tree from kept listings, parents first, as if each had just been listed (journaled
    /// changes are placed as they would be). Listings no longer reachable from the root are ignored;
    /// returns the keys of those used.
    @discardableResult
    public func restoreListings(_ listings: [DirectoryListing]) -> Set<String> {
        var byKey: [DirectoryListing.Key: DirectoryListing] = [:]
        for listing in listings { byKey[listing.key] = listing }
        var used: Set<String> = []
        let placed = lock.withLock { () -> [(changeID: Int64, ino: UInt64)] in
            loadRootLocked()
            var queue = (nodes[Self.rootIno]?.children ?? []).map(\.ino)
            var next = 0  // an index, not removeFirst: tens of thousands of directories
            var placed: [(changeID: Int64, ino: UInt64)] = []
            while next < queue.count {
                let ino = queue[next]
                next += 1
                guard let node = nodes[ino], node.type == .directory, let key = listingKey(of: node), let listing = byKey[key] else { continue }
                used.insert(listing.storageKey)
                switch key {
                case .object(let index):
                    applyRecords((listing.records ?? []).map { SObjectRecord(type: config.objects[index].object, fields: $0) }, to: node, objectIndex: index)
                    node.recordsChangedUpTo = listing.changedUpTo
                case .record:
                    node.folderItemID = listing.folderItemID
                    applyItems(listing.items ?? [], to: node)
                case .item:
                    applyItems(listing.items ?? [], to: node)
                }
                placed += placeRestored(in: node)
                queue += (node.children ?? []).map(\.ino)
            }
            changedListings.removeAll()
            return placed
        }
        reportRestored(placed)
        return used
    }

    // MARK: Helpers (lock held)

    func listingKey(of node: Node) -> DirectoryListing.Key? {
        switch node.key {
        case .object(let index): .object(index)
        case .record(let id): .record(id)
        case .item(let id): .item(id)
        case .root, .local: nil
        }
    }

    private func listing(of directory: Node) -> DirectoryListing? {
        guard let key = listingKey(of: directory) else { return nil }
        let children = (directory.children ?? []).compactMap { nodes[$0.ino] }
        switch key {
        case .object:
            return DirectoryListing(key: key, records: children.compactMap { $0.record?.fields }, changedUpTo: directory.recordsChangedUpTo)
        case .record, .item:
            let items = children.compactMap { child -> DriveItem? in
                guard case .item = child.key, var item = child.item else { return nil }
                item.downloadURL = nil
                // What the mount never reads is not kept: a remount decodes every kept listing.
                item.sharepointIds = nil
                item.parentReference?.path = nil
                item.parentReference?.siteId = nil
                return item
            }
            return DirectoryListing(key: key, items: items, folderItemID: directory.folderItemID)
        }
    }
}
