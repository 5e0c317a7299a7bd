import Foundation

/// The built crmfs binary and ordinary command-line tools, run as a user would.
public enum Tools {
    public static var crmfs: String {
        if let override = ProcessInfo.processInfo.environment["CRMFS_BINARY"] { return override }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/crmfs").path
    }

    /// `count` random bytes (from /dev/urandom): contents no compression or deduplication shortens.
    public static func randomBytes(_ count: Int) throws -> Data {
        let source = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/dev/urandom"))
        defer { try? source.close() }
        return try source.read(upToCount: count) ?? Data()
    }

    /// Waits until `condition` holds, checking every `poll`, up to `limit`; whether it did.
    public static func eventually(within limit: Duration, poll: Duration = .milliseconds(50),
                                  _ condition: () async throws -> Bool) async rethrows -> Bool {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try? await Task.sleep(for: poll)
        }
        return try await condition()
    }

    /// `eventually` on a thread that is no task's (a write path hook, on a kernel request's thread).
    public static func eventuallyBlocking(within limit: Duration, _ condition: () -> Bool) -> Bool {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }

    /// A new empty directory under the temporary directory (a mount point, a scratch area); the caller removes it.
    public static func emptyDirectory(_ prefix: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// A small disk of its own (a tmpfs of `size`, say "8m") for `body`, unmounted and removed afterwards
    /// whatever happens: a state directory put on it runs out of room.
    public static func withSmallDisk<T>(size: String, _ body: (String) async throws -> T) async throws -> T {
        let disk = try emptyDirectory("crmfs-disk")
        func eject() async { _ = try? await run("/bin/umount", ["-l", disk]); try? FileManager.default.removeItem(atPath: disk) }
        do {
            let mounted = try await run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(size),mode=0700", "tmpfs", disk])
            guard mounted.status == 0 else { throw SmallDiskError(reason: mounted.errors) }
            let result = try await body(disk)
            await eject()
            return result
        } catch {
            await eject()
            throw error
        }
    }

    struct SmallDiskError: Error { var reason: String }

    /// Bytes free on the disk holding `path`.
    public static func freeBytes(_ path: String) -> Int64 {
        var disk = statvfs()
        guard statvfs(path, &disk) == 0 else { return 0 }
        return Int64(disk.f_bavail) * Int64(disk.f_frsize)
    }

    public struct Result: Sendable {
        public var status: Int32
        public var output: String
        public var errors: String
    }

    /// How long a program may run before it is killed and its run fails: a hung mount fails its test,
    /// not the whole CI run.
    public static let defaultTimeLimit: Duration = .seconds(900)

    /// Runs a program to completion on a thread of its own (it may call back into a mount this process
    /// serves). Past `timeLimit` it is killed: the status is 124, as timeout(1) gives, and `errors` says so.
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], timeLimit: Duration = defaultTimeLimit) async throws -> Result {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("run-\(UUID().uuidString)")
        let outPath = scratch.path + ".out", errPath = scratch.path + ".err"
        defer { unlink(outPath); unlink(errPath) }
        let process = try Subprocess(executable, arguments, stdout: .file(outPath), stderr: .file(errPath))
        // The time limit is kept by a dispatch timer, not a task: it must fire even when every thread of
        // the test process's task pool is blocked (in a syscall on a hung mount, say).
        let killed = Locked(false)
        let watchdog = DispatchWorkItem {
            killed.set(true)
            process.signalGroup(SIGKILL)
        }
        let (seconds, attoseconds) = timeLimit.components
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)), execute: watchdog)
        let status = await process.wait()
        watchdog.cancel()
        func text(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
        if killed.value {
            return Result(status: 124, output: text(outPath),
                          errors: text(errPath) + "\n\(executable) \(arguments.joined(separator: " ")): killed after \(timeLimit)")
        }
        return Result(status: status, output: text(outPath), errors: text(errPath))
    }

    /// `sh -c SCRIPT`.
    @discardableResult
    public static func shell(_ script: String) async throws -> Result { try await run("/bin/sh", ["-c", script]) }

    /// Reads a whole file on a thread of its own, through the kernel.
    public static func read(_ path: String) async throws -> Data {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                do { continuation.resume(returning: try Data(contentsOf: URL(fileURLWithPath: path))) } catch { continuation.resume(throwing: error) }
            }.start()
        }
    }

    /// Runs a blocking body on a thread of its own.
    public static func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Swift.Result { try body() }) }.start()
        }
    }
}

