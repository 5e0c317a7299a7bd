import CFuse
import Cache
import Foundation
import Logging
import Namespace
import Writeback
import Writes

public struct MountOptions: Sendable {
    /// Let other users see the mount (needs user_allow_other in /etc/fuse.conf for non-root); implies default_permissions.
    public var allowOther = false
    /// How long the kernel may trust names and attributes.
    public var entryTimeout: Double = 60
    public var attributeTimeout: Double = 60
    /// Shown in mount listings (the source column).
    public var fsname = "crmfs"
    public var debug = false
    /// Owner and group every file shows (the mounting user's by default), and the permission bits taken
    /// away from every file and directory: with `allow_other`, `umask=027` keeps other users out, since the
    /// kernel checks these bits (`default_permissions`).
    public var uid: uid_t = getuid()
    public var gid: gid_t = getgid()
    public var umask: mode_t = 0o022
    /// Let the kernel keep directory listings and stop sending opendir/releasedir (see ReaderListings):
    /// only when every listing change reaches the mount without asking (the change feeds), since the
    /// kernel then asks for a listing again only when told it changed.
    public var kernelKeepsListings = false

    public init() {}
}

/// The FUSE adapter: each low-level operation becomes a namespace, cache or write-path call on a task,
/// answered with fuse_reply_* when it completes. Knows nothing of HTTP. Without write support (`-o ro`)
/// every operation that would change something answers EROFS.
public final class CRMFileSystem: @unchecked Sendable {
    let tree: Tree
    let reader: BlockReader
    let options: MountOptions
    let logger: Logger
    /// The write path; nil for a read-only mount.
    let writes: LocalWrites?

    let lock = NSLock()
    let readerListings = ReaderListings()
    private var skipsOpendir = false
    /// Whether the kernel agreed to go without opendir and releasedir (set at INIT, before any request).
    var kernelSkipsOpendir: Bool {
        get { lock.withLock { skipsOpendir } }
        set { lock.withLock { skipsOpendir = newValue } }
    }
    private var fileHandles: [UInt64: OpenFile] = [:]
    private var openedVersions: [UInt64: String] = [:]
    private var nextHandle: UInt64 = 1
    /// The FUSE session while the loop runs; nil before and after.
    var session: OpaquePointer?
    private var mountpoint = ""

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

    /// A handle's open file: a remote document read through the cache, staged bytes read from local
    /// disk, or a document open for writing.
    enum OpenFile {
        case remote(RemoteContent)
        case staged(descriptor: Int32)
        case writer(WriteSession)
    }

