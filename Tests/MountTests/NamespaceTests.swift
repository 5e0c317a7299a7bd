import CRM
import Foundation
import Graph
@testable import Namespace
import Services
import Testing
import TestSupport

/// The tree the kernel shows, compared with what the services hold.
@Suite("mounted namespace", .serialized)
struct NamespaceTests {
    @Test("directory walkers that trust link counts (Foundation's subpaths, fts) still find sub-folders")
    func walkersFindSubfolders() async throws {
        try await withMount(records: 2, docsPerRecord: 1) { mount in
            let walked = try FileManager.default.subpathsOfDirectory(atPath: mount.path("Accounts/Acme Corp"))
            #expect(walked.contains("Contracts/MSA-2026.pdf"), "\(walked)")
            var status = stat()
            #expect(stat(mount.path("Accounts/Acme Corp"), &status) == 0 && status.st_nlink == 1, "a link count of 1 says 'not counted'")
        }
    }

    @Test("after the first mount's enumeration of the library, find over every record and document costs no Graph request")
    func findAfterEnumeration() async throws {
        try await withMount(records: 10, docsPerRecord: 3) { mount in
            #expect(try await RemoteChangeTests.eventually(within: .seconds(30)) { mount.logTail(lines: 200).contains("the library is enumerated") })
            try await mount.sandbox.admin("stats/reset")
            let files = try await Tools.shell("find '\(mount.mountpoint)' -type f | wc -l")
            #expect(Int(files.output.trimmingCharacters(in: .whitespacesAndNewlines)) == 10 * 3 * 3)
            let stats = try await mount.sandbox.stats()
            for request in ["graph.item", "graph.children", "graph.fields", "graph.content"] {
                #expect(stats[request, default: 0] == 0, "\(request)")
            }
            // A document known from the enumeration has no column values yet: only a user.sp.* ask fetches them.
            let contract = mount.path("Accounts/Acme Corp/Contracts/MSA-2026.pdf")
            #expect(try await Tools.run("getfattr", ["--only-values", "-n", "user.crmfs.sync", contract]).output == "clean")
            #expect(try await mount.sandbox.stats()["graph.fields", default: 0] == 0)
            #expect(try await Tools.run("getfattr", ["--only-values", "-n", "user.sp.Customer", contract]).output == "Acme Corp")
            #expect(try await mount.sandbox.stats()["graph.fields", default: 0] == 1)
        }
    }

    @Test("a tree walk during the first mount's enumeration of the library waits for it rather than racing it folder by folder")
    func walkWaitsForEnumeration() async throws {
        // Pages of 10 items at 20 ms each: the enumeration takes a while, and find starts at once.
        try await withMount(records: 40, docsPerRecord: 1, configure: { $0.pageCap = 10; $0.faults.latencyMilliseconds = 20 }) { mount in
            let files = try await Tools.shell("find '\(mount.mountpoint)' -type f | wc -l")
            #expect(Int(files.output.trimmingCharacters(in: .whitespacesAndNewlines)) == 3 * 40)
            #expect(mount.logTail(lines: 200).contains("the library is enumerated"))
            let stats = try await mount.sandbox.stats()
            #expect(stats["graph.children", default: 0] <= 10, "a handful of folders listed before the walk was seen, not one per record: \(stats)")
        }
    }

    @Test("with the drive's feed off, find over all documents costs one listing per directory")
    func findIsCheap() async throws {
        try await withMount(records: 10, docsPerRecord: 3, editConfig: { $0 + "\n[freshness]\ndrive_poll = \"0\"\n" }) { mount in
            try await mount.sandbox.admin("stats/reset")
            func count(_ arguments: String) async throws -> Int {
                Int(try await Tools.shell("find '\(mount.mountpoint)' \(arguments) | wc -l").output.trimmingCharacters(in: .whitespacesAndNewlines))!
            }
            let files = try await count("-type f")
            let directories = try await count("-type d")
            let records = try await count("-mindepth 2 -maxdepth 2 -type d")
            let folders = directories - 1 - 3 - records  // below record level
            #expect(files == 10 * 3 * 3)
            let stats = try await mount.sandbox.stats()
            // Per object: a folder lookup for each of the first records, then one lookup and one listing of
            // the folder holding all its record folders. Per record and per sub-folder: one listing.
            // Nothing per file.
            let objects = 3, lookedUp = RecordFolderIndex.threshold - 1
            #expect(stats["graph.item", default: 0] == objects * (lookedUp + 1))
            #expect(stats["graph.children", default: 0] == objects + records + folders)
            #expect(stats["graph.fields", default: 0] == 0)
            #expect(stats["graph.content", default: 0] == 0)
        }
    }
}
