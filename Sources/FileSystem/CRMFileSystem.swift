import Cache
import Foundation
import Logging
import Namespace
import Writeback
import Writes

/// The file system crmfs mounts, as a library: each operation takes plain arguments (inode numbers,
/// names, handles, the calling user) and answers a value or throws an error that `errnoCode(for:)` maps
/// to its errno. It knows nothing of FUSE: the adapter (`FuseAdapter`) turns kernel requests into these
/// calls and their answers into replies, and tests call them directly. Without write support (`-o ro`)
/// every operation that would change something answers EROFS.
///
/// Lock: `lock` guards the handle table, the opened versions and the kernel's capabilities; it is never
/// held while calling the tree, the reader or the write path.
public final class CRMFileSystem: @unchecked Sendable {
    public let tree: Tree
    let reader: BlockReader
    public let options: MountOptions
    let logger: Logger
    /// The write path; nil for a read-only mount.
    let writes: LocalWrites?

    let lock = NSLock()
    let readerListings = ReaderListings()
    private var skipsOpendir = false
    private var fileHandles: [UInt64: OpenFile] = [:]
    private var openedVersions: [UInt64: String] = [:]
    private var nextHandle: UInt64 = 1
    /// Where kernel notices go while a kernel is attached (see KernelNotices); nil before and after.
    var notifier: (any KernelNotifier)?

    public init(tree: Tree, reader: BlockReader, options: MountOptions, writeSupport: WriteSupport? = nil, logger: Logger = Logger(label: "crmfs.fs")) {
        self.tree = tree
        self.reader = reader
        self.options = options
        self.logger = logger
        writes = writeSupport.map { LocalWrites(tree: tree, reader: reader, support: $0, logger: logger) }
        tree.whenEntriesChange { [weak self] in
            guard let fileSystem = self else { return }
            Self.noticeQueue.async { fileSystem.entriesChanged() }
        }
    }

    /// Whether nothing can be written through this mount (`-o ro`).
    public var readOnly: Bool { writes == nil }

    /// Whether the kernel agreed to go without opendir and releasedir (set at INIT, before any request).
    public var kernelSkipsOpendir: Bool {
        get { lock.withLock { skipsOpendir } }
        set { lock.withLock { skipsOpendir = newValue } }
    }

    /// A handle's open file: a remote document read through the cache, staged bytes read from local
    /// disk, or a document open for writing.
    enum OpenFile {
        case remote(RemoteContent)
        case staged(descriptor: Int32)
        case writer(WriteSession)
    }

    /// An opened file's handle and how the kernel is to treat its pages.
    public struct Opened: Sendable {
        public var handle: UInt64
        /// Writing handles bypass the kernel's page cache: the kernel hands the writer's pages straight
        /// to us (one copy fewer) and may send several requests of a large write at once, and the bytes
        /// go only to the staged file.
        public var directIO = false
        /// The kernel's cached pages of the file are still the version this handle reads.
        public var keepCache = false
    }

    func handle(_ handle: UInt64) -> OpenFile? { lock.withLock { fileHandles[handle] } }

    func addHandle(_ file: OpenFile) -> UInt64 {
        lock.withLock {
            let handle = nextHandle
            nextHandle += 1
            fileHandles[handle] = file
            return handle
        }
    }

    func removeHandle(_ handle: UInt64) -> OpenFile? { lock.withLock { fileHandles.removeValue(forKey: handle) } }

    func writer(_ handle: UInt64?) -> WriteSession? {
        guard let handle, case .writer(let session) = self.handle(handle) else { return nil }
        return session
    }

    // MARK: Attributes

    /// What `stat(2)` shows of `node`.
    public func stat(_ node: NodeSnapshot) -> stat {
        Self.attributes(of: node, options: options, writable: writes != nil && !node.readOnly)
    }

    /// A time as the kernel takes it (for tests: members added to a C type are not visible to them).
    static func time(_ date: Date) -> timespec { timespec(date) }

