import ArgumentParser
import Config
import Foundation
import Status

/// `crmfs status [MOUNTPOINT]`: what one mount, or each of the user's mounts, is doing, asked of the
/// daemon on its status socket in the state directory (which only the user can reach).
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show what your mounts are doing: sign-in, uploads, changes waiting or failed, freshness, budgets, cache.",
        discussion: """
            Without MOUNTPOINT, every crmfs mount of yours. --json prints the same facts for scripts (one object \
            for a MOUNTPOINT, {"mounts": [...]} otherwise; with --watch, one document per line). Exits 1 when a \
            mount does not answer or none is running.
            """)

    @Argument(help: "A crmfs mount point (default: all of yours).")
    var mountpoint: String?

    @Flag(help: "Print JSON.")
    var json = false

    @Flag(help: "Show it again every --interval seconds until interrupted (redrawn in place on a terminal).")
    var watch = false

    @Option(help: "Seconds between updates with --watch.")
    var interval: Double = 1

    func run() async throws {
        let mounts = try RunningMounts.find(mountpoint: mountpoint)
        guard !mounts.isEmpty else {
            FileHandle.standardError.write(Data("crmfs status: \(mountpoint.map { "\($0) is not a crmfs mount of yours" } ?? "no crmfs mount of yours is running")\n".utf8))
            throw ExitCode(1)
        }
        let terminal = isatty(STDOUT_FILENO) == 1
        while true {
            var statuses: [MountStatus] = []
            var unreachable: [String] = []
            for mount in mounts {
                do { statuses.append(try await StatusClient.fetch(from: mount.socket)) } catch { unreachable.append("\(mount.mountpoint): \(error)") }
            }
            var output = json ? try jsonText(statuses) : statuses.map { StatusText.render($0) }.joined(separator: "\n\n")
            if !json { for line in unreachable { output += "\n\(line)" } }
            if watch && terminal && !json { output = "\u{1B}[H\u{1B}[2J" + output }
            try Self.write(output + "\n")
            for line in unreachable where json { FileHandle.standardError.write(Data("crmfs status: \(line)\n".utf8)) }
            guard watch else {
                if !unreachable.isEmpty { throw ExitCode(1) }
                return
            }
            if !terminal && !json { try Self.write("\n") }
            try await Task.sleep(for: .seconds(max(0.2, interval)))
        }
    }

    /// Writes to stdout; a reader that went away (`| head`) ends the command quietly.
    private static func write(_ text: String) throws {
        do { try FileHandle.standardOutput.write(contentsOf: Data(text.utf8)) } catch { throw ExitCode.success }
    }

    private func jsonText(_ statuses: [MountStatus]) throws -> String {
        let data: Data
        if mountpoint != nil, let only = statuses.first {
            data = try MountStatus.encoder.encode(only)
        } else {
            data = try MountStatus.encoder.encode(["mounts": statuses])
        }
        return String(decoding: data, as: UTF8.self)
    }
}

/// The crmfs mounts the user runs, found by their daemons (`crmfs mount CONFIG MOUNTPOINT -f`, the user's
/// own processes), each with its status socket.
enum RunningMounts {
    struct Mount {
        var mountpoint: String
        var config: String
        var socket: String
    }

    static func find(mountpoint: String?) throws -> [Mount] {
        let wanted = mountpoint.map { URL(fileURLWithPath: $0).standardizedFileURL.resolvingSymlinksInPath().path }
        var mounts: [Mount] = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where Int32(entry) != nil {
            var info = stat()
            guard stat("/proc/\(entry)", &info) == 0, info.st_uid == getuid(),
                  let raw = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { continue }
            let arguments = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            let program = arguments.first.map { ($0 as NSString).lastPathComponent } ?? ""
            guard program == "crmfs" || program == "mount.crmfs", arguments.count >= 5, arguments[1] == "mount", arguments.contains("-f") else { continue }
            let point = arguments[3]
            if let wanted, point != wanted { continue }
            guard let config = try? ConfigLoader.load(path: arguments[2]) else { continue }
            let state = config.resolve(config.cache.directory)
            mounts.append(Mount(mountpoint: point, config: arguments[2], socket: (state as NSString).appendingPathComponent(MountStatus.socketName)))
        }
        return mounts.sorted { $0.mountpoint < $1.mountpoint }
    }
}
