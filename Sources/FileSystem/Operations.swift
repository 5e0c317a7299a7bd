import CFuse
import Foundation

/// The C callback table. libfuse calls these on its own threads; each finds the file system through
/// the session's userdata and hands the request on. Nothing here is actor-isolated.
extension CRMFileSystem {
    static func instance(_ request: fuse_req_t?) -> CRMFileSystem {
        Unmanaged<CRMFileSystem>.fromOpaque(fuse_req_userdata(request)!).takeUnretainedValue()
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
                let fs = Unmanaged<CRMFileSystem>.fromOpaque(userdata).takeUnretainedValue()
                if fs.options.kernelKeepsListings { connection.pointee.want |= crmfs_cap_no_opendir_support() & connection.pointee.capable }
                fs.kernelSkipsOpendir = connection.pointee.want & crmfs_cap_no_opendir_support() != 0
            }
            connection.pointee.max_readahead = min(connection.pointee.max_readahead, 1 << 20)
        }
        ops.lookup = { request, parent, name in
            CRMFileSystem.instance(request).lookup(Request(raw: request!), parent: parent, name: String(cString: name!))
        }
        ops.forget = { request, ino, count in
            CRMFileSystem.instance(request).tree.forget(ino, count: count)
            fuse_reply_none(request)
        }
        ops.forget_multi = { request, count, forgets in
            let fs = CRMFileSystem.instance(request)
            for index in 0..<count {
                let forget = forgets![index]
                fs.tree.forget(forget.ino, count: forget.nlookup)
            }
            fuse_reply_none(request)
        }
        ops.getattr = { request, ino, _ in CRMFileSystem.instance(request).getattr(Request(raw: request!), ino: ino) }
        // With the kernel keeping listings, opendir answers ENOSYS once and the kernel stops sending opendir
        // and releasedir (see ReaderListings).
        ops.opendir = { request, ino, info in CRMFileSystem.instance(request).opendir(Request(raw: request!), ino: ino, info: FileInfo(info)) }
        ops.releasedir = { request, _, _ in fuse_reply_err(request, 0) }
        ops.readdir = { request, ino, size, offset, _ in
            CRMFileSystem.instance(request).readdir(Request(raw: request!), ino: ino, size: size, offset: offset, plus: false)
        }
        ops.readdirplus = { request, ino, size, offset, _ in
            CRMFileSystem.instance(request).readdir(Request(raw: request!), ino: ino, size: size, offset: offset, plus: true)
        }
        ops.open = { request, ino, info in CRMFileSystem.instance(request).open(Request(raw: request!), ino: ino, info: FileInfo(info)) }
        ops.read = { request, _, size, offset, info in
            CRMFileSystem.instance(request).read(Request(raw: request!), handle: info!.pointee.fh, size: size, offset: Int64(offset))
        }
        ops.release = { request, _, info in CRMFileSystem.instance(request).release(Request(raw: request!), handle: info!.pointee.fh) }
        ops.flush = { request, _, info in CRMFileSystem.instance(request).flush(Request(raw: request!), handle: info!.pointee.fh) }
        ops.fsync = { request, _, _, info in CRMFileSystem.instance(request).fsync(Request(raw: request!), handle: info!.pointee.fh) }
        ops.fsyncdir = { request, _, _, _ in fuse_reply_err(request, 0) }
        ops.statfs = { request, _ in CRMFileSystem.instance(request).statfs(Request(raw: request!)) }
        ops.getxattr = { request, ino, name, size in
            CRMFileSystem.instance(request).getxattr(Request(raw: request!), ino: ino, name: String(cString: name!), size: size)
        }
        ops.listxattr = { request, ino, size in CRMFileSystem.instance(request).listxattr(Request(raw: request!), ino: ino, size: size) }
        ops.access = { request, _, mask in
            fuse_reply_err(request, mask & W_OK != 0 && CRMFileSystem.instance(request).writes == nil ? EROFS : 0)
        }

        ops.create = { request, parent, name, _, info in
            CRMFileSystem.instance(request).create(Request(raw: request!), parent: parent, name: String(cString: name!), info: FileInfo(info))
        }
        ops.write_buf = { request, _, buffers, offset, info in
            CRMFileSystem.instance(request).write(Request(raw: request!), handle: info!.pointee.fh, buffers: buffers!, offset: Int64(offset))
        }
        ops.setattr = { request, ino, attributes, fields, info in
            CRMFileSystem.instance(request).setattr(Request(raw: request!), ino: ino, attributes: attributes!.pointee, fields: fields,
                                                    handle: info?.pointee.fh)
        }
        ops.mkdir = { request, parent, name, _ in
            CRMFileSystem.instance(request).mkdir(Request(raw: request!), parent: parent, name: String(cString: name!))
        }
        ops.unlink = { request, parent, name in
            CRMFileSystem.instance(request).remove(Request(raw: request!), parent: parent, name: String(cString: name!), directory: false)
        }
        ops.rmdir = { request, parent, name in
            CRMFileSystem.instance(request).remove(Request(raw: request!), parent: parent, name: String(cString: name!), directory: true)
        }
        ops.rename = { request, parent, name, newParent, newName, flags in
            CRMFileSystem.instance(request).rename(Request(raw: request!), parent: parent, name: String(cString: name!),
                                                   newParent: newParent, newName: String(cString: newName!), flags: flags)
        }
        ops.setxattr = { request, ino, name, value, size, _ in
            let text = String(decoding: UnsafeRawBufferPointer(start: value, count: size), as: UTF8.self)
            CRMFileSystem.instance(request).setxattr(Request(raw: request!), ino: ino, name: String(cString: name!), value: text.isEmpty ? nil : text)
        }
        ops.removexattr = { request, ino, name in
            CRMFileSystem.instance(request).setxattr(Request(raw: request!), ino: ino, name: String(cString: name!), value: nil)
        }
        // No links, devices or preallocation in a document library.
        ops.mknod = { request, _, _, _, _ in fuse_reply_err(request, CRMFileSystem.instance(request).writes == nil ? EROFS : EPERM) }
        ops.symlink = { request, _, _, _ in fuse_reply_err(request, CRMFileSystem.instance(request).writes == nil ? EROFS : EPERM) }
        ops.link = { request, _, _, _ in fuse_reply_err(request, CRMFileSystem.instance(request).writes == nil ? EROFS : EPERM) }
        ops.fallocate = { request, _, _, _, _, _ in fuse_reply_err(request, CRMFileSystem.instance(request).writes == nil ? EROFS : EOPNOTSUPP) }
        return ops
    }
}
