import Config
import CRM
import Fleet
import Foundation
import Freshness
import Graph
import HTTP
import Sandbox
import Testing
import TestSupport

/// A fleet: one relay follows the services' feeds into a PostgreSQL change log, and every mount follows
/// the log instead of polling (docs/fleet.md). Through the kernel, against the sandbox and a real
/// PostgreSQL cluster in a temporary directory.
@Suite("a fleet on one change feed", .serialized)
struct FleetTests {
    /// A sandbox, a fleet database, the relay's config (the app's sign-in) and `users`' mount configs
    /// (each user signed in as themselves, with polls of a second that a fleet mount must not make).
    struct Fleet {
        let sandbox: SandboxFixture
        let database: FleetDatabaseFixture
        let relayConfig: String
        let mountConfigs: [String: String]
    }

    static let fastPolls = "\n[freshness]\ndrive_poll = \"1s\"\ncrm_poll = \"1s\"\n"

    static func withFleet<T>(users: [String], cluster: PostgresFixture? = nil, records: Int = 4,
                             _ body: (Fleet) async throws -> T) async throws -> T {
        let shared = cluster == nil ? try await PostgresFixture.shared() : nil
        let cluster = cluster ?? shared!
        return try await withSandbox(records: records, docsPerRecord: 1, separateProcess: true, configure: { $0.deviceCodeInterval = 1 }) { sandbox in
            let database = try await cluster.makeFleet(in: sandbox.directory)
            let base = try String(contentsOfFile: sandbox.configPath, encoding: .utf8)
            let relayConfig = sandbox.directory.appendingPathComponent("relay.conf").path
            try (base.replacingOccurrences(of: "directory = \"crmfs-state\"", with: "directory = \"crmfs-state-relay\"") + fastPolls + database.relaySection)
                .write(toFile: relayConfig, atomically: true, encoding: .utf8)
            var configs: [String: String] = [:]
            for user in users {
                let path = sandbox.directory.appendingPathComponent("\(user).conf").path
                let text = SignInTests.asUser(base).replacingOccurrences(of: "directory = \"crmfs-state\"", with: "directory = \"crmfs-state-\(user)\"")
                try (text + fastPolls + database.mountSection).write(toFile: path, atomically: true, encoding: .utf8)
                _ = try await SignInTests.login(sandbox, as: user, config: path)
                configs[user] = path
            }
            return try await body(Fleet(sandbox: sandbox, database: database, relayConfig: relayConfig, mountConfigs: configs))
        }
    }

    /// Mounts each config in `configs` (by name), runs `body`, and unmounts them all whatever happens.
    static func withMounts<T>(_ sandbox: SandboxFixture, _ configs: [String: String], _ body: ([String: MountFixture]) async throws -> T) async throws -> T {
        var mounts: [String: MountFixture] = [:]
        do {
            for (name, config) in configs.sorted(by: { $0.key < $1.key }) { mounts[name] = try await MountFixture.mount(sandbox, config: config) }
            let result = try await body(mounts)
            for mount in mounts.values { await mount.unmount() }
            return result
        } catch {
            for mount in mounts.values { await mount.unmount() }
            throw error
        }
    }

    /// Waits up to `seconds` for `condition`; whether it came true.
    static func eventually(within seconds: Double = 15, _ condition: () async throws -> Bool) async rethrows -> Bool {
        try await Tools.eventually(within: .seconds(seconds), poll: .milliseconds(200), condition)
    }

    static func status(_ mount: MountFixture) async throws -> String {
        try await Tools.run(Tools.crmfs, ["status", mount.mountpoint]).output
    }

    /// Expects `crmfs status` of `mount` to say `text` within `seconds`.
    static func expectStatus(_ mount: MountFixture, says text: String, within seconds: Double = 15,
                             sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let reached = try await eventually(within: seconds) { try await status(mount).contains(text) }
        let shown = try await status(mount)
        #expect(reached, "status says: \(shown)", sourceLocation: sourceLocation)
    }

