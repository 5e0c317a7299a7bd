import CLinux
import Foundation
import Graph
import HTTP
import QuickXor
import Sandbox
import Testing
import TestSupport

/// The write path when things go wrong: faults and expiring tokens, a daemon killed mid-upload, a
/// document changed remotely while open, and the CRM links after a crash.
@Suite("writes through failures", .serialized)
struct WriteRecoveryTests {
    static let acme = "Accounts/Acme Corp"

    /// The generated config with Accounts linked by a link object and Opportunities by Files Connect.
    static func linkModels(_ text: String) -> String {
        var text = text
        if let first = text.range(of: "link = \"folder\"") { text.replaceSubrange(first, with: "link = \"link-object\"") }
        if let second = text.range(of: "link = \"folder\"") { text.replaceSubrange(second, with: "link = \"files-connect\"") }
        return text
    }

    /// The generated config with `[writeback]` settings and a conflict policy for Accounts.
    static func settings(fragment: String = "10MiB", policy: String = "keep-both") -> (String) -> String {
        { text in
            var text = text.replacingOccurrences(of: "\n[[objects]]", with: "\n[writeback]\nfragment_size = \"\(fragment)\"\n\n[[objects]]", options: [], range: text.range(of: "\n[[objects]]"))
            text = text.replacingOccurrences(of: "link = \"folder\"", with: "link = \"folder\"\nconflict_policy = \"\(policy)\"")
            return text
        }
    }

    static func save(_ data: Data, to path: String) async throws {
        try await Tools.blocking { try data.write(to: URL(fileURLWithPath: path)) }
    }

    @Test("a file written onto a full disk drops nothing: never `clean` while its bytes are not on the service; once there is room, crmfs sync sends what the mount shows")
    func fullDisk() async throws {
        // The state directory (staging, journal, cache) on a small disk of its own.
        try await Tools.withSmallDisk(size: "8m") { disk in
            try await withMount(records: 2, docsPerRecord: 1, editConfig: {
                $0.replacingOccurrences(of: "directory = \"crmfs-state\"", with: "directory = \"\(disk)/state\"")
            }) { mount in
                let path = mount.path("\(Self.acme)/report.bin")
                let copy = try await Tools.shell("head -c 12000000 /dev/urandom > '\(path)'")
                #expect(copy.status != 0, "the copy runs out of room")
                // The close could not journal the bytes (SQLite's commit needs room too), or it could.
                let status = try await PermissionTests.xattr(path, "user.crmfs.sync")
                if status.hasPrefix("error: could not make the staged file durable") {
                    let sync = try await mount.sync(timeLimit: .seconds(60))
                    #expect(sync.status == 1 && sync.errors.contains("could not be sent"), "\(sync.errors)")
                } else {
                    #expect(["pending", "uploading", "clean"].contains(status), "\(status)")
                }
                // Room again: what the mount shows reaches the service.
                #expect(try await Tools.run("/bin/mount", ["-o", "remount,size=64m", disk]).status == 0)
                try await expectSynced(mount, timeLimit: .seconds(60))
                let local = try await Tools.read(path)
                #expect(!local.isEmpty)
                let remote = try await RemoteDrive(mount)
                #expect(try await remote.bytes("\(SeededPaths.acmeFolder)/report.bin") == local)
                #expect(try await PermissionTests.xattr(path, "user.crmfs.sync") == "clean")
            }
        }
    }

