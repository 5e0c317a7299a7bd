import Cache
import Config
import FileSystem
import Foundation
import MountBuilder
import Namespace
import Sandbox
import Writes

/// A sandbox tenant's file system built in process by the mount's own builder, called as the kernel
/// would call it but without one: no root, no mount, no daemon. The calls the kernel makes on its own
/// threads and that may block there (a write or close waiting for a block of the document) run on a
/// thread of their own here too, never on the task pool the sandbox and the mount's clients need. Paths are relative to the mount's root
/// and resolved by lookups, as the kernel resolves them; each call answers a value or throws an error
/// whose errno `errnoCode(for:)` gives (`Errno.of` runs a call and gives that number).
public final class FileSystemFixture: Sendable {
    public let sandbox: SandboxFixture
    public let built: BuiltMount
    /// The file system's own log lines (refusals with their rule, failed writes).
    public let log: CapturedLog
    public var fileSystem: CRMFileSystem { built.fileSystem }
    /// The state directory (journal, staged files, conflicts).
    public var stateDirectory: String { built.stateDirectory.path }

    /// Builds the file system of `sandbox`'s mount.conf (or `config`), with mount options as `-o` takes them
    /// and `hooks` into its write path.
    public static func build(_ sandbox: SandboxFixture, config: String? = nil, options: [String] = [],
                             hooks: WriteHooks = WriteHooks()) async throws -> FileSystemFixture {
        let log = CapturedLog()
        let loaded = try ConfigLoader.load(path: config ?? sandbox.configPath)
        // The state directory is locked in the mount point's name; nothing is mounted there.
        let mountpoint = sandbox.directory.appendingPathComponent("in-process").path
        let builder = MountBuilder(config: loaded, mountpoint: mountpoint, options: try ParsedMountOptions.parse(options),
                                   fileSystemLogger: log.logger(label: "crmfs.fs"), hooks: hooks)
        return FileSystemFixture(sandbox: sandbox, built: try await builder.build(), log: log)
    }

    private init(sandbox: SandboxFixture, built: BuiltMount, log: CapturedLog) {
        self.sandbox = sandbox
        self.built = built
        self.log = log
    }

    /// What an unmount ends: the feeds keep the tree, the engine stops (what it had not sent stays journaled),
    /// and the state directory is free for the next build.
    public func close() async {
        await built.stop()
        await built.engine?.stop()
        built.state.release()
    }

    // MARK: Paths

    /// The node at `path` ("" is the root).
    public func node(_ path: String) async throws -> NodeSnapshot {
        var node = try await fileSystem.getattr(Tree.rootIno).value
        for name in path.split(separator: "/") {
            node = try await fileSystem.lookup(parent: node.ino, name: String(name)).value
        }
        return node
    }

    /// The directory holding `path`'s last component, and that component.
    public func parent(of path: String) async throws -> (ino: UInt64, name: String) {
        let components = path.split(separator: "/").map(String.init)
        guard let name = components.last else { throw POSIXError(.EINVAL) }
        return (try await node(components.dropLast().joined(separator: "/")).ino, name)
    }

    /// `ls`: the names in the directory at `path`, in listing order.
    public func list(_ path: String) async throws -> [String] {
        let directory = try await node(path)
        _ = try await fileSystem.opendir(directory.ino).value
        let page = try await fileSystem.readdir(directory.ino, offset: 0).value
        return page.entries.map(\.name).filter { $0 != "." && $0 != ".." }
    }

    /// `find PATH -type f`: every document below `path`, by path relative to it, sorted.
    public func files(below path: String) async throws -> [String] {
        var found: [String] = []
        var pending = [""]
        while let relative = pending.popLast() {
            let directory = relative.isEmpty ? path : "\(path)/\(relative)"
            for name in try await list(directory) {
                let child = relative.isEmpty ? name : "\(relative)/\(name)"
                if try await node("\(directory)/\(name)").type == .directory { pending.append(child) } else { found.append(child) }
            }
        }
        return found.sorted()
    }

