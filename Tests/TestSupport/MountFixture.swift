import Foundation

/// A real mount of a sandbox tenant: the crmfs binary, detached as a user runs it, through the kernel.
public final class MountFixture: Sendable {
    public let sandbox: SandboxFixture
    public let mountpoint: String
    /// The mount's state directory (journal, staged files, log).
    public let stateDirectory: String

    /// `config`: another mount.conf than the sandbox's own (another user's, say).
    public static func mount(_ sandbox: SandboxFixture, config: String? = nil, options: [String] = [], at mountpoint: String? = nil) async throws -> MountFixture {
        let path = mountpoint ?? FileManager.default.temporaryDirectory.appendingPathComponent("crmfs-mnt-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        // CRMFS_TEST_MOUNT_VERBOSE=1: every mount logs at debug level (each request, each journal step).
        let verbose = ProcessInfo.processInfo.environment["CRMFS_TEST_MOUNT_VERBOSE"] == "1" ? ["-v"] : []
        let arguments = ["mount", config ?? sandbox.configPath, path] + options.flatMap { ["-o", $0] } + verbose
        let result = try await Tools.run(Tools.crmfs, arguments)
        guard result.status == 0 else {
            throw MountFailure(message: "crmfs mount exited \(result.status): \(result.errors)")
        }
        return MountFixture(sandbox: sandbox, mountpoint: path, stateDirectory: try stateDirectory(of: config ?? sandbox.configPath))
    }

    /// `[cache] directory` of a sandbox-made config (relative to the config's folder).
    private static func stateDirectory(of config: String) throws -> String {
        let text = try String(contentsOfFile: config, encoding: .utf8)
        let line = text.split(separator: "\n").first { $0.hasPrefix("directory = \"") }
        let value = line.map { String($0.dropFirst("directory = \"".count).dropLast()) } ?? "crmfs-state"
        return value.hasPrefix("/") ? value : ((config as NSString).deletingLastPathComponent as NSString).appendingPathComponent(value)
    }

    /// Mounts, runs `body`, and unmounts whatever happens in it (a test that fails must not leave a mount behind).
    public static func using<T>(_ sandbox: SandboxFixture, config: String? = nil, options: [String] = [],
                                _ body: (MountFixture) async throws -> T) async throws -> T {
        let mount = try await mount(sandbox, config: config, options: options)
        do {
            let result = try await body(mount)
            await mount.unmount()
            return result
        } catch {
            await mount.unmount()
            throw error
        }
    }

    private init(sandbox: SandboxFixture, mountpoint: String, stateDirectory: String) {
        self.sandbox = sandbox
        self.mountpoint = mountpoint
        self.stateDirectory = stateDirectory
    }

    public func path(_ relative: String) -> String { "\(mountpoint)/\(relative)" }

    /// The daemon serving this mount (found by its command line).
    public func daemonPID() async throws -> Int32? {
        let found = try await Tools.run("/usr/bin/pgrep", ["-f", "crmfs mount .* \(mountpoint) -f"])
        return found.output.split(separator: "\n").first.flatMap { Int32($0.trimmingCharacters(in: .whitespaces)) }
    }

    /// `crmfs sync` on this mount: waits until every change is sent.
    /// On failure its `errors` end with the daemon's last log lines, to say which change gave up and why.
    /// Past `timeLimit` it is killed and fails (status 124).
    public func sync(timeLimit: Duration = Tools.defaultTimeLimit) async throws -> Tools.Result {
        var result = try await Tools.run(Tools.crmfs, ["sync", mountpoint], timeLimit: timeLimit)
        if result.status != 0 { result.errors += "\n--- crmfs.log ---\n" + logTail() }
        return result
    }

    /// The last lines of the daemon's log.
    public func logTail(lines: Int = 40) -> String {
        let log = (try? String(contentsOfFile: "\(stateDirectory)/crmfs.log", encoding: .utf8)) ?? ""
        return log.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    /// Unmounts, retrying while the kernel still calls the mount busy (a reader's last requests can be in
    /// flight just after its close), then lazily: no test leaves a mount or a daemon behind. Waits for the
    /// daemon to end (it keeps the tree on its way out), so a mount after this one finds what it kept.
    public func unmount() async {
        let daemon = try? await daemonPID()
        for _ in 0..<50 where Self.isMounted(mountpoint) {
            _ = try? await Tools.run("/bin/umount", [mountpoint])
            if Self.isMounted(mountpoint) { try? await Task.sleep(for: .milliseconds(100)) }
        }
        if Self.isMounted(mountpoint) { _ = try? await Tools.run("/bin/umount", ["-l", mountpoint]) }
        if let daemon {
            for _ in 0..<600 where kill(daemon, 0) == 0 { try? await Task.sleep(for: .milliseconds(100)) }
        }
        try? FileManager.default.removeItem(atPath: mountpoint)
    }

    public static func isMounted(_ path: String) -> Bool {
        guard let table = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return false }
        return table.split(separator: "\n").contains { $0.split(separator: " ").count > 4 && $0.split(separator: " ")[4] == path }
    }
}

public struct MountFailure: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
    public init(message: String) { self.message = message }
}

/// A sandbox and a mount of it for one test, both torn down afterwards.
/// `editConfig` rewrites the sandbox's generated mount.conf first (link models, policies, writeback settings).
public func withMount<T>(records: Int = 12, docsPerRecord: Int = 2, largeFile: Int64? = nil, bulkFolder: Int? = nil,
                         options: [String] = [], configure: (inout SandboxOptions) -> Void = { _ in },
                         editConfig: ((String) -> String)? = nil,
                         _ body: (MountFixture) async throws -> T) async throws -> T {
    try await withSandbox(records: records, docsPerRecord: docsPerRecord, largeFile: largeFile, bulkFolder: bulkFolder,
                          separateProcess: true, configure: configure) { sandbox in
        if let editConfig {
            let text = try String(contentsOfFile: sandbox.configPath, encoding: .utf8)
            try editConfig(text).write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
        }
        return try await MountFixture.using(sandbox, options: options, body)
    }
}

import Sandbox
