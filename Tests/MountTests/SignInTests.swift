import Foundation
import Testing
import TestSupport

/// Each user signs in as themselves (`crmfs login`, the device flow) and the mount acts as them: the sign-ins
/// are kept privately in the state directory, a revoked one answers EACCES (not EIO) and says so in the log
/// until the user signs in again, and `crmfs logout` forgets them.
@Suite("signing in as a user", .serialized)
struct SignInTests {
    /// The sandbox's config with both services signed in to as the user: no app secret at all.
    static func asUser(_ text: String) -> String {
        text.replacingOccurrences(of: "auth = \"client_credentials\"", with: "auth = \"device-code\"")
            .replacingOccurrences(of: "client_secret_file = \"secrets/salesforce-client-secret\"\n", with: "")
            .replacingOccurrences(of: "client_secret_file = \"secrets/graph-client-secret\"", with: "auth = \"device-code\"")
    }

    /// A sandbox whose config signs in as `user` (`editConfig` changes it further), signed in with `crmfs login`
    /// (the sandbox approves the codes as `user`).
    static func withSignedInSandbox<T>(as user: String, records: Int, docsPerRecord: Int = 1, editConfig: (String) -> String = { $0 },
                                       _ body: (SandboxFixture) async throws -> T) async throws -> T {
        try await withSandbox(records: records, docsPerRecord: docsPerRecord, separateProcess: true, configure: {
            $0.approveDeviceCodesAs = user
            $0.deviceCodeInterval = 1
        }) { sandbox in
            let text = editConfig(asUser(try String(contentsOfFile: sandbox.configPath, encoding: .utf8)))
            try text.write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
            let login = try await Tools.run(Tools.crmfs, ["login", sandbox.configPath], timeLimit: .seconds(60))
            #expect(login.status == 0, "\(login.errors)")
            return try await body(sandbox)
        }
    }

    static func mode(_ path: String) -> mode_t? {
        var info = stat()
        return stat(path, &info) == 0 ? info.st_mode & 0o777 : nil
    }

    @Test("login, mount as the user, a revoked sign-in is EACCES until login again, logout forgets")
    func loginMountRevokeLogout() async throws {
        try await withSandbox(records: 3, docsPerRecord: 1, separateProcess: true, configure: {
            $0.approveDeviceCodesAs = "sam"
            $0.deviceCodeInterval = 1
        }) { sandbox in
            let text = try String(contentsOfFile: sandbox.configPath, encoding: .utf8)
            try Self.asUser(text).write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
            let state = sandbox.directory.appendingPathComponent("crmfs-state").path

            let never = sandbox.directory.appendingPathComponent("never").path
            try FileManager.default.createDirectory(atPath: never, withIntermediateDirectories: true)
            let refused = try await Tools.run(Tools.crmfs, ["mount", sandbox.configPath, never])
            #expect(refused.status != 0)
            #expect(refused.errors.contains("graph.auth") && refused.errors.contains("crmfs login"), "\(refused.errors)")

            let login = try await Tools.run(Tools.crmfs, ["login", sandbox.configPath], timeLimit: .seconds(60))
            #expect(login.status == 0, "\(login.errors)")
            #expect(login.output.contains("Signed in to Microsoft 365 (SharePoint) as sam.rivera@contoso.onmicrosoft.com."), "\(login.output)")
            #expect(login.output.contains("Signed in to Salesforce as "), "\(login.output)")
            #expect(Self.mode("\(state)/credentials") == 0o700)
            for service in ["graph", "salesforce"] {
                #expect(Self.mode("\(state)/credentials/\(service)-refresh-token") == 0o600)
            }

            try await MountFixture.using(sandbox) { mount in
                let accounts = try FileManager.default.contentsOfDirectory(atPath: mount.path("Accounts"))
                #expect(accounts.count == 3, "\(accounts)")
                #expect(FileManager.default.fileExists(atPath: mount.path("Accounts/Acme Corp/Contracts/MSA-2026.pdf")), "\(accounts)")

                // An administrator revokes sam's sessions and the access tokens run out: what needs the service
                // (a document's bytes not read yet) is refused with EACCES, and the log says what to do. (The
                // hour runs out for the download URLs a listing gave too: a listing from the service, not from
                // the first enumeration, gave the mount one for this document, which needs no token.)
                let document = mount.path("Accounts/Acme Corp/Contracts/MSA-2026.pdf")
                try await sandbox.admin("users/sam/revoke")
                try await sandbox.admin("tokens/expire")
                try await sandbox.admin("downloads/expire")
                #expect(Self.readErrno(document) == EACCES)
                #expect(mount.logTail().contains("crmfs login"), "\(mount.logTail())")
                let status = try await Tools.run(Tools.crmfs, ["status", mount.mountpoint])
                #expect(status.output.contains("Microsoft 365: NOT SIGNED IN") && status.output.contains("run `crmfs login"), "\(status.output)")

                let again = try await Tools.run(Tools.crmfs, ["login", sandbox.configPath], timeLimit: .seconds(60))
                #expect(again.status == 0, "\(again.errors)")
                #expect(Self.readErrno(document) == 0, "the mount works again without a remount")

                let logout = try await Tools.run(Tools.crmfs, ["logout", sandbox.configPath])
                #expect(logout.status == 0)
                #expect(!FileManager.default.fileExists(atPath: "\(state)/credentials/graph-refresh-token"))
                #expect(!FileManager.default.fileExists(atPath: "\(state)/credentials/salesforce-refresh-token"))
            }
        }
    }

