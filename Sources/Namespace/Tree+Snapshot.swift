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

    /// Kept listings are compact binary (`CompactWriter`), which a remount decodes many times faster than
    /// JSON; those an earlier crmfs kept as JSON are still read. One that fails to decode is listed again.
    public init?(encoded: Data) {
        if encoded.first == Self.compactFormat, let listing = try? CompactReader.read(encoded, { try Self(from: &$0) }) {
            self = listing
        } else if encoded.first == UInt8(ascii: "{"), let listing = try? JSONDecoder().decode(DirectoryListing.self, from: encoded) {
            self = listing
        } else {
            return nil
        }
    }

    public func encoded() -> Data {
        var writer = CompactWriter()
        write(to: &writer)
        return Data(writer.bytes)
    }

    /// The first byte of a compact listing (a JSON one starts with `{`); a new layout takes a new value.
    static let compactFormat: UInt8 = 1

    private func write(to writer: inout CompactWriter) {
        writer.write(UInt64(Self.compactFormat))
        switch key {
        case .object(let index): writer.write(UInt64(0)); writer.write(index)
        case .record(let id): writer.write(UInt64(1)); writer.write(id)
        case .item(let id): writer.write(UInt64(2)); writer.write(id)
        }
        writer.write(records) { writer, records in
            writer.write(UInt64(records.count))
            for fields in records { writer.write(fields) }
        }
        writer.write(items) { writer, items in
            writer.write(UInt64(items.count))
            for item in items { item.write(to: &writer) }
        }
        writer.write(folderItemID)
        writer.write(changedUpTo) { $0.write($1.timeIntervalSinceReferenceDate) }
    }

    private init(from reader: inout CompactReader) throws {
        guard try reader.unsigned() == UInt64(Self.compactFormat) else { throw CompactReader.Malformed() }
        switch try reader.unsigned() {
        case 0: key = .object(try reader.int())
        case 1: key = .record(try reader.string())
        case 2: key = .item(try reader.string())
        default: throw CompactReader.Malformed()
        }
        records = try reader.optional { reader in
            try (0..<reader.count()).map { _ in try reader.jsonObject() }
        }
        items = try reader.optional { reader in
            try (0..<reader.count()).map { _ in try DriveItem(from: &reader) }
        }
        folderItemID = try reader.optionalString()
        changedUpTo = try reader.optional { Date(timeIntervalSinceReferenceDate: try $0.double()) }
    }

    public var storageKey: String {
        switch key {
        case .object(let index): "object:\(index)"
        case .record(let id): "record:\(id)"
        case .item(let id): "item:\(id)"
        }
    }
}

extension DirectoryListing.Key {
    /// The key a `storageKey` names.
    init?(storageKey: String) {
        guard let colon = storageKey.firstIndex(of: ":") else { return nil }
        let value = String(storageKey[storageKey.index(after: colon)...])
        switch storageKey[..<colon] {
        case "object": guard let index = Int(value) else { return nil }; self = .object(index)
        case "record": self = .record(value)
        case "item": self = .item(value)
        default: return nil
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

    /// Takes a remount's kept listings (by storage key, encoded) and shows the tree at once: the root is
    /// listed now, and each kept listing is applied when its directory is first asked for or by
    /// `applyKeptListings`, whichever comes first.
    public func offerKeptListings(_ encoded: [String: Data]) {
        lock.withLock {
            for (storageKey, body) in encoded {
                if let key = DirectoryListing.Key(storageKey: storageKey) { keptListings[key] = body }
            }
            loadRootLocked()
            changedListings.removeAll()
        }
    }

    /// Whether journal changes from before this mount wait for their directories.
    public var hasRestoredChanges: Bool { lock.withLock { !restoredChanges.isEmpty } }

    /// Applies every kept listing not applied yet, parents first, a batch at a time: decoded outside the
    /// lock (on one core: the other serves the kernel), applied under it, so the kernel's requests are answered meanwhile (a walk
    /// that outruns this applies what it reaches itself). Listings no longer reachable from the root
    /// (folders and records gone since) are dropped; returns the storage keys of those used.
    public func applyKeptListings() -> Set<String> {
        var level: [UInt64] = lock.withLock { (nodes[Self.rootIno]?.children ?? []).map(\.ino) }
        while !level.isEmpty {
            var next: [UInt64] = []
            for start in stride(from: 0, to: level.count, by: Self.restoreBatch) {
                let batch = level[start..<min(start + Self.restoreBatch, level.count)]
                let waiting = lock.withLock {
                    batch.compactMap { ino -> (ino: UInt64, body: Data)? in
                        guard let node = nodes[ino], node.children == nil, let key = listingKey(of: node), let body = keptListings[key] else { return nil }
                        return (ino, body)
                    }
                }
                let decoded = waiting.map { DirectoryListing(encoded: $0.body) }
                let placed = lock.withLock { () -> [(changeID: Int64, ino: UInt64)] in
                    for (index, waiting) in waiting.enumerated() {
                        if let node = nodes[waiting.ino] { applyKept(decoded[index], to: node) }
                    }
                    for ino in batch {
                        next += (nodes[ino]?.children ?? []).compactMap { nodes[$0.ino]?.type == .directory ? $0.ino : nil }
                    }
                    defer { keptPlaced.removeAll() }
                    return keptPlaced
                }
                reportRestored(placed)
            }
            level = next
        }
        return lock.withLock {
            keptListings.removeAll()
            newerThanKept.removeAll()
            defer { keptUsed.removeAll() }
            return keptUsed
        }
    }

    /// Batches of kept listings the restore decodes and applies at a time.
    static let restoreBatch = 64

    /// A directory whose kept listing still waits gets it now. Called with the lock held.
    func applyKeptListingLocked(_ directory: Node) {
        guard !keptListings.isEmpty, directory.children == nil, let key = listingKey(of: directory), let body = keptListings[key] else { return }
        applyKept(DirectoryListing(encoded: body), to: directory)
    }

    /// Applies a directory's kept listing as if it had just been listed (journaled changes are placed as
    /// they would be), once: nothing when the directory has its listing already. Lock held.
    private func applyKept(_ listing: DirectoryListing?, to node: Node) {
        guard node.children == nil, let key = listingKey(of: node), keptListings.removeValue(forKey: key) != nil, let listing else { return }
        keptUsed.insert(listing.storageKey)
        switch key {
        case .object(let index):
            applyRecords((listing.records ?? []).map { SObjectRecord(type: config.objects[index].object, fields: $0) }, to: node, objectIndex: index)
            node.recordsChangedUpTo = listing.changedUpTo
        case .record:
            node.folderItemID = listing.folderItemID
            applyItems(listing.items ?? [], to: node)
            applyNewerThanKept(to: node, folderID: node.folderItemID)
        case .item(let id):
            applyItems(listing.items ?? [], to: node)
            applyNewerThanKept(to: node, folderID: id)
        }
        changedListings.remove(node.ino)  // as kept: nothing new to keep
        node.childrenKept = true
        keptPlaced += placeRestored(in: node)
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
