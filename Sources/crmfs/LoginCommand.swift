import ArgumentParser
import Config
import Foundation
import HTTP
import Services

/// `crmfs login CONFIG`: signs the user in to each service the config reaches as the user
/// (`auth = "device-code"`), with the device flow, and keeps the refresh tokens in the state directory.
struct LoginCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "login",
        abstract: "Sign in as yourself to the services a mount configuration reaches with auth = \"device-code\".",
        discussion: """
            For each service, crmfs prints a web address and a code: open the address on any device, enter the \
            code and sign in. The refresh tokens are kept in the state directory's credentials/ (0600 files in \
            a 0700 directory, owned by you); a running mount picks them up at its next request.
            """)

    @Argument(help: "The mount configuration: a path, or NAME for ~/.config/crmfs/NAME.conf.")
    var config: String

    func run() async throws {
        Hardening.noCoreDumps()  // it holds the refresh tokens it gets
        CRMFS.bootstrapLogging(level: .critical)
        let loaded = try CRMFS.loadConfig(config)
        let services = loaded.userSignIns
        guard !services.isEmpty else {
            CRMFS.fail("\(config): nothing to sign in to: neither graph.auth nor salesforce.auth is \"device-code\" (the app's own credentials are used)")
        }
        try Self.makePrivateDirectory(loaded.credentialsDirectory)
        // Sign-in sends no bearer token: only the device-code and token requests, to the configured services.
        let http = HTTPClient(transport: CurlTransport(options: Connections.transportOptions(loaded)))
        for service in services {
            let signIn = switch service {
            case .graph:
                DeviceCodeSignIn(service: .entra(authority: loaded.graph.authority, tenant: loaded.graph.tenant),
                                 clientID: loaded.graph.clientID, scope: EntraRefreshToken.userScope)
            case .salesforce:
                DeviceCodeSignIn(service: .salesforce(loginURL: loaded.salesforce.instanceURL), clientID: loaded.salesforce.clientID, scope: "api refresh_token")
            }
            print("Signing in to \(service.displayName)…")
            fflush(nil)
            let result: DeviceCodeSignIn.Result
            do {
                result = try await signIn.run(using: http) { prompt in
                    print(CRMFS.printable(prompt.message))
                    fflush(nil)
                }
            } catch {
                CRMFS.fail("sign-in to \(service.displayName) failed: \(error)")
            }
            try Self.switchAccount(of: service, to: result.account, config: loaded)
            try Secret.store(result.refreshToken, file: loaded.refreshTokenFile(service))
            print("Signed in to \(service.displayName)" + (result.account.map { " as \($0)" } ?? "") + ".")
            fflush(nil)
        }
    }

    /// What a state directory kept for the user who signed in before must not show another: when the
    /// account changes, the kept tree and the cached documents are forgotten (the next mount starts cold).
    /// Changes still waiting to be sent as the earlier user refuse the switch: they would go out as the new one.
    static func switchAccount(of service: SignInService, to account: String?, config: MountConfig) throws {
        let accountFile = config.accountFile(service)
        let previous = (try? String(contentsOfFile: accountFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        let current = account ?? "unknown"
        if let previous, previous != current {
            let state = config.resolve(config.cache.directory)
            // A running mount of this state would go on showing the earlier account's tree with the new
            // account's token: the state directory's lock (held by the mount) says whether one runs.
            let lock = open(state + "/lock", O_RDWR | O_CLOEXEC | O_NOFOLLOW)
            defer { if lock >= 0 { close(lock) } }
            if lock >= 0 && flock(lock, LOCK_EX | LOCK_NB) != 0 {
                CRMFS.fail("\(state) is in use by a running mount signed in as \(previous): unmount it first, then sign in as \(current)")
            }
            let staged = (try? FileManager.default.contentsOfDirectory(atPath: state + "/staging")) ?? []
            if !staged.isEmpty {
                CRMFS.fail("changes made as \(previous) still wait to be sent from \(state)/staging: mount as \(previous) and run `crmfs sync` first, or give this sign-in a config with another state directory")
            }
            for kept in ["metadata.sqlite", "metadata.sqlite-wal", "metadata.sqlite-shm"] { unlink(state + "/" + kept) }
            try? FileManager.default.removeItem(atPath: state + "/blocks")
            print("Signed in as another account than before (\(previous)): the kept tree and cached documents are forgotten.")
        }
        try Secret.store(Secret(current), file: accountFile)
    }

    /// Creates `path` as 0700, or tightens it to 0700 when it exists and is the user's.
    static func makePrivateDirectory(_ path: String) throws {
        let previous = umask(0o077)
        defer { umask(previous) }
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var info = stat()
        guard stat(path, &info) == 0, info.st_uid == geteuid() else {
            CRMFS.fail("\(path) belongs to another user: sign-ins are kept only in a directory of your own")
        }
        chmod(path, 0o700)
    }
}

/// `crmfs logout CONFIG`: forgets the user's kept sign-ins.
struct LogoutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logout",
        abstract: "Forget the sign-ins `crmfs login` kept for a mount configuration.",
        discussion: "A running mount answers EACCES from its next token refresh on, until `crmfs login` is run again; nothing staged is lost.")

    @Argument(help: "The mount configuration: a path, or NAME for ~/.config/crmfs/NAME.conf.")
    var config: String

    func run() async throws {
        CRMFS.bootstrapLogging(level: .critical)
        let loaded = try CRMFS.loadConfig(config)
        var forgotten = 0
        for service in SignInService.allCases where unlink(loaded.refreshTokenFile(service)) == 0 {
            print("Signed out of \(service.displayName).")
            forgotten += 1
        }
        if forgotten == 0 { print("No sign-in was kept for \(config).") }
    }
}
