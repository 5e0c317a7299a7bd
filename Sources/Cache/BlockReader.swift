import Foundation
import HTTP
import Graph
import Logging
import Namespace

/// Reads document bytes through the block cache: whole blocks fetched by ranged GETs, several in flight,
/// read-ahead when a file is read sequentially, one fetch per block however many readers want it.
/// Fetched bytes stream straight into block files, so memory stays flat whatever the file sizes.
public final class BlockReader: Sendable {
    public let cache: BlockCache
    let graph: any DriveService
    /// Content URLs that listings brought (the tree's, and this reader's own of a folder).
    let downloadLinks: DownloadLinks
    let readAhead: Int
    let logger: Logger
    private let limiter: AsyncLimiter
    private let state = ReaderState()

    public init(cache: BlockCache, graph: any DriveService, downloadLinks: DownloadLinks = DownloadLinks(), maxConcurrentFetches: Int = 8,
                readAhead: Int = 8, logger: Logger = Logger(label: "crmfs.cache")) {
        self.cache = cache
        self.graph = graph
        self.downloadLinks = downloadLinks
        self.readAhead = readAhead
        self.logger = logger
        limiter = AsyncLimiter(limit: maxConcurrentFetches)
    }

    /// Where the bytes are on disk, when they lie in one cached block: the block's file, the offset in it
    /// and the length. Lets the file system splice them to the kernel, on the request's own thread.
    public func cachedSpan(_ content: RemoteContent, offset: Int64, length: Int) -> BlockSpan? {
        guard let window = window(content, offset: offset, length: length), window.first == window.last,
              let file = cache.openBlock(key(content, window.first)) else { return nil }
        readAheadIfSequential(content, offset: offset, end: window.end)
        return BlockSpan(file: file, offset: offset - window.first * Int64(cache.blockSize), length: Int(window.end - offset))
    }

    /// Calls `listener` with the item id of each document the service serves in another version than the
    /// one a read asked for (the read fails ESTALE): the mount reads the item again at once, so a new open
    /// reads the new version without waiting for the next round of the library's feed.
    public func onNewerVersion(_ listener: @escaping @Sendable (String) -> Void) { state.setNewerVersion(listener) }

    /// The bytes, when every block they lie in is cached: no task, no waiting. The file system calls this
    /// for reads across a block edge, and goes asynchronous only on a miss.
    public func cachedRead(_ content: RemoteContent, offset: Int64, length: Int) -> Data? {
        guard let window = window(content, offset: offset, length: length) else { return Data() }
        var result = Data(capacity: Int(window.end - offset))
        for index in window.first...window.last {
            guard let file = cache.openBlock(key(content, index)),
                  let piece = piece(of: file, index: index, offset: offset, end: window.end) else { return nil }
            result.append(piece)
        }
        readAheadIfSequential(content, offset: offset, end: window.end)
        return result
    }

    /// Up to `length` bytes of `content` from `offset` (fewer at the end of the file), fetching the blocks
    /// that are missing: a span of one block's file when they lie in one, the bytes otherwise.
    public func read(_ content: RemoteContent, offset: Int64, length: Int) async throws -> BlockRead {
        guard let window = window(content, offset: offset, length: length) else { return .bytes(Data()) }
        readAheadIfSequential(content, offset: offset, end: window.end)
        if window.first == window.last {
            let file = try await block(key(content, window.first), content: content)
            return .span(BlockSpan(file: file, offset: offset - window.first * Int64(cache.blockSize), length: Int(window.end - offset)))
        }
        var result = Data(capacity: Int(window.end - offset))
        for index in window.first...window.last {
            let file = try await block(key(content, index), content: content)
            guard let piece = piece(of: file, index: index, offset: offset, end: window.end) else { throw NamespaceError.stale }
            result.append(piece)
        }
        return .bytes(result)
    }