    @Test("signing in as another account forgets what the earlier account's mount kept")
    func anotherAccount() async throws {
        try await withSandbox(records: 3, docsPerRecord: 1, separateProcess: true, configure: { $0.deviceCodeInterval = 1 }) { sandbox in
            let text = try String(contentsOfFile: sandbox.configPath, encoding: .utf8)
            try Self.asUser(text).write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
            let state = sandbox.directory.appendingPathComponent("crmfs-state").path

            let sam = try await Self.login(sandbox, as: "sam")
            #expect(sam.contains("as sam.rivera@contoso.onmicrosoft.com"), "\(sam)")
            try await MountFixture.using(sandbox) { mount in
                let accounts = try FileManager.default.contentsOfDirectory(atPath: mount.path("Accounts"))
                #expect(accounts.count == 3)
                // Not under a running mount: it would go on showing sam's tree with sky's token.
                let refused = try await Self.login(sandbox, as: "sky", expectSuccess: false)
                #expect(refused.contains("in use by a running mount"), "\(refused)")
                #expect(FileManager.default.fileExists(atPath: "\(state)/metadata.sqlite"), "nothing forgotten under the mount")
            }
            #expect(FileManager.default.fileExists(atPath: "\(state)/metadata.sqlite"), "the mount kept its tree")

            let sky = try await Self.login(sandbox, as: "sky")
            #expect(sky.contains("as sky.chen@contoso.onmicrosoft.com") && sky.contains("another account than before (sam.rivera"), "\(sky)")
            #expect(!FileManager.default.fileExists(atPath: "\(state)/metadata.sqlite"), "sam's tree is not shown to sky")
            let skyAgain = try await Self.login(sandbox, as: "sky")
            #expect(!skyAgain.contains("another account"), "\(skyAgain)")

            // A change sky made that could not be sent yet (every request failing) must never go out as sam.
            // (Into a case: sky, a support agent, edits cases and only reads accounts.)
            try await MountFixture.using(sandbox) { skyMount in
                #expect(try FileManager.default.contentsOfDirectory(atPath: skyMount.path("Accounts/Acme Corp/Contracts")).contains("MSA-2026.pdf"))
                let firstCase = try #require(try FileManager.default.contentsOfDirectory(atPath: skyMount.path("Cases")).sorted().first)
                _ = try FileManager.default.contentsOfDirectory(atPath: skyMount.path("Cases/\(firstCase)"))  // listed before the faults
                try await sandbox.admin("faults", ["faults": "503:1"])
                // Written and closed without fsync (which waits for the upload), as `echo >` does.
                let written = try await Tools.run("/bin/sh", ["-c", "echo \"sky's notes\" > '\(skyMount.path("Cases/\(firstCase)/notes.txt"))'"])
                #expect(written.status == 0, "\(written.errors)")
            }
            try await sandbox.admin("faults", ["faults": ""])
            let refused = try await Self.login(sandbox, as: "sam", expectSuccess: false)
            #expect(refused.contains("still wait to be sent") && refused.contains("sky.chen@"), "\(refused)")
            let kept = try String(contentsOfFile: "\(state)/credentials/graph-account", encoding: .utf8)
            #expect(kept.contains("sky.chen@"), "the refused sign-in changed nothing")
        }
    }

    @Test("allow_other under a user's own sign-in is refused unless umask, uid or gid says who may see the mount")
    func allowOtherNeedsOwnership() async throws {
        try await Self.withSignedInSandbox(as: "sam", records: 2) { sandbox in
            let mountpoint = try Tools.emptyDirectory("crmfs-allow-other")
            defer { try? FileManager.default.removeItem(atPath: mountpoint) }
            let refused = try await Tools.run(Tools.crmfs, ["mount", sandbox.configPath, mountpoint, "-o", "allow_other"])
            #expect(refused.status != 0 && refused.errors.contains("umask=077"), "\(refused.errors)")
            #expect(!MountFixture.isMounted(mountpoint))
            try await MountFixture.using(sandbox, options: ["allow_other", "umask=077"]) { mount in
                #expect(Self.mode(mount.path("Accounts")) == 0o700)
            }
        }
    }

    /// `crmfs login` with each code it prints approved as `user` on the sandbox's verification side; its output.
    static func login(_ sandbox: SandboxFixture, as user: String, config: String? = nil, expectSuccess: Bool = true) async throws -> String {
        let output = sandbox.directory.appendingPathComponent("login-\(UUID().uuidString).out").path
        let process = try Subprocess(Tools.crmfs, ["login", config ?? sandbox.configPath], stdout: .file(output), stderr: .file(output + ".err"))
        let exited = Task { await process.wait() }
        var approved = Set<String>()
        for _ in 0..<300 where approved.count < (expectSuccess ? 2 : 1) {
            let waiting = try await sandbox.adminGet("device")["waiting"] as? [[String: Any]] ?? []
            for code in waiting.compactMap({ $0["userCode"] as? String }) where !approved.contains(code) {
                try await sandbox.admin("device", ["userCode": code, "user": user])
                approved.insert(code)
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        let watchdog = Task {  // a sign-in that never finishes fails the test, not the run
            try await Task.sleep(for: .seconds(60))
            process.signal(SIGKILL)
        }
        let status = await exited.value
        watchdog.cancel()
        let errors = (try? String(contentsOfFile: output + ".err", encoding: .utf8)) ?? ""
        if expectSuccess {
            #expect(status == 0, "\(errors)")
            return try String(contentsOfFile: output, encoding: .utf8)
        }
        #expect(status != 0)
        return errors
    }

    /// The errno of reading `path` to its end (0 when it reads).
    static func readErrno(_ path: String) -> Int32 {
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else { return errno }
        defer { close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = read(descriptor, &buffer, buffer.count)
            if count < 0 { return errno }
            if count == 0 { return 0 }
        }
    }
}
