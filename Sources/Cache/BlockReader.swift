import Foundation
import Graph
import Logging
import Namespace

/// Reads document bytes through the block cache: whole blocks fetched by ranged GETs, several in flight,
/// read-ahead when a file is read sequentially, one fetch per block however many readers want it.
/// Memory is bounded by the number of fetches in flight, whatever the file sizes.
public final class BlockReader: Sendable {
    public let cache: BlockCache
    let graph: GraphClient
    let readAhead: Int
    let logger: Logger
    private let limiter: AsyncLimiter
    private let state = ReaderState()

    public init(cache: BlockCache, graph: GraphClient, maxConcurrentFetches: Int = 8, readAhead: Int = 8, logger: Logger = Logger(label: "crmfs.cache")) {
        self.cache = cache
        self.graph = graph
        self.readAhead = readAhead
        self.logger = logger
        limiter = AsyncLimiter(limit: maxConcurrentFetches)
    }

    /// Where the bytes are on disk, when they lie in one cached block: an open descriptor (the caller
    /// closes it), the offset in it and the length. Lets the file system splice them to the kernel.
    public func cachedSpan(_ content: RemoteContent, offset: Int64, length: Int) -> (descriptor: Int32, offset: Int64, length: Int)? {
        guard offset < content.size, length > 0 else { return nil }
        let end = min(content.size, offset + Int64(length))
        let blockSize = Int64(cache.blockSize)
        let index = offset / blockSize
        guard (end - 1) / blockSize == index,
              let descriptor = cache.openBlock(BlockKey(itemID: content.itemID, eTag: content.eTag, index: index)) else { return nil }
        readAheadIfSequential(content, offset: offset, end: end)
        return (descriptor, offset - index * blockSize, Int(end - offset))
    }

    /// The bytes, when every block they lie in is cached: no task, no waiting. The file system calls this
    /// first, on the kernel request's own thread, and goes asynchronous only on a miss.
    public func cachedRead(_ content: RemoteContent, offset: Int64, length: Int) -> Data? {
        guard offset < content.size, length > 0 else { return Data() }
        let end = min(content.size, offset + Int64(length))
        let blockSize = Int64(cache.blockSize)
        let first = offset / blockSize, last = (end - 1) / blockSize
        var result = Data(capacity: Int(end - offset))
        for index in first...last {
            let blockStart = index * blockSize
            let from = Int(max(offset, blockStart) - blockStart)
            let to = Int(min(end, blockStart + blockSize) - blockStart)
            guard let piece = cache.read(BlockKey(itemID: content.itemID, eTag: content.eTag, index: index), range: from..<to),
                  piece.count == to - from else { return nil }
            result.append(piece)
        }
        readAheadIfSequential(content, offset: offset, end: end)
        return result
    }

    /// Up to `length` bytes of `content` from `offset` (fewer at the end of the file).
    public func read(_ content: RemoteContent, offset: Int64, length: Int) async throws -> Data {
        guard offset < content.size, length > 0 else { return Data() }
        let end = min(content.size, offset + Int64(length))  // exclusive
        let blockSize = Int64(cache.blockSize)
        let first = offset / blockSize, last = (end - 1) / blockSize
        readAheadIfSequential(content, offset: offset, end: end)

        var result = Data(capacity: Int(end - offset))
        for index in first...last {
            let key = BlockKey(itemID: content.itemID, eTag: content.eTag, index: index)
            let blockStart = index * blockSize
            let from = Int(max(offset, blockStart) - blockStart)
            let to = Int(min(end, blockStart + blockSize) - blockStart)
            if let cached = cache.read(key, range: from..<to), cached.count == to - from {
                result.append(cached)
                continue
            }
            let data = try await block(key, content: content)
            let upper = min(to, data.count)
            if from < upper { result.append(data[data.startIndex + from..<data.startIndex + upper]) }
        }
        return result
    }

    /// Sequential reads fetch the next blocks ahead, in the background; only blocks neither cached nor
    /// already on their way, so the many kernel reads within one block cost nothing extra.
    private func readAheadIfSequential(_ content: RemoteContent, offset: Int64, end: Int64) {
        let blockSize = Int64(cache.blockSize)
        guard state.noteRead(content: content, offset: offset, end: end, blockSize: blockSize) else { return }
        let last = (end - 1) / blockSize
        let upper = min(last + Int64(readAhead), (content.size - 1) / blockSize)
        for index in stride(from: last + 1, through: upper, by: 1) {
            let key = BlockKey(itemID: content.itemID, eTag: content.eTag, index: index)
            if cache.contains(key) || state.isFetching(key) { continue }
            Task { _ = try? await self.block(key, content: content) }
        }
    }