    /// What `stat(_:)` answers for `node` (apart, so tests build it without a mount).
    static func attributes(of node: NodeSnapshot, options: MountOptions, writable: Bool) -> stat {
        var result = Glibc.stat()
        result.st_ino = UInt(node.ino)
        let permissions: mode_t = node.type == .directory ? (writable ? 0o777 : 0o555) : (writable ? 0o666 : 0o444)
        result.st_mode = (node.type == .directory ? S_IFDIR : S_IFREG) | (permissions & ~options.umask & 0o777)
        // A directory's link count would take a listing to know. 1 is the convention for "not counted":
        // 2 would claim it has no sub-directories, and directory walkers that trust it (fts's leaf
        // optimisation, Foundation's subpaths) would skip them.
        result.st_nlink = 1
        result.st_uid = options.uid
        result.st_gid = options.gid
        // Sizes are clamped where they enter the tree; whatever one gets here, none may overflow (`size + 511` would).
        let size = max(0, node.size)
        result.st_size = Int(size)
        result.st_blocks = Int(size / 512 + (size % 512 == 0 ? 0 : 1))
        result.st_blksize = 128 << 10
        result.st_mtim = timespec(node.modified)
        result.st_ctim = timespec(node.changed)
        result.st_atim = timespec(node.modified)
        return result
    }

    // MARK: Names and attributes

    public func lookup(parent: UInt64, name: String) -> Answer<NodeSnapshot> {
        .either(tree.lookupIfKnown(parent: parent, name: name)) { try await self.tree.lookup(parent: parent, name: name) }
    }

    public func getattr(_ ino: UInt64) -> Answer<NodeSnapshot> {
        .either(tree.attributesIfKnown(ino)) { try await self.tree.attributes(ino) }
    }

    /// The kernel let go of `count` references to `ino` (from lookups and readdirplus entries).
    public func forget(_ ino: UInt64, count: UInt64) {
        tree.forget(ino, count: count)
    }

    /// `access(2)`: the kernel checks permission bits itself (default_permissions); only writing to a
    /// read-only mount is refused here.
    public func access(mask: Int32) -> Int32 {
        mask & W_OK != 0 && readOnly ? EROFS : 0
    }

    /// What a document library has no counterpart for: links, devices, preallocation.
    public enum Unsupported: Sendable { case link, symlink, device, preallocation }

    public func errno(for unsupported: Unsupported) -> Int32 {
        if readOnly { return EROFS }
        return unsupported == .preallocation ? EOPNOTSUPP : EPERM
    }

    // MARK: Files

    /// Opens `ino` with open(2)'s `flags`; the handle names the open file in reads, writes and release.
    public func open(_ ino: UInt64, flags: Int32, uid: UInt32? = nil) -> Answer<Opened> {
        let writing = flags & O_ACCMODE != O_RDONLY || flags & O_TRUNC != 0
        if writing && writes == nil { return .now(.failure(POSIXError(.EROFS))) }
        return .later { [self] in
            var node = try await tree.attributes(ino)
            guard node.type == .file else { throw NamespaceError.isDirectory }
            // A remount's kept document may have changed while nothing was mounted: its service bytes (read,
            // or copied into a writer's staged file) wait for the first catch-up, which the kernel hears
            // of first (a new size), and the document is taken as that left it.
            if node.content != nil, node.stagedFile == nil, !(writing && flags & O_TRUNC != 0), await tree.waitForKeptContent() {
                await Self.noticesSent()
                node = try await tree.attributes(ino)
                guard node.type == .file else { throw NamespaceError.isDirectory }
            }
            if writing, let writes {
                let session = try await ChangeRequester.$uid.withValue(uid) { try await writes.open(node, truncate: flags & O_TRUNC != 0) }
                return Opened(handle: addHandle(.writer(session)), directIO: true)
            }
            if let staged = node.stagedFile, let writes {
                let descriptor = Glibc.open(writes.staging.path(of: staged), O_RDONLY | O_CLOEXEC)
                if descriptor >= 0 { return Opened(handle: addHandle(.staged(descriptor: descriptor))) }
            }
            guard let content = node.content else {
                if node.localOnly { throw NamespaceError.notFound }
                throw POSIXError(.EIO)
            }
            // The kernel's page cache stays valid while the version is the one it cached.
            let keepCache = lock.withLock { () -> Bool in
                defer { openedVersions[ino] = content.eTag }
                return openedVersions[ino] == content.eTag
            }
            return Opened(handle: addHandle(.remote(content)), keepCache: keepCache)
        }
    }

    /// Up to `size` bytes at `offset` of an open file. Cached and local bytes are answered at once (a span
    /// of a block file, which the adapter splices to the kernel, when they lie in one block); only cache
    /// misses take a task.
    public func read(handle: UInt64, size: Int, offset: Int64) -> Answer<BlockRead> {
        switch self.handle(handle) {
        case nil: return .now(.failure(POSIXError(.EBADF)))
        case .staged(let descriptor): return .now(Result { try readLocal(descriptor, size: size, offset: offset) })
        case .writer(let session):
            // The staged copy, once it holds the document's bytes in that range (it may be still copying them).
            guard let writes else { return .now(.failure(POSIXError(.EBADF))) }
            return .now(Result {
                let copy = try writes.readable(session, offset: offset, length: Int64(size))
                return try readLocal(copy.descriptor, size: size, offset: offset)
            })
        case .remote(let content): return readRemote(content, size: size, offset: offset)
        }
    }