    /// The bytes of block `index` of a document (all of them: the last block may be shorter), through
    /// the cache; a write path copies a document block by block with it.
    public func blockBytes(_ content: RemoteContent, index: Int64) async throws -> Data {
        let blockSize = Int64(cache.blockSize)
        let offset = index * blockSize
        let length = Int(min(blockSize, content.size - offset))
        guard length > 0 else { return Data() }
        let bytes: Data
        switch try await read(content, offset: offset, length: length) {
        case .bytes(let data): bytes = data
        case .span(let span):
            var buffer = Data(count: span.length)
            let got = buffer.withUnsafeMutableBytes { pread(span.file.descriptor, $0.baseAddress, span.length, off_t(span.offset)) }
            guard got == span.length else { throw NamespaceError.stale }
            bytes = buffer
        }
        guard bytes.count == length else { throw NamespaceError.stale }
        return bytes
    }

    private func window(_ content: RemoteContent, offset: Int64, length: Int) -> (first: Int64, last: Int64, end: Int64)? {
        guard offset < content.size, length > 0 else { return nil }
        let end = offset + min(Int64(length), content.size - offset)  // exclusive; cannot overflow, as offset < size
        let blockSize = Int64(cache.blockSize)
        return (offset / blockSize, (end - 1) / blockSize, end)
    }

    private func key(_ content: RemoteContent, _ index: Int64) -> BlockKey {
        let blockSize = Int64(cache.blockSize)
        return BlockKey(itemID: content.itemID, eTag: content.eTag, index: index, length: min(blockSize, content.size - index * blockSize))
    }

    /// The part of block `index` that falls within offset..<end of the file.
    private func piece(of file: BlockFile, index: Int64, offset: Int64, end: Int64) -> Data? {
        let blockStart = index * Int64(cache.blockSize)
        let from = Int(max(offset, blockStart) - blockStart)
        let to = Int(min(end, blockStart + Int64(cache.blockSize)) - blockStart)
        guard let piece = file.read(from..<to), piece.count == to - from else { return nil }
        return piece
    }

    /// Sequential reads look ahead by `readAhead` blocks, in the background: missing blocks are fetched
    /// (unless already on their way), cached ones are read into the page cache. Each block is looked
    /// ahead at once per run, so the many kernel reads within one block cost nothing extra. Not while
    /// the cache's disk is full: what it fetched would not be kept for the read it prepares.
    private func readAheadIfSequential(_ content: RemoteContent, offset: Int64, end: Int64) {
        guard cache.keepsBlocks else { return }
        let blockSize = Int64(cache.blockSize)
        let lastBlock = (content.size - 1) / blockSize
        guard let ahead = state.noteRead(content: content, offset: offset, end: end, blockSize: blockSize, depth: Int64(readAhead), lastBlock: lastBlock) else { return }
        for index in ahead {
            let key = key(content, index)
            if cache.contains(key) {
                cache.prefetch(key)
            } else if !state.isFetching(key) {
                Task { _ = try? await self.block(key, content: content) }
            }
        }
    }

    /// One block's file: from the cache, or fetched once however many readers ask at the same time.
    func block(_ key: BlockKey, content: RemoteContent) async throws -> BlockFile {
        if let cached = cache.openBlock(key) {
            ServiceMetrics.cacheLookup(hit: true)
            return cached
        }
        ServiceMetrics.cacheLookup(hit: false)
        let task = state.fetch(key) {
            Task {
                try await self.limiter.run { try await self.fetch(key, content: content) }
            }
        }
        do {
            let file = try await task.value
            state.finish(key)
            return file
        } catch {
            state.finish(key)
            throw error
        }
    }

    private func fetch(_ key: BlockKey, content: RemoteContent) async throws -> BlockFile {
        let start = key.index * Int64(cache.blockSize)
        let end = start + key.length - 1
        return try await cache.fill(key, size: key.length) { descriptor in
            let download = try await downloadWithFreshURL(content, range: start...end, into: descriptor)
            if let served = download.eTag, !served.isEmpty, served != content.eTag, try await !self.sameBytes(content) {
                // The document changed since its metadata was read: these bytes belong to another version.
                self.state.newerVersionListener()?(content.itemID)
                throw NamespaceError.stale
            }
            return download.byteCount
        }
    }

