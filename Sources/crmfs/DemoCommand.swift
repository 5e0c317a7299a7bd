import ArgumentParser
import Config
import FileSystem
import Foundation
import Logging
import Sandbox

/// `crmfs demo [MOUNTPOINT]`: a sandbox with the demo tenant in a temporary directory, mounted,
/// with a first look and what to try; Ctrl-C unmounts and removes both.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Mount a sandbox's demo tenant (default at /tmp/crmfs-demo) and show it; Ctrl-C ends it.")

    @Argument(help: "Where to mount.")
    var mountpoint = "/tmp/crmfs-demo"

    @Option(help: "Records per object.")
    var records = 40

    func run() async throws {
        CRMFS.bootstrapLogging(level: .warning)
        let mountpointPath = URL(fileURLWithPath: mountpoint).standardizedFileURL.path
        try Self.ownDirectory(mountpointPath)
        // A fresh, private directory (mkdtemp): a name another user could guess and make first is never used.
        var template = Array(FileManager.default.temporaryDirectory.appendingPathComponent("crmfs-demo-state-XXXXXX").path.utf8CString)
        guard mkdtemp(&template) != nil else { CRMFS.fail("could not make a temporary directory: \(String(cString: strerror(errno)))") }
        let state = URL(fileURLWithPath: String(cString: template))
        defer { try? FileManager.default.removeItem(at: state) }

        var options = SandboxOptions(stateDirectory: state)
        options.seed = SeedOptions(records: records)
        let server = try await SandboxServer.start(options: options)
        let config = try ConfigLoader.load(path: try server.writeMountConfig().path)
        let mount = try await Mounter(config: config, mountpoint: mountpointPath, options: ParsedMountOptions()).prepare()
        let status = await Mounter.serve(mount, at: mountpointPath) { result in
            switch result {
            case .success:
                // A thread of its own: the look below goes through the kernel back into this process.
                Thread { Self.show(mountpointPath, sandbox: server.baseURL) }.start()
            case .failure(let error):
                FileHandle.standardError.write(Data("crmfs demo: \(error)\n".utf8))
            }
        }
        await server.stop()
        if status != 0 { throw ExitCode(status) }
        print("unmounted \(mountpointPath); sandbox stopped")
    }

    /// The mount point, made if missing; refused when it is a symbolic link or another user's (in /tmp,
    /// anyone can make `/tmp/crmfs-demo` first).
    static func ownDirectory(_ path: String) throws {
        try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        if mkdir(path, 0o755) != 0 && errno != EEXIST {
            CRMFS.fail("cannot make \(path): \(String(cString: strerror(errno)))")
        }
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            CRMFS.fail("\(path) is not a directory (a symbolic link is not followed): give another mount point")
        }
        guard info.st_uid == geteuid() else {
            CRMFS.fail("\(path) belongs to uid \(info.st_uid), not to you: give another mount point")
        }
    }

    static func show(_ mountpoint: String, sandbox: String) {
        let quoted = "'\(mountpoint)'"
        let look = """
            echo "crmfs demo: the sandbox tenant (\(sandbox)) is mounted at \(mountpoint)"; echo
            echo "\\$ ls \(mountpoint)"; ls \(quoted); echo
            echo "\\$ ls \(mountpoint)/Accounts | head -5"; ls \(quoted)/Accounts | head -5; echo
            echo "\\$ ls -lR '\(mountpoint)/Accounts/Acme Corp'"; ls -lR \(quoted)/Accounts/'Acme Corp'; echo
            echo "\\$ getfattr -d '\(mountpoint)/Accounts/Acme Corp/Contracts/MSA-2026.pdf' | head -8"
            getfattr -d \(quoted)/Accounts/'Acme Corp'/Contracts/MSA-2026.pdf 2>/dev/null | head -8; echo
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", look]
        try? process.run()
        process.waitUntilExit()
        print("""
            Try:
              ls -l \(mountpoint)/Opportunities
              getfattr -d \(mountpoint)/Accounts/'Acme Corp'
              rsync -a \(mountpoint)/Accounts/'Acme Corp'/ /tmp/acme-copy/
              curl -s \(sandbox)/_sandbox/stats
            Ctrl-C unmounts and stops the sandbox.
            """)
        fflush(nil)
    }
}
