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
        try FileManager.default.createDirectory(atPath: mountpointPath, withIntermediateDirectories: true)
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("crmfs-demo-state-\(getpid())")
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
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
