import Foundation
import Namespace
import Writeback

// Lock order for an open document, outermost first:
// 1. `WriteSession.access` (read-write): held shared by writes and by the background fill while they
//    write into the staged copy (the kernel sends writes of one file in parallel with async direct I/O);
//    held exclusively by whatever replaces, seals, truncates or hands over the staged copy, so no write
//    lands in a copy being handed to the engine and no descriptor is closed under a writer.
// 2. `LocalWrites.lock`: which documents are open, and the changes of each node.
// 3. `WriteSession.lock`: the session's fields (`State`); held only to read or change them, never while
//    calling anything else.
// `RemoteFill`'s lock is a leaf as well: taken without any of the above held, or with `access` only.
// Tree and engine locks are never taken while 2 or 3 is held.

/// One staged copy of a document and its open descriptor, closed when the last user lets go: a seal or
/// a write still running on an old copy keeps it open after the session moved to a new one.
final class StagedCopy: Sendable {
    let name: String
    let descriptor: Int32

    init(name: String, descriptor: Int32) {
        self.name = name
        self.descriptor = descriptor
    }

    deinit { Glibc.close(descriptor) }

    var size: Int64 {
        var info = stat()
        return fstat(descriptor, &info) == 0 ? Int64(info.st_size) : 0
    }
}

/// One document opened for writing, shared by every handle open on it: the staged copy the writes go
/// to, and the journal change that will send it. A change handed to the engine (by `fsync`) is never
/// written again: the next write starts a new staged copy. See the lock order at the top of this file.
public final class WriteSession: @unchecked Sendable {
    public let ino: UInt64
    private let access = ReadWriteLock()
    private let lock = NSLock()
    private var state: State

    struct State {
        var copy: StagedCopy
        /// The journal change carrying this session's bytes, once a close made them durable.
        var changeID: Int64?
        /// Open handles on it (changed with `LocalWrites.lock` held too).
        var opens = 1
        /// Written since the last close made the bytes durable.
        var dirty: Bool
        /// Written (or created, or truncated) at all: a session that never was leaves nothing behind.
        var changedBytes: Bool
        /// The change was handed to the engine; it may be reading the staged copy now.
        var submitted = false
        /// The remote document these bytes replace, and the version they were based on.
        var itemID: String?
        var baseETag: String?
        /// The hash of the bytes of that version (see `PendingChange.baseHash`).
        var baseHash: String?
        /// Removed from the tree while open: its bytes go nowhere.
        var unlinked = false
        /// Where the bytes not written yet come from, until the first write copies them.
        var source: Source
        /// Bytes written since the disk was last asked to start writing them out.
        var unflushedBytes = 0
        /// `utimens` on the open document: its time must go even if no byte changes.
        var timesChanged = false
        /// Why the last attempt to make the bytes durable failed (the change waits for the next close).
        var sealFailure: String?
    }

    /// Bytes of the document the staged copy does not hold yet.
    enum Source {
        case none
        /// A staged file of an earlier version not sent yet, held open (its upload may remove its name):
        /// copied whole at the first write (local, fast).
        case local(StagedCopy)
        /// The remote document: copied block by block, the written blocks first.
        case remote(RemoteFill)
    }

    /// The local user who opened it (see `ChangeRequester`): its changes are recorded on the kernel's
    /// threads at close, outside the request that opened it.
    let requester = ChangeRequester.uid

    init(ino: UInt64, copy: StagedCopy, dirty: Bool, itemID: String?, baseETag: String?, source: Source = .none) {
        self.ino = ino
        state = State(copy: copy, dirty: dirty, changedBytes: dirty, itemID: itemID, baseETag: baseETag, source: source)
    }

    /// Reads or changes the session's fields under its lock.
    func withState<T>(_ body: (inout State) throws -> T) rethrows -> T {
        try lock.withLock { try body(&state) }
    }

    /// Runs `body` with the staged copy held for writing into it, alongside other writers.
    func shared<T>(_ body: () throws -> T) rethrows -> T {
        access.lockShared()
        defer { access.unlock() }
        return try body()
    }

    /// Runs `body` with the staged copy held alone: no write is under way and none starts.
    func exclusive<T>(_ body: () throws -> T) rethrows -> T {
        access.lockExclusive()
        defer { access.unlock() }
        return try body()
    }

    var copy: StagedCopy { withState { $0.copy } }
    var fill: RemoteFill? { withState { if case .remote(let fill) = $0.source { fill } else { nil } } }
}

/// A pthread read-write lock.
final class ReadWriteLock: @unchecked Sendable {
    private let lock = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)

    init() {
        lock.initialize(to: pthread_rwlock_t())
        pthread_rwlock_init(lock, nil)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    func lockShared() { pthread_rwlock_rdlock(lock) }
    func lockExclusive() { pthread_rwlock_wrlock(lock) }
    func unlock() { pthread_rwlock_unlock(lock) }
}