    /// `stat`: what the kernel is told of `path`.
    public func stat(_ path: String) async throws -> stat {
        fileSystem.stat(try await node(path))
    }

    // MARK: Files

    /// open(2): an open file's handle, for `read`, `write`, `fsync` and `close`. With O_CREAT a missing
    /// name is created, as the kernel does after its lookup finds nothing.
    public func open(_ path: String, _ flags: Int32 = O_RDONLY) async throws -> UInt64 {
        do {
            let node = try await node(path)
            if flags & O_CREAT != 0 && flags & O_EXCL != 0 { throw POSIXError(.EEXIST) }
            return try await fileSystem.open(node.ino, flags: flags).value.handle
        } catch NamespaceError.notFound where flags & O_CREAT != 0 {
            let (parent, name) = try await parent(of: path)
            return try await fileSystem.create(parent: parent, name: name, flags: flags).opened.handle
        }
    }

    /// Reads `length` bytes at `offset` of an open file (fewer at its end).
    public func read(_ handle: UInt64, offset: Int64 = 0, length: Int = 1 << 20) async throws -> Data {
        let fileSystem = self.fileSystem
        switch try await Tools.blocking({ fileSystem.read(handle: handle, size: length, offset: offset) }).value {
        case .bytes(let data): return data
        case .span(let span):
            guard let bytes = span.file.read(Int(span.offset)..<Int(span.offset) + span.length) else { throw POSIXError(.EIO) }
            return bytes
        }
    }

    public func write(_ handle: UInt64, _ bytes: Data, at offset: Int64 = 0) async throws {
        let fileSystem = self.fileSystem
        let written = try await Tools.blocking { try fileSystem.write(handle: handle, offset: offset, bytes: bytes) }
        guard written == bytes.count else { throw POSIXError(.EIO) }
    }

    public func fsync(_ handle: UInt64) async throws {
        try await fileSystem.fsync(handle: handle)
    }

    /// close(2) of the last descriptor: the kernel's flush, then its release.
    public func close(_ handle: UInt64) async throws {
        do {
            try await flush(handle)
        } catch {
            await release(handle)
            throw error
        }
        await release(handle)
    }

    /// The kernel's flush of a handle (at every close of a descriptor).
    public func flush(_ handle: UInt64) async throws {
        let fileSystem = self.fileSystem
        try await Tools.blocking { try fileSystem.flush(handle: handle) }
    }

    /// The kernel's release of a handle (once its last descriptor is closed).
    public func release(_ handle: UInt64) async {
        let fileSystem = self.fileSystem
        _ = try? await Tools.blocking { fileSystem.release(handle: handle) }
    }

    /// The whole content of `path`.
    public func read(_ path: String) async throws -> Data {
        let handle = try await open(path)
        var content = Data()
        do {
            while true {
                let chunk = try await read(handle, offset: Int64(content.count))
                content.append(chunk)
                if chunk.isEmpty { break }
            }
        } catch {
            await release(handle)
            throw error
        }
        await release(handle)
        return content
    }

    /// What `cp` or a shell's `>` does: creates or truncates `path`, writes `bytes`, closes it.
    public func write(_ path: String, _ bytes: Data) async throws {
        let handle = try await open(path, O_WRONLY | O_CREAT | O_TRUNC)
        do {
            if !bytes.isEmpty { try await write(handle, bytes) }
        } catch {
            try? await close(handle)
            throw error
        }
        try await close(handle)
    }

    public func write(_ path: String, _ text: String) async throws { try await write(path, Data(text.utf8)) }

    /// What a shell's `>>` does: writes `bytes` at the end of `path`.
    public func append(_ path: String, _ bytes: Data) async throws {
        let end = try await node(path).size
        let handle = try await open(path, O_WRONLY | O_APPEND)
        do {
            try await write(handle, bytes, at: end)
        } catch {
            try? await close(handle)
            throw error
        }
        try await close(handle)
    }

    // MARK: Names

