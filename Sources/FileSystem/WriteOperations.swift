import CFuse
import Foundation
import Namespace
import SharePointNaming
import Writeback
import Writes

/// The kernel's writing operations, answered through the write path. Refusals that come from the
/// mount's rules (EPERM at the object and record levels, EINVAL for names SharePoint refuses) are
/// logged with the rule, since the errno alone does not say it.
extension CRMFileSystem {
    /// Runs `body` on a task and answers its failure with the right errno, logging refusals.
    func writing(_ request: Request, _ operation: String, _ name: String? = nil, _ body: @escaping @Sendable (LocalWrites) async throws -> Void) {
        guard let writes else { request.error(EROFS); return }
        Task {
            do {
                try await ChangeRequester.$uid.withValue(request.uid) { try await body(writes) }
            } catch {
                failed(request, operation, name, error)
            }
        }
    }

    /// Runs a long wait (`fsync`, `crmfs sync`) on a task the kernel's interrupt cancels, then answers:
    /// success, EINTR when a signal reached the caller first, or the failure's errno.
    func waiting(_ request: Request, _ operation: String, _ body: @escaping @Sendable (LocalWrites) async throws -> Void) {
        guard let writes else { request.error(EROFS); return }
        let interruption = Interruption()
        request.register(interruption)
        interruption.attach(Task {
            var failure: Error?
            do { try await ChangeRequester.$uid.withValue(request.uid) { try await body(writes) } } catch { failure = error }
            request.unregister(interruption)
            if let failure { failed(request, operation, nil, failure) } else { request.ok() }
        })
    }

    /// Answers a failed operation with its errno; refusals by the mount's rules are logged with the rule.
    private func failed(_ request: Request, _ operation: String, _ name: String?, _ error: Error) {
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
        request.fail(error)
    }

    func create(_ request: Request, parent: UInt64, name: String, info: FileInfo) {
        writing(request, "create", name) { writes in
            let (node, session) = try await writes.create(parent: parent, name: name, flags: info.raw.flags)
            var info = info
            info.raw.fh = self.addHandle(.writer(session))
            Self.writeThrough(&info)
            var reply = self.entry(self.tree.current(node.ino) ?? node)
            fuse_reply_create(request.raw, &reply, &info.raw)
        }
    }

    /// Writes go straight to the staged file, on the kernel's thread (a local write needs no task),
    /// spliced from the kernel's pipe where it allows.
    func write(_ request: Request, handle: UInt64, buffers: UnsafeMutablePointer<fuse_bufvec>, offset: Int64) {
        guard case .writer(let session) = self.handle(handle), let writes else { request.error(EBADF); return }
        do {
            let written = try writes.write(session, at: offset, length: fuse_buf_size(buffers)) { descriptor in
                crmfs_write_buf_to_fd(buffers, descriptor, off_t(offset))
            }
            fuse_reply_write(request.raw, written)
        } catch {
            // A full disk answers every write ENOSPC, which the writer sees; anything else is worth a line.
            if (error as? POSIXError)?.code != .ENOSPC { logger.warning("write failed", metadata: ["ino": "\(session.ino)", "error": "\(error)"]) }
            request.fail(error)
        }
    }

    /// `flush` runs at every close(2): the bytes are durable and journaled before close returns.
    func flush(_ request: Request, handle: UInt64) {
        guard case .writer(let session) = self.handle(handle), let writes else { request.ok(); return }
        do {
            try writes.commit(session)
            request.ok()
        } catch {
            logger.error("close could not make the file durable", metadata: ["error": "\(error)"])
            request.fail(error)
        }
    }

    /// `fsync` waits until the file is uploaded and linked; EIO once retries are exhausted.
    func fsync(_ request: Request, handle: UInt64) {
        guard case .writer(let session) = self.handle(handle) else { request.ok(); return }
        waiting(request, "fsync") { writes in
            do {
                try await writes.fsync(session)
            } catch WritebackError.refused(let reason) {
                self.logger.error("fsync: the service refused the change", metadata: ["reason": "\(reason)"])
                throw POSIXError(.EACCES)
            } catch let error as WritebackError {
                self.logger.error("fsync: upload gave up", metadata: ["error": "\(error)"])
                throw POSIXError(.EIO)
            }
        }
    }

