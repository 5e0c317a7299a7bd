import Foundation
import Logging

/// Every change crmfs made, or tried to make, on the services, one JSON line each in the state directory's
/// `audit.jsonl` (0600): when, which local user, what, where, which item and record, and how it ended.
/// Names and ids only: never contents, field values or credentials. Rotated by size: the full file
/// becomes `audit.jsonl.1` (and so on, `keep` of them), so it never grows without bound.
public final class AuditLog: @unchecked Sendable {
    public struct Entry: Encodable, Sendable {
        public var time: Date
        public var user: String
        /// `upload`, `move`, `delete`, `createFolder`, `setColumns`, `setColumn`, `setRecordField`.
        public var operation: String
        public var path: String
        public var itemId: String?
        public var recordId: String?
        /// `done`, `conflict: …`, `refused: …`, `gave up: …`, `failed: …`.
        public var outcome: String

        public init(operation: String, path: String, itemId: String?, recordId: String?, outcome: String, time: Date = Date(),
                    requester: UInt32? = nil) {
            self.time = time
            user = requester.map(AuditLog.userName) ?? AuditLog.localUser
            self.operation = operation
            self.path = path
            self.itemId = itemId
            self.recordId = recordId
            self.outcome = outcome
        }
    }

    public let path: String
    let maxBytes: Int64
    let keep: Int
    private let logger: Logger
    private let lock = NSLock()
    private let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    public init(path: String, maxBytes: Int64 = 10 << 20, keep: Int = 3, logger: Logger = Logger(label: "crmfs.audit")) {
        self.path = path
        self.maxBytes = maxBytes
        self.keep = max(1, keep)
        self.logger = logger
    }

    /// The user the mount runs as, by name (the uid when it has none).
    static let localUser = userName(getuid())

    /// A local user by name (the uid when it has none).
    static func userName(_ uid: UInt32) -> String {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.pw_name else { return "uid \(uid)" }
        return String(cString: name)
    }

    public func record(_ entry: Entry) {
        guard var line = try? encoder.encode(entry) else { return }
        line.append(0x0A)
        lock.withLock {
            do {
                try rotateIfFull(adding: Int64(line.count))
                let descriptor = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
                guard descriptor >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
                defer { close(descriptor) }
                let written = line.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
                guard written == line.count else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            } catch {
                logger.warning("could not write the audit log", metadata: ["path": "\(path)", "error": "\(error)"])
            }
        }
    }

    /// (Lock held.) Shifts `audit.jsonl.N` up by one, dropping the oldest, when the current file is full.
    private func rotateIfFull(adding count: Int64) throws {
        var info = stat()
        guard stat(path, &info) == 0, Int64(info.st_size) + count > maxBytes, info.st_size > 0 else { return }
        unlink("\(path).\(keep)")
        for index in stride(from: keep - 1, through: 1, by: -1) { rename("\(path).\(index)", "\(path).\(index + 1)") }
        guard rename(path, "\(path).1") == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    }
}

extension AuditLog {
    /// The entry for what became of a change the engine sent, at `path` in the mount.
    public static func entry(for outcome: ChangeOutcome, path: String?) -> Entry {
        let change = outcome.change
        let (item, result): (String?, String) = switch outcome {
        case .done(_, let item): (item?.id ?? change.itemID, "done")
        case .conflict(_, let policy): (change.itemID, "conflict: \(policy)")
        case .gaveUp(_, let reason): (change.itemID, "gave up: \(reason)")
        case .refused: (change.itemID, "refused: access denied")
        }
        return Entry(operation: change.kind.rawValue, path: path ?? change.parentPath.map { "\($0)/\(change.name)" } ?? change.name,
                     itemId: item, recordId: change.recordID, outcome: result, requester: change.requester)
    }
}
