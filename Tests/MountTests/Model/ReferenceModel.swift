import Foundation

/// The reference model of the model-based fault test (ModelFaultTests): what a handful of documents and
/// folders inside one record directory must hold after a sequence of operations, and the sequences
/// themselves, drawn from a seed. Pure: no I/O, so a sequence replays the same way every time.
///
/// The model is what POSIX and docs/semantics.md promise: every operation that returned success is
/// durable (a document's bytes from its close, everything else at once), survives a crash of the daemon,
/// and reaches the service once it can be reached; a time SharePoint cannot hold is clamped.

/// One step of a run: a file-system call through the kernel, or a fault.
enum ModelOperation: Equatable, Sendable, CustomStringConvertible {
    /// Opens `path` for writing if no handle is open (creating it), then `pwrite`s `length` bytes made
    /// from `pattern` at `offset`.
    case write(path: String, offset: Int, length: Int, pattern: UInt8)
    /// `ftruncate` through the open handle, or `truncate(2)` by path.
    case truncate(path: String, size: Int)
    /// `fsync` of the open handle: returns once the document is uploaded.
    case fsync(path: String)
    case close(path: String)
    /// `rename(2)`, replacing `to` when it exists.
    case rename(from: String, to: String)
    case unlink(path: String)
    case mkdir(path: String)
    /// `rmdir(2)`: ENOTEMPTY when the folder holds something.
    case rmdir(path: String)
    /// `utimensat` with this mtime in seconds, any value a damaged archive may carry.
    case touch(path: String, seconds: Int)
    /// Reads the whole document back through the mount.
    case read(path: String)
    /// `setxattr user.sp.DocumentType`: a SharePoint column, set at once (after the document's upload).
    case setColumn(path: String, value: String)
    /// Another user replaces the document's bytes on the service (once the mount has sent what it holds):
    /// the mount must show them within a round of the library's feed, and build on them.
    case remoteEdit(path: String, length: Int, pattern: UInt8)
    /// An administrator lets the mount's user only read the document (unique permissions), and the user
    /// overwrites it: SharePoint refuses the upload (403). crmfs must say so (`crmfs sync` exits 1,
    /// `user.crmfs.sync` says `error: access denied`), show the service's copy again and keep the bytes in
    /// conflicts/; then the user may write it again. The model's document does not change.
    case refusedEdit(path: String, length: Int, pattern: UInt8)
    /// The services answer 429, 503 and resets at random until `calm`.
    case storm
    /// Every request fails (503) until `calm`: the services cannot be reached.
    case outage
    case calm
    /// Every token in use dies.
    case expireTokens
    /// SIGKILL of the daemon, then a new mount of the same state directory.
    case kill
    /// The disk the state directory is on fills up (journal, staged files, cache): until `freeDisk`, only
    /// the data path runs (writes, truncates, fsyncs and closes of open or new documents, and reads), and
    /// each may fail with ENOSPC or EIO, a write after writing some of its bytes.
    case fillDisk
    case freeDisk

    var description: String {
        switch self {
        case .write(let path, let offset, let length, let pattern): "write \(path) @\(offset) +\(length) [\(pattern)]"
        case .truncate(let path, let size): "truncate \(path) \(size)"
        case .fsync(let path): "fsync \(path)"
        case .close(let path): "close \(path)"
        case .rename(let from, let to): "rename \(from) -> \(to)"
        case .unlink(let path): "unlink \(path)"
        case .mkdir(let path): "mkdir \(path)"
        case .rmdir(let path): "rmdir \(path)"
        case .touch(let path, let seconds): "touch \(path) @\(seconds)"
        case .read(let path): "read \(path)"
        case .setColumn(let path, let value): "setfattr \(path) DocumentType=\(value)"
        case .remoteEdit(let path, let length, let pattern): "fault: another user writes \(path) +\(length) [\(pattern)]"
        case .refusedEdit(let path, let length, let pattern): "fault: \(path) made read-only, then overwritten +\(length) [\(pattern)] (403)"
        case .storm: "fault: storm"
        case .outage: "fault: outage"
        case .calm: "fault: calm"
        case .expireTokens: "fault: expire tokens"
        case .kill: "fault: kill -9 and mount again"
        case .fillDisk: "fault: state disk full"
        case .freeDisk: "fault: state disk freed"
        }
    }

    /// A call on the data path, which a full disk may fail (see `fillDisk`).
    var isDataCall: Bool {
        switch self {
        case .write, .truncate, .fsync, .close, .read: true
        default: false
        }
    }

    var isFault: Bool {
        switch self {
        case .storm, .outage, .calm, .expireTokens, .kill, .remoteEdit, .refusedEdit, .fillDisk, .freeDisk: true
        default: false
        }
    }