    func setattr(_ request: Request, ino: UInt64, attributes: stat, fields: Int32, handle: UInt64?) {
        let sizeChange = fields & FUSE_SET_ATTR_SIZE != 0 ? Int64(attributes.st_size) : nil
        let modified: Date? = if fields & FUSE_SET_ATTR_MTIME_NOW != 0 {
            Date()
        } else if fields & FUSE_SET_ATTR_MTIME != 0 {
            settableTime(attributes.st_mtim, ino: ino)
        } else {
            nil
        }
        let session: WriteSession? = handle.flatMap { if case .writer(let session) = self.handle($0) { session } else { nil } }
        // ftruncate through an open handle is a local change, made here on the kernel's thread (it may
        // wait for the document's bytes to be copied first, which a task must not).
        if let size = sizeChange, let session, let writes {
            do { try writes.truncate(session, to: size) } catch { request.fail(error); return }
        }
        writing(request, "setattr") { writes in
            var node = try await self.tree.attributes(ino)
            if sizeChange != nil, node.level != .document || node.type != .file {
                throw NamespaceError.notPermitted("only documents can be truncated")
            }
            if let size = sizeChange, session == nil { try await writes.truncate(node, to: size) }
            if let modified {
                node = self.tree.current(ino) ?? node
                if node.type == .file && node.level == .document {
                    try writes.setModified(node, to: modified)
                } else {
                    // Times of directories show at once and are not sent: SharePoint keeps a folder's own.
                    self.tree.setLocal(ino, modified: modified)
                }
            }
            // Mode and owner changes are accepted and have no effect: SharePoint has no such thing.
            var reply = self.stat(self.tree.current(ino) ?? node)
            fuse_reply_attr(request.raw, &reply, self.options.attributeTimeout)
        }
    }

    /// A time `utimens` sets, clamped to what SharePoint can hold (as ext4 clamps to what its inodes
    /// hold): the call succeeds, `stat` shows the clamped time here and on every mount, and the log says so.
    private func settableTime(_ time: timespec, ino: UInt64) -> Date {
        let date = SharePointTimes.clamped(seconds: time.tv_sec, nanoseconds: time.tv_nsec)
        if SharePointTimes.date(seconds: time.tv_sec, nanoseconds: time.tv_nsec) == nil {
            logger.warning("utimens: a time SharePoint cannot hold was clamped", metadata: [
                "path": "\(tree.mountPath(of: ino) ?? "inode \(ino)")", "seconds": "\(time.tv_sec)", "clamped to": "\(date.formatted(.iso8601))",
            ])
        }
        return date
    }

    func mkdir(_ request: Request, parent: UInt64, name: String) {
        writing(request, "mkdir", name) { writes in
            var reply = self.entry(try await writes.mkdir(parent: parent, name: name))
            fuse_reply_entry(request.raw, &reply)
        }
    }

    func remove(_ request: Request, parent: UInt64, name: String, directory: Bool) {
        writing(request, directory ? "rmdir" : "unlink", name) { writes in
            try await writes.remove(parent: parent, name: name, directory: directory)
            request.ok()
        }
    }

    func rename(_ request: Request, parent: UInt64, name: String, newParent: UInt64, newName: String, flags: UInt32) {
        // RENAME_EXCHANGE has no SharePoint counterpart.
        if flags & 2 != 0 { request.error(EINVAL); return }
        writing(request, "rename", "\(name) -> \(newName)") { writes in
            try await writes.rename(parent: parent, name: name, to: newParent, newName: newName, noReplace: flags & 1 != 0)
            request.ok()
        }
    }

    /// `user.sp.COLUMN` and `user.crm.FIELD` go to the services at once. `user.crmfs.sync` on the
    /// mount's root waits for every pending change: an older `crmfs sync`'s way, and its fallback when the
    /// status socket cannot be reached (the kernel holds the root locked meanwhile, so `crmfs sync` asks
    /// on the socket: see `sendEverything`).
    func setxattr(_ request: Request, ino: UInt64, name: String, value: String?) {
        guard name.hasPrefix("user.") else { request.error(EOPNOTSUPP); return }
        if name == "user.crmfs.sync" && ino == Tree.rootIno {
            waiting(request, "crmfs sync") { _ in
                do {
                    try await self.sendEverything()
                } catch SyncShortfall.refused {
                    throw POSIXError(.EACCES)
                } catch SyncShortfall.gaveUp, SyncShortfall.readOnly {
                    throw POSIXError(.EIO)
                }
            }
            return
        }
        writing(request, "setxattr", name) { writes in
            if name.hasPrefix("user.sp.") {
                try await writes.setColumn(ino, column: String(name.dropFirst("user.sp.".count)), text: value)
            } else if name.hasPrefix("user.crm.") {
                try await writes.setRecordField(ino, field: String(name.dropFirst("user.crm.".count)), text: value)
            } else {
                throw NamespaceError.notPermitted("\(name) is read-only")
            }
            request.ok()
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
