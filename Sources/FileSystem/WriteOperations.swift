import Foundation
import Namespace
import SharePointNaming
import Writeback
import Writes

/// The writing operations, answered through the write path. Refusals that come from the mount's rules
/// (EPERM at the object and record levels, EINVAL for names SharePoint refuses) are logged with the rule,
/// since the errno alone does not say it. `uid` is the local user who made the call (the audit log names
/// them; on an `allow_other` mount it is not necessarily the daemon's).
extension CRMFileSystem {
    /// A time `setattr` sets: the caller's clock now, or the one given (utimensat's `UTIME_NOW` or a time).
    public enum TimeChange: Sendable {
        case now
        case to(seconds: Int, nanoseconds: Int)
    }

    /// Runs `body` over the write path as `uid`, logging its failure (refusals with their rule).
    func writing<Value>(_ operation: String, _ name: String? = nil, uid: UInt32?,
                        _ body: (LocalWrites) async throws -> Value) async throws -> Value {
        guard let writes else { throw POSIXError(.EROFS) }
        do {
            return try await ChangeRequester.$uid.withValue(uid) { try await body(writes) }
        } catch {
            logFailure(operation, name, error)
            throw error
        }
    }

    private func logFailure(_ operation: String, _ name: String?, _ error: any Error) {
        switch error {
        case NamespaceError.notPermitted(let reason), NamespaceError.invalid(let reason), NamespaceError.accessDenied(let reason):
            logger.warning("\(operation) refused", metadata: ["name": "\(name ?? "")", "reason": "\(reason)"])
        case NamespaceError.notFound, NamespaceError.exists, NamespaceError.notEmpty, NamespaceError.isDirectory, NamespaceError.notDirectory:
            break
        case is CancellationError:
            logger.info("\(operation) interrupted; what it waited for goes on")
        default:
            logger.error("\(operation) failed", metadata: ["name": "\(name ?? "")", "error": "\(error)"])
        }
    }

    /// Creates the document `name` in `parent` and opens it for writing (open(2) with O_CREAT).
    public func create(parent: UInt64, name: String, flags: Int32, uid: UInt32? = nil) async throws -> (node: NodeSnapshot, opened: Opened) {
        try await writing("create", name, uid: uid) { writes in
            let (node, session) = try await writes.create(parent: parent, name: name, flags: flags)
            let opened = Opened(handle: addHandle(.writer(session)), directIO: true)
            return (node: tree.current(node.ino) ?? node, opened: opened)
        }
    }

    /// Writes `length` bytes at `offset` through a writing handle: `put` writes them to the staged copy's
    /// descriptor it is given and returns how many it wrote (the adapter splices them from the kernel's
    /// pipe). A local write, made on the caller's thread.
    public func write(handle: UInt64, offset: Int64, length: Int, _ put: (Int32) -> Int) throws -> Int {
        guard let session = writer(handle), let writes else { throw POSIXError(.EBADF) }
        do {
            return try writes.write(session, at: offset, length: length, put)
        } catch {
            // A full disk answers every write ENOSPC, which the writer sees; anything else is worth a line.
            if (error as? POSIXError)?.code != .ENOSPC { logger.warning("write failed", metadata: ["ino": "\(session.ino)", "error": "\(error)"]) }
            throw error
        }
    }

