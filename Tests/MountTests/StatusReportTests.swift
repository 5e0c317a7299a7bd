import Foundation
import Testing
import TestSupport

/// `crmfs status` asks a running mount what it is doing, over the status socket in its state directory;
/// the audit log records each change made on the services. Both through a real mount, signed in as a user.
@Suite("crmfs status and the audit log", .serialized)
struct StatusReportTests {
    @Test("[metrics] serves Prometheus text on a Unix socket: requests by service and status, cache hits and misses, upload bytes, queue gauges")
    func metrics() async throws {
        try await withMount(records: 2, docsPerRecord: 1, editConfig: { $0 + "\n[metrics]\nlisten = \"unix:metrics.sock\"\n" }) { mount in
            let socket = "\(mount.stateDirectory)/metrics.sock"
            var info = stat()
            #expect(stat(socket, &info) == 0 && info.st_mode & 0o777 == 0o600)
            let contract = mount.path("Accounts/Acme Corp/Contracts/MSA-2026.pdf")
            _ = try await Tools.read(contract)
            _ = try await Tools.read(contract)
            #expect(try await Tools.shell("echo 'counted' > '\(mount.path("Accounts/Acme Corp/counted.txt"))'").status == 0)
            #expect(try await mount.sync().status == 0)
            let scrape = try await Tools.run("curl", ["-sf", "--unix-socket", socket, "http://localhost/metrics"])
            #expect(scrape.status == 0, "\(scrape.errors)")
            let text = scrape.output
            for expected in ["crmfs_requests_total{service=\"graph\",status=\"200\"}", "crmfs_requests_total{service=\"salesforce\",status=\"200\"}",
                             "crmfs_cache_misses_total ", "crmfs_upload_bytes_total 8", "crmfs_changes_waiting 0", "crmfs_feed_lag_seconds{feed=\"library\"}",
                             "crmfs_cache_limit_bytes 1073741824", "crmfs_signed_in{service=\"graph\"} 1"] {
                #expect(text.contains(expected), "\(expected) in \(text)")
            }
            #expect(text.contains("# TYPE crmfs_requests_total counter"))
            let missing = try await Tools.run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", socket, "http://localhost/other"])
            #expect(missing.output == "404")
        }
    }

    static func status(_ mount: MountFixture) async throws -> [String: Any] {
        let result = try await Tools.run(Tools.crmfs, ["status", "--json", mount.mountpoint])
        #expect(result.status == 0, "\(result.errors)")
        return try #require(try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any])
    }

