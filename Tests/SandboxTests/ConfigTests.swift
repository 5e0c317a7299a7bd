import Config
import Foundation
import Testing
import TestSupport

@Suite("mount.conf")
struct ConfigTests {
    static let valid = """
        [salesforce]
        instance_url = "https://contoso.my.salesforce.com"
        client_id = "3MVG9abc"
        client_secret_file = "secrets/sf"

        [graph]
        tenant = "contoso.onmicrosoft.com"
        client_id = "00000000-0000-0000-0000-000000000001"
        client_secret_env = "GRAPH_SECRET"
        site = "contoso.sharepoint.com:/sites/Sales"

        [cache]
        size = "2GiB"

        [writeback]
        fragment_size = "5MiB"
        local_only = ["*.partial", "~$*"]

        [freshness]
        drive_poll = "10s"
        crm_poll = "0"

        [fleet]
        host = "db.contoso.com"
        port = 6432
        user = "crmfs_mount"
        password_env = "CRMFS_FLEET_PASSWORD"
        tls = "require"
        retention = "3d"

        [[objects]]
        object = "Account"
        directory = "Accounts"
        name = "{Name}"
        fields = ["Name", "Industry"]
        folder = "Accounts/{Name} ({Id})"

        [[objects.mappings]]
        crm_field = "Name"
        sp_column = "Customer"

        [[objects.mappings]]
        crm_field = "CreatedDate"
        sp_column = "Opened"
        transform = "date"

        [[objects]]
        object = "Case"
        directory = "Cases"
        name = "{CaseNumber} {Subject}"
        link = "link-object"
        id_field = "Id"
        conflict_policy = "local-wins"
        """