    public func mkdir(_ path: String) async throws {
        let (parent, name) = try await parent(of: path)
        _ = try await fileSystem.mkdir(parent: parent, name: name)
    }

    public func unlink(_ path: String) async throws {
        let (parent, name) = try await parent(of: path)
        try await fileSystem.remove(parent: parent, name: name, directory: false)
    }

    public func rmdir(_ path: String) async throws {
        let (parent, name) = try await parent(of: path)
        try await fileSystem.remove(parent: parent, name: name, directory: true)
    }

    /// renameat2(2); `flags` 1 is RENAME_NOREPLACE, 2 RENAME_EXCHANGE.
    public func rename(_ from: String, _ to: String, flags: UInt32 = 0) async throws {
        let source = try await parent(of: from), target = try await parent(of: to)
        try await fileSystem.rename(parent: source.ino, name: source.name, newParent: target.ino, newName: target.name, flags: flags)
    }

    /// `touch -d`: sets the modification time.
    public func setModified(_ path: String, to date: Date) async throws {
        let seconds = date.timeIntervalSince1970.rounded(.down)
        let change = CRMFileSystem.TimeChange.to(seconds: Int(seconds), nanoseconds: Int((date.timeIntervalSince1970 - seconds) * 1e9))
        _ = try await fileSystem.setattr(try await node(path).ino, modified: change).value
    }

    /// `truncate -s`.
    public func truncate(_ path: String, to size: Int64) async throws {
        _ = try await fileSystem.setattr(try await node(path).ino, size: size).value
    }

    // MARK: Extended attributes

    /// `getfattr -n`: the value, or nil when the name has none (ENODATA).
    public func getxattr(_ path: String, _ name: String) async throws -> String? {
        do {
            return String(decoding: try await fileSystem.getxattr(try await node(path).ino, name: name).value, as: UTF8.self)
        } catch let error as POSIXError where error.code == .ENODATA {
            return nil
        }
    }

    /// `getfattr -d`: every name.
    public func listxattr(_ path: String) async throws -> [String] {
        let names = try await fileSystem.listxattr(try await node(path).ino).value
        return names.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
    }

    /// `setfattr -n NAME -v VALUE` (a nil value is `setfattr -x`).
    public func setxattr(_ path: String, _ name: String, _ value: String?) async throws {
        try await fileSystem.setxattr(try await node(path).ino, name: name, value: value)
    }

    /// `crmfs sync`: returns once everything written so far is sent.
    public func sync() async throws {
        try await fileSystem.sendEverything()
    }
}

/// The errno a call fails with, 0 when it succeeds.
public enum Errno {
    public static func of(_ body: () async throws -> Void) async -> Int32 {
        do {
            try await body()
            return 0
        } catch {
            return errnoCode(for: error)
        }
    }
}

/// A sandbox and its file system built in process for one test, both torn down afterwards.
/// `editConfig` rewrites the sandbox's generated mount.conf first (link models, policies, writeback settings).
public func withFileSystem<T>(records: Int = 12, docsPerRecord: Int = 2, largeFile: Int64? = nil, options: [String] = [],
                              configure: (inout SandboxOptions) -> Void = { _ in }, editConfig: ((String) -> String)? = nil,
                              _ body: (FileSystemFixture) async throws -> T) async throws -> T {
    // The sandbox is a process of its own, as for the kernel tests: its work (a 10,000-record query, say)
    // must not hold the task pool the other in-process suites' sandboxes and clients run on.
    try await withSandbox(records: records, docsPerRecord: docsPerRecord, largeFile: largeFile, separateProcess: true,
                          configure: configure) { sandbox in
        if let editConfig {
            let text = try String(contentsOfFile: sandbox.configPath, encoding: .utf8)
            try editConfig(text).write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
        }
        let fixture = try await FileSystemFixture.build(sandbox, options: options)
        do {
            let result = try await body(fixture)
            await fixture.close()
            return result
        } catch {
            await fixture.close()
            throw error
        }
    }
}