    /// The bytes a write puts down: each position its own value, so a misplaced or lost range shows.
    static func bytes(length: Int, pattern: UInt8, offset: Int) -> Data {
        Data((0..<length).map { UInt8(truncatingIfNeeded: Int(pattern) &+ (offset + $0) &* 31 &+ (offset + $0) >> 8) })
    }
}

/// What the run expects of one operation.
enum ModelExpectation: Equatable, Sendable {
    case success
    case failure(Int32)
    /// A write that failed with this errno after putting down this many bytes (a full disk).
    case partial(written: Int, errno: Int32)
    /// Not done (another user's edit while the mount had changes it could not send): the model takes it back.
    case notDone
}

struct ModelDocument: Equatable, Sendable {
    var bytes = Data()
    /// The mtime set explicitly (utimens) and not moved by a later write: the service must hold exactly
    /// this (clamped) second. Nil: whatever time the mount shows, the service must show the same.
    var time: Int?
    /// The values the service's DocumentType column may hold (nil: none set). One, except after a rename
    /// over a document of a file that had none: whether it replaced that document's bytes (keeping its
    /// columns, as an editor's save must) or the document itself depends on whether it was sent yet.
    var column: Set<String?> = [nil]
}

/// The state the mount must show, and the service must hold once everything is sent.
struct ReferenceModel: Equatable, Sendable {
    /// Documents by path below the test's folder (`F/d.txt`).
    var documents: [String: ModelDocument] = [:]
    var folders: Set<String> = []
    /// Documents with a handle open for writing.
    var open: Set<String> = []
    var faults = FaultState.calm
    var diskFull = false

    enum FaultState: Equatable, Sendable { case calm, storm, outage }

    /// The folders a run may make and the documents it may write.
    static let folderNames = ["F", "G"]
    static let documentNames = ["a.txt", "b.bin", "c.txt", "F/d.txt", "F/e.bin", "G/f.txt"]
    /// Choices of the seeded library's DocumentType column.
    static let columnValues = ["Quote", "Proposal", "Note", "Other"]

    /// The times SharePoint holds, as crmfs clamps them (SharePointTimes).
    static let earliest = -11_644_473_600
    static let latest = 253_402_300_799

    func parentExists(_ path: String) -> Bool {
        let parent = (path as NSString).deletingLastPathComponent
        return parent.isEmpty || folders.contains(parent)
    }

    func isEmpty(folder: String) -> Bool {
        !documents.keys.contains { $0.hasPrefix(folder + "/") }
    }

    /// What `operation` must answer in this state, and the state after it.
    mutating func apply(_ operation: ModelOperation) -> ModelExpectation {
        switch operation {
        case .write(let path, _, 0, _):
            // Opened (created when new), nothing written: no time moves, nothing grows.
            documents[path] = documents[path] ?? ModelDocument()
            open.insert(path)
        case .write(let path, let offset, let length, let pattern):
            var document = documents[path] ?? ModelDocument()
            let bytes = ModelOperation.bytes(length: length, pattern: pattern, offset: offset)
            if document.bytes.count < offset { document.bytes.append(Data(count: offset - document.bytes.count)) }
            let end = offset + length
            if document.bytes.count < end { document.bytes.append(Data(count: end - document.bytes.count)) }
            document.bytes.replaceSubrange(offset..<end, with: bytes)
            document.time = nil
            documents[path] = document
            open.insert(path)
        case .truncate(let path, let size):
            guard var document = documents[path] else { return .failure(ENOENT) }
            if document.bytes.count > size { document.bytes = document.bytes.prefix(size) } else { document.bytes.append(Data(count: size - document.bytes.count)) }
            document.time = nil
            documents[path] = document
        case .fsync, .read:
            break
        case .close(let path):
            open.remove(path)
        case .rename(let from, let to):
            guard var document = documents[from] else { return .failure(ENOENT) }
            if let replaced = documents[to], document.column.contains(nil) { document.column.formUnion(replaced.column) }
            documents[from] = nil
            documents[to] = document
        case .unlink(let path):
            guard documents.removeValue(forKey: path) != nil else { return .failure(ENOENT) }
        case .mkdir(let path):
            guard folders.insert(path).inserted else { return .failure(EEXIST) }
        case .rmdir(let path):
            guard folders.contains(path) else { return .failure(ENOENT) }
            guard isEmpty(folder: path) else { return .failure(ENOTEMPTY) }
            folders.remove(path)
        case .touch(let path, let seconds):
            guard documents[path] != nil else { return .failure(ENOENT) }
            documents[path]?.time = min(max(seconds, Self.earliest), Self.latest)
        case .setColumn(let path, let value):
            guard documents[path] != nil else { return .failure(ENOENT) }
            documents[path]?.column = [value]
        case .remoteEdit(let path, let length, let pattern):
            guard documents[path] != nil else { return .failure(ENOENT) }
            documents[path]?.bytes = ModelOperation.bytes(length: length, pattern: pattern, offset: 0)
            documents[path]?.time = nil
        case .refusedEdit(let path, _, _):
            guard documents[path] != nil else { return .failure(ENOENT) }
        case .storm:
            faults = .storm
        case .outage:
            faults = .outage
        case .calm:
            faults = .calm
        case .expireTokens, .kill:
            break
        case .fillDisk:
            diskFull = true
        case .freeDisk:
            diskFull = false
        }
        return .success
    }
}