    @Test("plain http is refused for every host but loopback, naming the key")
    func cleartextRefused() throws {
        for (key, line) in [("salesforce.instance_url", "instance_url = \"http://contoso.my.salesforce.com\""),
                            ("graph.endpoint", "endpoint = \"http://graph.example.com/v1.0\""),
                            ("graph.authority", "authority = \"HTTP://login.example.com\"")] {
            let section = key.hasPrefix("graph") ? "[graph]" : "[salesforce]"
            let text = Self.valid.replacingOccurrences(of: section, with: "\(section)\n\(line)")
                .replacingOccurrences(of: "instance_url = \"https://contoso.my.salesforce.com\"\n", with: key.hasPrefix("salesforce") ? "" : "instance_url = \"https://contoso.my.salesforce.com\"\n")
            do {
                _ = try ConfigLoader.parse(text, path: "/etc/crmfs/sales.conf")
                Issue.record("\(line) was accepted")
            } catch let error as ConfigError {
                #expect(error.key == key)
                #expect(error.message.contains("unencrypted"))
            }
        }
        for loopback in ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:80", "http://127.9.9.9"] {
            let text = Self.valid.replacingOccurrences(of: "https://contoso.my.salesforce.com", with: loopback)
            #expect(try ConfigLoader.parse(text, path: "/etc/crmfs/sales.conf").salesforce.instanceURL == loopback)
        }
    }

    @Test("[fleet] tls is require for any host but this machine (prefer there); prefer or disable with a password over the network is refused naming fleet.tls, and crmfs exits non-zero")
    func fleetTLS() async throws {
        func fleet(_ host: String, tls: String?, password: Bool = true) throws -> FleetSettings? {
            var text = Self.valid.replacingOccurrences(of: "host = \"db.contoso.com\"", with: "host = \"\(host)\"")
                .replacingOccurrences(of: "tls = \"require\"\n", with: tls.map { "tls = \"\($0)\"\n" } ?? "")
            if !password { text = text.replacingOccurrences(of: "password_env = \"CRMFS_FLEET_PASSWORD\"\n", with: "") }
            return try ConfigLoader.parse(text, path: "/etc/crmfs/sales.conf").fleet
        }
        #expect(try fleet("db.contoso.com", tls: nil)?.tls == .require, "the default off this machine")
        #expect(try fleet("db.contoso.com", tls: nil, password: false)?.tls == .require)
        #expect(try fleet("10.0.0.5", tls: nil)?.tls == .require)
        for local in ["127.0.0.1", "127.8.0.1", "::1", "localhost", "/run/postgresql"] {
            #expect(try fleet(local, tls: nil)?.tls == .prefer, "the default on this machine: \(local)")
            #expect(try fleet(local, tls: "disable")?.tls == .disable, "\(local)")
        }
        #expect(try fleet("db.contoso.com", tls: "prefer", password: false)?.tls == .prefer, "no password to give away")
        for mode in ["prefer", "disable"] {
            do {
                _ = try fleet("db.contoso.com", tls: mode)
                Issue.record("tls = \(mode) with a password to another host was accepted")
            } catch let error as ConfigError {
                #expect(error.file == "/etc/crmfs/sales.conf")
                #expect(error.key == "fleet.tls")
                #expect(error.line != nil)
                #expect(error.message.contains("unencrypted") && error.message.contains("db.contoso.com") && error.message.contains("require"), "\(error)")
            }
        }
        // Settings made in code are held to the same rule (the fleet's database refuses them too).
        var settings = FleetSettings(host: "db.contoso.com", user: "crmfs_mount")
        #expect(settings.tls == .require)
        #expect(FleetSettings(host: "/run/postgresql", user: "crmfs_mount").tls == .prefer)
        settings.password = .environment("CRMFS_FLEET_PASSWORD")
        #expect(settings.cleartextPasswordProblem == nil)
        settings.tls = .prefer
        #expect(settings.cleartextPasswordProblem != nil)

        // crmfs itself refuses such a config, saying the file and the key, and exits non-zero.
        let directory = try Tools.emptyDirectory("fleet-tls")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/mount.conf"
        try Self.valid.replacingOccurrences(of: "tls = \"require\"", with: "tls = \"prefer\"").write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o600)
        let result = try await Tools.run(Tools.crmfs, ["check", path])
        #expect(result.status != 0)
        let said = result.output + result.errors
        #expect(said.contains(path) && said.contains("fleet.tls") && said.contains("unencrypted"), "\(said)")
    }

    @Test("[metrics] listens on this machine only: a Unix socket or a loopback port; anything else is refused naming the key")
    func metricsListener() throws {
        func parse(_ listen: String) throws -> MountConfig {
            try ConfigLoader.parse(Self.valid + "\n[metrics]\nlisten = \"\(listen)\"\n", path: "/etc/crmfs/sales.conf")
        }
        #expect(try ConfigLoader.parse(Self.valid, path: "/etc/crmfs/sales.conf").metrics == nil, "off by default")
        #expect(try parse("unix:metrics.sock").metrics == .unixSocket("metrics.sock"))
        #expect(try parse("127.0.0.1:9464").metrics == .tcp(host: "127.0.0.1", port: 9464))
        #expect(try parse("[::1]:9464").metrics == .tcp(host: "::1", port: 9464))
        for refused in ["0.0.0.0:9464", "192.168.1.5:9464", "127.0.0.1", "unix:", "127.0.0.1:99999"] {
            #expect(throws: ConfigError.self) { try parse(refused) }
            do { _ = try parse(refused) } catch let error as ConfigError { #expect(error.key == "metrics.listen", "\(refused)") }
        }
    }

    @Test("per-user defaults: a bare NAME is ~/.config/crmfs/NAME.conf, a config without a state directory uses ~/.local/state/crmfs/NAME")
    func userPaths() throws {
        let home = try Tools.emptyDirectory("crmfs-home")
        let paths = UserPaths(environment: ["HOME": home])
        #expect(paths.configDirectory == "\(home)/.config/crmfs")
        #expect(paths.stateDirectory(forConfig: "\(home)/.config/crmfs/sales.conf") == "\(home)/.local/state/crmfs/sales")
        let elsewhere = UserPaths(environment: ["HOME": home, "XDG_CONFIG_HOME": "/srv/conf", "XDG_STATE_HOME": "/srv/state"])
        #expect(elsewhere.configDirectory == "/srv/conf/crmfs" && elsewhere.stateHome == "/srv/state/crmfs")
        #expect(UserPaths(environment: ["HOME": home, "XDG_STATE_HOME": "relative/ignored"]).stateHome == "\(home)/.local/state/crmfs",
                "the spec says a relative base directory is ignored")
        try FileManager.default.createDirectory(atPath: paths.configDirectory, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: "\(paths.configDirectory)/sales.conf", contents: Data())
        #expect(paths.config("sales") == "\(home)/.config/crmfs/sales.conf")
        #expect(paths.config("sales.conf") == "\(home)/.config/crmfs/sales.conf")
        #expect(paths.config("/etc/crmfs/sales.conf") == "/etc/crmfs/sales.conf", "a path stays a path")
        #expect(paths.config("missing").hasSuffix("/missing"), "an unknown name is left for the loader to report")
    }

    @Test("auth = \"device-code\" signs in as the user (no secret needed) and keeps the sign-ins in the state directory")
    func deviceCode() throws {
        let text = Self.valid.replacingOccurrences(of: "client_secret_file = \"secrets/sf\"", with: "auth = \"device-code\"")
            .replacingOccurrences(of: "client_secret_env = \"GRAPH_SECRET\"", with: "auth = \"device-code\"")
        let config = try ConfigLoader.parse(text, path: "/etc/crmfs/sales.conf")
        #expect(config.graph.auth == .deviceCode)
        #expect(config.salesforce.auth == .deviceCode)
        #expect(config.userSignIns == [.graph, .salesforce])
        #expect(config.refreshTokenFile(.graph) == UserPaths().stateHome + "/sales/credentials/graph-refresh-token")
        #expect(try ConfigLoader.parse(Self.valid, path: "/etc/crmfs/sales.conf").userSignIns.isEmpty)
        for (section, key) in [("[graph]", "graph.auth"), ("[salesforce]", "salesforce.auth")] {
            do {
                _ = try ConfigLoader.parse(Self.valid.replacingOccurrences(of: section, with: "\(section)\nauth = \"password\""), path: "/etc/crmfs/sales.conf")
                Issue.record("auth = password was accepted in \(section)")
            } catch let error as ConfigError {
                #expect(error.key == key)
                #expect(error.message.contains("device-code"))
            }
        }
    }

    @Test("a mount.conf writable by group or others, or owned by another user, is refused")
    func looseConfigRefused() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("loose-\(UUID().uuidString).conf").path
        FileManager.default.createFile(atPath: path, contents: Data(Self.valid.utf8), attributes: [.posixPermissions: 0o664])
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try ConfigLoader.load(path: path)
            Issue.record("a group-writable config was accepted")
        } catch let error as ConfigError {
            #expect(error.file == path)
            #expect(error.message.contains("chmod go-w"))
        }
        chmod(path, 0o644)
        #expect(throws: Never.self) { try ConfigLoader.load(path: path) }
        #expect(chown(path, 4242, 4242) == 0)
        #expect(throws: ConfigError.self) { try ConfigLoader.load(path: path) }
    }

    @Test("a valid config parses with defaults filled in")
    func valid() throws {
        let config = try ConfigLoader.parse(Self.valid, path: "/etc/crmfs/sales.conf")
        #expect(config.graph.endpoint == "https://graph.microsoft.com/v1.0")
        #expect(config.graph.authority == "https://login.microsoftonline.com")
        #expect(config.graph.siteHostname == "contoso.sharepoint.com")
        #expect(config.graph.sitePath == "/sites/Sales")
        #expect(config.graph.library == "Documents")
        #expect(config.graph.auth == .clientCredentials(secret: .environment("GRAPH_SECRET")))
        #expect(config.salesforce.auth == .clientCredentials(secret: .file("secrets/sf")))
        #expect(config.resolve("secrets/sf") == "/etc/crmfs/secrets/sf")
        #expect(config.cache.size == 2 << 30)
        #expect(config.cache.blockSize == 4 << 20)
        #expect(config.writeback.fragmentSize == 5 << 20)
        #expect(config.writeback.simpleUploadMax == 4 << 20)
        #expect(config.writeback.localOnly == ["*.partial", "~$*"])
        var fleet = FleetSettings(host: "db.contoso.com", user: "crmfs_mount")
        fleet.port = 6432
        fleet.password = .environment("CRMFS_FLEET_PASSWORD")
        fleet.tls = .require
        fleet.retention = 3 * 86_400
        #expect(config.fleet == fleet, "database defaults to crmfs")
        #expect(config.objects.count == 2)
        #expect(config.objects[0].mappings == [FieldMapping(crmField: "Name", spColumn: "Customer", transform: nil),
                                               FieldMapping(crmField: "CreatedDate", spColumn: "Opened", transform: .date)])
        #expect(config.objects[0].idField == "Id")
        #expect(config.objects[0].conflictPolicy == .keepBoth)
        #expect(config.objects[1].link == .linkObject)
        #expect(config.objects[1].conflictPolicy == .localWins)
        #expect(config.freshness == FreshnessSettings(drivePoll: 10, crmPoll: 0))
        #expect(!config.freshness.feedsEverything)
    }

    @Test("errors name the file, the line and the key", arguments: [
        ("client_id = \"3MVG9abc\"\n", "", "salesforce.client_id", "missing"),
        ("size = \"2GiB\"", "size = \"lots\"", "cache.size", "size"),
        ("name = \"{Name}\"", "name = \"{Name}\"\ncolour = \"red\"", "objects[0].colour", "unknown key"),
        ("link = \"link-object\"", "link = \"carrier-pigeon\"", "objects[1].link", "not a link model"),
        ("fields = [\"Name\", \"Industry\"]", "fields = \"Name\"", "objects[0].fields", "array"),
        ("sp_column = \"Customer\"", "sp_column = 7", "objects[0].mappings[0].sp_column", "string"),
        ("site = \"contoso.sharepoint.com:/sites/Sales\"", "site = \"Sales\"", "graph.site", "HOSTNAME:/PATH"),
        ("transform = \"date\"", "transform = \"shout\"", "objects[0].mappings[1].transform", "not a transform"),
        ("fragment_size = \"5MiB\"", "fragment_size = \"1MB\"", "writeback.fragment_size", "multiple of 320KiB"),
        ("fragment_size = \"5MiB\"", "fragment_size = \"5MiB\"\nuploads = 0", "writeback.uploads", "from 1 to 64"),
        ("conflict_policy = \"local-wins\"", "conflict_policy = \"coin-toss\"", "objects[1].conflict_policy", "not a conflict policy"),
        ("drive_poll = \"10s\"", "drive_poll = \"often\"", "freshness.drive_poll", "duration"),
        ("crm_poll = \"0\"", "crm_poll = \"0.2s\"", "freshness.crm_poll", "at least 1s"),
        ("port = 6432", "port = 70000", "fleet.port", "port number"),
        ("tls = \"require\"", "tls = \"maybe\"", "fleet.tls", "not a TLS mode"),
        ("tls = \"require\"", "tls = \"disable\"", "fleet.tls", "unencrypted"),
        ("tls = \"require\"", "tls = \"prefer\"", "fleet.tls", "unencrypted"),
        ("retention = \"3d\"", "retention = \"10m\"", "fleet.retention", "at least 1h"),
        ("user = \"crmfs_mount\"", "user = \"crmfs_mount\"\nsslmode = \"verify-full\"", "fleet.sslmode", "unknown key"),
        ("password_env = \"CRMFS_FLEET_PASSWORD\"", "password_env = \"CRMFS_FLEET_PASSWORD\"\npassword_file = \"pw\"", "fleet.password_file", "not both"),
    ])
    func errors(replace: String, with replacement: String, key: String, fragment: String) throws {
        let text = Self.valid.replacingOccurrences(of: replace, with: replacement)
        #expect(text != Self.valid)
        do {
            _ = try ConfigLoader.parse(text, path: "/etc/crmfs/sales.conf")
            Issue.record("accepted a bad config")
        } catch let error as ConfigError {
            #expect(error.key == key)
            #expect(error.file == "/etc/crmfs/sales.conf")
            #expect(error.line != nil)
            #expect(error.message.contains(fragment), "\(error)")
            #expect("\(error)".hasPrefix("/etc/crmfs/sales.conf:\(error.line!): \(key): "))
        }
    }

    @Test("a TOML syntax error gives its line")
    func syntax() {
        #expect(throws: ConfigError.self) { try ConfigLoader.parse("[graph\nx = 1", path: "a.conf") }
        do { _ = try ConfigLoader.parse("[graph]\nx = = 1", path: "a.conf") } catch let error as ConfigError {
            #expect(error.line == 2)
        } catch { Issue.record("\(error)") }
    }

    @Test("a missing file is reported by name")
    func missingFile() {
        #expect(throws: ConfigError(file: "/nonexistent/x.conf", line: nil, key: nil, message: "cannot read the file (missing or not readable)")) {
            try ConfigLoader.load(path: "/nonexistent/x.conf")
        }
    }
}

@Suite("mount.conf.example")
struct ExampleConfigTests {
    @Test("the shipped example parses and covers every object block")
    func exampleParses() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let config = try ConfigLoader.load(path: root.appendingPathComponent("mount.conf.example").path)
        #expect(config.objects.map(\.object) == ["Account", "Opportunity", "Case"])
        #expect(config.salesforce.auth == .clientCredentials(secret: .file("secrets/salesforce-client-secret")))
        #expect(config.cache.size == 2 << 30)
    }
}
