import CFuse
import Foundation
import Namespace

/// Directory reads, by directory and offset (no directory handles). With the change feeds on, the kernel
/// is told opendir is not supported (FUSE_CAP_NO_OPENDIR_SUPPORT), which halves the requests of a tree
/// walk: each directory costs one READDIRPLUS with its entries and one that finds the end, instead of four.
/// The kernel then keeps each listing until told it changed: every change of a directory's entries,
/// whoever made it, is told (`Tree.whenEntriesChange`). Without the feeds, opendir is answered and the
/// kernel keeps nothing, so a listing older than the timeout is fetched again at the next opendir.
///
/// A reader still sees one consistent listing from its first entry to its last: the listing is taken
/// once, when a read starts at offset 0, and each offset handed to the kernel names that listing and a
/// position in it (listing number in the high 32 bits, position in the low 32), so later reads continue
/// from the same listing even if the directory changed in between. Listings are kept for the most recent
/// reads only; a reader that comes back after its listing was dropped continues at its position in the
/// directory's current listing (entries added or removed since it started may then show or not, as
/// POSIX allows for changes after opendir).
final class ReaderListings: @unchecked Sendable {
    typealias Entries = [(name: String, node: NodeSnapshot)]

    private struct Listing {
        let directory: UInt64
        let entries: Entries
    }

    private let lock = NSLock()
    private var listings: [UInt32: Listing] = [:]
    /// Listing numbers, oldest first, for dropping.
    private var order: [UInt32] = []
    private var keptEntries = 0
    private var nextNumber: UInt32 = 1
    private let maximumListings: Int
    private let maximumEntries: Int

    init(maximumListings: Int = 256, maximumEntries: Int = 200_000) {
        self.maximumListings = maximumListings
        self.maximumEntries = maximumEntries
    }

    /// Keeps a listing of `directory`; returns its number.
    func keep(_ entries: Entries, of directory: UInt64) -> UInt32 {
        lock.withLock {
            let number = nextNumber
            nextNumber = nextNumber == UInt32(Int32.max) ? 1 : nextNumber + 1
            listings[number] = Listing(directory: directory, entries: entries)
            order.append(number)
            keptEntries += entries.count
            while order.count > maximumListings || (keptEntries > maximumEntries && order.count > 1) {
                if let dropped = listings.removeValue(forKey: order.removeFirst()) { keptEntries -= dropped.entries.count }
            }
            return number
        }
    }

    /// The listing `number` of `directory`, if still kept.
    func listing(_ number: UInt32, of directory: UInt64) -> Entries? {
        lock.withLock { listings[number].flatMap { $0.directory == directory ? $0.entries : nil } }
    }

    static func offset(listing: UInt32, position: Int) -> off_t { off_t(listing) << 32 | off_t(position) }

    static func split(_ offset: off_t) -> (listing: UInt32, position: Int) {
        (UInt32(truncatingIfNeeded: offset >> 32), Int(offset & 0xFFFF_FFFF))
    }
}

extension CRMFileSystem {
    /// ENOSYS when the kernel keeps listings (it then stops asking). Otherwise the listing is made fresh
    /// (a failure to list shows at opendir) and the kernel keeps nothing: it reads the listing from us.
    func opendir(_ request: Request, ino: UInt64, info: FileInfo) {
        if kernelSkipsOpendir { request.error(ENOSYS); return }
        answer(request, known: tree.listIfKnown(ino), otherwise: { try await self.tree.list(ino) }) { _ in
            var info = info
            info.raw.fh = 0
            fuse_reply_open(request.raw, &info.raw)
        }
    }

    /// Answers from the reader's listing, taking it (the directory's listing, loading it first when it
    /// would take the services) at offset 0 or when the reader's listing is no longer kept.
    func readdir(_ request: Request, ino: UInt64, size: Int, offset: off_t, plus: Bool) {
        let (number, position) = offset == 0 ? (0, 0) : ReaderListings.split(offset)
        if number != 0, let entries = readerListings.listing(number, of: ino) {
            replyEntries(request, entries, listing: number, from: position, size: size, plus: plus)
            return
        }
        answer(request, known: tree.listIfKnown(ino), otherwise: { try await self.tree.list(ino) }) { listed in
            guard let me = self.tree.current(ino), let parent = self.tree.current(self.tree.parent(of: ino)) else {
                request.error(ENOENT)
                return
            }
            let entries: ReaderListings.Entries = [(".", me), ("..", parent)] + listed.map { ($0.name, $0.node) }
            let number = self.readerListings.keep(entries, of: ino)
            self.replyEntries(request, entries, listing: number, from: position, size: size, plus: plus)
        }
    }

    private func replyEntries(_ request: Request, _ entries: ReaderListings.Entries, listing: UInt32, from position: Int, size: Int,
                              plus: Bool) {
        // libfuse fills every byte it counts; the buffer needs no zeroing.
        var buffer = [CChar](unsafeUninitializedCapacity: size) { _, count in count = size }
        var used = 0
        var index = position
        var referenced: [UInt64] = []
        buffer.withUnsafeMutableBufferPointer { raw in
            while index < entries.count {
                let (name, node) = entries[index]
                let remaining = size - used
                let next = ReaderListings.offset(listing: listing, position: index + 1)
                let needed: Int
                if plus {
                    var param = entry(node)
                    needed = fuse_add_direntry_plus(request.raw, raw.baseAddress! + used, remaining, name, &param, next)
                } else {
                    var attributes = stat(node)
                    needed = fuse_add_direntry(request.raw, raw.baseAddress! + used, remaining, name, &attributes, next)
                }
                if needed > remaining { break }
                if plus && name != "." && name != ".." { referenced.append(node.ino) }
                used += needed
                index += 1
            }
            // Every entry a readdirplus reply carries is a kernel reference, counted before the kernel can forget it.
            tree.retain(referenced)
            _ = fuse_reply_buf(request.raw, raw.baseAddress, used)
        }
    }
}
