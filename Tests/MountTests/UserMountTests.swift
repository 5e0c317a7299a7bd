import Foundation
import Sandbox
import Testing
import TestSupport

/// A user mounts without root, as on a workstation: the config in `~/.config/crmfs/NAME.conf`, named by
/// NAME alone; the state in `~/.local/state/crmfs/NAME` (0700, theirs); the mount through fusermount3,
/// owned by them, unmounted by `fusermount3 -u`. The kernel enforces the mode bits for them, so a record
/// they may only read refuses a write before crmfs is even asked.
@Suite("mounting as an ordinary user", .serialized)
struct UserMountTests {
    static let nobody: uid_t = 65534

    /// Runs `script` with /bin/sh as uid and gid 65534 (nobody), HOME set to `home`.
    static func asNobody(_ home: String, _ script: String) async throws -> Tools.Result {
        try await Tools.run("/usr/bin/setpriv", ["--reuid=\(nobody)", "--regid=\(nobody)", "--clear-groups",
                                                 "/usr/bin/env", "HOME=\(home)", "PATH=/usr/bin:/bin", "/bin/sh", "-c", script],
                            timeLimit: .seconds(120))
    }

    @Test("login, mount, write, sync and unmount as a user without root, with per-user default paths")
    func nonRootMount() async throws {
        // Debian's udev rules open /dev/fuse to everyone (0666); this machine's is root's alone.
        chmod("/dev/fuse", 0o666)
        try await withSandbox(records: 3, docsPerRecord: 1, separateProcess: true, configure: {
            $0.approveDeviceCodesAs = "sam"
            $0.deviceCodeInterval = 1
        }) { sandbox in
            let home = try Tools.emptyDirectory("crmfs-home")
            defer { try? FileManager.default.removeItem(atPath: home) }
            let configDirectory = "\(home)/.config/crmfs"
            try FileManager.default.createDirectory(atPath: configDirectory, withIntermediateDirectories: true)
            // The sandbox's config as a user's: their own sign-in, and no state directory named.
            let text = SignInTests.asUser(try String(contentsOfFile: sandbox.configPath, encoding: .utf8))
                .split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix("directory = \"crmfs-state\"") }
                .joined(separator: "\n")
            try text.write(toFile: "\(configDirectory)/sales.conf", atomically: true, encoding: .utf8)
            chmod("\(configDirectory)/sales.conf", 0o600)
            #expect(try await Tools.run("/bin/chown", ["-R", "\(Self.nobody):\(Self.nobody)", home]).status == 0)
            chmod(home, 0o755)

            let crmfs = Tools.crmfs
            let mountpoint = "\(home)/crm"
            let session = try await Self.asNobody(home, """
                set -e
                '\(crmfs)' login sales >/dev/null
                mkdir '\(mountpoint)'
                '\(crmfs)' mount sales '\(mountpoint)'
                stat -c '%u %a' '\(mountpoint)/Accounts/Acme Corp'
                echo 'from a user' > '\(mountpoint)/Accounts/Acme Corp/hello.txt'
                '\(crmfs)' sync '\(mountpoint)'
                getfattr --only-values -n user.crmfs.sync '\(mountpoint)/Accounts/Acme Corp/hello.txt'; echo
                if echo x > '\(mountpoint)/Accounts/Smith_Wesson Partners/x.txt' 2>/dev/null; then echo wrote; else echo refused; fi
                stat -c '%U %a' "$HOME/.local/state/crmfs/sales"
                fusermount3 -u '\(mountpoint)'
                """)
            if MountFixture.isMounted(mountpoint) { _ = try await Tools.run("/bin/umount", ["-l", mountpoint]) }  // a failed run leaves nothing
            #expect(session.status == 0, "\(session.errors)")
            let lines = session.output.split(separator: "\n").map(String.init)
            #expect(lines.first?.hasPrefix("\(Self.nobody) 7") == true, "the user's own, writable: \(lines)")
            #expect(lines.contains("clean"), "\(lines)")
            #expect(lines.contains("refused"), "morgan's account is read-only for sam, and the kernel says so: \(lines)")
            #expect(lines.contains("nobody 700"), "\(lines)")
            #expect(!MountFixture.isMounted(mountpoint))
            let uploaded = try await sandbox.connections().graph.item(driveID: try await sandbox.info()["driveId"]!,
                                                                      path: "Accounts/Acme Corp (\(SalesforceID.make(prefix: "001", serial: 1)))/hello.txt")
            #expect(uploaded.size == 12)
        }
    }
}