    /// Whether the document's bytes are still the version `content` names although its eTag moved (a rename,
    /// a new time or a column edit since, the mount's own among them): its cTag, or where either side lacks
    /// one (delta answers carry none) its size and hash, have not moved. Unknown: another version.
    private func sameBytes(_ content: RemoteContent) async throws -> Bool {
        guard content.cTag != nil || content.hash != nil else { return false }
        let item = try await graph.item(driveID: content.driveID, itemID: content.itemID, expandFields: false)
        if let cTag = content.cTag, let now = item.cTag { return cTag == now }
        guard let hash = content.hash, let now = item.file?.hashes?.quickXorHash else { return false }
        return hash == now && item.byteSize == content.size
    }

    /// Reuses a file's download URL for a minute (read-ahead of one file makes many requests); fetches a new
    /// one once if it has expired. A URL comes, in order of preference, from this reader's own memory, from
    /// the listing that found the document (`downloadLinks`), from a listing of its folder (a document
    /// without one lists all its folder's URLs, in the one request `/content` would have cost for itself),
    /// or from `/content`. A cold read of another document of the same folder within a few seconds is a
    /// copy of the folder (`cp -r`, `rsync`, `tar`): its other small documents are fetched ahead, side by
    /// side, so the copy waits for one round trip per batch of documents instead of one per document.
    private func downloadWithFreshURL(_ content: RemoteContent, range: ClosedRange<Int64>, into descriptor: Int32) async throws -> Download {
        if let folder = content.folderID {
            if knownLocation(of: content.itemID) == nil {
                await state.listOnce(folder) { await self.learnLocations(driveID: content.driveID, folderID: folder) }
            }
            if state.noteColdRead(of: content.itemID, inFolder: folder) {
                prefetchFolder(driveID: content.driveID, folderID: folder, except: content.itemID)
            }
        }
        if let location = knownLocation(of: content.itemID) {
            do {
                return try await graph.download(location: location, range: range, into: descriptor)
            } catch let error as GraphError where [401, 403, 404, 410].contains(error.status) {
                state.dropLocation(for: content.itemID)
            }
        }
        let location = try await graph.downloadLocation(driveID: content.driveID, itemID: content.itemID)
        state.remember([content.itemID: location])
        return try await graph.download(location: location, range: range, into: descriptor)
    }

    /// The URL this reader used lately, or the one a listing brought (taken into this reader's memory at
    /// once: the blocks of one document fetched side by side must all find it).
    private func knownLocation(of itemID: String) -> String? {
        state.location(for: itemID) { downloadLinks.take(itemID: itemID) }
    }

    /// Lists the download URLs of a folder's documents (at most once a minute per folder, see
    /// `ReaderState.listOnce`); a failure only means each document's URL is asked for on its own.
    private func learnLocations(driveID: String, folderID: String) async {
        do {
            let documents = try await graph.folderDocuments(driveID: driveID, folderID: folderID, limit: Self.folderListingSize)
            downloadLinks.remember(documents: documents, inFolder: folderID)
        } catch {
            logger.debug("could not list a folder's download URLs", metadata: ["folder": "\(folderID)", "error": "\(error)"])
        }
    }

    /// Fetches the folder's other small documents that are not cached yet, in name order (the order
    /// `cp`, `rsync` and `tar` read them in), `prefetchWidth` at a time, at most `prefetchDocuments` and
    /// `prefetchBytes` in all: a guess that two documents read make a copy must not cost much if wrong.
    /// Only documents of one block: a larger one gets its own read-ahead when it is read.
    private func prefetchFolder(driveID: String, folderID: String, except itemID: String) {
        guard cache.keepsBlocks else { return }
        let blockSize = Int64(cache.blockSize)
        var budget = Self.prefetchBytes
        var chosen: [(BlockKey, RemoteContent)] = []
        for document in downloadLinks.documents(inFolder: folderID).sorted(by: { $0.name < $1.name }) where document.id != itemID {
            guard chosen.count < Self.prefetchDocuments else { break }
            guard document.size > 0, document.size <= blockSize, document.size <= budget else { continue }
            let content = RemoteContent(driveID: driveID, itemID: document.id, eTag: document.eTag, size: document.size, folderID: folderID)
            let key = key(content, 0)
            guard !cache.contains(key), !state.isFetching(key) else { continue }
            budget -= document.size
            chosen.append((key, content))
        }
        guard !chosen.isEmpty else { return }
        logger.debug("fetching a folder's documents ahead of a copy", metadata: ["folder": "\(folderID)", "documents": "\(chosen.count)"])
        Task {
            await withTaskGroup(of: Void.self) { group in
                for (index, (key, content)) in chosen.enumerated() {
                    if index >= Self.prefetchWidth { await group.next() }
                    group.addTask { _ = try? await self.block(key, content: content) }
                }
            }
        }
    }

