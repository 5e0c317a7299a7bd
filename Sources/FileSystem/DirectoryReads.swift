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
public final class ReaderListings: @unchecked Sendable {
    public typealias Entries = [(name: String, node: NodeSnapshot)]

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

/// A page of a directory reader's listing: the entries from the reader's position on, and the offset
/// that continues after each (what readdir hands the kernel with the entry).
public struct DirectoryPage: Sendable {
    public let entries: ReaderListings.Entries
    /// The reader's position: the first entry to hand on.
    public let start: Int
    let listing: UInt32

    /// The offset a reader continues from after `entries[index]`.
    public func offset(after index: Int) -> Int64 { Int64(ReaderListings.offset(listing: listing, position: index + 1)) }
}

extension CRMFileSystem {
    /// ENOSYS when the kernel keeps listings (it then stops asking). Otherwise the listing is made fresh
    /// (a failure to list shows at opendir) and the kernel keeps nothing: it reads the listing from us.
    public func opendir(_ ino: UInt64) -> Answer<Bool> {
        if kernelSkipsOpendir { return .now(.failure(POSIXError(.ENOSYS))) }
        return .either(tree.listIfKnown(ino).map { $0.map { _ in true } }) { _ = try await self.tree.list(ino); return true }
    }

    /// The reader's listing from `offset` on, taking it (the directory's listing, loading it first when it
    /// would take the services) at offset 0 or when the reader's listing is no longer kept.
    public func readdir(_ ino: UInt64, offset: Int64) -> Answer<DirectoryPage> {
        let (number, position) = offset == 0 ? (0, 0) : ReaderListings.split(off_t(offset))
        if number != 0, let entries = readerListings.listing(number, of: ino) {
            return .now(.success(DirectoryPage(entries: entries, start: position, listing: number)))
        }
        let page = { @Sendable (listed: [DirectoryEntry]) throws -> DirectoryPage in
            guard let me = self.tree.current(ino), let parent = self.tree.current(self.tree.parent(of: ino)) else {
                throw NamespaceError.notFound
            }
            let entries: ReaderListings.Entries = [(".", me), ("..", parent)] + listed.map { ($0.name, $0.node) }
            return DirectoryPage(entries: entries, start: position, listing: self.readerListings.keep(entries, of: ino))
        }
        if let known = tree.listIfKnown(ino) { return .now(Result { try page(try known.get()) }) }
        return .later { try page(try await self.tree.list(ino)) }
    }

    /// Entries a readdirplus reply handed the kernel: each is a kernel reference, counted before the kernel
    /// can forget it.
    public func handedToKernel(_ inos: [UInt64]) {
        tree.retain(inos)
    }
}
