import CLinux
import Foundation
import Logging

/// Which bytes a block holds: a version of a document, the block's index within it, and how long the
/// block must be (the block size, or less for the last one).
public struct BlockKey: Hashable, Sendable {
    public var itemID: String
    public var eTag: String
    public var index: Int64
    public var length: Int64

    public init(itemID: String, eTag: String, index: Int64, length: Int64) {
        self.itemID = itemID
        self.eTag = eTag
        self.index = index
        self.length = length
    }

    /// The block's file name: the item id, a hash of the eTag (a new version never matches an old block), the index.
    var fileName: String { "\(Self.versionPrefix(itemID: itemID, eTag: eTag))\(index)" }

    /// What the names of one version's blocks start with.
    static func versionPrefix(itemID: String, eTag: String) -> String {
        let hash = eTag.utf8.reduce(UInt64(14_695_981_039_346_656_037)) { ($0 ^ UInt64($1)) &* 1_099_511_628_211 }
        return "\(itemPrefix(itemID))\(String(hash, radix: 16))-"
    }

    /// What the names of every block of one document start with.
    static func itemPrefix(_ itemID: String) -> String {
        String(decoding: itemID.utf8.filter { (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) }, as: UTF8.self) + "-"
    }
}

/// Fixed-size blocks of documents in files under one directory, bounded by a byte budget and evicted
/// least recently used at insert time. Blocks are published whole (temporary file, then rename), and a
/// remount reuses every block still on disk. Blocks are not flushed before the rename (they are a cache,
/// and a flush per block would halve cold reads): after a power loss a block can be short or empty, so
/// every open checks the block's length against the one its key expects, and a block that is not what
/// it should be is dropped and fetched again, never served.
///
/// The cache gives way to its disk: it leaves `keepFree` of it free (for staged writes and everything
/// else on it), giving up its oldest blocks for room; with none left to give, a block is read into memory,
/// serves the reads of it that follow and is not kept. A full disk slows reads down; it never fails them.
public final class BlockCache: @unchecked Sendable {
    public let directory: URL
    public let capacity: Int64
    public let blockSize: Int
    /// Room the cache leaves on its disk: the least of 64 MiB and a sixteenth of the disk.
    public let keepFree: Int64
    private let logger: Logger

    private let lock = NSLock()
    /// Blocks by file name. `ready` is false while a block's file is being written: it is counted
    /// against the budget from the start, and never read or evicted half-written.
    private var entries: [String: (size: Int64, lastUse: UInt64, ready: Bool)] = [:]
    private var clock: UInt64 = 0
    private var used: Int64 = 0
    /// Bytes of blocks being written: not on the disk yet (not all of them), but soon.
    private var writing: Int64 = 0
    /// Blocks read into memory while the disk had no room, newest last, at most `passingLimit` bytes:
    /// the kernel reads a block in many small pieces, and each must not fetch it again.
    private var passing: [(name: String, file: BlockFile, size: Int64)] = []
    private var diskFull = false

    public init(directory: URL, capacity: Int64, blockSize: Int, logger: Logger = Logger(label: "crmfs.cache")) throws {
        self.directory = directory
        self.capacity = capacity
        self.blockSize = blockSize
        self.logger = logger
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var disk = statvfs()
        let diskSize = statvfs(directory.path, &disk) == 0 ? Int64(disk.f_blocks) * Int64(disk.f_frsize) : Int64.max
        keepFree = min(64 << 20, diskSize / 16)
        try loadExisting()
    }

    /// Whether blocks are being kept: false while the disk has no room for them (read-ahead then waits,
    /// since what it fetched would not be kept for the read it prepares).
    public var keepsBlocks: Bool { lock.withLock { !diskFull } }

    /// Bytes the cache holds now.
    public var usedBytes: Int64 { lock.withLock { used } }
    public var blockCount: Int { lock.withLock { entries.count } }

    /// Whether a block is cached (and completely written), without reading it.
    public func contains(_ key: BlockKey) -> Bool {
        let name = key.fileName
        return lock.withLock { entries[name]?.ready == true || passing.contains { $0.name == name } }
    }

    /// Asks the kernel to start reading a cached block's file into memory, without waiting: a sequential
    /// read through a warm cache then finds the next blocks in the page cache, not on disk.
    public func prefetch(_ key: BlockKey) {
        let descriptor = open(directory.appendingPathComponent(key.fileName).path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return }
        _ = posix_fadvise(descriptor, 0, 0, Int32(POSIX_FADV_WILLNEED))
        close(descriptor)
    }

