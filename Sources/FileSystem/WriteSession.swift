import Foundation
import Namespace
import Writeback

/// What the mount needs to accept writes: where bytes wait, the journal of what is still to send, the
/// engine that sends it, and which names stay local. A mount without it is read-only.
public struct WriteSupport: Sendable {
    public let staging: StagingArea
    public let journal: Journal
    public let engine: WritebackEngine
    public let localOnly: LocalOnlyNames

    public init(staging: StagingArea, journal: Journal, engine: WritebackEngine, localOnly: LocalOnlyNames) {
        self.staging = staging
        self.journal = journal
        self.engine = engine
        self.localOnly = localOnly
    }
}

/// One document opened for writing, shared by every handle open on it: the staged file the writes go
/// to, and the journal change that will send it. A change that was handed to the engine (by `fsync`)
/// is never written again: the next write starts a new staged copy.
final class WriteSession: @unchecked Sendable {
    let ino: UInt64
    var stagedFile: String
    var descriptor: Int32
    /// The journal change carrying this session's bytes, once the first close made them durable.
    var changeID: Int64?
    /// Open handles on it.
    var opens = 1
    /// Written since the last close made the bytes durable.
    var dirty: Bool
    /// The change was handed to the engine; it may be reading the staged file now.
    var submitted = false
    /// The remote document these bytes replace, and the version they were based on.
    var itemID: String?
    var baseETag: String?
    /// Removed from the tree while open: its bytes go nowhere.
    var unlinked = false
    /// The remote document whose bytes the staged file must receive before the first change to it:
    /// opening for writing costs nothing until something is written (`touch` opens for writing).
    var uncopied: RemoteContent?
    /// Bytes written since the disk was last asked to start writing them out.
    var unflushedBytes = 0
    /// `utimens` on the open document: its time must go even if no byte changes.
    var timesChanged = false
    private let copyLock = NSLock()

    init(ino: UInt64, stagedFile: String, descriptor: Int32, dirty: Bool, itemID: String?, baseETag: String?) {
        self.ino = ino
        self.stagedFile = stagedFile
        self.descriptor = descriptor
        self.dirty = dirty
        self.itemID = itemID
        self.baseETag = baseETag
    }

    /// Fills the staged file from the remote document once; every writer waits for the same copy.
    /// Runs on the calling thread (a FUSE thread for a write): the kernel waits for the reply anyway.
    func copyIfNeeded(_ copy: (RemoteContent, Int32) throws -> Void) throws {
        try copyLock.withLock {
            guard let content = uncopied else { return }
            try copy(content, descriptor)
            uncopied = nil
        }
    }

    var size: Int64 {
        var info = stat()
        return fstat(descriptor, &info) == 0 ? Int64(info.st_size) : 0
    }
}

/// A remote document renamed to a temporary name (vim's `doc~`, Word's `~WRL0001.tmp`): the service
/// keeps it under its old name until the temporary file is deleted (then it is deleted) or a new file
/// takes the old name (then that file's bytes become its next version).
struct Shadow {
    var ino: UInt64
    var itemID: String
    var eTag: String?
    var parent: UInt64
    var name: String
}

/// Who a journal change belongs to in the tree.
struct ChangeOwner {
    var ino: UInt64
    /// The directory it was made in, to learn a record folder's id once the engine made it.
    var parent: UInt64
    /// The item a delete or replace hid from listings until the service has the change.
    var hiddenItem: String?
}