    @Test("link records exist once per document for link-object and files-connect, also after a crash and a restart")
    func linksSurviveACrash() async throws {
        try await withSandbox(records: 3, docsPerRecord: 1, separateProcess: true) { sandbox in
            let text = try String(contentsOfFile: sandbox.configPath, encoding: .utf8)
            try Self.linkModels(text).write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
            let connections = try sandbox.connections()
            var mount = try await MountFixture.mount(sandbox)
            let opportunity = try #require(try FileManager.default.contentsOfDirectory(atPath: mount.path("Opportunities")).sorted().first)
            try await Self.save(Data("linked\n".utf8), to: mount.path("\(Self.acme)/linked.txt"))
            try await Self.save(Data("connected\n".utf8), to: mount.path("Opportunities/\(opportunity)/connected.txt"))
            try await expectSynced(mount)
            let linkedID = try await Tools.run("getfattr", ["--only-values", "-n", "user.crmfs.item_id", mount.path("\(Self.acme)/linked.txt")]).output
            let connectedID = try await Tools.run("getfattr", ["--only-values", "-n", "user.crmfs.item_id", mount.path("Opportunities/\(opportunity)/connected.txt")]).output
            let opportunityID = try await Tools.run("getfattr", ["--only-values", "-n", "user.crmfs.record_id", mount.path("Opportunities/\(opportunity)")]).output
            #expect(!linkedID.isEmpty && !connectedID.isEmpty)

            // Overwrite both and kill the daemon before it can finish; a new daemon on the same state finishes.
            try await Self.save(Data("linked, second version\n".utf8), to: mount.path("\(Self.acme)/linked.txt"))
            try await Self.save(Data("connected, second version\n".utf8), to: mount.path("Opportunities/\(opportunity)/connected.txt"))
            let pid = try #require(try await mount.daemonPID())
            kill(pid, SIGKILL)
            _ = try await Tools.run("/bin/umount", ["-l", mount.mountpoint])
            mount = try await MountFixture.mount(sandbox)
            try await expectSynced(mount)

            let rows = try await connections.salesforce.query("SELECT Id, Record_Id__c FROM SharePoint_Document__c WHERE Item_Id__c = '\(linkedID)'")
            #expect(rows.count == 1)
            #expect(rows.first?["Record_Id__c"]?.stringValue == SeededPaths.acmeID)
            let versions = try await connections.salesforce.query("SELECT ContentDocumentId FROM ContentVersion WHERE ExternalDocumentInfo2 = '\(connectedID)'")
            #expect(Set(versions.compactMap { $0["ContentDocumentId"]?.stringValue }).count == 1)
            let document = try #require(versions.first?["ContentDocumentId"]?.stringValue)
            let links = try await connections.salesforce.query(
                "SELECT Id FROM ContentDocumentLink WHERE ContentDocumentId = '\(document)' AND LinkedEntityId = '\(opportunityID)'")
            #expect(links.count == 1)
            let driveID = try await sandbox.info()["driveId"]!
            #expect(try await connections.graph.download(driveID: driveID, itemID: linkedID).data == Data("linked, second version\n".utf8))
            #expect(try await connections.graph.download(driveID: driveID, itemID: connectedID).data == Data("connected, second version\n".utf8))

            // Moves follow: a folder moved to another account takes its documents' link rows along; a document
            // moved to another opportunity is linked there and no longer to the first.
            let accounts = try FileManager.default.contentsOfDirectory(atPath: mount.path("Accounts")).sorted().filter { $0 != "Acme Corp" }
            let otherAccount = try #require(accounts.first)
            let otherAccountID = try await Tools.run("getfattr", ["--only-values", "-n", "user.crmfs.record_id", mount.path("Accounts/\(otherAccount)")]).output
            let opportunities = try FileManager.default.contentsOfDirectory(atPath: mount.path("Opportunities")).sorted()
            let otherOpportunity = try #require(opportunities.dropFirst().first)
            let otherOpportunityID = try await Tools.run("getfattr", ["--only-values", "-n", "user.crmfs.record_id", mount.path("Opportunities/\(otherOpportunity)")]).output
            let made = try await Tools.shell("""
                set -e
                mkdir '\(mount.path("\(Self.acme)/Folder"))'
                echo inside > '\(mount.path("\(Self.acme)/Folder/inside.txt"))'
                """)
            #expect(made.status == 0, "\(made.errors)")
            try await expectSynced(mount)
            let insideID = try await Tools.run("getfattr", ["--only-values", "-n", "user.crmfs.item_id", mount.path("\(Self.acme)/Folder/inside.txt")]).output
            let moves = try await Tools.shell("""
                set -e
                mv '\(mount.path("\(Self.acme)/Folder"))' '\(mount.path("Accounts/\(otherAccount)/Folder"))'
                mv '\(mount.path("Opportunities/\(opportunity)/connected.txt"))' '\(mount.path("Opportunities/\(otherOpportunity)/connected.txt"))'
                """)
            #expect(moves.status == 0, "\(moves.errors)")
            try await expectSynced(mount)
            let insideRows = try await connections.salesforce.query("SELECT Record_Id__c FROM SharePoint_Document__c WHERE Item_Id__c = '\(insideID)'")
            #expect(insideRows.map { $0["Record_Id__c"]?.stringValue } == [otherAccountID])
            let movedLinks = try await connections.salesforce.query("SELECT LinkedEntityId FROM ContentDocumentLink WHERE ContentDocumentId = '\(document)'")
            let linkedTo = Set(movedLinks.compactMap { $0["LinkedEntityId"]?.stringValue })
            #expect(linkedTo.contains(otherOpportunityID) && !linkedTo.contains(opportunityID), "\(linkedTo)")

            // Deleting a document removes its link.
            #expect(try await Tools.run("rm", [mount.path("\(Self.acme)/linked.txt")]).status == 0)
            try await expectSynced(mount)
            #expect(try await connections.salesforce.query("SELECT Id FROM SharePoint_Document__c WHERE Item_Id__c = '\(linkedID)'").isEmpty)
            await mount.unmount()
        }
    }