    @Test("status --json reports the sign-in, an upload in flight with its bytes, a conflict and a failed change; the audit log has one line per change and no secret")
    func statusAndAudit() async throws {
        try await SignInTests.withSignedInSandbox(as: "sam", records: 2,
                                                  editConfig: WriteRecoveryTests.settings(fragment: "320KiB", policy: "remote-wins")) { sandbox in
            try await MountFixture.using(sandbox) { mount in
                let acme = mount.path("Accounts/Acme Corp")
                let socket = "\(mount.stateDirectory)/status.sock"
                #expect(!FileManager.default.fileExists(atPath: "\(mount.stateDirectory)/metrics.sock"), "metrics are off by default")
                var info = stat()
                #expect(stat(socket, &info) == 0 && info.st_mode & 0o777 == 0o600, "only the user reaches the socket")

                // 1. A document sent: done.
                #expect(try await Tools.shell("echo 'first' > '\(acme)/notes.txt'").status == 0)
                #expect(try await mount.sync().status == 0)
                // 2. Changed by someone else while open here: remote-wins keeps ours in conflicts/.
                let notes = try await PermissionTests.xattr("\(acme)/notes.txt", "user.crmfs.item_id")
                let descriptor = open("\(acme)/notes.txt", O_WRONLY | O_TRUNC)
                #expect(descriptor >= 0)
                _ = "ours\n".withCString { write(descriptor, $0, 5) }
                _ = try await sandbox.admin("items/\(notes)/content", [:])
                #expect(close(descriptor) == 0)
                #expect(try await mount.sync().status == 0)
                // 3. Refused by SharePoint: failed, kept in conflicts/.
                let contracts = "\(acme)/Contracts"
                _ = try await sandbox.admin("items/\(try await PermissionTests.xattr(contracts, "user.crmfs.item_id"))/permissions", ["user": "sam", "role": "read"])
                #expect(try await Tools.shell("echo 'mine' > '\(contracts)/MSA-2026.pdf'").status == 0)
                #expect(try await mount.sync().status != 0)

                // 4. An upload slowed to 256 KiB/s: under way, with its bytes (past the 4 MiB of a single PUT: a
                //    session, whose fragments report progress).
                _ = try await sandbox.admin("faults", ["streamBytesPerSecond": 256 << 10])
                #expect(try await Tools.shell("head -c 6000000 /dev/urandom > '\(acme)/big.bin'").status == 0)
                var inFlight: [String: Any]?
                for _ in 0..<100 where inFlight == nil {
                    let uploads = try await Self.status(mount)["uploads"] as? [[String: Any]] ?? []
                    inFlight = uploads.first { ($0["bytesSent"] as? Int ?? 0) > 0 && ($0["bytesSent"] as? Int ?? 0) < ($0["bytes"] as? Int ?? 0) }
                    if inFlight == nil { try await Task.sleep(for: .milliseconds(200)) }
                }
                #expect(inFlight?["name"] as? String == "big.bin" && inFlight?["bytes"] as? Int == 6_000_000, "\(inFlight ?? [:])")
                #expect(inFlight?["bytesPerSecond"] as? Double ?? 0 > 0)
                let human = try await Tools.run(Tools.crmfs, ["status", mount.mountpoint])
                #expect(human.output.contains("uploading big.bin  [") && human.output.contains("of 5.7 MiB"), "\(human.output)")
                _ = try await sandbox.admin("faults", ["streamBytesPerSecond": 0])
                #expect(try await mount.sync().status == 0)

                let status = try await Self.status(mount)
                let signIns = status["signIns"] as? [[String: Any]] ?? []
                #expect(signIns.first { $0["service"] as? String == "graph" }?["account"] as? String == "sam.rivera@contoso.onmicrosoft.com", "\(signIns)")
                #expect(signIns.allSatisfy { $0["kind"] as? String == "user" && $0["problem"] == nil })
                #expect(status["waiting"] as? Int == 0)
                #expect((status["conflicts"] as? [String])?.count == 2, "\(status["conflicts"] ?? "")")
                let failed = status["failed"] as? [[String: Any]] ?? []
                #expect(failed.count == 1 && failed.first?["name"] as? String == "MSA-2026.pdf" && failed.first?["reason"] as? String == "access denied")
                #expect(status["libraryCaughtUp"] is String)
                #expect(status["cacheLimit"] as? Int == 1 << 30)

                // The audit log: one line per change on the services, as it ended, and nothing secret.
                let audit = try String(contentsOfFile: "\(mount.stateDirectory)/audit.jsonl", encoding: .utf8)
                let entries = audit.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
                #expect(entries.count == 4, "\(audit)")
                #expect(entries.map { $0["outcome"] as? String ?? "" }.map { String($0.prefix(8)) } == ["done", "conflict", "refused:", "done"], "\(audit)")
                #expect(entries.map { $0["path"] as? String ?? "" } == ["Accounts/Acme Corp/notes.txt", "Accounts/Acme Corp/notes.txt",
                                                                        "Accounts/Acme Corp/Contracts/MSA-2026.pdf", "Accounts/Acme Corp/big.bin"])
                #expect(entries.allSatisfy { $0["user"] as? String == "root" && $0["time"] is String && $0["operation"] as? String == "upload" })
                #expect(entries.first?["recordId"] as? String != nil && entries.first?["itemId"] as? String == notes)
                for secretFile in ["graph-refresh-token", "salesforce-refresh-token"] {
                    let secret = try String(contentsOfFile: "\(mount.stateDirectory)/credentials/\(secretFile)", encoding: .utf8)
                    #expect(!audit.contains(secret.trimmingCharacters(in: .whitespacesAndNewlines)))
                }
                #expect(!audit.contains("Bearer") && !audit.contains("tempauth"))
            }
        }
    }
}