    /// Graph's largest page: one request covers a folder of up to this many documents.
    static let folderListingSize = 999
    /// Documents of a copied folder fetched ahead at once; the most documents and bytes fetched ahead per copy.
    static let prefetchWidth = 16
    static let prefetchDocuments = 500
    static let prefetchBytes: Int64 = 64 << 20
}

/// Bytes of a document that lie in one block's file.
public struct BlockSpan: Sendable {
    public let file: BlockFile
    /// Where they start in the block's file.
    public let offset: Int64
    public let length: Int
}

/// What a read produced: a span to splice, or bytes gathered across a block edge.
public enum BlockRead: Sendable {
    case span(BlockSpan)
    case bytes(Data)
}

/// The reader's shared bookkeeping: fetches under way, sequential-read detection, download URLs.
/// Lock order: this state's lock, then the Graph client's listed-URL lock (`location(for:adopt:)`).
final class ReaderState: @unchecked Sendable {
    private let lock = NSLock()
    private var inflight: [BlockKey: Task<BlockFile, Error>] = [:]
    /// Per file version: where the last read ended, how many bytes have been read in a row, and the
    /// last block read-ahead has looked at in this run.
    private struct Stream {
        var lastEnd: Int64
        var run: Int64
        var lookedAhead: Int64
    }
    private var streams: [String: Stream] = [:]
    private var locations: [String: (url: String, expires: Date)] = [:]
    /// Per folder, the last document read cold there and when, and when a copy of the folder last had its
    /// documents fetched ahead.
    private var coldReads: [String: (last: Date, item: String, prefetched: Date?)] = [:]
    /// Per folder, the listing of its URLs under way or done, and when it started (one a minute at most).
    private var folderListings: [String: (task: Task<Void, Never>, started: Date)] = [:]
    /// Told of each document the service serves in another version than the one read (see `onNewerVersion`).
    private var newerVersion: (@Sendable (String) -> Void)?

    func fetch(_ key: BlockKey, start: () -> Task<BlockFile, Error>) -> Task<BlockFile, Error> {
        lock.withLock {
            if let task = inflight[key] { return task }
            let task = start()
            inflight[key] = task
            return task
        }
    }

    func finish(_ key: BlockKey) { lock.withLock { _ = inflight.removeValue(forKey: key) } }

    func setNewerVersion(_ listener: @escaping @Sendable (String) -> Void) { lock.withLock { newerVersion = listener } }
    func newerVersionListener() -> (@Sendable (String) -> Void)? { lock.withLock { newerVersion } }

    func isFetching(_ key: BlockKey) -> Bool { lock.withLock { inflight[key] != nil } }