    /// One block: from the cache, or fetched once however many readers ask at the same time.
    func block(_ key: BlockKey, content: RemoteContent) async throws -> Data {
        if let cached = cache.read(key) { return cached }
        let task = state.fetch(key) {
            Task {
                try await self.limiter.run { try await self.fetch(key, content: content) }
            }
        }
        do {
            let data = try await task.value
            state.finish(key)
            return data
        } catch {
            state.finish(key)
            throw error
        }
    }

    private func fetch(_ key: BlockKey, content: RemoteContent) async throws -> Data {
        if let cached = cache.read(key) { return cached }
        let blockSize = Int64(cache.blockSize)
        let start = key.index * blockSize
        let end = min(content.size, start + blockSize) - 1
        let download = try await downloadWithFreshURL(content, range: start...end)
        if let served = download.eTag, !served.isEmpty, served != content.eTag {
            // The document changed since its metadata was read: these bytes belong to another version.
            throw NamespaceError.stale
        }
        guard Int64(download.data.count) == end - start + 1 else {
            logger.warning("short block", metadata: ["item": "\(key.itemID)", "index": "\(key.index)", "bytes": "\(download.data.count)"])
            throw NamespaceError.stale
        }
        try cache.store(key, data: download.data)
        return download.data
    }

    /// Reuses a file's download URL for a minute (read-ahead of one file makes many requests); fetches a new one once if it has expired.
    private func downloadWithFreshURL(_ content: RemoteContent, range: ClosedRange<Int64>) async throws -> Download {
        if let location = state.location(for: content.itemID) {
            do {
                return try await graph.download(location: location, range: range)
            } catch let error as GraphError where [401, 403, 404].contains(error.status) {
                state.dropLocation(for: content.itemID)
            }
        }
        let location = try await graph.downloadLocation(driveID: content.driveID, itemID: content.itemID)
        state.remember(location: location, for: content.itemID)
        return try await graph.download(location: location, range: range)
    }
}

/// The reader's shared bookkeeping: fetches under way, sequential-read detection, download URLs.
final class ReaderState: @unchecked Sendable {
    private let lock = NSLock()
    private var inflight: [BlockKey: Task<Data, Error>] = [:]
    /// Per file version: where the last read ended, and how many bytes have been read in a row.
    private var streams: [String: (lastEnd: Int64, run: Int64)] = [:]
    private var locations: [String: (url: String, expires: Date)] = [:]

    func fetch(_ key: BlockKey, start: () -> Task<Data, Error>) -> Task<Data, Error> {
        lock.withLock {
            if let task = inflight[key] { return task }
            let task = start()
            inflight[key] = task
            return task
        }
    }

    func finish(_ key: BlockKey) { lock.withLock { _ = inflight.removeValue(forKey: key) } }

    func isFetching(_ key: BlockKey) -> Bool { lock.withLock { inflight[key] != nil } }

    /// Records a read; true when the file is being read sequentially: from its start, or after a whole
    /// block's worth of reads in a row. (A random 4 KiB read plus the kernel's own read-ahead is not a run.)
    /// The kernel sends reads from several threads, slightly out of order, so "in a row" allows 1 MiB of slack.
    func noteRead(content: RemoteContent, offset: Int64, end: Int64, blockSize: Int64) -> Bool {
        lock.withLock {
            let key = "\(content.itemID)|\(content.eTag)"
            var run = end - offset
            var lastEnd = end
            if let previous = streams[key], abs(previous.lastEnd - offset) <= 1 << 20 {
                run += previous.run
                lastEnd = max(end, previous.lastEnd)
            }
            if streams.count > 10_000 { streams.removeAll() }
            streams[key] = (lastEnd, run)
            return offset == 0 || run >= blockSize
        }
    }

    func location(for itemID: String) -> String? {
        lock.withLock {
            guard let entry = locations[itemID], entry.expires > Date() else { return nil }
            return entry.url
        }
    }

    func remember(location: String, for itemID: String) {
        lock.withLock {
            if locations.count > 1_000 { locations = locations.filter { $0.value.expires > Date() } }
            locations[itemID] = (location, Date().addingTimeInterval(60))
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
