import CLinux
import Foundation

/// A child process started with posix_spawn and reaped with waitpid: no run loops, no SIGCHLD sources.
/// (Foundation's Process sometimes never noticed a child that exited quickly after detaching its own child.)
public final class Subprocess: @unchecked Sendable {
    public let pid: pid_t
    /// The read end of the child's stdout, when captured with a pipe.
    public let output: FileHandle?

    public enum Stream { case inherit, null, file(String), pipe }

    public init(_ executable: String, _ arguments: [String], stdout: Stream = .null, stderr: Stream = .null) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        var pipeEnds: [Int32] = [-1, -1]
        func route(_ stream: Stream, to descriptor: Int32) {
            switch stream {
            case .inherit: break
            case .null: posix_spawn_file_actions_addopen(&actions, descriptor, "/dev/null", O_WRONLY, 0)
            case .file(let path): posix_spawn_file_actions_addopen(&actions, descriptor, path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            case .pipe:
                if pipeEnds[0] < 0 { _ = crmfs_pipe_closed_on_exec(&pipeEnds) }
                posix_spawn_file_actions_adddup2(&actions, pipeEnds[1], descriptor)
            }
        }
        route(stdout, to: 1)
        route(stderr, to: 2)
        // Only 0, 1 and 2 go to the child: the test process holds hundreds of sockets and files opened
        // without O_CLOEXEC (libcurl's, NIO's), and a child holding a copy keeps each connection open
        // after the test closed it (a server's close never reached its peer).
        crmfs_spawn_close_from(&actions, 3)
        let path = executable.hasPrefix("/") ? executable : Self.which(executable)
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        // A process group of its own, so a program that outruns its time is killed with its children;
        // no signal blocked and the usual ones at their defaults, as from a shell (the spawning thread
        // may be one of the runtime's, which block signals).
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attributes, 0)
        var none = sigset_t(), usual = sigset_t()
        sigemptyset(&none)
        sigemptyset(&usual)
        for signal in [SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGPIPE] { sigaddset(&usual, signal) }
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &usual)
        var child: pid_t = 0
        let status = posix_spawn(&child, path, &actions, &attributes, argv, environ)
        if pipeEnds[1] >= 0 { close(pipeEnds[1]) }
        guard status == 0 else { throw MountFailure(message: "cannot start \(path): \(String(cString: strerror(status)))") }
        pid = child
        output = pipeEnds[0] >= 0 ? FileHandle(fileDescriptor: pipeEnds[0], closeOnDealloc: true) : nil
    }

    public func signal(_ number: Int32) { kill(pid, number) }

    /// Signals the child and every process it started that stayed in its group.
    public func signalGroup(_ number: Int32) { kill(-pid, number) }

    /// Blocks until the child exits; its exit status, or 128 + the signal that ended it.
    public func waitBlocking() -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    public func wait() async -> Int32 {
        (try? await Tools.blocking { self.waitBlocking() }) ?? -1
    }

    /// Reads stdout until a line containing `marker` arrives (or the stream ends); returns what was read.
    public func readOutput(until marker: String) async -> String {
        guard let output else { return "" }
        return (try? await Tools.blocking { () -> String in
            var collected = Data()
            while !String(decoding: collected, as: UTF8.self).contains(marker) {
                let chunk = output.availableData
                if chunk.isEmpty { break }
                collected.append(chunk)
            }
            return String(decoding: collected, as: UTF8.self)
        }) ?? ""
    }

    static func which(_ name: String) -> String {
        for directory in ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
            let path = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return "/usr/bin/\(name)"
    }
}
