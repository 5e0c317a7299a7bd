import CLinux
import Foundation
import Testing
import TestSupport

@Suite("extended attributes", .serialized)
struct ExtendedAttributeTests {
    @Test("a missing attribute is ENODATA, another namespace ENOTSUP, setting one on a read-only mount EROFS: never EIO")
    func errnos() async throws {
        try await withMount(options: ["ro"]) { mount in
            let path = mount.path("Accounts/Acme Corp/Contracts/MSA-2026.pdf")
            let codes = try await Tools.blocking { () -> [Int32] in
                var results: [Int32] = []
                errno = 0; _ = getxattr(path, "user.crm.NoSuchField", nil, 0); results.append(errno)
                errno = 0; _ = getxattr(path, "trusted.something", nil, 0); results.append(errno)
                errno = 0; _ = setxattr(path, "user.sp.Customer", "x", 1, 0); results.append(errno)
                errno = 0; _ = removexattr(path, "user.sp.Customer"); results.append(errno)
                var small = [CChar](repeating: 0, count: 2)
                errno = 0; _ = getxattr(path, "user.crmfs.item_id", &small, 2); results.append(errno)
                return results
            }
            #expect(codes == [ENODATA, EOPNOTSUPP, EROFS, EROFS, ERANGE])
        }
    }
}

@Suite("mount behaviour", .serialized)
struct MountBehaviourTests {
    @Test("with -o ro, writes of every kind answer EROFS")
    func readOnly() async throws {
        try await withMount(options: ["ro"]) { mount in
            let record = mount.path("Accounts/Acme Corp")
            let codes = try await Tools.blocking { () -> [Int32] in
                var results: [Int32] = []
                errno = 0; _ = open("\(record)/new.txt", O_WRONLY | O_CREAT, 0o644); results.append(errno)
                errno = 0; _ = open("\(record)/Contracts/MSA-2026.pdf", O_WRONLY); results.append(errno)
                errno = 0; _ = mkdir("\(record)/New Folder", 0o755); results.append(errno)
                errno = 0; _ = unlink("\(record)/Contracts/MSA-2026.pdf"); results.append(errno)
                errno = 0; _ = rename("\(record)/Contracts/MSA-2026.pdf", "\(record)/Contracts/x.pdf"); results.append(errno)
                return results
            }
            #expect(codes == [EROFS, EROFS, EROFS, EROFS, EROFS])
            let touch = try await Tools.run("touch", ["\(record)/x"])
            #expect(touch.status != 0 && touch.errors.contains("Read-only file system"))
            let file = try FileManager.default.attributesOfItem(atPath: "\(record)/Contracts/MSA-2026.pdf")
            #expect((file[.posixPermissions] as? Int) == 0o444)
            let disk = try FileManager.default.attributesOfFileSystem(forPath: mount.mountpoint)
            #expect((disk[.systemFreeSize] as? NSNumber)?.int64Value == 0, "a read-only mount has no room")
        }
    }

    @Test("a second mount on a busy mount point fails with a clear message")
    func busyMountpoint() async throws {
        try await withMount { mount in
            let again = try await Tools.run(Tools.crmfs, ["mount", mount.sandbox.configPath, mount.mountpoint])
            #expect(again.status != 0)
            #expect(again.errors.contains("already a mount point"))
        }
    }

    @Test("a second mount of the same state directory fails at once, naming the directory and the running mount")
    func stateDirectoryLocked() async throws {
        try await withMount { mount in
            let other = try Tools.emptyDirectory("second")
            defer { try? FileManager.default.removeItem(atPath: other) }
            let again = try await Tools.run(Tools.crmfs, ["mount", mount.sandbox.configPath, other])
            #expect(again.status != 0)
            #expect(again.errors.contains("state directory \(mount.stateDirectory) is in use"), "\(again.errors)")
            #expect(again.errors.contains(mount.mountpoint), "\(again.errors)")
            #expect(!MountFixture.isMounted(other))
            // The first mount is unharmed.
            #expect(FileManager.default.fileExists(atPath: mount.path("Accounts")))
        }
    }

