import CFuse
import FileSystem
import Foundation
import Namespace

/// The C callback table. libfuse calls these on its own threads; each finds the adapter through the
/// session's userdata, calls the file system library and replies. Nothing here is actor-isolated.
extension FuseAdapter {
    static func instance(_ request: fuse_req_t?) -> FuseAdapter {
        Unmanaged<FuseAdapter>.fromOpaque(fuse_req_userdata(request)!).takeUnretainedValue()
    }

    /// The library and the request of a callback.
    static func call(_ request: fuse_req_t?) -> (CRMFileSystem, Request) {
        (instance(request).fileSystem, Request(raw: request!))
    }

    static func operations() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()
        ops.`init` = { userdata, connection in
            guard let connection else { return }
            // Readdirplus always (not "auto"): every listing carries its entries' attributes, which the
            // tree holds anyway, so a walk never looks its entries up one by one afterwards.
            let wanted = crmfs_cap_readdirplus() | crmfs_cap_auto_inval_data() | crmfs_cap_async_read()
                | crmfs_cap_splice_write() | crmfs_cap_splice_read() | crmfs_cap_splice_move() | crmfs_cap_async_dio()
            connection.pointee.want |= wanted & connection.pointee.capable
            connection.pointee.want &= ~crmfs_cap_readdirplus_auto()
            if let userdata {
                let fs = Unmanaged<FuseAdapter>.fromOpaque(userdata).takeUnretainedValue().fileSystem
                if fs.options.kernelKeepsListings { connection.pointee.want |= crmfs_cap_no_opendir_support() & connection.pointee.capable }
                fs.kernelSkipsOpendir = connection.pointee.want & crmfs_cap_no_opendir_support() != 0
            }
            connection.pointee.max_readahead = min(connection.pointee.max_readahead, 1 << 20)
        }
        ops.lookup = { raw, parent, name in
            let (adapter, request) = (FuseAdapter.instance(raw), Request(raw: raw!))
            request.answer(adapter.fileSystem.lookup(parent: parent, name: String(cString: name!))) { node in
                var reply = adapter.entry(node)
                fuse_reply_entry(request.raw, &reply)
            }
        }
        ops.forget = { raw, ino, count in
            FuseAdapter.instance(raw).fileSystem.forget(ino, count: count)
            fuse_reply_none(raw)
        }
        ops.forget_multi = { raw, count, forgets in
            let fs = FuseAdapter.instance(raw).fileSystem
            for index in 0..<count {
                let forget = forgets![index]
                fs.forget(forget.ino, count: forget.nlookup)
            }
            fuse_reply_none(raw)
        }
        ops.getattr = { raw, ino, _ in
            let (fs, request) = FuseAdapter.call(raw)
            request.answer(fs.getattr(ino)) { node in
                var attributes = fs.stat(node)
                fuse_reply_attr(request.raw, &attributes, fs.options.attributeTimeout)
            }
        }
        // With the kernel keeping listings, opendir answers ENOSYS once and the kernel stops sending opendir
        // and releasedir (see ReaderListings).
        ops.opendir = { raw, ino, info in
            let (fs, request) = FuseAdapter.call(raw)
            let info = FileInfo(info)
            request.answer(fs.opendir(ino)) { _ in
                var info = info
                info.raw.fh = 0
                fuse_reply_open(request.raw, &info.raw)
            }
        }
        ops.releasedir = { raw, _, _ in fuse_reply_err(raw, 0) }
        ops.readdir = { raw, ino, size, offset, _ in FuseAdapter.instance(raw).readdir(Request(raw: raw!), ino: ino, size: size, offset: offset, plus: false) }
        ops.readdirplus = { raw, ino, size, offset, _ in FuseAdapter.instance(raw).readdir(Request(raw: raw!), ino: ino, size: size, offset: offset, plus: true) }
        ops.open = { raw, ino, info in
            let (fs, request) = FuseAdapter.call(raw)
            let info = FileInfo(info)
            request.answer(fs.open(ino, flags: info.raw.flags, uid: request.uid)) { opened in
                var reply = info.with(opened)
                fuse_reply_open(request.raw, &reply.raw)
            }
        }
        ops.read = { raw, _, size, offset, info in
            let (fs, request) = FuseAdapter.call(raw)
            request.answer(fs.read(handle: info!.pointee.fh, size: size, offset: Int64(offset))) { request.read($0) }
        }
        ops.release = { raw, _, info in
            FuseAdapter.instance(raw).fileSystem.release(handle: info!.pointee.fh)
            fuse_reply_err(raw, 0)
        }
        ops.flush = { raw, _, info in
            let (fs, request) = FuseAdapter.call(raw)
            do { try fs.flush(handle: info!.pointee.fh); request.ok() } catch { request.fail(error) }
        }
        ops.fsync = { raw, _, _, info in
            let (fs, request) = FuseAdapter.call(raw)
            let handle = info!.pointee.fh
            let uid = request.uid
            request.performInterruptibly { try await fs.fsync(handle: handle, uid: uid) }
        }
        ops.fsyncdir = { raw, _, _, _ in fuse_reply_err(raw, 0) }
        ops.statfs = { raw, _ in
            var info = FuseAdapter.instance(raw).fileSystem.statfs()
            fuse_reply_statfs(raw, &info)
        }
        ops.getxattr = { raw, ino, name, size in
            let (fs, request) = FuseAdapter.call(raw)
            request.answer(fs.getxattr(ino, name: String(cString: name!))) { request.xattr($0, size: size) }
        }
        ops.listxattr = { raw, ino, size in
            let (fs, request) = FuseAdapter.call(raw)
            request.answer(fs.listxattr(ino)) { request.xattr($0, size: size) }
        }
        ops.access = { raw, _, mask in fuse_reply_err(raw, FuseAdapter.instance(raw).fileSystem.access(mask: mask)) }

