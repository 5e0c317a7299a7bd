import CFuse
import FileSystem
import Foundation
import Logging
import Namespace

/// The FUSE side of a mount: libfuse's low-level session over the file system library. It mounts, runs
/// the loop, turns each kernel request into a `CRMFileSystem` call and its answer into `fuse_reply_*`,
/// and passes the library's notices to the kernel. No behaviour of the mount lives here.
///
/// Lock: `lock` guards the session and mount point; it is never held while calling libfuse or the library.
public final class FuseAdapter: @unchecked Sendable {
    public let fileSystem: CRMFileSystem
    let logger: Logger
    private let lock = NSLock()
    /// The FUSE session while the loop runs; nil before and after.
    private var session: OpaquePointer?
    private var mountpoint = ""

    public init(fileSystem: CRMFileSystem, logger: Logger = Logger(label: "crmfs.fs")) {
        self.fileSystem = fileSystem
        self.logger = logger
    }

    /// Mounts at `mountpoint` and serves requests until unmounted (umount, fusermount3 -u, SIGTERM, SIGINT).
    /// `ready` is called once the mount is in place, or with the reason it could not be.
    public func run(mountpoint: String, ready: (Result<Void, MountError>) -> Void) -> Int32 {
        let options = fileSystem.options
        var args = crmfs_args_init()
        // libfuse splits -o at commas unless escaped: a config path with a comma stays one fsname.
        let fsname = options.fsname.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: ",", with: "\\,")
        var arguments = ["crmfs", "-o", "fsname=\(fsname),subtype=crmfs,default_permissions" + (fileSystem.readOnly ? ",ro" : "")]
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
        fileSystem.attach(SessionNotifier(session: session, logger: logger))
        defer {
            // No kernel notification may use the session once it is gone.
            lock.withLock { self.session = nil }
            fileSystem.detach()
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

    /// What a lookup, create, mkdir or readdirplus entry tells the kernel of `node`.
    func entry(_ node: NodeSnapshot) -> fuse_entry_param {
        var entry = fuse_entry_param()
        entry.ino = node.ino
        entry.generation = 1
        entry.attr = fileSystem.stat(node)
        entry.attr_timeout = fileSystem.options.attributeTimeout
        entry.entry_timeout = fileSystem.options.entryTimeout
        return entry
    }
}

/// Tells the kernel what the library says changed: names that went or changed are forgotten
/// (`fuse_lowlevel_notify_inval_entry`), and so are the attributes and cached pages of nodes
/// (`fuse_lowlevel_notify_inval_inode`). The library detaches it before the session goes.
private struct SessionNotifier: KernelNotifier, @unchecked Sendable {
    let session: OpaquePointer
    let logger: Logger

    func tell(_ notices: [KernelNotice]) {
        for notice in notices {
            let status: Int32
            switch notice {
            case .entry(let parent, let name):
                status = name.withCString { fuse_lowlevel_notify_inval_entry(session, parent, $0, strlen($0)) }
            case .inode(let ino):
                status = fuse_lowlevel_notify_inval_inode(session, ino, 0, 0)
            }
            // ENOENT: the kernel holds nothing for it, which is fine.
            if status != 0 && status != -ENOENT {
                logger.debug("kernel notification failed", metadata: ["notice": "\(notice)", "errno": "\(-status)"])
            }
        }
    }
}
