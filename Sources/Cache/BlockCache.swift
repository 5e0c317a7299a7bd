import Foundation

/// Which bytes a block holds: a version of a document, and the block's index within it.
public struct BlockKey: Hashable, Sendable {
    public var itemID: String
    public var eTag: String
    public var index: Int64

    public init(itemID: String, eTag: String, index: Int64) {
        self.itemID = itemID
        self.eTag = eTag
        self.index = index
    }

    /// The block's file name: the item id, a hash of the eTag (a new version never matches an old block), the index.
    var fileName: String {
        let hash = eTag.utf8.reduce(UInt64(14_695_981_039_346_656_037)) { ($0 ^ UInt64($1)) &* 1_099_511_628_211 }
        let safeID = String(itemID.unicodeScalars.filter { CharacterSet.alphanumerics.contains($0) && $0.isASCII })
        return "\(safeID)-\(String(hash, radix: 16))-\(index)"
    }
}

/// Fixed-size blocks of documents in files under one directory, bounded by a byte budget and evicted
/// least recently used at insert time. Blocks are written whole (temporary file, then rename), so a
/// crash never leaves a torn one, and a remount reuses every block still on disk.
public final class BlockCache: @unchecked Sendable {
    public let directory: URL
    public let capacity: Int64
    public let blockSize: Int

    private let lock = NSLock()
    /// Blocks by file name. `ready` is false while a block's file is being written: it is counted
    /// against the budget from the start, and never read or evicted half-written.
    private var entries: [String: (size: Int64, lastUse: UInt64, ready: Bool)] = [:]
    private var clock: UInt64 = 0
    private var used: Int64 = 0

    public init(directory: URL, capacity: Int64, blockSize: Int) throws {
        self.directory = directory
        self.capacity = capacity
        self.blockSize = blockSize
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try loadExisting()
    }

    /// Bytes the cache holds now.
    public var usedBytes: Int64 { lock.withLock { used } }
    public var blockCount: Int { lock.withLock { entries.count } }

    /// Whether a block is cached (and completely written), without reading it.
    public func contains(_ key: BlockKey) -> Bool {
        lock.withLock { entries[key.fileName]?.ready == true }
    }

    /// An open descriptor on a cached block's file (the caller closes it), counting as a use.
    public func openBlock(_ key: BlockKey) -> Int32? {
        let name = key.fileName
        guard touch(name) else { return nil }
        let descriptor = open(directory.appendingPathComponent(name).path, O_RDONLY | O_CLOEXEC)
        return descriptor >= 0 ? descriptor : nil
    }

    /// A whole block, when cached.
    public func read(_ key: BlockKey) -> Data? { read(key, range: nil) }

    /// Part of a block (offsets within it), when cached: a kernel read of 128 KiB costs 128 KiB of disk reads, not a whole block.
    public func read(_ key: BlockKey, range: Range<Int>?) -> Data? {
        let name = key.fileName
        guard touch(name) else { return nil }
        let descriptor = open(directory.appendingPathComponent(name).path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            lock.withLock { forget(name) }
            return nil
        }
        defer { close(descriptor) }
        let wanted = range ?? 0..<blockSize
        var data = Data(count: wanted.count)
        let count = data.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, wanted.count, off_t(wanted.lowerBound)) }
        guard count >= 0 else { return nil }
        data.count = count
        return data
    }

    /// Stores a block, first evicting the least recently used ones so the total stays within capacity.
    /// When the budget is all taken by blocks still being written, this one is simply not kept.
    public func store(_ key: BlockKey, data: Data) throws {
        let name = key.fileName
        let size = Int64(data.count)
        let reserved = lock.withLock { () -> [String]? in
            guard entries[name] == nil else { return nil }  // another reader stored it already
            var victims: [String] = []
            while used + size > capacity,
                  let oldest = entries.filter({ $0.value.ready }).min(by: { $0.value.lastUse < $1.value.lastUse }) {
                victims.append(oldest.key)
                forget(oldest.key)
            }
            guard used + size <= capacity else { return nil }
            clock += 1
            entries[name] = (size, clock, false)
            used += size
            return victims
        }
        guard let victims = reserved else { return }
        for victim in victims { unlink(directory.appendingPathComponent(victim).path) }
        let final = directory.appendingPathComponent(name).path
        let temporary = final + ".tmp-\(UInt64.random(in: 0...UInt64.max))"
        guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: 0o600]),
              rename(temporary, final) == 0 else {
            unlink(temporary)
            lock.withLock { forget(name) }
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: final])
        }
        lock.withLock { entries[name]?.ready = true }
    }

    /// Marks a block used now; false when it is not (completely) cached.
    private func touch(_ name: String) -> Bool {
        lock.withLock {
            guard entries[name]?.ready == true else { return false }
            clock += 1
            entries[name]?.lastUse = clock
            return true
        }
    }

    private func forget(_ name: String) {
        if let entry = entries.removeValue(forKey: name) { used -= entry.size }
    }

    /// Indexes the blocks a previous mount left, oldest first by modification time; drops leftovers of interrupted writes.
    private func loadExisting() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        var found: [(name: String, size: Int64, modified: Date)] = []
        for name in names {
            let path = directory.appendingPathComponent(name).path
            if name.contains(".tmp-") { unlink(path); continue }
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
                  let size = attributes[.size] as? Int64 ?? (attributes[.size] as? Int).map(Int64.init) else { continue }
            found.append((name, size, attributes[.modificationDate] as? Date ?? .distantPast))
        }
        for entry in found.sorted(by: { $0.modified < $1.modified }) {
            clock += 1
            entries[entry.name] = (entry.size, clock, true)
            used += entry.size
        }
        // A smaller capacity than last time: shed the oldest now.
        while used > capacity, let oldest = entries.min(by: { $0.value.lastUse < $1.value.lastUse }) {
            unlink(directory.appendingPathComponent(oldest.key).path)
            forget(oldest.key)
        }
    }
}