    /// Writing handles bypass the kernel's page cache: the kernel hands the writer's pages straight
    /// to us (one copy fewer) and may send several requests of a large write at once, and the bytes
    /// go only to the staged file.
    static func writeThrough(_ info: inout FileInfo) {
        crmfs_fi_set_direct_io(&info.raw, 1)
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

    // MARK: Session

    /// Mounts at `mountpoint` and serves requests until unmounted (umount, fusermount3 -u, SIGTERM, SIGINT).
    /// `ready` is called once the mount is in place, or with the reason it could not be.
    public func run(mountpoint: String, ready: (Result<Void, MountError>) -> Void) -> Int32 {
        var args = crmfs_args_init()
        // libfuse splits -o at commas unless escaped: a config path with a comma stays one fsname.
        let fsname = options.fsname.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: ",", with: "\\,")
        var arguments = ["crmfs", "-o", "fsname=\(fsname),subtype=crmfs,default_permissions" + (writes == nil ? ",ro" : "")]
        if options.allowOther { arguments += ["-o", "allow_other"] }
        if options.debug { arguments.append("-d") }
        for argument in arguments { fuse_opt_add_arg(&args, argument) }
        defer { fuse_opt_free_args(&args) }

        var operations = Self.operations()
        let userdata = Unmanaged.passUnretained(self).toOpaque()
        guard let session = fuse_session_new(&args, &operations, MemoryLayout<fuse_lowlevel_ops>.size, userdata) else {
            ready(.failure(MountError(message: "could not create the FUSE session (bad options?)")))
            return 1
        }
        lock.withLock { self.session = session; self.mountpoint = mountpoint }
        defer {
            // No kernel notification may use the session once it is gone.
            lock.withLock { self.session = nil }
            Self.noticeQueue.sync {}
            fuse_session_destroy(session)
        }
        // libfuse's own signal handlers only wake the loop if the signal lands on its thread, which in a
        // process full of threads it rarely does. Ours unmount, which ends the loop whatever thread it is on.
        // libdispatch installs a source's handler on its own thread after `resume`; until then the signal
        // is ignored. The mount is not reported ready before every handler is in place, or a stop sent
        // right after READY=1 (systemd, a script) would be lost and the mount never end.
        let registered = DispatchGroup()
        let signals = [SIGINT, SIGTERM, SIGHUP].map { number -> DispatchSourceSignal in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [weak self] in self?.stop() }
            registered.enter()
            source.setRegistrationHandler { registered.leave() }
            source.resume()
            return source
        }
        defer { signals.forEach { $0.cancel() } }
        _ = registered.wait(timeout: .now() + 5)
        guard fuse_session_mount(session, mountpoint) == 0 else {
            ready(.failure(MountError(message: "mounting at \(mountpoint) failed (is /dev/fuse there, and the directory yours?)")))
            return 1
        }
        defer { fuse_session_unmount(session) }
        ready(.success(()))
        let config = fuse_loop_cfg_create()
        defer { fuse_loop_cfg_destroy(config) }
        fuse_loop_cfg_set_max_threads(config, 32)
        return crmfs_session_loop_mt(session, config)
    }

    /// Ends the loop and unmounts (lazily, so busy files do not keep it): what SIGTERM and Ctrl-C do.
    public func stop() {
        guard let (session, mountpoint) = lock.withLock({ self.session.map { ($0, self.mountpoint) } }) else { return }
        fuse_session_exit(session)
        if getuid() == 0 {
            umount2(mountpoint, Int32(MNT_DETACH))
        } else {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/fusermount3")
            process.arguments = ["-u", "-z", mountpoint]
            try? process.run()
            process.waitUntilExit()
        }
    }

    // MARK: Attributes

    func stat(_ node: NodeSnapshot) -> stat {
        Self.attributes(of: node, options: options, writable: writes != nil && !node.readOnly)
    }

    /// What `stat(_:)` answers for `node` (apart, so tests build it without a mount).
    /// A time as the kernel takes it (for tests: members added to a C type are not visible to them).
    static func time(_ date: Date) -> timespec { timespec(date) }

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

    func entry(_ node: NodeSnapshot) -> fuse_entry_param {
        var entry = fuse_entry_param()
        entry.ino = node.ino
        entry.generation = 1
        entry.attr = stat(node)
        entry.attr_timeout = options.attributeTimeout
        entry.entry_timeout = options.entryTimeout
        return entry
    }

    // MARK: Operations

    func lookup(_ request: Request, parent: UInt64, name: String) {
        answer(request, known: tree.lookupIfKnown(parent: parent, name: name),
               otherwise: { try await self.tree.lookup(parent: parent, name: name) }) { node in
            var reply = self.entry(node)
            fuse_reply_entry(request.raw, &reply)
        }
    }

    func getattr(_ request: Request, ino: UInt64) {
        answer(request, known: tree.attributesIfKnown(ino), otherwise: { try await self.tree.attributes(ino) }) { node in
            var attributes = self.stat(node)
            fuse_reply_attr(request.raw, &attributes, self.options.attributeTimeout)
        }
    }

    /// Replies at once, on the kernel request's thread, when the tree already knows the answer (most
    /// lookups, getattrs and opendirs of a walk): a hop to a task costs two thread wake-ups per request.
    /// Only what needs the services goes to a task.
    func answer<Value>(_ request: Request, known: Result<Value, Error>?, otherwise fetch: @escaping @Sendable () async throws -> Value,
                       reply: @escaping @Sendable (Value) -> Void) {
        if let known {
            switch known {
            case .success(let value): reply(value)
            case .failure(let error): request.fail(error)
            }
            return
        }
        Task {
            do { reply(try await fetch()) } catch { request.fail(error) }
        }
    }

    func open(_ request: Request, ino: UInt64, info: FileInfo) {
        let flags = info.raw.flags
        let writing = flags & O_ACCMODE != O_RDONLY || flags & O_TRUNC != 0
        if writing && writes == nil { request.error(EROFS); return }
        Task {
            do {
                var node = try await tree.attributes(ino)
                guard node.type == .file else { request.error(EISDIR); return }
                // A remount's kept document may have changed while nothing was mounted: its service bytes (read,
                // or copied into a writer's staged file) wait for the first catch-up, which the kernel hears
                // of first (a new size), and the document is taken as that left it.
                if node.content != nil, node.stagedFile == nil, !(writing && flags & O_TRUNC != 0), await tree.waitForKeptContent() {
                    await Self.noticesSent()
                    node = try await tree.attributes(ino)
                    guard node.type == .file else { request.error(EISDIR); return }
                }
                var info = info
                if writing, let writes {
                    let session = try await ChangeRequester.$uid.withValue(request.uid) { try await writes.open(node, truncate: flags & O_TRUNC != 0) }
                    info.raw.fh = addHandle(.writer(session))
                    Self.writeThrough(&info)
                    fuse_reply_open(request.raw, &info.raw)
                    return
                }
                if let staged = node.stagedFile, let writes {
                    let descriptor = Glibc.open(writes.staging.path(of: staged), O_RDONLY | O_CLOEXEC)
                    if descriptor >= 0 {
                        info.raw.fh = addHandle(.staged(descriptor: descriptor))
                        fuse_reply_open(request.raw, &info.raw)
                        return
                    }
                }
                guard let content = node.content else { request.error(node.localOnly ? ENOENT : EIO); return }
                info.raw.fh = addHandle(.remote(content))
                // The kernel's page cache stays valid while the version is the one it cached.
                let keepCache = lock.withLock { () -> Bool in
                    defer { openedVersions[ino] = content.eTag }
                    return openedVersions[ino] == content.eTag
                }
                crmfs_fi_set_keep_cache(&info.raw, keepCache ? 1 : 0)
                fuse_reply_open(request.raw, &info.raw)
            } catch {
                request.fail(error)
            }
        }
    }

    func read(_ request: Request, handle: UInt64, size: Int, offset: Int64) {
        switch self.handle(handle) {
        case nil: request.error(EBADF)
        case .staged(let descriptor): readLocal(request, descriptor: descriptor, size: size, offset: offset)
        case .writer(let session):
            // The staged copy, once it holds the document's bytes in that range (it may be still copying them).
            guard let writes else { request.error(EBADF); return }
            do {
                let copy = try writes.readable(session, offset: offset, length: Int64(size))
                readLocal(request, descriptor: copy.descriptor, size: size, offset: offset)
            } catch {
                request.fail(error)
            }
        case .remote(let content): readRemote(request, content: content, size: size, offset: offset)
        }
    }

    private func readLocal(_ request: Request, descriptor: Int32, size: Int, offset: Int64) {
        var buffer = Data(count: size)
        let count = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, size, off_t(offset)) }
        guard count >= 0 else { request.error(errno); return }
        request.bytes(buffer.prefix(count))
    }

    private func readRemote(_ request: Request, content: RemoteContent, size: Int, offset: Int64) {
        // Cached bytes are answered right here, on the kernel request's thread: spliced from the block
        // file when they lie in one block, copied otherwise. Only misses go to a task.
        if let span = reader.cachedSpan(content, offset: offset, length: size) {
            request.splice(span)
            return
        }
        if offset >= content.size {
            request.bytes(Data())
            return
        }
        if let cached = reader.cachedRead(content, offset: offset, length: size) {
            request.bytes(cached)
            return
        }
        Task {
            do {
                switch try await reader.read(content, offset: offset, length: size) {
                case .span(let span): request.splice(span)
                case .bytes(let bytes): request.bytes(bytes)
                }
            } catch {
                logger.warning("read failed", metadata: ["item": "\(content.itemID)", "offset": "\(offset)", "error": "\(error)"])
                request.fail(error)
            }
        }
    }

    func release(_ request: Request, handle: UInt64) {
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
        request.ok()
    }

    func getxattr(_ request: Request, ino: UInt64, name: String, size: Int) {
        guard name.hasPrefix("user.") else { request.error(EOPNOTSUPP); return }
        Task {
            do {
                let attributes = try await extendedAttributes(ino, columns: name.hasPrefix("user.sp."))
                guard let value = attributes.first(where: { $0.name == name })?.value else { request.error(ENODATA); return }
                reply(request, Data(value.utf8), size: size)
            } catch {
                request.fail(error)
            }
        }
    }

    func listxattr(_ request: Request, ino: UInt64, size: Int) {
        Task {
            do {
                var names = Data()
                for attribute in try await extendedAttributes(ino) {
                    names.append(contentsOf: attribute.name.utf8)
                    names.append(0)
                }
                reply(request, names, size: size)
            } catch {
                request.fail(error)
            }
        }
    }

    /// The tree's attributes, with `user.crmfs.sync` from the write path.
    private func extendedAttributes(_ ino: UInt64, columns: Bool = true) async throws -> [(name: String, value: String)] {
        let attributes = try await tree.extendedAttributes(ino, columns: columns)
        guard let writes, let node = tree.current(ino), node.type == .file else { return attributes }
        return attributes.map { $0.name == "user.crmfs.sync" ? ($0.name, writes.syncStatus(node)) : $0 }
    }

    /// The xattr protocol: size 0 asks how big; a buffer too small is ERANGE.
    private func reply(_ request: Request, _ data: Data, size: Int) {
        if size == 0 { fuse_reply_xattr(request.raw, data.count) }
        else if size < data.count { request.error(ERANGE) }
        else { request.bytes(data) }
    }

    /// A read-only mount has no free space; a writable one reports the space left where writes are staged.
    func statfs(_ request: Request) {
        var info = statvfs()
        if let writes, let disk = try? FileManager.default.attributesOfFileSystem(forPath: writes.staging.directory.path),
           let size = (disk[.systemSize] as? NSNumber)?.uint64Value, let free = (disk[.systemFreeSize] as? NSNumber)?.uint64Value {
            info.f_bsize = 4096
            info.f_frsize = 4096
            info.f_blocks = UInt(size / 4096)
            info.f_bfree = UInt(free / 4096)
            info.f_bavail = UInt(free / 4096)
            info.f_files = 1_000_000
            info.f_ffree = 1_000_000
            info.f_namemax = 255
            fuse_reply_statfs(request.raw, &info)
            return
        }
        info.f_bsize = 4096
        info.f_frsize = 4096
        info.f_blocks = UInt(max(1, reader.cache.capacity / 4096))
        info.f_bfree = 0
        info.f_bavail = 0
        info.f_files = 1_000_000
        info.f_ffree = 0
        info.f_namemax = 255
        fuse_reply_statfs(request.raw, &info)
    }
}

public struct MountError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}
