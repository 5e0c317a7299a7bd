import ArgumentParser
import CLinux
import Config
import FileSystem
import Foundation
import Logging

/// `crmfs mount CONFIG MOUNTPOINT [-f] [-o OPTIONS]`; also what `mount -t crmfs` runs, as mount.crmfs.
struct MountCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Mount the CRM tree a config describes.",
        discussion: """
            Without -f, crmfs detaches and returns once the mount is usable, or exits non-zero with the reason.
            Unmount with `umount MOUNTPOINT` or `fusermount3 -u MOUNTPOINT`.
            """)

    @Argument(help: "The mount configuration (see mount.conf.example): a path, or NAME for ~/.config/crmfs/NAME.conf.")
    var config: String

    @Argument(help: "An existing, empty directory.")
    var mountpoint: String

    @Flag(name: .shortAndLong, help: "Stay in the foreground, logging to stderr.")
    var foreground = false

    @Option(name: .customShort("o"), help: "Mount options: ro, allow_other, uid=N, gid=N, umask=OCTAL, entry_timeout=S, attr_timeout=S, cache_size=SIZE, block_size=SIZE, fsname=NAME, debug.")
    var options: [String] = []

    @Flag(name: .shortAndLong, help: "Log debug details.")
    var verbose = false

    /// Set in the detached child: the pipe to tell the waiting parent the outcome.
    static let readyVariable = "CRMFS_READY_FD"

    func run() async throws {
        // Everything the mount writes (journal, staged files, blocks, log) is the user's alone.
        umask(0o077)
        CRMFS.bootstrapLogging(level: verbose ? .debug : .info)
        Hardening.noCoreDumps()
        Hardening.moreOpenFiles()
        let parsed: ParsedMountOptions
        do { parsed = try ParsedMountOptions.parse(options) } catch { throw ValidationError("\(error)") }
        let configPath = UserPaths().config(config)
        let mountpointPath = URL(fileURLWithPath: mountpoint).standardizedFileURL.path

        if !foreground && ProcessInfo.processInfo.environment[Self.readyVariable] == nil {
            throw ExitCode(try Detacher.spawnAndWait(arguments: ["mount", configPath, mountpointPath, "-f"] + options.flatMap { ["-o", $0] } + (verbose ? ["-v"] : []),
                                                     logFile: Self.logFile(for: configPath)))
        }
        let notifier = ReadyNotifier.fromEnvironment(Self.readyVariable)
        do {
            let loaded = try ConfigLoader.load(path: configPath)
            Mounter.bootstrapMetrics(loaded)
            let mount = try await Mounter(config: loaded, mountpoint: mountpointPath, options: parsed).prepare()
            let status = await Mounter.serve(mount, at: mountpointPath) { result in
                switch result {
                case .success:
                    Logger(label: "crmfs.mount").info("mounted", metadata: ["mountpoint": "\(mountpointPath)", "config": "\(configPath)"])
                    notifier.ready()
                    SystemdNotifier.notify("READY=1\nSTATUS=mounted at \(mountpointPath)")
                case .failure(let error):
                    notifier.failed("\(error)")
                }
            }
            SystemdNotifier.notify("STOPPING=1")
            Logger(label: "crmfs.mount").info("unmounted", metadata: ["mountpoint": "\(mountpointPath)"])
            if status != 0 { throw ExitCode(status) }
        } catch let error as ExitCode {
            throw error
        } catch {
            notifier.failed("\(error)")
            FileHandle.standardError.write(Data("crmfs: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    /// Where a detached mount logs: beside its config's state, or in the user's own state home
    /// (`~/.local/state/crmfs/crmfs.log`) when that is not known yet; never a shared directory such as /tmp.
    static func logFile(for configPath: String) -> String {
        let directory: String
        if let config = try? ConfigLoader.load(path: configPath) {
            directory = config.resolve(config.cache.directory)
        } else {
            directory = UserPaths().stateHome
        }
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return directory + "/crmfs.log"
    }
}

/// Starts this program again in the background (new session, log file for output) and waits for it
/// to report that the mount is usable. Re-executing, rather than forking, keeps threads out of it.
enum Detacher {
    /// The descriptor the daemon reports readiness on.
    static let readyDescriptor: Int32 = 3

    static func spawnAndWait(arguments: [String], logFile: String) throws -> Int32 {
        var pipeEnds: [Int32] = [0, 0]
        guard crmfs_pipe_closed_on_exec(&pipeEnds) == 0 else { throw MountError(message: "pipe failed: \(String(cString: strerror(errno)))") }
        let (readEnd, writeEnd) = (pipeEnds[0], pipeEnds[1])

        // The daemon holds its log as 1 and 2, the ready pipe's write end as 3, and nothing else: a
        // descriptor the caller left open (a script's lock file, a socket) must not stay open for as long
        // as the mount lives.
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // The pipe first: a caller started with 0-2 closed gets a pipe end among them, which the log's
        // own actions would replace.
        posix_spawn_file_actions_adddup2(&actions, writeEnd, Self.readyDescriptor)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logFile, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        crmfs_spawn_close_from(&actions, Self.readyDescriptor + 1)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, 0x80)  // POSIX_SPAWN_SETSID (glibc hides it behind _GNU_SOURCE)

        let executable = ProcessInfo.processInfo.arguments[0].contains("/")
            ? URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0]).standardizedFileURL.path
            : "/proc/self/exe"
        let path = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? executable
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var environment = ProcessInfo.processInfo.environment
        environment[MountCommand.readyVariable] = String(Self.readyDescriptor)
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { envp.forEach { free($0) } }

        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
        close(writeEnd)
        guard spawned == 0 else {
            close(readEnd)
            throw MountError(message: "could not start the background process: \(String(cString: strerror(spawned)))")
        }
        var message = Data()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(readEnd, &buffer, buffer.count)
            if count <= 0 { break }
            message.append(contentsOf: buffer[0..<count])
        }
        close(readEnd)
        let text = String(decoding: message, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if text == "ready" { return 0 }
        FileHandle.standardError.write(Data("crmfs: \(text.isEmpty ? "the background process ended before the mount was ready; see \(logFile)" : text.replacingOccurrences(of: "error: ", with: ""))\n".utf8))
        return 1
    }
}

/// The child's side of the readiness pipe. Without one (foreground), it says nothing.
struct ReadyNotifier: Sendable {
    let descriptor: Int32?

    static func fromEnvironment(_ name: String) -> ReadyNotifier {
        ReadyNotifier(descriptor: ProcessInfo.processInfo.environment[name].flatMap(Int32.init))
    }

    func ready() { send("ready") }
    func failed(_ reason: String) { send("error: \(reason)") }

    private func send(_ text: String) {
        guard let descriptor else { return }
        let bytes = Array((text + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        close(descriptor)
    }
}