    @Test("with 429s, 503s, resets and 30-second tokens, 200 files and a 200 MiB file arrive intact")
    func faultsAndShortTokens() async throws {
        try await withMount(records: 2, docsPerRecord: 1, configure: { options in
            options.tokenLifetime = 30
        }) { mount in
            let local = FileManager.default.temporaryDirectory.appendingPathComponent("crmfs-faults-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: local.appendingPathComponent("many"), withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: local) }
            for index in 0..<200 { try Data("file \(index) \(UUID())\n".utf8).write(to: local.appendingPathComponent("many/f\(index).txt")) }
            let large = try Tools.randomBytes(200 << 20)
            try large.write(to: local.appendingPathComponent("large.bin"))
            try await mount.sandbox.admin("faults", ["faults": "429:0.1,503:0.05,reset:0.02"])
            let copy = try await Tools.run("/bin/cp", ["-r", local.appendingPathComponent("many").path, local.appendingPathComponent("large.bin").path, mount.path(Self.acme)])
            #expect(copy.status == 0, "\(copy.errors)")
            // Every token in use dies now; 30-second ones keep dying while the uploads run.
            try await mount.sandbox.admin("tokens/expire")
            let sync = try await mount.sync()
            #expect(sync.status == 0, "\(sync.errors)")
            try await mount.sandbox.admin("faults", ["faults": ""])
            let stats = try await mount.sandbox.stats()
            #expect((stats["faults"] ?? 0) > 20, "faults were injected: \(stats["faults"] ?? 0)")

            let connections = try mount.sandbox.connections()
            let driveID = try await mount.sandbox.info()["driveId"]!
            let folder = try await connections.graph.item(driveID: driveID, path: "\(SeededPaths.acmeFolder)/many")
            let children = try await connections.graph.children(driveID: driveID, itemID: folder.id)
            #expect(children.count == 200)
            for child in children.prefix(20) {
                let data = try await connections.graph.download(driveID: driveID, itemID: child.id).data
                #expect(data == (try Data(contentsOf: local.appendingPathComponent("many/\(child.name!)"))))
            }
            let uploaded = try await connections.graph.item(driveID: driveID, path: "\(SeededPaths.acmeFolder)/large.bin")
            #expect(uploaded.size == Int64(large.count))
            #expect(uploaded.file?.hashes?.quickXorHash == QuickXorHash.hash(large))

            // All those failures were logged without a secret: no client secret, no upload URL credential.
            let log = try String(contentsOfFile: "\(mount.stateDirectory)/crmfs.log", encoding: .utf8)
            let secret = try String(contentsOfFile: mount.sandbox.directory.appendingPathComponent("secrets/graph-client-secret").path, encoding: .utf8)
            #expect(!log.contains(secret) && !log.contains("tempauth") && !log.contains("Bearer "))
            let journal = try FileManager.default.attributesOfItem(atPath: "\(mount.stateDirectory)/journal.sqlite")[.posixPermissions] as? Int
            #expect(journal == 0o600, "the journal holds open upload URLs: owner only")
        }
    }

    @Test("kill -9 during a 200 MiB upload, mount again: the file shows at once, crmfs sync finishes it with the same bytes")
    func killedMidUpload() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1, separateProcess: true) { sandbox in
            let text = try String(contentsOfFile: sandbox.configPath, encoding: .utf8)
            try Self.settings(fragment: "1280KiB")(text).write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
            let large = try Tools.randomBytes(200 << 20)
            let local = FileManager.default.temporaryDirectory.appendingPathComponent("crmfs-kill-\(UUID().uuidString).bin")
            try large.write(to: local)
            defer { try? FileManager.default.removeItem(at: local) }
            var mount = try await MountFixture.mount(sandbox)
            // Slow fragments, so the kill lands while the session is half sent.
            try await sandbox.admin("faults", ["latencyMs": 40])
            #expect(try await Tools.run("/bin/cp", [local.path, mount.path("\(Self.acme)/large.bin")]).status == 0)
            var chunks = 0
            for _ in 0..<200 where chunks < 20 {
                try await Task.sleep(for: .milliseconds(50))
                chunks = try await sandbox.stats()["graph.upload.chunk"] ?? 0
            }
            #expect(chunks >= 20, "the upload was under way")
            let pid = try #require(try await mount.daemonPID())
            kill(pid, SIGKILL)
            _ = try await Tools.run("/bin/umount", ["-l", mount.mountpoint])

            // Mounted again, the file shows and reads back from its staged copy while the upload resumes.
            mount = try await MountFixture.mount(sandbox)
            let shown = try FileManager.default.attributesOfItem(atPath: mount.path("\(Self.acme)/large.bin"))
            #expect((shown[.size] as? NSNumber)?.intValue == large.count)
            let state = try await Tools.run("getfattr", ["--only-values", "-n", "user.crmfs.sync", mount.path("\(Self.acme)/large.bin")])
            #expect(state.output == "uploading" || state.output == "pending", "\(state.output)")
            #expect(try await Tools.run("/usr/bin/cmp", [local.path, mount.path("\(Self.acme)/large.bin")]).status == 0)
            try await sandbox.admin("faults", ["latencyMs": 0])
            try await expectSynced(mount)
            let connections = try sandbox.connections()
            let driveID = try await sandbox.info()["driveId"]!
            let uploaded = try await connections.graph.item(driveID: driveID, path: "\(SeededPaths.acmeFolder)/large.bin")
            #expect(uploaded.size == Int64(large.count))
            #expect(uploaded.file?.hashes?.quickXorHash == QuickXorHash.hash(large))
            // 160 fragments of 1280 KiB in all, in the one session opened before the kill: the restart sent
            // only what the service lacked (at most the fragment the kill cut off goes twice).
            let stats = try await sandbox.stats()
            #expect(stats["graph.upload.session", default: 0] == 1, "\(stats)")
            #expect(stats["graph.upload.chunk", default: 0] <= 161, "the restart resumed the session rather than starting over: \(stats["graph.upload.chunk"] ?? 0) fragments")
            await mount.unmount()
        }
    }

    @Test("a document changed remotely between open and close follows the policy", arguments: ["keep-both", "local-wins", "remote-wins"])
    func conflicts(policy: String) async throws {
        // The drive's feed slowed, so what shows right after the sync is the mount's own doing.
        let slowFeed = { (config: String) in Self.settings(policy: policy)(config) + "\n[freshness]\ndrive_poll = \"60s\"\n" }
        try await withMount(records: 2, docsPerRecord: 1, editConfig: slowFeed) { mount in
            let connections = try mount.sandbox.connections()
            let driveID = try await mount.sandbox.info()["driveId"]!
            let path = mount.path(SeededPaths.acmeContract.replacingOccurrences(of: SeededPaths.acmeFolder, with: Self.acme))
            let folder = (path as NSString).deletingLastPathComponent
            let listed = try FileManager.default.contentsOfDirectory(atPath: folder)  // the kernel may keep this listing
            let remoteVersion = Data("changed in SharePoint meanwhile\n".utf8)
            let localVersion = Data("changed through the mount\n".utf8)
            let descriptor = open(path, O_WRONLY | O_TRUNC)
            #expect(descriptor >= 0)
            _ = localVersion.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
            let item = try await connections.graph.item(driveID: driveID, path: SeededPaths.acmeContract)
            let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("remote-\(UUID().uuidString)")
            try remoteVersion.write(to: scratch)
            defer { try? FileManager.default.removeItem(at: scratch) }
            _ = try await connections.graph.simpleUpload(driveID: driveID, to: .item(id: item.id), file: scratch.path, size: Int64(remoteVersion.count),
                                                         options: UploadOptions())
            #expect(close(descriptor) == 0)
            try await expectSynced(mount)

            let current = try await connections.graph.download(driveID: driveID, itemID: item.id).data
            let siblings = try await connections.graph.children(driveID: driveID, itemID: item.parentReference!.id!)
            let copies = siblings.filter { $0.name?.contains("(conflict ") == true }
            let log = try String(contentsOfFile: "\(mount.stateDirectory)/crmfs.log", encoding: .utf8)
            switch policy {
            case "keep-both":
                #expect(current == remoteVersion)
                #expect(copies.count == 1)
                if let copy = copies.first { #expect(try await connections.graph.download(driveID: driveID, itemID: copy.id).data == localVersion) }
                #expect(log.contains("conflict: keeping both"))
                #expect(Set(try FileManager.default.contentsOfDirectory(atPath: folder)) == Set(listed + copies.compactMap(\.name)),
                        "the copy shows through the mount at once")
            case "local-wins":
                #expect(current == localVersion)
                #expect(copies.isEmpty)
                #expect(log.contains("the local copy replaces the remote change"))
            default:
                #expect(current == remoteVersion)
                #expect(copies.isEmpty)
                let kept = try FileManager.default.contentsOfDirectory(atPath: "\(mount.stateDirectory)/conflicts")
                #expect(kept.count == 1)
                #expect(log.contains("the remote copy stays"))
            }
            let state = try await Tools.run("getfattr", ["--only-values", "-n", "user.crmfs.sync", path])
            #expect(state.output.hasPrefix("conflict"), "\(state.output)")
        }
    }
}