    private func readLocal(_ descriptor: Int32, size: Int, offset: Int64) throws -> BlockRead {
        var buffer = Data(count: size)
        let count = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, size, off_t(offset)) }
        guard count >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: Glibc.errno) ?? .EIO) }
        return .bytes(buffer.prefix(count))
    }

    private func readRemote(_ content: RemoteContent, size: Int, offset: Int64) -> Answer<BlockRead> {
        if let span = reader.cachedSpan(content, offset: offset, length: size) { return .now(.success(.span(span))) }
        if offset >= content.size { return .now(.success(.bytes(Data()))) }
        if let cached = reader.cachedRead(content, offset: offset, length: size) { return .now(.success(.bytes(cached))) }
        return .later { [self] in
            do {
                return try await reader.read(content, offset: offset, length: size)
            } catch {
                logger.warning("read failed", metadata: ["item": "\(content.itemID)", "offset": "\(offset)", "error": "\(error)"])
                throw error
            }
        }
    }

    /// The last close of a handle. A writing handle's change was made durable at `flush`; this hands it on.
    public func release(handle: UInt64) {
        switch removeHandle(handle) {
        case .staged(let descriptor):
            Glibc.close(descriptor)
        case .writer(let session):
            do { try writes?.close(session) } catch {
                logger.error("could not record a closed file's change", metadata: ["error": "\(error)"])
            }
        default:
            break
        }
    }

    // MARK: Extended attributes

    /// The value of the extended attribute `name` of `ino`.
    public func getxattr(_ ino: UInt64, name: String) -> Answer<Data> {
        guard name.hasPrefix("user.") else { return .now(.failure(POSIXError(.EOPNOTSUPP))) }
        return .later { [self] in
            let attributes = try await extendedAttributes(ino, columns: name.hasPrefix("user.sp."))
            guard let value = attributes.first(where: { $0.name == name })?.value else { throw POSIXError(.ENODATA) }
            return Data(value.utf8)
        }
    }

    /// The names of `ino`'s extended attributes, each ended by a NUL (as listxattr(2) gives them).
    public func listxattr(_ ino: UInt64) -> Answer<Data> {
        .later { [self] in
            var names = Data()
            for attribute in try await extendedAttributes(ino) {
                names.append(contentsOf: attribute.name.utf8)
                names.append(0)
            }
            return names
        }
    }

    /// The tree's attributes, with `user.crmfs.sync` from the write path.
    private func extendedAttributes(_ ino: UInt64, columns: Bool = true) async throws -> [(name: String, value: String)] {
        let attributes = try await tree.extendedAttributes(ino, columns: columns)
        guard let writes, let node = tree.current(ino), node.type == .file else { return attributes }
        return attributes.map { $0.name == "user.crmfs.sync" ? ($0.name, writes.syncStatus(node)) : $0 }
    }

    /// A read-only mount has no free space; a writable one reports the space left where writes are staged.
    public func statfs() -> statvfs {
        var info = statvfs()
        info.f_bsize = 4096
        info.f_frsize = 4096
        info.f_files = 1_000_000
        info.f_namemax = 255
        if let writes, let disk = try? FileManager.default.attributesOfFileSystem(forPath: writes.staging.directory.path),
           let size = (disk[.systemSize] as? NSNumber)?.uint64Value, let free = (disk[.systemFreeSize] as? NSNumber)?.uint64Value {
            info.f_blocks = UInt(size / 4096)
            info.f_bfree = UInt(free / 4096)
            info.f_bavail = UInt(free / 4096)
            info.f_ffree = 1_000_000
            return info
        }
        info.f_blocks = UInt(max(1, reader.cache.capacity / 4096))
        info.f_bfree = 0
        info.f_bavail = 0
        info.f_ffree = 0
        return info
    }
}

extension timespec {
    init(_ date: Date) {
        // Times come from the services and from users: one out of Int's range must not stop the daemon.
        let interval = date.timeIntervalSince1970
        let seconds = interval.isFinite ? min(max(interval, -1e17), 1e17) : 0
        let whole = floor(seconds)
        self.init(tv_sec: Int(whole), tv_nsec: min(Int((seconds - whole) * 1_000_000_000), 999_999_999))
    }
}