/// A small, fast generator whose sequence depends on its seed alone (SplitMix64).
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension ReferenceModel {
    /// `count` operations drawn from `seed`, each one the model can judge: mostly valid calls, some that
    /// must fail (a folder not empty), and faults. Handles are closed before a kill (what an open file held
    /// at a crash was never promised) and before a rename or unlink of their document.
    /// Lists kept from before a kind of fault joined the generator pass false for it, so they replay what they found.
    static func operations(seed: UInt64, count: Int, diskFaults: Bool = true, refusals: Bool = true) -> [ModelOperation] {
        var random = SeededGenerator(seed: seed)
        var model = ReferenceModel()
        var operations: [ModelOperation] = []
        func add(_ operation: ModelOperation) {
            _ = model.apply(operation)
            operations.append(operation)
        }
        func closeIfOpen(_ path: String) { if model.open.contains(path) { add(.close(path: path)) } }
        while operations.count < count {
            let writable = documentNames.filter { model.parentExists($0) }
            let existing = model.documents.keys.sorted()
            let full = model.diskFull
            // What needs no remote bytes (and, on a full disk, no room to copy them).
            let offline = model.faults == .outage || full
            switch Int.random(in: 0..<100, using: &random) {
            case 0..<30 where !writable.isEmpty:
                let path = writable.randomElement(using: &random)!
                // Offline, only what needs no remote bytes: a new document, or one already open.
                if offline && model.documents[path] != nil && !model.open.contains(path) { continue }
                let size = model.documents[path]?.bytes.count ?? 0
                let large = Int.random(in: 0..<20, using: &random) == 0
                let length = large ? Int.random(in: 4 << 20...5 << 20, using: &random) : Int.random(in: 1...200_000, using: &random)
                let offset = Int.random(in: 0...min(size + 4096, 1 << 20), using: &random)
                add(.write(path: path, offset: offset, length: length, pattern: UInt8.random(in: 0...255, using: &random)))
            case 30..<38 where !model.open.isEmpty:
                add(.close(path: model.open.sorted().randomElement(using: &random)!))
            case 38..<42 where !existing.isEmpty:
                let path = existing.randomElement(using: &random)!
                if offline && !model.open.contains(path) { continue }
                let size = model.documents[path]!.bytes.count
                add(.truncate(path: path, size: Int.random(in: 0...size + 10_000, using: &random)))
            case 42..<45 where !model.open.isEmpty && !offline:
                add(.fsync(path: model.open.sorted().randomElement(using: &random)!))
            case 45..<53 where !existing.isEmpty && !full:
                let from = existing.randomElement(using: &random)!
                guard let to = writable.filter({ $0 != from }).randomElement(using: &random) else { continue }
                closeIfOpen(from)
                closeIfOpen(to)
                add(.rename(from: from, to: to))
            case 53..<57 where !existing.isEmpty && !full:
                let path = existing.randomElement(using: &random)!
                closeIfOpen(path)
                add(.unlink(path: path))
            case 57..<61 where !full:
                let folder = folderNames.randomElement(using: &random)!
                if model.folders.contains(folder) {
                    if !model.isEmpty(folder: folder) && Bool.random(using: &random) { continue }
                    for path in model.open.sorted() where path.hasPrefix(folder + "/") { closeIfOpen(path) }
                    add(.rmdir(path: folder))
                } else {
                    add(.mkdir(path: folder))
                }
            case 61..<68 where !existing.isEmpty && !full:
                let path = existing.randomElement(using: &random)!
                let seconds: Int = switch Int.random(in: 0..<10, using: &random) {
                case 0: Int.max
                case 1: Int.min
                case 2: 253_402_300_800  // 10000-01-01
                case 3: -11_644_473_601  // a second before 1601
                default: Int.random(in: 0...2_000_000_000, using: &random)
                }
                add(.touch(path: path, seconds: seconds))
            case 68..<74 where model.faults != .outage:
                // Not through a second handle while a writer's copy of a remote document may still be filling
                // (docs/semantics.md: other handles read the service's version until it is complete).
                guard let path = existing.filter({ !model.open.contains($0) }).randomElement(using: &random) else { continue }
                add(.read(path: path))
            case 74..<78 where !full:
                add(model.faults == .calm ? (Bool.random(using: &random) ? .storm : .outage) : .calm)
            case 78..<80 where !full:
                add(.expireTokens)
            case 80..<83 where !full:
                for path in model.open.sorted() { closeIfOpen(path) }
                add(.kill)
            case 83..<87 where model.faults == .calm && !full:
                guard let path = existing.filter({ !model.open.contains($0) }).randomElement(using: &random) else { continue }
                add(.setColumn(path: path, value: columnValues.randomElement(using: &random)!))
            case 87..<89 where model.faults == .calm && !full:
                guard let path = existing.filter({ !model.open.contains($0) }).randomElement(using: &random) else { continue }
                add(.remoteEdit(path: path, length: Int.random(in: 1...150_000, using: &random), pattern: UInt8.random(in: 0...255, using: &random)))
            case 89..<92 where diskFaults:
                add(full ? .freeDisk : .fillDisk)
            case 92..<94 where refusals && model.faults == .calm && !full:
                guard let path = existing.filter({ !model.open.contains($0) }).randomElement(using: &random) else { continue }
                add(.refusedEdit(path: path, length: Int.random(in: 1...150_000, using: &random), pattern: UInt8.random(in: 0...255, using: &random)))
            default:
                continue
            }
        }
        return operations
    }

    /// The state after `operations`, from nothing.
    static func after(_ operations: [ModelOperation]) -> ReferenceModel {
        var model = ReferenceModel()
        for operation in operations { _ = model.apply(operation) }
        return model
    }

    /// Whether every operation of `operations` is one the model can judge from where it stands (a shrunk
    /// list can leave a write offline to a document that needs its remote bytes, or a rename of a
    /// document still open).
    static func isReplayable(_ operations: [ModelOperation]) -> Bool {
        var model = ReferenceModel()
        for operation in operations {
            switch operation {
            case .write(let path, _, _, _):
                guard model.parentExists(path) else { return false }
                if (model.faults == .outage || model.diskFull) && model.documents[path] != nil && !model.open.contains(path) { return false }
            case .truncate(let path, _):
                guard model.documents[path] != nil else { return false }
                if (model.faults == .outage || model.diskFull) && !model.open.contains(path) { return false }
            case .fsync(let path), .close(let path):
                guard model.open.contains(path) else { return false }
                if case .fsync = operation, model.faults == .outage { return false }
            case .read(let path):
                guard model.documents[path] != nil, model.faults != .outage, !model.open.contains(path) else { return false }
            case .rename(let from, let to):
                guard model.documents[from] != nil, model.parentExists(to), !model.open.contains(from), !model.open.contains(to), !model.diskFull else { return false }
            case .setColumn(let path, _), .remoteEdit(let path, _, _), .refusedEdit(let path, _, _):
                guard model.documents[path] != nil, !model.open.contains(path), model.faults == .calm, !model.diskFull else { return false }
            case .unlink(let path), .touch(let path, _):
                guard model.documents[path] != nil, !model.diskFull else { return false }
                if case .unlink = operation, model.open.contains(path) { return false }
            case .rmdir(let path):
                if model.open.contains(where: { $0.hasPrefix(path + "/") }) || model.diskFull { return false }
            case .kill:
                guard model.open.isEmpty, !model.diskFull else { return false }
            case .mkdir, .storm, .outage, .calm, .expireTokens:
                if model.diskFull { return false }
            case .fillDisk, .freeDisk:
                break
            }
            _ = model.apply(operation)
        }
        return true
    }

    /// A shorter list that still fails, by `fails` (delta debugging: drop halves, then quarters, down to
    /// single operations, keeping each removal that still fails), within `budget`.
    static func shrink(_ operations: [ModelOperation], budget: Duration,
                       fails: ([ModelOperation]) async -> Bool) async -> [ModelOperation] {
        let deadline = ContinuousClock.now + budget
        var current = operations
        var chunk = max(1, current.count / 2)
        while chunk >= 1 && ContinuousClock.now < deadline {
            var start = 0
            var removedAny = false
            while start < current.count && ContinuousClock.now < deadline {
                var candidate = current
                candidate.removeSubrange(start..<min(start + chunk, candidate.count))
                if isReplayable(candidate), await fails(candidate) {
                    current = candidate
                    removedAny = true
                } else {
                    start += chunk
                }
            }
            if !removedAny { chunk /= 2 }
        }
        return current
    }
}