        ops.create = { raw, parent, name, _, info in
            let (adapter, request) = (FuseAdapter.instance(raw), Request(raw: raw!))
            let (name, info, uid) = (String(cString: name!), FileInfo(info), request.uid)
            Task {
                do {
                    let (node, opened) = try await adapter.fileSystem.create(parent: parent, name: name, flags: info.raw.flags, uid: uid)
                    var reply = adapter.entry(node)
                    var replyInfo = info.with(opened)
                    fuse_reply_create(request.raw, &reply, &replyInfo.raw)
                } catch {
                    request.fail(error)
                }
            }
        }
        // Writes go straight to the staged file, on the kernel's thread (a local write needs no task),
        // spliced from the kernel's pipe where it allows.
        ops.write_buf = { raw, _, buffers, offset, info in
            let (fs, request) = FuseAdapter.call(raw)
            do {
                let written = try fs.write(handle: info!.pointee.fh, offset: Int64(offset), length: fuse_buf_size(buffers!)) { descriptor in
                    crmfs_write_buf_to_fd(buffers!, descriptor, offset)
                }
                fuse_reply_write(raw, written)
            } catch {
                request.fail(error)
            }
        }
        ops.setattr = { raw, ino, attributes, fields, info in
            let (fs, request) = FuseAdapter.call(raw)
            let attributes = attributes!.pointee
            let size = fields & FUSE_SET_ATTR_SIZE != 0 ? Int64(attributes.st_size) : nil
            let modified: CRMFileSystem.TimeChange? = if fields & FUSE_SET_ATTR_MTIME_NOW != 0 {
                .now
            } else if fields & FUSE_SET_ATTR_MTIME != 0 {
                .to(seconds: attributes.st_mtim.tv_sec, nanoseconds: attributes.st_mtim.tv_nsec)
            } else {
                nil
            }
            request.answer(fs.setattr(ino, size: size, modified: modified, handle: info?.pointee.fh, uid: request.uid)) { node in
                var reply = fs.stat(node)
                fuse_reply_attr(request.raw, &reply, fs.options.attributeTimeout)
            }
        }
        ops.mkdir = { raw, parent, name, _ in
            let (adapter, request) = (FuseAdapter.instance(raw), Request(raw: raw!))
            let (name, uid) = (String(cString: name!), request.uid)
            Task {
                do {
                    var reply = adapter.entry(try await adapter.fileSystem.mkdir(parent: parent, name: name, uid: uid))
                    fuse_reply_entry(request.raw, &reply)
                } catch {
                    request.fail(error)
                }
            }
        }
        ops.unlink = { raw, parent, name in
            let (fs, request) = FuseAdapter.call(raw)
            let (name, uid) = (String(cString: name!), request.uid)
            request.perform { try await fs.remove(parent: parent, name: name, directory: false, uid: uid) }
        }
        ops.rmdir = { raw, parent, name in
            let (fs, request) = FuseAdapter.call(raw)
            let (name, uid) = (String(cString: name!), request.uid)
            request.perform { try await fs.remove(parent: parent, name: name, directory: true, uid: uid) }
        }
        ops.rename = { raw, parent, name, newParent, newName, flags in
            let (fs, request) = FuseAdapter.call(raw)
            let (name, newName, uid) = (String(cString: name!), String(cString: newName!), request.uid)
            request.perform { try await fs.rename(parent: parent, name: name, newParent: newParent, newName: newName, flags: flags, uid: uid) }
        }
        ops.setxattr = { raw, ino, name, value, size, _ in
            let text = String(decoding: UnsafeRawBufferPointer(start: value, count: size), as: UTF8.self)
            FuseAdapter.setxattr(raw, ino: ino, name: String(cString: name!), value: text.isEmpty ? nil : text)
        }
        ops.removexattr = { raw, ino, name in FuseAdapter.setxattr(raw, ino: ino, name: String(cString: name!), value: nil) }
        // No links, devices or preallocation in a document library.
        ops.mknod = { raw, _, _, _, _ in fuse_reply_err(raw, FuseAdapter.instance(raw).fileSystem.errno(for: .device)) }
        ops.symlink = { raw, _, _, _ in fuse_reply_err(raw, FuseAdapter.instance(raw).fileSystem.errno(for: .symlink)) }
        ops.link = { raw, _, _, _ in fuse_reply_err(raw, FuseAdapter.instance(raw).fileSystem.errno(for: .link)) }
        ops.fallocate = { raw, _, _, _, _, _ in fuse_reply_err(raw, FuseAdapter.instance(raw).fileSystem.errno(for: .preallocation)) }
        return ops
    }

    /// setxattr and removexattr (a nil value); asking the mount's root to sync is a long wait a signal may end.
    private static func setxattr(_ raw: fuse_req_t?, ino: UInt64, name: String, value: String?) {
        let (fs, request) = FuseAdapter.call(raw)
        let uid = request.uid
        let body: @Sendable () async throws -> Void = { try await fs.setxattr(ino, name: name, value: value, uid: uid) }
        if CRMFileSystem.asksToSync(ino, name: name) { request.performInterruptibly(body) } else { request.perform(body) }
    }

    /// Packs the reader's listing from `offset` into one reply of at most `size` bytes.
    func readdir(_ request: Request, ino: UInt64, size: Int, offset: off_t, plus: Bool) {
        request.answer(fileSystem.readdir(ino, offset: Int64(offset))) { page in
            // libfuse fills every byte it counts; the buffer needs no zeroing.
            var buffer = [CChar](unsafeUninitializedCapacity: size) { _, count in count = size }
            var used = 0
            var referenced: [UInt64] = []
            buffer.withUnsafeMutableBufferPointer { raw in
                var index = page.start
                while index < page.entries.count {
                    let (name, node) = page.entries[index]
                    let remaining = size - used
                    let next = off_t(page.offset(after: index))
                    let needed: Int
                    if plus {
                        var param = self.entry(node)
                        needed = fuse_add_direntry_plus(request.raw, raw.baseAddress! + used, remaining, name, &param, next)
                    } else {
                        var attributes = self.fileSystem.stat(node)
                        needed = fuse_add_direntry(request.raw, raw.baseAddress! + used, remaining, name, &attributes, next)
                    }
                    if needed > remaining { break }
                    if plus && name != "." && name != ".." { referenced.append(node.ino) }
                    used += needed
                    index += 1
                }
                // Counted before the kernel can forget them.
                self.fileSystem.handedToKernel(referenced)
                _ = fuse_reply_buf(request.raw, raw.baseAddress, used)
            }
        }
    }
}