    /// Writes `bytes` at `offset` through a writing handle (what write(2) does, for callers holding the bytes).
    public func write(handle: UInt64, offset: Int64, bytes: Data) throws -> Int {
        try write(handle: handle, offset: offset, length: bytes.count) { descriptor in
            bytes.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, bytes.count, off_t(offset)) }
        }
    }

    /// Runs at every close(2): the bytes are durable and journaled before close returns.
    public func flush(handle: UInt64) throws {
        guard let session = writer(handle), let writes else { return }
        do {
            try writes.commit(session)
        } catch {
            logger.error("close could not make the file durable", metadata: ["error": "\(error)"])
            throw error
        }
    }

    /// Waits until the file is uploaded and linked: EACCES when the service refused the change, EIO once
    /// retries are exhausted, CancellationError when the caller went away (the upload goes on).
    public func fsync(handle: UInt64, uid: UInt32? = nil) async throws {
        guard let session = writer(handle) else { return }
        try await writing("fsync", uid: uid) { writes in
            do {
                try await writes.fsync(session)
            } catch WritebackError.refused(let reason) {
                logger.error("fsync: the service refused the change", metadata: ["reason": "\(reason)"])
                throw POSIXError(.EACCES)
            } catch let error as WritebackError {
                logger.error("fsync: upload gave up", metadata: ["error": "\(error)"])
                throw POSIXError(.EIO)
            }
        }
    }

    /// Changes `ino`'s size and modification time (truncate(2), utimensat(2)); answers the attributes after.
    /// A size change through a writing `handle` (ftruncate) is made at once, on the caller's thread: it may
    /// wait for the document's bytes to be copied first, which a task must not.
    public func setattr(_ ino: UInt64, size: Int64? = nil, modified: TimeChange? = nil, handle: UInt64? = nil,
                        uid: UInt32? = nil) -> Answer<NodeSnapshot> {
        let session = writer(handle)
        if let size, let session, let writes {
            do { try writes.truncate(session, to: size) } catch { return .now(.failure(error)) }
        }
        let date = modified.map { settableTime($0, ino: ino) }
        return .later { [self] in
            try await writing("setattr", uid: uid) { writes in
                var node = try await tree.attributes(ino)
                if size != nil, node.level != .document || node.type != .file {
                    throw NamespaceError.notPermitted("only documents can be truncated")
                }
                if let size, session == nil { try await writes.truncate(node, to: size) }
                if let date {
                    node = tree.current(ino) ?? node
                    if node.type == .file && node.level == .document {
                        try writes.setModified(node, to: date)
                    } else {
                        // Times of directories show at once and are not sent: SharePoint keeps a folder's own.
                        tree.setLocal(ino, modified: date)
                    }
                }
                // Mode and owner changes are accepted and have no effect: SharePoint has no such thing.
                return tree.current(ino) ?? node
            }
        }
    }

    /// A time `setattr` sets, clamped to what SharePoint can hold (as ext4 clamps to what its inodes
    /// hold): the call succeeds, `stat` shows the clamped time here and on every mount, and the log says so.
    private func settableTime(_ change: TimeChange, ino: UInt64) -> Date {
        guard case .to(let seconds, let nanoseconds) = change else { return Date() }
        let date = SharePointTimes.clamped(seconds: seconds, nanoseconds: nanoseconds)
        if SharePointTimes.date(seconds: seconds, nanoseconds: nanoseconds) == nil {
            logger.warning("utimens: a time SharePoint cannot hold was clamped", metadata: [
                "path": "\(tree.mountPath(of: ino) ?? "inode \(ino)")", "seconds": "\(seconds)", "clamped to": "\(date.formatted(.iso8601))",
            ])
        }
        return date
    }

    public func mkdir(parent: UInt64, name: String, uid: UInt32? = nil) async throws -> NodeSnapshot {
        try await writing("mkdir", name, uid: uid) { writes in try await writes.mkdir(parent: parent, name: name) }
    }

    /// unlink(2), or rmdir(2) when `directory`.
    public func remove(parent: UInt64, name: String, directory: Bool, uid: UInt32? = nil) async throws {
        try await writing(directory ? "rmdir" : "unlink", name, uid: uid) { writes in
            try await writes.remove(parent: parent, name: name, directory: directory)
        }
    }

    /// renameat2(2); `flags` as it takes them (RENAME_NOREPLACE 1, RENAME_EXCHANGE 2).
    public func rename(parent: UInt64, name: String, newParent: UInt64, newName: String, flags: UInt32 = 0, uid: UInt32? = nil) async throws {
        // RENAME_EXCHANGE has no SharePoint counterpart.
        if flags & 2 != 0 { throw POSIXError(.EINVAL) }
        try await writing("rename", "\(name) -> \(newName)", uid: uid) { writes in
            try await writes.rename(parent: parent, name: name, to: newParent, newName: newName, noReplace: flags & 1 != 0)
        }
    }

    /// Whether setting `name` on `ino` asks the mount to send everything (`user.crmfs.sync` on its root):
    /// a wait as long as fsync's, which the caller's signal may end.
    public static func asksToSync(_ ino: UInt64, name: String) -> Bool {
        name == "user.crmfs.sync" && ino == Tree.rootIno
    }

    /// `user.sp.COLUMN` and `user.crm.FIELD` go to the services at once (a nil `value` removes it).
    /// `user.crmfs.sync` on the mount's root waits for every pending change: an older `crmfs sync`'s way,
    /// and its fallback when the status socket cannot be reached (the kernel holds the root locked
    /// meanwhile, so `crmfs sync` asks on the socket: see `sendEverything`).
    public func setxattr(_ ino: UInt64, name: String, value: String?, uid: UInt32? = nil) async throws {
        guard name.hasPrefix("user.") else { throw POSIXError(.EOPNOTSUPP) }
        if Self.asksToSync(ino, name: name) {
            try await writing("crmfs sync", uid: uid) { _ in
                do {
                    try await sendEverything()
                } catch SyncShortfall.refused {
                    throw POSIXError(.EACCES)
                } catch SyncShortfall.gaveUp, SyncShortfall.readOnly {
                    throw POSIXError(.EIO)
                }
            }
            return
        }
        try await writing("setxattr", name, uid: uid) { writes in
            if name.hasPrefix("user.sp.") {
                try await writes.setColumn(ino, column: String(name.dropFirst("user.sp.".count)), text: value)
            } else if name.hasPrefix("user.crm.") {
                try await writes.setRecordField(ino, field: String(name.dropFirst("user.crm.".count)), text: value)
            } else {
                throw NamespaceError.notPermitted("\(name) is read-only")
            }
        }
    }

    /// What `crmfs sync` waits for: returns once every change made through the mount so far is sent.
    /// Throws `SyncShortfall` when some gave up after retries or were refused, CancellationError when
    /// the caller went away (the changes go on).
    public func sendEverything() async throws {
        guard let writes else { throw SyncShortfall.readOnly }
        do {
            try await writes.drain()
            // After a remount, what the mount shows of its kept tree is confirmed by the first catch-up:
            // once sync returns, the mount shows what the service holds (bounded, as any wait for it), and
            // the kernel has heard what changed.
            if await tree.waitForKeptContent() {
                try Task.checkCancellation()
                await Self.noticesSent()
            }
        } catch is CancellationError {
            throw CancellationError()
        } catch WritebackError.refused(let reason) {
            logger.error("crmfs sync: the service refused changes", metadata: ["refused": "\(reason)"])
            throw SyncShortfall.refused(reason)
        } catch {
            throw SyncShortfall.gaveUp("\(error)")
        }
    }
}

/// Why `crmfs sync` cannot say that everything was sent.
public enum SyncShortfall: Error, Sendable {
    /// Some changes gave up after retries (they stay journaled for the next mount).
    case gaveUp(String)
    /// The service refused some changes for good (access denied; the user's copies are in conflicts/).
    case refused(String)
    /// A read-only mount sends nothing.
    case readOnly
}