    /// A cached block's file, opened (counting as a use); nil when it is not (completely) cached, or
    /// when its file is not the length the key expects (then it is dropped).
    public func openBlock(_ key: BlockKey) -> BlockFile? {
        let name = key.fileName
        if let held = lock.withLock({ passing.last { $0.name == name }?.file }) { return held }
        guard touch(name) else { return nil }
        let path = directory.appendingPathComponent(name).path
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            lock.withLock { forget(name) }
            return nil
        }
        var info = stat()
        guard fstat(descriptor, &info) == 0, Int64(info.st_size) == key.length else {
            close(descriptor)
            // Dropped only if the path still names the file found short (a concurrent reader may have
            // dropped it already and a fill put a good one in its place); unlinked before it is
            // forgotten, under the lock, so a new fill of it can only start afterwards.
            let replaced = lock.withLock { () -> Bool in
                var current = stat()
                guard stat(path, &current) == 0, current.st_ino == info.st_ino else { return true }
                unlink(path)
                forget(name)
                return false
            }
            return replaced ? openBlock(key) : nil
        }
        return BlockFile(descriptor: descriptor)
    }

    /// Fetches a block straight into its file: `download` writes the block's bytes into the descriptor it
    /// is given (offset 0 up) and returns how many it wrote; they must be `size`. Room is reserved first,
    /// evicting the least recently used blocks; the block is published (renamed into place) only once
    /// complete. When the budget is all taken by blocks still being written, the bytes go to an unlinked
    /// file that serves this read and is not kept; when the disk has no room, to memory (`passing`).
    /// Nothing of a kept block passes through memory.
    public func fill(_ key: BlockKey, size: Int64, download: (Int32) async throws -> Int64) async throws -> BlockFile {
        let name = key.fileName
        let (reserved, victims) = reserve(name, size: size, room: freeSpace())
        var place = reserved
        // Given up for room, whatever became of this block: their files go now.
        for victim in victims { unlink(directory.appendingPathComponent(victim).path) }
        if case .present = place {
            if let file = openBlock(key) { return file }
            place = .unkept  // dropped meanwhile: this read gets a copy of its own
        }
        do {
            return try await write(name, size: size, place: place, download: download)
        } catch let error as POSIXError where [.ENOSPC, .EDQUOT].contains(error.code) && !place.isMemory {
            // The disk filled up while the block was written (the room seen before was taken meanwhile).
            noteRoom(false)
            return try await write(name, size: size, place: .memory, download: download)
        }
    }

    private enum Placement {
        case present
        case reserved
        case unkept
        case memory

        var isMemory: Bool { if case .memory = self { true } else { false } }
    }

    /// Where a block of `size` bytes goes: counted against the budget and the disk's room (`room`, nil
    /// when unknown) at once, giving up the least recently used blocks for both (`victims`, forgotten
    /// here, their files for the caller to remove).
    private func reserve(_ name: String, size: Int64, room: Int64?) -> (Placement, victims: [String]) {
        var victims: [String] = []
        let place = lock.withLock { () -> Placement in
            if entries[name]?.ready == true { return .present }
            if entries[name] != nil { return .unkept }  // another fill is writing it: don't share its file
            var freed: Int64 = 0
            func short() -> (budget: Bool, disk: Bool) {
                (used + size > capacity, room.map { $0 - writing + freed < size + keepFree } ?? false)
            }
            while short().budget || short().disk,
                  let oldest = entries.filter({ $0.value.ready }).min(by: { $0.value.lastUse < $1.value.lastUse }) {
                victims.append(oldest.key)
                freed += oldest.value.size
                forget(oldest.key)
            }
            let (budget, disk) = short()
            if disk { return .memory }
            if budget { return .unkept }
            clock += 1
            entries[name] = (size, clock, false)
            used += size
            writing += size
            return .reserved
        }
        switch place {
        case .memory: noteRoom(false)
        case .reserved: noteRoom(true)
        case .present, .unkept: break
        }
        return (place, victims)
    }

    /// Writes a block where `place` says: its own file (published when complete), an unlinked file, or memory.
    private func write(_ name: String, size: Int64, place: Placement, download: (Int32) async throws -> Int64) async throws -> BlockFile {
        let kept: Bool = if case .reserved = place { true } else { false }
        let final = directory.appendingPathComponent(name).path
        let temporary = place.isMemory ? nil : final + ".tmp-\(UInt64.random(in: 0...UInt64.max))"
        let descriptor = temporary.map { open($0, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600) } ?? crmfs_memory_file("crmfs-block")
        guard descriptor >= 0 else {
            let failure = errno
            if kept { lock.withLock { forget(name) } }
            throw POSIXError(POSIXErrorCode(rawValue: failure) ?? .EIO)
        }
        let file = BlockFile(descriptor: descriptor)
        do {
            let written = try await download(descriptor)
            guard written == size else { throw BlockCacheError.shortBlock(expected: size, received: written) }
        } catch {
            if let temporary { unlink(temporary) }
            if kept { lock.withLock { forget(name) } }
            throw error
        }
        guard let temporary else {
            hold(name, file, size: size)
            return file
        }
        if kept, rename(temporary, final) == 0 {
            lock.withLock {
                guard entries[name]?.ready == false else { return }
                entries[name]?.ready = true
                writing -= size
            }
        } else {
            unlink(temporary)
            if kept { lock.withLock { forget(name) } }
        }
        return file
    }

    /// Keeps a block read into memory for the reads of it that follow, dropping the oldest beyond the limit.
    private func hold(_ name: String, _ file: BlockFile, size: Int64) {
        lock.withLock {
            passing.removeAll { $0.name == name }
            passing.append((name, file, size))
            while passing.count > 1, passing.reduce(0, { $0 + $1.size }) > Self.passingLimit { passing.removeFirst() }
        }
    }

    /// Bytes of blocks held in memory while the disk is full: a few blocks, at least one.
    static let passingLimit: Int64 = 32 << 20

    /// Logs when the disk runs out of room for blocks, and when there is room again.
    private func noteRoom(_ room: Bool) {
        let changed = lock.withLock { () -> Bool in
            guard diskFull == room else { return false }
            diskFull = !room
            if room { passing.removeAll() }
            return true
        }
        guard changed else { return }
        if room {
            logger.info("the cache's disk has room again: documents read are kept again")
        } else {
            logger.warning("the cache's disk is full: documents are read without being kept until there is room",
                           metadata: ["directory": "\(directory.path)", "keepFree": "\(keepFree)"])
        }
    }

    /// Bytes free on the cache's disk for this user; nil when it cannot be told.
    private func freeSpace() -> Int64? {
        var disk = statvfs()
        guard statvfs(directory.path, &disk) == 0 else { return nil }
        return Int64(disk.f_bavail) * Int64(disk.f_frsize)
    }

    /// Drops the blocks of a document's other versions: it changed, and they will not be read again.
    public func dropVersions(of itemID: String, except eTag: String) {
        let item = BlockKey.itemPrefix(itemID), current = BlockKey.versionPrefix(itemID: itemID, eTag: eTag)
        lock.withLock {
            for (name, entry) in entries where entry.ready && name.hasPrefix(item) && !name.hasPrefix(current) {
                unlink(directory.appendingPathComponent(name).path)
                forget(name)
            }
        }
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
        guard let entry = entries.removeValue(forKey: name) else { return }
        used -= entry.size
        if !entry.ready { writing -= entry.size }
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

public enum BlockCacheError: Error, CustomStringConvertible {
    case shortBlock(expected: Int64, received: Int64)

    public var description: String {
        switch self {
        case .shortBlock(let expected, let received): "the service sent \(received) bytes of a \(expected)-byte block"
        }
    }
}

/// An open, read-only view of one block's bytes. The descriptor closes with the last reference, so a
/// block evicted while it is being read stays readable until the read is answered.
public final class BlockFile: Sendable {
    public let descriptor: Int32

    init(descriptor: Int32) { self.descriptor = descriptor }

    deinit { close(descriptor) }

    /// The bytes in `range` (offsets within the block); fewer at the block's end; nil on a read error.
    public func read(_ range: Range<Int>) -> Data? {
        var data = Data(count: range.count)
        var total = 0
        while total < range.count {
            let count = data.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress! + total, range.count - total, off_t(range.lowerBound + total)) }
            if count < 0, errno == EINTR { continue }
            guard count >= 0 else { return nil }
            if count == 0 { break }
            total += count
        }
        data.count = total
        return data
    }
}
