import Foundation
import Sandbox
import Testing
import TestSupport

/// Under a user's own sign-in the tree is what that user may see, and what they may only read looks and
/// acts read-only: Salesforce sharing decides the records (`UserRecordAccess`), SharePoint permissions the
/// documents. The demo tenant: sam (sales rep) owns half the accounts and opportunities, sky (support)
/// edits cases and reads accounts, morgan (manager) owns the rest.
@Suite("permissions follow the user", .serialized)
struct PermissionTests {
    @Test("two users on one machine: each sees their own tree; a read-only record refuses writes at once with EACCES")
    func twoUsers() async throws {
        try await withSandbox(records: 4, docsPerRecord: 1, separateProcess: true, configure: { $0.deviceCodeInterval = 1 }) { sandbox in
            let text = SignInTests.asUser(try String(contentsOfFile: sandbox.configPath, encoding: .utf8))
            try text.write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
            let skyConfig = sandbox.directory.appendingPathComponent("sky.conf").path
            try text.replacingOccurrences(of: "directory = \"crmfs-state\"", with: "directory = \"crmfs-state-sky\"")
                .write(toFile: skyConfig, atomically: true, encoding: .utf8)
            _ = try await SignInTests.login(sandbox, as: "sam")
            _ = try await SignInTests.login(sandbox, as: "sky", config: skyConfig)
            // morgan's OPP-1002, shared with sky to read.
            let shared = SalesforceID.make(prefix: "006", serial: 2)
            _ = try await sandbox.admin("records/\(shared)/share", ["user": "sky", "level": "Read"])

            try await MountFixture.using(sandbox) { sam in
                try await MountFixture.using(sandbox, config: skyConfig) { sky in
                    let files = FileManager.default
                    let samDeals = try files.contentsOfDirectory(atPath: sam.path("Opportunities")).sorted()
                    let skyDeals = try files.contentsOfDirectory(atPath: sky.path("Opportunities")).sorted()
                    #expect(samDeals.count == 2 && samDeals.allSatisfy { $0.hasPrefix("OPP-1001 ") || $0.hasPrefix("OPP-1003 ") }, "\(samDeals)")
                    #expect(skyDeals.count == 1 && skyDeals.first?.hasPrefix("OPP-1002 ") == true, "\(skyDeals)")
                    let sharedDeal = sky.path("Opportunities/\(skyDeals.first ?? "")")
                    #expect(try await Self.xattr(sharedDeal, "user.crmfs.record_id") == shared)
                    #expect(try !files.contentsOfDirectory(atPath: sharedDeal).isEmpty, "the shared record's documents show too")
                    #expect(Self.mode(sharedDeal) == 0o555, "shared to read")

                    // sky reads every account and edits none: no write bits, and every write is refused at once.
                    let acme = sky.path("Accounts/Acme Corp")
                    let contract = "\(acme)/Contracts/MSA-2026.pdf"
                    #expect(Self.mode(acme) == 0o555)
                    #expect(Self.mode(contract) == 0o444)
                    #expect(try await Self.xattr(acme, "user.crmfs.access") == "read")
                    #expect(Self.errno { open("\(acme)/new.txt", O_CREAT | O_WRONLY, 0o644) } == EACCES)
                    #expect(Self.errno { open(contract, O_WRONLY) } == EACCES)
                    #expect(Self.errno { mkdir("\(acme)/Drafts", 0o755) } == EACCES)
                    #expect(Self.errno { unlink(contract) } == EACCES)
                    #expect(Self.errno { rename(contract, "\(acme)/Contracts/MSA-old.pdf") } == EACCES)
                    #expect(sky.logTail().contains("may read but not edit"), "\(sky.logTail())")
                    #expect(try await sky.sync().status == 0, "nothing was queued")
                    #expect(FileManager.default.fileExists(atPath: contract), "nothing changed")

                    // sam owns Acme Corp: the same writes work for sam, at the same moment.
                    let samAcme = sam.path("Accounts/Acme Corp")
                    #expect(try await Self.xattr(samAcme, "user.crmfs.access") == "edit")
                    #expect(Self.mode(samAcme).map { $0 & 0o200 != 0 } == true)
                    let written = try await Tools.shell("echo 'from sam' > '\(samAcme)/new.txt'")
                    #expect(written.status == 0, "\(written.errors)")
                    #expect(try await sam.sync().status == 0)
                    // No request of sky's reached the service to be refused there: EACCES came from the mount.
                    #expect(try await sandbox.stats()["graph.accessDenied"] == nil)
                }
            }
        }
    }

