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

/// The crmfs mounts the user runs, each with its status socket: found in the mount table (a crmfs mount's
/// source is `crmfs:CONFIG` unless `-o fsname=` changed it) and by their daemons (`crmfs mount CONFIG
/// MOUNTPOINT -f`, the user's own processes), whichever names them.
enum RunningMounts {
    struct Mount {
        var mountpoint: String
        var config: String
        var socket: String
    }

    static func find(mountpoint: String?) throws -> [Mount] {
        let wanted = mountpoint.map { URL(fileURLWithPath: $0).standardizedFileURL.resolvingSymlinksInPath().path }
        var found: [String: Mount] = [:]
        for mount in fromDaemons() + fromMountTable() where wanted.map({ $0 == mount.mountpoint }) ?? true {
            found[mount.mountpoint] = found[mount.mountpoint] ?? mount
        }
        return found.values.sorted { $0.mountpoint < $1.mountpoint }
    }

    /// The crmfs mount point holding `path` (anyone's): the path itself or the nearest one above it.
    static func mountPoint(holding path: String) -> String? {
        let resolved = URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
        return mountTable().map(\.point).filter { point in
            resolved == point || resolved.hasPrefix(point.hasSuffix("/") ? point : point + "/")
        }.max { $0.count < $1.count }
    }

    /// Every `fuse.crmfs` entry of /proc/self/mountinfo: its mount point, source and options.
    private static func mountTable() -> [(point: String, source: String, options: [Substring])] {
        guard let table = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return [] }
        return table.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ").map(String.init)
            guard let dash = fields.firstIndex(of: "-"), fields.count > dash + 3, fields[dash + 1] == "fuse.crmfs" else { return nil }
            return (unescape(fields[4]), fields[dash + 2], fields[dash + 3].split(separator: ","))
        }
    }

    private static func mount(at point: String, config: String) -> Mount? {
        guard let loaded = try? ConfigLoader.load(path: config) else { return nil }
        let state = loaded.resolve(loaded.cache.directory)
        return Mount(mountpoint: point, config: config, socket: (state as NSString).appendingPathComponent(MountStatus.socketName))
    }

    /// `fuse.crmfs` entries of /proc/self/mountinfo mounted by this user, whose source names the config.
    private static func fromMountTable() -> [Mount] {
        mountTable().compactMap { entry in
            guard entry.options.contains(Substring("user_id=\(getuid())")), entry.source.hasPrefix("crmfs:") else { return nil }
            return mount(at: entry.point, config: unescape(String(entry.source.dropFirst("crmfs:".count))))
        }
    }

    /// mountinfo writes space, tab, newline and backslash as octal escapes (`\040`).
    private static func unescape(_ text: String) -> String {
        var result = ""
        var characters = Substring(text)
        while let first = characters.first {
            if first == "\\", characters.count >= 4, let code = UInt8(characters.dropFirst().prefix(3), radix: 8) {
                result.append(Character(UnicodeScalar(code)))
                characters = characters.dropFirst(4)
            } else {
                result.append(first)
                characters = characters.dropFirst()
            }
        }
        return result
    }

    /// The user's `crmfs mount CONFIG MOUNTPOINT -f` daemons.
    private static func fromDaemons() -> [Mount] {
        var mounts: [Mount] = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where Int32(entry) != nil {
            var info = stat()
            guard stat("/proc/\(entry)", &info) == 0, info.st_uid == getuid(),
                  let raw = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { continue }
            let arguments = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            let program = arguments.first.map { ($0 as NSString).lastPathComponent } ?? ""
            guard program == "crmfs" || program == "mount.crmfs", arguments.count >= 5, arguments[1] == "mount", arguments.contains("-f") else { continue }
            if let found = mount(at: arguments[3], config: arguments[2]) { mounts.append(found) }
        }
        return mounts
    }
}