    static func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    /// How many times each relay took the lock and began relaying (once a session with the database).
    static func sessionsStarted(by relays: [RelayFixture]) -> [Int] {
        relays.map { $0.log.components(separatedBy: "relaying the services' changes").count - 1 }
    }

    @Test("a relay and three mounts as three users: remote changes and each other's show on all within seconds; none of them polls; a record a user may not see never shows, and its Id costs that user's mount no request")
    func threeUsers() async throws {
        try await Self.withFleet(users: ["sam", "sky", "morgan"]) { fleet in
            let sandbox = fleet.sandbox
            try await RelayFixture.using(config: fleet.relayConfig) { relay in
                #expect(await Self.eventually { relay.log.contains("relaying the services' changes") }, "\(relay.log)")
                // The mounts' role reads the log and can change nothing in it.
                #expect(try await fleet.database.psqlAsMount("SELECT count(*) >= 0 FROM change_log").output.contains("t"))
                for statement in ["INSERT INTO change_log (source, scope, kind, item_id, changed_at) VALUES ('drive', 'x', 'changed', 'forged', now())",
                                  "DELETE FROM change_log", "UPDATE relay_position SET position = 'x'", "DROP TABLE change_log"] {
                    let refused = try await fleet.database.psqlAsMount(statement)
                    #expect(refused.status != 0 && (refused.errors.contains("permission denied") || refused.errors.contains("must be owner")),
                            "\(statement): \(refused.errors)")
                }
                try await Self.withMounts(sandbox, fleet.mountConfigs) { mounts in
                    let acme = "Accounts/Acme Corp"
                    for (user, mount) in mounts {
                        try await Self.expectStatus(mount, says: "following the fleet's change feed")
                        // Each holds Acme Corp's folder and its opportunities (sam and sky see what sharing lets them).
                        #expect(try FileManager.default.contentsOfDirectory(atPath: mount.path(acme)).contains("Contracts"), "\(user)")
                        _ = try FileManager.default.contentsOfDirectory(atPath: mount.path("Opportunities"))
                    }

                    // Nobody polls but the relay: a second's polls from three mounts would be three times its own.
                    try await sandbox.admin("stats/reset")
                    try await Task.sleep(for: .seconds(5))
                    let quiet = try await sandbox.requests()
                    let deltas = quiet.count { $0.hasSuffix("/root/delta") || $0.contains("/root/delta?") }
                    let composites = quiet.count { $0.contains("/composite") }
                    #expect(deltas <= 7 && composites <= 7, "only the relay's polls, about one a second each: \(quiet.count) requests, \(deltas) deltas, \(composites) composites")

                    // Another user's change (the app uploads a document into Acme Corp's folder): on every mount.
                    let connections = try sandbox.connections()
                    let graph = connections.graph
                    let driveID = try await LibraryDrive.id(sandbox)
                    let folder = try await graph.item(driveID: driveID, path: SeededPaths.acmeFolder)
                    let upload = sandbox.directory.appendingPathComponent("remote.txt").path
                    try Data("from elsewhere\n".utf8).write(to: URL(fileURLWithPath: upload))
                    _ = try await graph.simpleUpload(driveID: driveID, to: .child(parentID: folder.id, name: "remote.txt"), file: upload, size: 15, options: UploadOptions())
                    for (user, mount) in mounts {
                        let seen = await Self.eventually { (try? String(contentsOfFile: mount.path("\(acme)/remote.txt"), encoding: .utf8)) == "from elsewhere\n" }
                        #expect(seen, "\(user) sees the remote document")
                    }

                    // A document written through sam's mount: on sky's and morgan's.
                    #expect(try await Tools.shell("echo 'from sam' > '\(mounts["sam"]!.path(acme))/from-sam.txt'").status == 0)
                    #expect(try await mounts["sam"]!.sync().status == 0)
                    for user in ["sky", "morgan"] {
                        let seen = await Self.eventually { (try? String(contentsOfFile: mounts[user]!.path("\(acme)/from-sam.txt"), encoding: .utf8)) == "from sam\n" }
                        #expect(seen, "\(user) sees sam's document")
                    }

                    // morgan's OPP-1002, which neither sam nor sky may see, renamed by someone else; and a new one only morgan may see.
                    let hidden = SalesforceID.make(prefix: "006", serial: 2)
                    try await sandbox.admin("stats/reset")
                    try await connections.salesforce.update("Opportunity", id: hidden, fields: ["Name": .string("Renamed in the CRM")])
                    let created = try await connections.salesforce.create("Opportunity", fields: [
                        "Name": .string("Fleet deal"), "StageName": .string("Prospecting"), "CloseDate": .string("2027-01-31"),
                    ])  // owned by the integration user: the manager sees it, the others do not
                    let morganSees = try await Self.eventually {
                        let deals = try FileManager.default.contentsOfDirectory(atPath: mounts["morgan"]!.path("Opportunities"))
                        return deals.contains { $0.contains("Renamed in the CRM") } && deals.contains { $0.contains("Fleet deal") }
                    }
                    let morganDeals = try FileManager.default.contentsOfDirectory(atPath: mounts["morgan"]!.path("Opportunities"))
                    #expect(morganSees, "morgan sees both: \(morganDeals)")
                    try await Task.sleep(for: .seconds(2))  // every mount has had the entries by now
                    let stats = try await sandbox.stats()
                    for user in ["sam", "sky"] {
                        let deals = try FileManager.default.contentsOfDirectory(atPath: mounts[user]!.path("Opportunities"))
                        #expect(!deals.contains { $0.hasPrefix("OPP-1002") || $0.contains("Fleet deal") }, "\(user): \(deals)")
                        #expect(stats["sf.askedByID.\(user).\(hidden)"] == nil, "\(user)'s mount asked about a record it does not hold: \(stats)")
                    }
                    #expect(stats["sf.askedByID.morgan.\(hidden)"] != nil, "morgan's mount read the record it holds: \(stats)")
                    #expect(stats["sf.askedByID.sky.\(created)"] ?? 0 <= 1, "a new record is asked about once at most")
                }
            }
        }
    }

    @Test("PostgreSQL stopped and started, the relay killed and restarted, a second relay started by mistake, a schema the mount does not know: no change is missed, nothing written is lost, and status says when the mount polls on its own")
    func outages() async throws {
        let cluster = try await PostgresFixture.start()
        do {
            try await Self.withFleet(users: ["sam"], cluster: cluster, records: 3) { fleet in
                let sandbox = fleet.sandbox
                let driveID = try await LibraryDrive.id(sandbox)
                let graph = try sandbox.connections().graph
                let folder = try await graph.item(driveID: driveID, path: SeededPaths.acmeFolder)
                /// Another user adds a document to Acme Corp's folder.
                func remote(_ name: String) async throws {
                    let file = sandbox.directory.appendingPathComponent(name).path
                    try Data(name.utf8).write(to: URL(fileURLWithPath: file))
                    _ = try await graph.simpleUpload(driveID: driveID, to: .child(parentID: folder.id, name: name), file: file,
                                                     size: Int64(name.utf8.count), options: UploadOptions())
                }
                let relay = try RelayFixture.start(config: fleet.relayConfig)
                var others: [RelayFixture] = []
                func stopAll() async { for leftover in [relay] + others { await leftover.kill() } }
                #expect(await Self.eventually { relay.log.contains("relaying the services' changes") }, "\(relay.log)")
                // A second relay of the same log waits, and the services see one relay's polls.
                let second = try RelayFixture.start(config: fleet.relayConfig)
                others.append(second)
                #expect(await Self.eventually { second.log.contains("another relay is following the feeds") }, "\(second.log)")
                try await sandbox.admin("stats/reset")
                try await Task.sleep(for: .seconds(4))
                let deltas = try await sandbox.requests().count { $0.contains("/root/delta") }
                #expect(deltas <= 6, "one relay's polls, about one a second: \(deltas)")

                do {
                    try await MountFixture.using(sandbox, config: fleet.mountConfigs["sam"]) { mount in
                        let acme = mount.path("Accounts/Acme Corp")
                        #expect(try FileManager.default.contentsOfDirectory(atPath: acme).contains("Contracts"))
                        try await Self.expectStatus(mount, says: "following the fleet's change feed")

                        // PostgreSQL stops: the mount polls on its own and says so; changes both ways go on.
                        let relays = [relay, second]
                        let relayed = Self.sessionsStarted(by: relays)
                        try await cluster.stop()
                        try await Self.expectStatus(mount, says: "polling on its own", within: 30)
                        try await remote("during-outage.txt")
                        #expect(await Self.eventually { Self.exists("\(acme)/during-outage.txt") }, "seen by the mount's own polling")
                        #expect(try await Tools.shell("echo 'written meanwhile' > '\(acme)/written-meanwhile.txt'").status == 0)
                        #expect(try await mount.sync().status == 0)

                        // Back: the mount follows the log again, and one relay (whichever reconnects first
                        // takes the lock) carries on from the kept position while the other waits again.
                        try await cluster.restart()
                        try await Self.expectStatus(mount, says: "following the fleet's change feed", within: 60)
                        var resumed: [RelayFixture] = []
                        #expect(await Self.eventually(within: 60) {
                            let now = Self.sessionsStarted(by: relays)
                            resumed = relays.indices.filter { now[$0] > relayed[$0] }.map { relays[$0] }
                            return !resumed.isEmpty
                        }, "a relay took the lock again: \(relay.log)\n\(second.log)")
                        #expect(resumed.count == 1, "one relay at a time: \(relay.log)\n\(second.log)")
                        guard let active = resumed.first else { return }
                        let standby = active === relay ? second : relay
                        try await remote("after-outage.txt")
                        #expect(await Self.eventually(within: 40) { Self.exists("\(acme)/after-outage.txt") })

                        // The services fail for a while: the relay waits them out, its session with the database untouched.
                        let reconnects = active.log.components(separatedBy: "the change log cannot be written").count
                        try await sandbox.admin("faults", ["faults": "503:1.0", "retryAfter": 1])
                        #expect(await Self.eventually(within: 30) { active.log.contains("the library's change feed failed; trying again later") }, "\(active.log)")
                        try await sandbox.admin("faults", ["faults": "503:0"])
                        try await remote("after-503s.txt")
                        #expect(await Self.eventually(within: 40) { Self.exists("\(acme)/after-503s.txt") }, "\(active.log)")
                        #expect(active.log.components(separatedBy: "the change log cannot be written").count == reconnects, "\(active.log)")

                        // The relay is killed: the waiting one takes over. Both gone, a change is made; a new relay finds it.
                        let standbySessions = Self.sessionsStarted(by: [standby])[0]
                        await active.kill()
                        #expect(await Self.eventually(within: 30) { Self.sessionsStarted(by: [standby])[0] > standbySessions }, "\(standby.log)")
                        try await remote("second-relay.txt")
                        #expect(await Self.eventually(within: 30) { Self.exists("\(acme)/second-relay.txt") })
                        await standby.kill()
                        try await remote("while-no-relay.txt")
                        try await Task.sleep(for: .seconds(3))
                        #expect(!Self.exists("\(acme)/while-no-relay.txt"), "nobody relays it yet, and the mount does not poll")
                        let restarted = try RelayFixture.start(config: fleet.relayConfig)
                        others.append(restarted)
                        #expect(await Self.eventually { Self.exists("\(acme)/while-no-relay.txt") }, "\(restarted.log)")
                        await restarted.stop()

                        // What the mount wrote is in SharePoint, once.
                        let names = try await graph.childrenPages(driveID: driveID, itemID: folder.id).reduce(into: [String]()) { $0 += $1.compactMap(\.name) }
                        #expect(names.filter { $0 == "written-meanwhile.txt" }.count == 1, "\(names)")
                    }
                } catch {
                    await stopAll()
                    throw error
                }
                await stopAll()

                // A log whose schema this crmfs does not know: the mount polls on its own and says why.
                try await cluster.psql("INSERT INTO crmfs_schema (version) VALUES (99)", database: fleet.database.database)
                try await MountFixture.using(sandbox, config: fleet.mountConfigs["sam"]) { mount in
                    try await Self.expectStatus(mount, says: "newer than this crmfs knows")
                    #expect(try FileManager.default.contentsOfDirectory(atPath: mount.path("Accounts")).contains("Acme Corp"), "the mount works all the same")
                }
            }
        } catch {
            await cluster.remove()
            throw error
        }
        await cluster.remove()
    }

    @Test("the fleet's database is reached over TLS with the server's certificate checked against ca_file; without the CA, require and prefer refuse the server; disable goes in the clear")
    func tls() async throws {
        try await Self.withFleet(users: []) { fleet in
            let base = try String(contentsOfFile: fleet.sandbox.configPath, encoding: .utf8)
            /// The mounts' `[fleet]` with `extra` lines, and without `ca_file` when `trusting` is false.
            func encrypted(_ extra: String, trusting: Bool = true) async throws -> Bool {
                let section = fleet.database.mountSection.split(separator: "\n", omittingEmptySubsequences: false)
                    .filter { trusting || !$0.hasPrefix("ca_file") }.joined(separator: "\n")
                let path = fleet.sandbox.directory.appendingPathComponent("tls-\(UUID().uuidString).conf").path
                try (base + section + extra).write(toFile: path, atomically: true, encoding: .utf8)
                let config = try ConfigLoader.load(path: path)
                let database = try FleetDatabase(config: config, settings: try #require(config.fleet))
                return try await database.withChangeLog { try await $0.isEncrypted() }
            }
            #expect(try await encrypted(""), "tls = prefer, the default on loopback: the server offers TLS, so it is used")
            #expect(try await encrypted("tls = \"require\"\n"))
            #expect(try await !encrypted("tls = \"disable\"\n"))
            // A server whose certificate nobody vouches for is refused, and the reason says why; `prefer`
            // checks it too (it does not fall back to the clear).
            for mode in ["tls = \"require\"\n", ""] {
                await #expect {
                    try await encrypted(mode, trusting: false)
                } throws: { error in
                    "\(error)".contains("cannot be reached") && "\(error)".lowercased().contains("certificate")
                }
            }
            // `crmfs check` says how the log is reached (once a relay has made it).
            let relay = try ConfigLoader.load(path: fleet.relayConfig)
            try await FleetDatabase(config: relay, settings: try #require(relay.fleet)).withChangeLog { try await $0.migrate(readerRole: fleet.database.mountRole) }
            let check = try await Tools.run(Tools.crmfs, ["check", fleet.relayConfig])
            #expect(check.output.contains("(over TLS)"), "\(check.output)")
        }
    }

    @Test("bad rows in the change log hold nothing up: ids with '/' and '..', a drive id that is not one, an unknown id, a deleted row for a document that still exists; later changes arrive, the document stays, each bad id is logged once. Reads that keep failing make the mount poll on its own, and it follows again once they work")
    func badRows() async throws {
        try await Self.withFleet(users: ["sam"], records: 3) { fleet in
            let sandbox = fleet.sandbox
            let driveID = try await LibraryDrive.id(sandbox)
            let graph = try sandbox.connections().graph
            let folder = try await graph.item(driveID: driveID, path: SeededPaths.acmeFolder)
            let contracts = try await graph.item(driveID: driveID, path: "\(SeededPaths.acmeFolder)/Contracts")
            let contract = try await graph.item(driveID: driveID, path: SeededPaths.acmeContract)
            /// Another user adds a document to Acme Corp's folder.
            func remote(_ name: String) async throws {
                let file = sandbox.directory.appendingPathComponent(name).path
                try Data(name.utf8).write(to: URL(fileURLWithPath: file))
                _ = try await graph.simpleUpload(driveID: driveID, to: .child(parentID: folder.id, name: name), file: file,
                                                 size: Int64(name.utf8.count), options: UploadOptions())
            }
            /// Rows written straight into the log, as nobody's relay would (the database's superuser), and announced.
            func insert(_ rows: [(scope: String, kind: String, id: String, parent: String)]) async throws {
                func quoted(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "''") + "'" }
                let values = rows.map { "('drive', \(quoted($0.scope)), \(quoted($0.kind)), \(quoted($0.id)), \(quoted($0.parent)), now())" }
                try await fleet.database.cluster.psql("INSERT INTO change_log (source, scope, kind, item_id, parent_id, changed_at) VALUES "
                                                      + values.joined(separator: ", ") + "; NOTIFY crmfs_changes", database: fleet.database.database)
            }
            try await RelayFixture.using(config: fleet.relayConfig) { relay in
                #expect(await Self.eventually { relay.log.contains("relaying the services' changes") }, "\(relay.log)")
                try await MountFixture.using(sandbox, config: fleet.mountConfigs["sam"]) { mount in
                    let acme = mount.path("Accounts/Acme Corp")
                    let log = { (try? String(contentsOfFile: "\(mount.stateDirectory)/crmfs.log", encoding: .utf8)) ?? "" }
                    try await Self.expectStatus(mount, says: "following the fleet's change feed")
                    #expect(try FileManager.default.contentsOfDirectory(atPath: "\(acme)/Contracts").contains("MSA-2026.pdf"))

                    try await insert([
                        (driveID, "changed", "\(contract.id)/content", contracts.id),
                        (driveID, "changed", "..", folder.id),
                        ("../\(driveID)", "changed", contract.id, contracts.id),
                        (driveID, "changed", "01UNKNOWNUNKNOWNUNKNOWNUNKNOWNUNKN", folder.id),
                        (driveID, "deleted", contract.id, contracts.id),
                    ])
                    // A change the relay logs after them arrives; the contract Graph still has stays.
                    try await remote("after-bad-rows.txt")
                    #expect(await Self.eventually(within: 60) { Self.exists("\(acme)/after-bad-rows.txt") }, "\(mount.logTail(lines: 80))")
                    #expect(try FileManager.default.contentsOfDirectory(atPath: "\(acme)/Contracts").contains("MSA-2026.pdf"),
                            "the deleted row was checked with Graph")
                    try await Self.expectStatus(mount, says: "following the fleet's change feed")
                    try await Task.sleep(for: .seconds(12))  // a read of the log with no notification: nothing is logged again
                    let skipped = log().components(separatedBy: "a change log entry is skipped").count - 1
                    #expect(skipped == 3, "each bad id once: \(mount.logTail(lines: 80))")

                    // Every read of the changes' details fails (the services answer 503): after a few rounds the
                    // mount polls on its own and says why; once they answer, it follows again.
                    try await sandbox.admin("faults", ["faults": "503:1.0", "retryAfter": 1])
                    try await insert([(driveID, "changed", contract.id, contracts.id)])
                    try await Self.expectStatus(mount, says: "could not be read \(FleetFollower.stallLimit) times in a row", within: 300)
                    #expect(try await Self.status(mount).contains("polling on its own"))
                    #expect(log().contains("the fleet's change feed is stuck"))
                    try await sandbox.admin("faults", ["faults": "503:0"])
                    try await Self.expectStatus(mount, says: "following the fleet's change feed", within: 300)
                    try await remote("after-stall.txt")
                    // (The relay polls again within two minutes of the services' outage: its own backoff.)
                    #expect(await Self.eventually(within: 240) { Self.exists("\(acme)/after-stall.txt") }, "\(mount.logTail(lines: 80))")
                    #expect(try FileManager.default.contentsOfDirectory(atPath: "\(acme)/Contracts").contains("MSA-2026.pdf"))
                }
            }
        }
    }

    @Test("a follower's backlog: an entry whose ids are not Graph's is refused and reported once; one whose details cannot be read waits, is tried again later, and is given up after a few tries; the kept position stays before what waits")
    func followerBacklog() {
        var backlog = FleetBacklog()
        let drive = FeedEntry.Source.drive("b!drive")
        let bad = FeedEntry(sequence: 1, source: drive, kind: .changed, id: "01A/content")
        let failing = FeedEntry(sequence: 2, source: drive, kind: .changed, id: "01FAIL")
        let fine = FeedEntry(sequence: 3, source: drive, kind: .changed, id: "01FINE")
        let first = backlog.screen([bad, failing, fine])
        #expect(first.usable == [failing, fine])
        #expect(first.refused.map(\.entry) == [bad])
        #expect(backlog.screen([bad]).refused.isEmpty, "reported once")
        #expect(backlog.screen([bad]).usable.isEmpty, "and never used")

        var now = Date()
        let failure = UnreadEntry(entry: failing, reason: "HTTP 500")
        var givenUp = backlog.settle(tried: first.usable, unread: [failure], at: now)
        #expect(givenUp.isEmpty)
        #expect(backlog.count == 1 && backlog.oldestWaiting == 2)
        #expect(backlog.due(at: now).isEmpty, "tried again later, not at once")
        var tries = 1
        while givenUp.isEmpty && tries < 10 {
            now = now.addingTimeInterval(60)
            #expect(backlog.due(at: now) == [failing])
            givenUp = backlog.settle(tried: [failing], unread: [failure], at: now)
            tries += 1
        }
        #expect(tries == FleetBacklog.attempts)
        #expect(givenUp == [failure])
        #expect(backlog.count == 0 && backlog.oldestWaiting == nil)

        // One that reads on a later try is done with; so is one a newer entry for the same item read.
        _ = backlog.settle(tried: [failing], unread: [failure], at: now)
        #expect(backlog.count == 1)
        _ = backlog.settle(tried: [failing], unread: [], at: now)
        #expect(backlog.count == 0)
        _ = backlog.settle(tried: [failing], unread: [failure], at: now)
        let newer = FeedEntry(sequence: 9, source: drive, kind: .changed, id: "01FAIL")
        _ = backlog.settle(tried: [newer], unread: [], at: now)
        #expect(backlog.count == 0)
    }

    @Test("the relay writes a record's version once, also while nothing newer comes for minutes and every poll's overlap selects it again")
    func relayWritesAVersionOnce() {
        // Each poll asks for records changed since the mark less the overlap: with no newer change, the
        // last ones come back at every poll, long after they were first seen.
        let changed = Date().addingTimeInterval(-600)
        var state = RelayState(driveID: "b!drive", deltaLink: nil, marks: ["object:Account": changed])
        let id = "0018d0000000001AAA"
        let first = state.firstSighting(id, at: changed)
        #expect(first)
        for _ in 0..<5 {
            state.forgetSightingsOutsideTheOverlap()
            let again = state.firstSighting(id, at: changed)
            #expect(!again, "written again ten minutes on")
        }
        let newer = state.firstSighting(id, at: changed.addingTimeInterval(1))
        #expect(newer, "a newer version is new")
        // Once the mark has moved past the overlap, those versions cannot be selected again, and are forgotten.
        state.marks["object:Account"] = changed.addingTimeInterval(Relay.crmOverlap + 5)
        state.forgetSightingsOutsideTheOverlap()
        let forgotten = state.firstSighting(id, at: changed.addingTimeInterval(1))
        #expect(forgotten, "forgotten once out of every window")
    }
}

/// The sandbox library's drive id, as a mount finds it.
enum LibraryDrive {
    static func id(_ sandbox: SandboxFixture) async throws -> String {
        let config = try sandbox.config()
        let drives = try await sandbox.connections().graph.drives(siteID: GraphPath.siteAddress(hostname: config.graph.siteHostname, path: config.graph.sitePath))
        return drives.first { $0.name == config.graph.library }!.id
    }
}