    @Test("a change SharePoint refuses (403) ends as `error: access denied`, is never retried, and its bytes are kept")
    func refusedBySharePoint() async throws {
        try await SignInTests.withSignedInSandbox(as: "sam", records: 3) { sandbox in
            try await MountFixture.using(sandbox) { mount in
                // Salesforce lets sam edit Acme Corp (sam owns it); SharePoint lets sam only read its Contracts folder.
                let contracts = mount.path("Accounts/Acme Corp/Contracts")
                let contract = "\(contracts)/MSA-2026.pdf"
                let original = try Data(contentsOf: URL(fileURLWithPath: contract))
                _ = try await sandbox.admin("items/\(try await Self.xattr(contracts, "user.crmfs.item_id"))/permissions", ["user": "sam", "role": "read"])

                // Written and closed without fsync, as `echo >` does: staged, then refused by the service.
                let written = try await Tools.shell("echo 'changed by sam' > '\(contract)' && echo 'new notes' > '\(contracts)/notes.txt'")
                #expect(written.status == 0, "\(written.errors)")
                // Both refused before `crmfs sync` begins (as on a busy machine, seen in CI): it still says so.
                for _ in 0..<150 {
                    let states = [try? await Self.xattr(contract, "user.crmfs.sync"), FileManager.default.fileExists(atPath: "\(contracts)/notes.txt") ? "" : "error"]
                    if states.allSatisfy({ $0?.hasPrefix("error") == true }) { break }
                    try await Task.sleep(for: .milliseconds(200))
                }
                let sync = try await mount.sync()
                #expect(sync.status != 0 && sync.errors.contains("access denied"), "\(sync.errors)")

                let state = try await Self.xattr(contract, "user.crmfs.sync")
                #expect(state.hasPrefix("error: access denied") && state.contains("conflicts/MSA-2026.pdf"), "\(state)")
                #expect(try Data(contentsOf: URL(fileURLWithPath: contract)) == original, "the service's copy shows again")
                #expect(!FileManager.default.fileExists(atPath: "\(contracts)/notes.txt"), "a new document the service never took is gone")
                let conflicts = "\(mount.stateDirectory)/conflicts"
                #expect(try String(contentsOfFile: "\(conflicts)/MSA-2026.pdf", encoding: .utf8) == "changed by sam\n")
                #expect(try String(contentsOfFile: "\(conflicts)/notes.txt", encoding: .utf8) == "new notes\n")

                // One refusal each, and no retry afterwards.
                #expect(try await sandbox.stats()["graph.accessDenied"] == 2)
                try await Task.sleep(for: .seconds(5))
                #expect(try await sandbox.stats()["graph.accessDenied"] == 2)
                #expect(mount.logTail(lines: 200).contains("refused a change"))
            }
        }
    }

    @Test("a share given or taken back shows through a running mount within a CRM poll: the record goes, or turns writable")
    func sharingChangesFollow() async throws {
        try await SignInTests.withSignedInSandbox(as: "sky", records: 4, editConfig: { $0 + "\n[freshness]\ncrm_poll = \"2s\"\n" }) { sandbox in
            let deal = SalesforceID.make(prefix: "006", serial: 2)
            _ = try await sandbox.admin("records/\(deal)/share", ["user": "sky", "level": "Read"])

            try await MountFixture.using(sandbox) { mount in
                let deals = mount.path("Opportunities")
                let acme = mount.path("Accounts/Acme Corp")
                #expect(try FileManager.default.contentsOfDirectory(atPath: deals).count == 1)
                #expect(Self.mode(acme) == 0o555)
                // An administrator takes the share back, and shares sam's Acme Corp with sky to edit.
                _ = try await sandbox.admin("records/\(deal)/share", ["user": "sky", "level": "None"])
                _ = try await sandbox.admin("records/\(SalesforceID.make(prefix: "001", serial: 1))/share", ["user": "sky", "level": "Edit"])
                var followed = false
                for _ in 0..<100 where !followed {
                    try await Task.sleep(for: .milliseconds(200))
                    followed = (try? FileManager.default.contentsOfDirectory(atPath: deals).isEmpty) == true && Self.mode(acme).map { $0 & 0o200 != 0 } == true
                }
                #expect(try FileManager.default.contentsOfDirectory(atPath: deals).isEmpty, "the record no longer shared is gone")
                #expect(Self.mode(acme).map { $0 & 0o200 != 0 } == true, "the record shared to edit is writable")
                #expect(Self.mode("\(acme)/Contracts/MSA-2026.pdf").map { $0 & 0o200 != 0 } == true, "and so are its documents")
                #expect(try await Self.xattr(acme, "user.crmfs.access") == "edit")
                #expect(try await Tools.shell("echo 'from sky' > '\(acme)/sky.txt'").status == 0)
                #expect(try await mount.sync().status == 0)
            }
        }
    }

    static func mode(_ path: String) -> mode_t? { SignInTests.mode(path) }

    /// The errno a call left (0 when it succeeded); a descriptor it opened is closed.
    static func errno(_ call: () -> Int32) -> Int32 {
        let result = call()
        if result >= 0 {
            if result > 2 { close(result) }
            return 0
        }
        return Glibc.errno
    }

    static func xattr(_ path: String, _ name: String) async throws -> String {
        let result = try await Tools.run("getfattr", ["--only-values", "-n", name, path])
        guard result.status == 0 else { throw POSIXError(.ENODATA) }
        return result.output
    }
}
