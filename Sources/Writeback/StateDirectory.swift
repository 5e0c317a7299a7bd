import Foundation

/// A mount's state directory (journal, staged files, block cache, log), held by one running mount at a
/// time. It must be the user's own and closed to everyone else (0700): it holds what the user wrote and
/// the journal's pre-authenticated upload URLs. A second mount of the same state is refused, naming the
/// mount that holds it: two mounts would send the same changes twice and set aside each other's files.
public final class StateDirectory: @unchecked Sendable {
    public let url: URL
    /// Holds the lock (`flock`) until `release` or the end of the process, never closed otherwise.
    private var lockDescriptor: Int32
    private let lock = NSLock()

    /// Creates the directory (0700) if needed, checks it, and takes its lock for the mount at `mountpoint`.
    public init(path: String, mountpoint: String) throws {
        url = URL(fileURLWithPath: path)
        // Its parents too, private as the XDG spec asks (`~/.local/state/crmfs/` on a new account).
        let parent = url.deletingLastPathComponent().path
        if !FileManager.default.fileExists(atPath: parent) {
            try? FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw StateDirectoryError.unusable(path: path, reason: String(cString: strerror(errno)))
        }
        var info = stat()
        guard lstat(path, &info) == 0 else { throw StateDirectoryError.unusable(path: path, reason: String(cString: strerror(errno))) }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw StateDirectoryError.unusable(path: path, reason: "not a directory") }
        guard info.st_uid == geteuid() else {
            throw StateDirectoryError.unusable(path: path, reason: "owned by uid \(info.st_uid), not by the user mounting (uid \(geteuid()))")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw StateDirectoryError.unusable(path: path, reason: "mode \(String(info.st_mode & 0o777, radix: 8)) lets others in; it must be 0700 (chmod 700 \(path))")
        }
        let lockPath = url.appendingPathComponent("lock").path
        lockDescriptor = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard lockDescriptor >= 0 else { throw StateDirectoryError.unusable(path: lockPath, reason: String(cString: strerror(errno))) }
        // A mount that was just unmounted may still be finishing (its process ends a moment after the
        // kernel lets go): it is waited for, briefly. A holder still mounted is refused at once.
        var waited: Duration = .zero
        while flock(lockDescriptor, LOCK_EX | LOCK_NB) != 0 {
            let (holder, stillMounted) = Self.holder(of: lockDescriptor)
            guard !stillMounted, waited < Self.exitingHolderWait else {
                close(lockDescriptor)
                lockDescriptor = -1
                throw StateDirectoryError.inUse(path: path, holder: holder)
            }
            usleep(50_000)
            waited += .milliseconds(50)
        }
        // Who holds it, for the message a second mount gets.
        let text = Array("\(getpid())\n\(mountpoint)\n".utf8)
        _ = ftruncate(lockDescriptor, 0)
        _ = text.withUnsafeBytes { pwrite(lockDescriptor, $0.baseAddress, $0.count, 0) }
    }

    /// Lets the next mount of this state in: an in-process mount ending (the tests'). A daemon never calls
    /// it: its lock goes with its process, after the last of its uploads has stopped.
    public func release() {
        lock.withLock {
            if lockDescriptor >= 0 { close(lockDescriptor) }
            lockDescriptor = -1
        }
    }

    /// How long a holder whose mount point is no longer mounted is waited for.
    static let exitingHolderWait: Duration = .seconds(10)

    /// Who holds the lock, and whether its mount point is still mounted.
    private static func holder(of descriptor: Int32) -> (description: String, stillMounted: Bool) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = pread(descriptor, &buffer, buffer.count, 0)
        let lines = count > 0 ? String(decoding: buffer[0..<count], as: UTF8.self).split(separator: "\n").map(String.init) : []
        guard lines.count >= 2 else { return ("another crmfs process", true) }
        return ("the mount at \(lines[1]) (pid \(lines[0]))", isMounted(lines[1]))
    }

    private static func isMounted(_ path: String) -> Bool {
        guard let table = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return true }
        return table.split(separator: "\n").contains { line in
            let fields = line.split(separator: " ")
            return fields.count > 4 && fields[4].replacingOccurrences(of: "\\040", with: " ") == path
        }
    }
}

public enum StateDirectoryError: Error, CustomStringConvertible {
    case unusable(path: String, reason: String)
    case inUse(path: String, holder: String)

    public var description: String {
        switch self {
        case .unusable(let path, let reason): "state directory \(path): \(reason)"
        case .inUse(let path, let holder):
            "state directory \(path) is in use by \(holder); unmount it first, or give this config its own [cache] directory"
        }
    }
}
