import Foundation

/// Where written bytes wait for their upload: one file per staged document in the state directory
/// (0700), never evicted before its upload is done. `seal` makes a file's bytes and its directory
/// entry durable, so data a user wrote and closed survives a crash or power loss.
public final class StagingArea: Sendable {
    public let directory: URL
    /// Test hook, run before every seal: the tests of races around a seal use it to make the disk slow,
    /// and those of what a failed flush does to make it fail (as a failing disk would).
    private let beforeSeal: (@Sendable () throws -> Void)?

    public init(directory: URL, beforeSeal: (@Sendable () throws -> Void)? = nil) throws {
        self.directory = directory
        self.beforeSeal = beforeSeal
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        guard chmod(directory.path, 0o700) == 0 else { throw StagingError.system("chmod", directory.path, errno) }
    }

    /// A new, empty staged file, open for reading and writing; the caller closes the descriptor.
    public func create() throws -> (name: String, descriptor: Int32) {
        let name = UUID().uuidString.lowercased()
        let descriptor = open(path(of: name), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw StagingError.system("open", path(of: name), errno) }
        return (name, descriptor)
    }

    public func path(of name: String) -> String { directory.appendingPathComponent(name).path }

    /// Flushes the file's bytes and the directory entry that names it to the disk.
    public func seal(_ name: String, descriptor: Int32) throws {
        try beforeSeal?()
        guard fsync(descriptor) == 0 else { throw StagingError.system("fsync", path(of: name), errno) }
        try syncDirectory()
    }

    /// Removes a staged file once its change is done; one already gone is fine.
    public func remove(_ name: String) throws {
        guard unlink(path(of: name)) == 0 || errno == ENOENT else { throw StagingError.system("unlink", path(of: name), errno) }
    }

    /// Moves a staged file to `conflicts/NAME` (or another folder) beside the staging area: a local copy
    /// the remote one won over, or one a crash left unrecorded, kept for the user rather than lost. An
    /// earlier copy is never replaced: a taken name becomes `NAME (2).EXT`, `NAME (3).EXT`, and so on.
    /// Returns the path it was kept at.
    @discardableResult
    public func keepAside(_ name: String, as keptName: String, in folder: String = "conflicts") throws -> String {
        let conflicts = directory.deletingLastPathComponent().appendingPathComponent(folder)
        try FileManager.default.createDirectory(at: conflicts, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let safeName = keptName.replacingOccurrences(of: "/", with: "_")
        let ext = (safeName as NSString).pathExtension
        let base = ext.isEmpty ? safeName : String(safeName.dropLast(ext.count + 1))
        var number = 0
        while true {
            number += 1
            let candidate = number == 1 ? safeName : (ext.isEmpty ? "\(base) (\(number))" : "\(base) (\(number)).\(ext)")
            let target = conflicts.appendingPathComponent(candidate).path
            // link(2) never replaces an existing file, unlike rename(2).
            if link(path(of: name), target) == 0 {
                _ = unlink(path(of: name))
                return target
            }
            guard errno == EEXIST else { throw StagingError.system("link", target, errno) }
        }
    }

    /// Staged files the journal does not name: left by a crash between creating a file and recording it.
    public func orphans(keeping names: Set<String>) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { !names.contains($0) }
    }

    private func syncDirectory() throws {
        let descriptor = open(directory.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw StagingError.system("open", directory.path, errno) }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw StagingError.system("fsync", directory.path, errno) }
    }
}

public enum StagingError: Error, CustomStringConvertible {
    case system(String, String, Int32)

    public var description: String {
        switch self {
        case .system(let call, let path, let code): "\(call) \(path): \(String(cString: strerror(code)))"
        }
    }

    /// The errno to answer the kernel with.
    public var errno: Int32 {
        switch self {
        case .system(_, _, let code): code
        }
    }
}
