import Foundation

/// A client secret, token or password. It prints as `<redacted>` wherever it is interpolated,
/// logged or dumped, so it cannot leak into logs or error text by accident.
public struct Secret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The value itself, for the one place that must send it.
    public let exposedValue: String

    public init(_ value: String) { exposedValue = value }

    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
    public var customMirror: Mirror { Mirror(self, children: []) }
}

public enum SecretSourceError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String, reason: String)
    case tooOpen(path: String, mode: String)
    case notOwned(path: String, owner: UInt32)
    case empty(path: String)
    case missingEnvironment(name: String)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason): return "\(path): cannot read secret file: \(reason)"
        case .tooOpen(let path, let mode):
            return "\(path): secret file has mode \(mode); it must not be readable by group or others (chmod 600 \(path))"
        case .notOwned(let path, let owner):
            return "\(path): secret file is owned by uid \(owner), not by the user running crmfs (uid \(geteuid())); chown it"
        case .empty(let path): return "\(path): secret file is empty"
        case .missingEnvironment(let name): return "environment variable \(name) is not set"
        }
    }
}

extension Secret {
    /// Reads a secret from a file that only its owner can read (0600 or stricter); trailing newlines are dropped.
    public static func load(file path: String) throws -> Secret {
        try checkPrivate(path: path)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SecretSourceError.unreadable(path: path, reason: "no such file or not readable")
        }
        let value = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
        if value.isEmpty { throw SecretSourceError.empty(path: path) }
        return Secret(value)
    }

    public static func load(environment name: String) throws -> Secret {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else {
            throw SecretSourceError.missingEnvironment(name: name)
        }
        return Secret(value)
    }

    /// Refuses files that group or others may read or write, and files another user owns (root's
    /// files are accepted too: an administrator may provision them).
    public static func checkPrivate(path: String) throws {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw SecretSourceError.unreadable(path: path, reason: String(cString: strerror(errno)))
        }
        if info.st_mode & 0o077 != 0 {
            throw SecretSourceError.tooOpen(path: path, mode: String(info.st_mode & 0o777, radix: 8))
        }
        if info.st_uid != geteuid() && info.st_uid != 0 {
            throw SecretSourceError.notOwned(path: path, owner: info.st_uid)
        }
    }

    /// Writes a secret to a new file with mode 0600, replacing any old one atomically: the temporary
    /// file is created exclusively and never through a symbolic link, and the directory is flushed
    /// after the rename so the new secret survives a crash.
    public static func store(_ secret: Secret, file path: String) throws {
        let temporary = path + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw SecretSourceError.unreadable(path: temporary, reason: String(cString: strerror(errno))) }
        let bytes = Array(secret.exposedValue.utf8)
        let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        let flushed = fsync(descriptor) == 0
        close(descriptor)
        guard written == bytes.count, flushed, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw SecretSourceError.unreadable(path: path, reason: "write failed")
        }
        let directory = open((path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent,
                             O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 {
            fsync(directory)
            close(directory)
        }
    }
}