    /// Records a read; when the file is being read sequentially (from its start, or after a whole block's
    /// worth of reads in a row), the blocks to look ahead at that this run has not yet looked at.
    /// (A random 4 KiB read plus the kernel's own read-ahead is not a run.) The kernel sends reads from
    /// several threads, slightly out of order, so "in a row" allows 1 MiB of slack.
    func noteRead(content: RemoteContent, offset: Int64, end: Int64, blockSize: Int64, depth: Int64, lastBlock: Int64) -> ClosedRange<Int64>? {
        lock.withLock {
            let key = "\(content.itemID)|\(content.eTag)"
            var stream = Stream(lastEnd: end, run: end - offset, lookedAhead: -1)
            if let previous = streams[key], abs(previous.lastEnd - offset) <= 1 << 20 {
                stream.run += previous.run
                stream.lastEnd = max(end, previous.lastEnd)
                stream.lookedAhead = previous.lookedAhead
            }
            if streams.count > 10_000 { streams.removeAll() }
            defer { streams[key] = stream }
            guard offset == 0 || stream.run >= blockSize else { return nil }
            let from = max((end - 1) / blockSize + 1, stream.lookedAhead + 1)
            let through = min((end - 1) / blockSize + depth, lastBlock)
            guard from <= through else { return nil }
            stream.lookedAhead = through
            return from...through
        }
    }

    /// The URL remembered for `itemID`, or else the one `adopt` gives (remembered in the same step, so a
    /// concurrent caller finds it rather than nothing). `adopt` runs under this state's lock.
    func location(for itemID: String, adopt: () -> String? = { nil }) -> String? {
        lock.withLock {
            if let entry = locations[itemID], entry.expires > Date() { return entry.url }
            guard let adopted = adopt() else { return nil }
            keep([itemID: adopted])
            return adopted
        }
    }

    /// Download URLs by item id, trusted for a minute.
    func remember(_ urls: [String: String]) {
        lock.withLock { keep(urls) }
    }

    /// With the lock held.
    private func keep(_ urls: [String: String]) {
        let now = Date()
        if locations.count > 2_000 { locations = locations.filter { $0.value.expires > now } }
        for (itemID, url) in urls { locations[itemID] = (url, now.addingTimeInterval(60)) }
    }

    /// Lists `folder`'s URLs with `list` unless that started in the last minute; waits for the listing
    /// under way, so the blocks of one document read side by side wait for one listing rather than each
    /// asking for their URL. (A listing covers its first page only: documents beyond it are asked for
    /// one by one.)
    func listOnce(_ folder: String, list: @escaping @Sendable () async -> Void) async {
        let task = lock.withLock { () -> Task<Void, Never> in
            let now = Date()
            if let listing = folderListings[folder], now.timeIntervalSince(listing.started) < 60 { return listing.task }
            if folderListings.count > 1_000 { folderListings = folderListings.filter { now.timeIntervalSince($0.value.started) < 60 } }
            let task = Task { await list() }
            folderListings[folder] = (task, now)
            return task
        }
        await task.value
    }

    /// A cold read of `item` in `folder`: whether it makes a copy of the folder (`cp -r`, `rsync`, `tar`),
    /// because it follows a cold read of another of its documents within 5 s, and the folder's documents
    /// were not fetched ahead in the last minute.
    func noteColdRead(of item: String, inFolder folder: String) -> Bool {
        lock.withLock {
            let now = Date()
            if coldReads.count > 1_000 { coldReads = coldReads.filter { now.timeIntervalSince($0.value.last) < 60 } }
            let before = coldReads[folder]
            let another = before.map { $0.item != item && now.timeIntervalSince($0.last) < 5 } ?? false
            let prefetchedLately = before?.prefetched.map { now.timeIntervalSince($0) < 60 } ?? false
            let copying = another && !prefetchedLately
            coldReads[folder] = (now, item, copying ? now : before?.prefetched)
            return copying
        }
    }

    func dropLocation(for itemID: String) { lock.withLock { _ = locations.removeValue(forKey: itemID) } }
}

/// At most `limit` operations at once; the rest wait their turn in order.
actor AsyncLimiter {
    private let limit: Int
    private var running = 0
    private var waiting: [CheckedContinuation<Void, Never>] = []

    init(limit: Int) { self.limit = limit }

    func run<T: Sendable>(_ operation: @Sendable () async throws -> T) async throws -> T {
        await acquire()
        defer { release() }
        return try await operation()
    }

    private func acquire() async {
        if running < limit { running += 1; return }
        await withCheckedContinuation { waiting.append($0) }
    }

    private func release() {
        if waiting.isEmpty { running -= 1 } else { waiting.removeFirst().resume() }
    }
}