    @Test("a state directory open to others, or another user's, is refused; every file the mount keeps is 0600")
    func stateDirectoryPrivate() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1, separateProcess: true) { sandbox in
            let state = sandbox.directory.appendingPathComponent("crmfs-state").path
            try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
            chmod(state, 0o755)
            let mountpoint = try Tools.emptyDirectory("private")
            defer { try? FileManager.default.removeItem(atPath: mountpoint) }
            let refused = try await Tools.run(Tools.crmfs, ["mount", sandbox.configPath, mountpoint])
            if refused.status == 0 { _ = try? await Tools.run("/bin/umount", [mountpoint]) }  // no mount left behind when it fails
            #expect(refused.status != 0)
            #expect(refused.errors.contains("state directory \(state)") && refused.errors.contains("chmod 700"), "\(refused.errors)")
            chmod(state, 0o700)
            #expect(chown(state, 4242, 4242) == 0)
            let foreign = try await Tools.run(Tools.crmfs, ["mount", sandbox.configPath, mountpoint])
            #expect(foreign.status != 0 && foreign.errors.contains("owned by uid 4242"), "\(foreign.errors)")
            #expect(chown(state, 0, 0) == 0)

            let mount = try await MountFixture.mount(sandbox, at: mountpoint)
            let file = mount.path("Accounts/Acme Corp/private.txt")
            try Data("kept to the owner".utf8).write(to: URL(fileURLWithPath: file))
            _ = try await Tools.read(mount.path("Accounts/Acme Corp/Contracts/MSA-2026.pdf"))
            #expect(try await mount.sync().status == 0)
            let listing = try await Tools.shell("find '\(state)' -mindepth 1 -printf '%m %y %p\\n'")
            let entries = listing.output.split(separator: "\n").map { $0.split(separator: " ", maxSplits: 2).map(String.init) }
            #expect(entries.contains { $0[2].hasSuffix("journal.sqlite-wal") })
            #expect(entries.contains { $0[2].contains("/blocks/") })
            for entry in entries {
                #expect(entry[0] == (entry[1] == "d" ? "700" : "600"), "\(entry)")
            }
            await mount.unmount()
        }
    }

    @Test("uid=, gid= and umask= set what every file shows, and the kernel enforces it for other users")
    func ownerOptions() async throws {
        try await withMount(options: ["allow_other", "uid=4242", "gid=4343", "umask=027"]) { mount in
            let directory = try await Tools.run("stat", ["-c", "%u %g %a", mount.path("Accounts/Acme Corp")])
            #expect(directory.output.trimmingCharacters(in: .whitespacesAndNewlines) == "4242 4343 750")
            let file = try await Tools.run("stat", ["-c", "%u %g %a", mount.path("Accounts/Acme Corp/Contracts/MSA-2026.pdf")])
            #expect(file.output.trimmingCharacters(in: .whitespacesAndNewlines) == "4242 4343 640")
            // Another local user (neither owner nor in the group) is kept out by the kernel.
            let outsider = try await Tools.run("setpriv", ["--reuid=4444", "--regid=4444", "--clear-groups", "ls", mount.path("Accounts/Acme Corp")])
            #expect(outsider.status != 0)
            #expect(outsider.errors.contains("Permission denied"), "\(outsider.errors)")
            let owner = try await Tools.run("setpriv", ["--reuid=4242", "--regid=4343", "--clear-groups", "cat", mount.path("Accounts/Acme Corp/Contracts/MSA-2026.pdf")])
            #expect(owner.status == 0, "\(owner.errors)")
        }
    }

    @Test("on an allow_other mount, the audit log names the local user who made each change, not the daemon's")
    func auditNamesTheRequester() async throws {
        try await withMount(records: 2, docsPerRecord: 1, options: ["allow_other", "umask=000"]) { mount in
            let path = mount.path("Accounts/Acme Corp/by-nobody.txt")
            let written = try await Tools.run("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", "echo hello > '\(path)'"])
            #expect(written.status == 0, "\(written.errors)")
            try await expectSynced(mount)
            let audit = try String(contentsOfFile: "\(mount.stateDirectory)/audit.jsonl", encoding: .utf8)
            let line = try #require(audit.split(separator: "\n").first { $0.contains("by-nobody.txt") && $0.contains("\"upload\"") })
            #expect(line.contains("\"user\":\"nobody\""), "\(line)")
        }
    }

    @Test("a size too large for 64 bits in -o is a clear error, not a crash")
    func hugeCacheSize() async throws {
        try await withSandbox(separateProcess: true) { sandbox in
            let mountpoint = try Tools.emptyDirectory("huge")
            defer { try? FileManager.default.removeItem(atPath: mountpoint) }
            let result = try await Tools.run(Tools.crmfs, ["mount", sandbox.configPath, mountpoint, "-o", "cache_size=9000000TiB"])
            #expect(result.status == 64 || result.status == 1, "\(result.status)")
            #expect(result.errors.contains("cache_size"), "\(result.errors)")
        }
    }

    @Test("over HTTPS with the sandbox's own CA in ca_file, a mount reads and writes; without ca_file the unknown CA is refused")
    func httpsWithPrivateCA() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1, separateProcess: true, configure: { $0.tls = true }) { sandbox in
            #expect(sandbox.baseURL.hasPrefix("https://127.0.0.1:"))
            let config = try String(contentsOfFile: sandbox.configPath, encoding: .utf8)
            #expect(config.contains("ca_file = \"ca.pem\""))
            let mount = try await MountFixture.mount(sandbox)
            let contract = try await Tools.read(mount.path("Accounts/Acme Corp/Contracts/MSA-2026.pdf"))
            #expect(!contract.isEmpty)
            #expect(try await Tools.shell("echo 'sent over TLS' > '\(mount.path("Accounts/Acme Corp/tls.txt"))'").status == 0)
            #expect(try await mount.sync().status == 0)
            let connections = try sandbox.connections()
            let driveID = try await sandbox.info()["driveId"]!
            let item = try await connections.graph.item(driveID: driveID, path: "\(SeededPaths.acmeFolder)/tls.txt")
            #expect(try await connections.graph.download(driveID: driveID, itemID: item.id).data == Data("sent over TLS\n".utf8))
            await mount.unmount()

            // The same service without its CA: nothing is sent to a server the system does not trust.
            try config.replacingOccurrences(of: "ca_file = \"ca.pem\"", with: "").write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
            chmod(sandbox.configPath, 0o600)
            let mountpoint = try Tools.emptyDirectory("untrusted")
            defer { try? FileManager.default.removeItem(atPath: mountpoint) }
            let refused = try await Tools.run(Tools.crmfs, ["mount", sandbox.configPath, mountpoint])
            if refused.status == 0 { _ = try? await Tools.run("/bin/umount", [mountpoint]) }  // no mount left behind when it fails
            #expect(refused.status != 0)
            #expect(refused.errors.lowercased().contains("certificate"), "\(refused.errors)")
        }
    }

    @Test("unknown mount options are named; mount(8) and systemd options are accepted")
    func options() async throws {
        try await withSandbox(separateProcess: true) { sandbox in
            let mountpoint = try Tools.emptyDirectory("opts")
            defer { try? FileManager.default.removeItem(atPath: mountpoint) }
            let bad = try await Tools.run(Tools.crmfs, ["mount", sandbox.configPath, mountpoint, "-o", "ro,bogus,colour=red"])
            #expect(bad.status != 0)
            #expect(bad.errors.contains("bogus") && bad.errors.contains("colour=red"))
            let good = try await MountFixture.mount(sandbox, options: ["ro,_netdev,noauto,nofail,defaults,x-systemd.automount,entry_timeout=5"], at: mountpoint)
            #expect(FileManager.default.fileExists(atPath: good.path("Accounts")))
            await good.unmount()
        }
    }

    @Test("mount -t crmfs and umount work through mount.crmfs in /sbin")
    func mountHelper() async throws {
        try await withSandbox(separateProcess: true) { sandbox in
            let helper = "/sbin/mount.crmfs"
            let existing = try? FileManager.default.destinationOfSymbolicLink(atPath: helper)
            if existing == nil { try FileManager.default.createSymbolicLink(atPath: helper, withDestinationPath: Tools.crmfs) }
            defer { if existing == nil { try? FileManager.default.removeItem(atPath: helper) } }
            let mountpoint = try Tools.emptyDirectory("helper")
            defer { try? FileManager.default.removeItem(atPath: mountpoint) }
            let mounted = try await Tools.run("/bin/mount", ["-t", "crmfs", sandbox.configPath, mountpoint, "-o", "ro,_netdev,noauto,x-systemd.automount"])
            #expect(mounted.status == 0, "\(mounted.errors)")
            let listing = try await Tools.run("ls", [mountpoint])
            #expect(listing.output.split(separator: "\n") == ["Accounts", "Cases", "Opportunities"])
            let unmounted = try await Tools.run("/bin/umount", [mountpoint])
            #expect(unmounted.status == 0)
            try await Task.sleep(for: .milliseconds(300))
            #expect(!MountFixture.isMounted(mountpoint))
        }
    }

    @Test("a descriptor the caller of crmfs mount leaves open (a script's lock) stays with the caller: the lock is free once the script ends")
    func callerDescriptorsStayWithTheCaller() async throws {
        try await withSandbox(separateProcess: true) { sandbox in
            let mountpoint = try Tools.emptyDirectory("lock")
            defer { try? FileManager.default.removeItem(atPath: mountpoint) }
            let lock = "\(sandbox.directory.path)/mount.lock"
            // As a script that serialises its mounts does: a lock on descriptor 9 held across `crmfs mount`.
            let script = try await Tools.run("/bin/sh", ["-c", """
                exec 9>'\(lock)' && flock -n 9 && '\(Tools.crmfs)' mount '\(sandbox.configPath)' '\(mountpoint)'
                """])
            #expect(script.status == 0, "\(script.errors)")
            #expect(MountFixture.isMounted(mountpoint))
            let free = try await Tools.run("/usr/bin/flock", ["-n", lock, "true"])
            #expect(free.status == 0, "the mount's daemon holds the lock the script took")
            #expect(try await Tools.run("/bin/umount", [mountpoint]).status == 0)
        }
    }

    @Test("SIGTERM to a foreground mount unmounts and exits cleanly")
    func sigterm() async throws {
        try await withSandbox(separateProcess: true) { sandbox in
            let mountpoint = try Tools.emptyDirectory("term")
            defer { try? FileManager.default.removeItem(atPath: mountpoint) }
            let process = try Subprocess(Tools.crmfs, ["mount", sandbox.configPath, mountpoint, "-f"])
            for _ in 0..<100 where !MountFixture.isMounted(mountpoint) { try await Task.sleep(for: .milliseconds(50)) }
            #expect(MountFixture.isMounted(mountpoint))
            #expect(try await Tools.run("ls", [mountpoint]).status == 0)
            process.signal(SIGTERM)
            #expect(await process.wait() == 0)
            #expect(!MountFixture.isMounted(mountpoint))
        }
    }

    @Test("run by systemd (Type=notify): READY=1 once mounted, STOPPING=1 on SIGTERM, journald log lines without timestamps")
    func systemdService() async throws {
        try await withSandbox(separateProcess: true) { sandbox in
            let mountpoint = try Tools.emptyDirectory("systemd")
            defer { try? FileManager.default.removeItem(atPath: mountpoint) }
            let socketPath = "\(sandbox.directory.path)/notify.sock"
            let listener = try Self.datagramSocket(at: socketPath)
            defer { close(listener) }
            let log = "\(sandbox.directory.path)/journal.log"
            // As systemd starts a service: NOTIFY_SOCKET, and stderr a stream whose device:inode is JOURNAL_STREAM.
            let process = try Subprocess("/bin/sh", ["-c", """
                exec 2>'\(log)'; export NOTIFY_SOCKET='\(socketPath)' JOURNAL_STREAM="$(stat -L -c '%d:%i' /proc/self/fd/2)"
                exec '\(Tools.crmfs)' mount '\(sandbox.configPath)' '\(mountpoint)' --foreground
                """])
            let ready = Self.receive(listener, timeout: 30)
            #expect(ready?.contains("READY=1") == true, "\(ready ?? "nothing")")
            #expect(MountFixture.isMounted(mountpoint), "READY=1 comes once the mount is usable")
            process.signal(SIGTERM)
            #expect(Self.receive(listener, timeout: 30)?.contains("STOPPING=1") == true)
            #expect(await process.wait() == 0)
            // crmfs's own lines (libfuse may add one of its own, such as a second unmount's complaint).
            let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").filter { $0.contains("crmfs.") }
            #expect(!lines.isEmpty && lines.allSatisfy { $0.hasPrefix("<") && $0.dropFirst(3).hasPrefix("crmfs.") }, "\(lines.prefix(5))")
            #expect(!lines.contains { $0.contains("2026-") || $0.contains("T0") && $0.contains("+0000") }, "no timestamps of its own: \(lines.prefix(5))")
        }
    }

    static func datagramSocket(at path: String) throws -> Int32 {
        let descriptor = Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8.prefix($0.count - 1))) }
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard descriptor >= 0, bound == 0 else { throw POSIXError(.EADDRINUSE) }
        return descriptor
    }

    /// One datagram, or nil after `timeout` seconds.
    static func receive(_ descriptor: Int32, timeout: Int32) -> String? {
        var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&entry, 1, timeout * 1000) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = recv(descriptor, &buffer, buffer.count, 0)
        return count > 0 ? String(decoding: buffer[..<count], as: UTF8.self) : nil
    }

    @Test("bad configs fail the mount with the file, the key and the problem", arguments: [
        ("world-readable secret", "graph.client_secret_file"),
        ("unknown object", "objects[0].object"),
        ("unknown field", "objects[1].fields"),
        ("missing key", "graph.tenant"),
        ("wrong type", "objects[0].fields"),
        ("files connect without a data source", "objects[1].link"),
    ])
    func badConfigs(problem: String, key: String) async throws {
        try await withSandbox(separateProcess: true) { sandbox in
            var text = try String(contentsOfFile: sandbox.configPath, encoding: .utf8)
            switch problem {
            case "world-readable secret": chmod(sandbox.directory.appendingPathComponent("secrets/graph-client-secret").path, 0o644)
            case "unknown object": text = text.replacingOccurrences(of: "object = \"Account\"", with: "object = \"Acount\"")
            case "unknown field": text = text.replacingOccurrences(of: "\"StageName\"", with: "\"Stage\"")
            case "missing key": text = text.replacingOccurrences(of: #"tenant = ""#, with: #"# tenant = ""#)
            case "files connect without a data source":
                // Files Connect on Opportunities, in an org whose ExternalDataSource is gone.
                let connections = try sandbox.connections()
                for source in try await connections.salesforce.query("SELECT Id FROM ExternalDataSource") {
                    try await connections.salesforce.delete("ExternalDataSource", id: source.id!)
                }
                if let second = text.range(of: "link = \"folder\"", range: text.range(of: "object = \"Opportunity\"")!.upperBound..<text.endIndex) {
                    text.replaceSubrange(second, with: "link = \"files-connect\"")
                }
            default: text = text.replacingOccurrences(of: #"fields = ["Name", "AccountNumber""#, with: #"fields = "Name"  # ["x", "AccountNumber""#)
            }
            try text.write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
            let mountpoint = try Tools.emptyDirectory("bad")
            defer { try? FileManager.default.removeItem(atPath: mountpoint) }
            let result = try await Tools.run(Tools.crmfs, ["mount", sandbox.configPath, mountpoint])
            #expect(result.status != 0)
            #expect(result.errors.contains(sandbox.configPath), "\(result.errors)")
            #expect(result.errors.contains(key), "\(result.errors)")
            #expect(!MountFixture.isMounted(mountpoint))
        }
    }

    @Test("crmfs check reports one line per check and fails on a problem")
    func check() async throws {
        try await withSandbox(separateProcess: true) { sandbox in
            let good = try await Tools.run(Tools.crmfs, ["check", sandbox.configPath])
            #expect(good.status == 0, "\(good.output)")
            #expect(good.output.split(separator: "\n").allSatisfy { $0.hasPrefix("ok  ") })
            #expect(good.output.contains("document library 'Documents'"))
            var text = try String(contentsOfFile: sandbox.configPath, encoding: .utf8)
            text = text.replacingOccurrences(of: "library = \"Documents\"", with: "library = \"Documnets\"")
            try text.write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
            let bad = try await Tools.run(Tools.crmfs, ["check", sandbox.configPath])
            #expect(bad.status != 0)
            #expect(bad.output.contains("FAIL graph.library"))
        }
    }
}

@Suite("crmfs demo", .serialized)
struct DemoTests {
    @Test("mounts the demo tenant, shows it, and tears down on Ctrl-C")
    func demo() async throws {
        let mountpoint = FileManager.default.temporaryDirectory.appendingPathComponent("demo-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: mountpoint) }
        let process = try Subprocess(Tools.crmfs, ["demo", mountpoint, "--records", "5"], stdout: .pipe)
        let text = await process.readOutput(until: "Ctrl-C unmounts")
        #expect(text.contains("MSA-2026.pdf"))
        #expect(text.contains("user.crm.Name=\"Acme Corp\""))
        #expect(MountFixture.isMounted(mountpoint))
        // The demo mounts in its own process (no `crmfs mount` daemon): `crmfs status` finds it in the mount table.
        let status = try await Tools.run(Tools.crmfs, ["status", mountpoint])  // (other tests' mounts come and go meanwhile)
        #expect(status.status == 0 && status.output.contains("\(mountpoint)  ("), "\(status.output)\(status.errors)")
        process.signal(SIGINT)
        #expect(await process.wait() == 0)
        #expect(!MountFixture.isMounted(mountpoint))
    }
}
