import Foundation
import HTTP
import Testing
import TestSupport

/// Round trips are what a real tenant's latency charges for: each everyday operation makes the fewest
/// requests the wire facts allow (issue 11). These count the requests the sandbox saw for an operation
/// through the kernel, not its time, so a change that adds a round trip fails here; `bench/latency.sh`
/// measures the times at 100 ms.
@Suite("Round trips", .serialized)
struct RoundTripTests {
    static func requestKinds(_ sandbox: SandboxFixture) async throws -> [String: Int] { try await sandbox.requestKinds() }

    /// Local files for a copy: `count` of 4–64 KiB each, with their own mtimes.
    static func smallFiles(_ count: Int) throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("roundtrips-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var generator = SystemRandomNumberGenerator()
        for index in 0..<count {
            let size = Int.random(in: 4 << 10...64 << 10, using: &generator)
            try Tools.randomBytes(size).write(to: folder.appendingPathComponent(String(format: "note-%03d.txt", index)))
        }
        return folder
    }

    @Test("a cold read of a document whose folder was listed costs only its download; a copy of a folder costs one listing besides")
    func coldSmallRead() async throws {
        // With the drive's feed off, folders are listed as they are looked at: the listing brings the URLs.
        try await withMount(records: 3, docsPerRecord: 3, bulkFolder: 40, editConfig: { $0 + "\n[freshness]\ndrive_poll = \"0\"\n" }) { mount in
            let record = mount.path("Accounts/Acme Corp")
            let document = try #require(try FileManager.default.contentsOfDirectory(atPath: record)
                .first { !FileManager.default.isDirectory(atPath: "\(record)/\($0)") })
            try await mount.sandbox.admin("stats/reset")
            #expect(!(try Data(contentsOf: URL(fileURLWithPath: "\(record)/\(document)")).isEmpty))
            let read = try await Self.requestKinds(mount.sandbox)
            // One download a cache block, side by side (read-ahead): nothing else.
            let size = try FileManager.default.attributesOfItem(atPath: "\(record)/\(document)")[.size] as! Int64
            let blockSize = try mount.sandbox.config().cache.blockSize
            #expect(read == ["GET download": Int((size + blockSize - 1) / blockSize)], "\(document), \(size) bytes: \(read)")

            let bulk = mount.path("Accounts/Acme Corp/Bulk")
            #expect(try FileManager.default.contentsOfDirectory(atPath: bulk).count == 40)
            try await mount.sandbox.admin("stats/reset")
            let copy = FileManager.default.temporaryDirectory.appendingPathComponent("bulk-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: copy) }
            #expect(try await Tools.run("rsync", ["-a", bulk + "/", copy + "/"]).status == 0)
            #expect(try await Tools.run("diff", ["-r", bulk, copy]).status == 0)
            let copied = try await Self.requestKinds(mount.sandbox)
            #expect(copied["GET download"] == 40, "\(copied)")
            #expect(copied.values.reduce(0, +) <= 41, "the downloads, and at most one listing: \(copied)")
        }
    }

    @Test("rsync -a of 100 small files into a record: a session and one fragment each, columns stamped in batches, the record read once — at most 2.2 requests a file")
    func rsyncIn() async throws {
        try await withMount(records: 3, docsPerRecord: 1) { mount in
            let local = try Self.smallFiles(100)
            defer { try? FileManager.default.removeItem(at: local) }
            _ = try FileManager.default.contentsOfDirectory(atPath: mount.path("Accounts/Acme Corp"))
            try await mount.sandbox.admin("stats/reset")
            let rsync = try await Tools.run("rsync", ["-a", local.path + "/", mount.path("Accounts/Acme Corp/Notes/")])
            #expect(rsync.status == 0, "\(rsync.errors)")
            #expect(try await mount.sync().status == 0)
            let sent = try await Self.requestKinds(mount.sandbox).filter { $0.key != "GET delta" && $0.key != "POST soql" }
            #expect(sent["POST createUploadSession"] == 100, "\(sent)")
            #expect(sent["PUT upload fragment"] == 100, "\(sent)")
            #expect(sent["GET record"] == 1, "the record's fields read once for all its documents: \(sent)")
            #expect(sent["POST children"] == 1, "the new sub-folder made once: \(sent)")
            #expect(sent["GET item"] == nil, "no document read again after its columns were written: \(sent)")
            #expect(sent.values.reduce(0, +) <= 220, "at most 2.2 requests a file: \(sent)")
            let remote = try await RemoteDrive(mount)
            #expect(try await remote.names("\(SeededPaths.acmeFolder)/Notes").count == 100)
        }
    }
}

extension FileManager {
    func isDirectory(atPath path: String) -> Bool {
        var directory: ObjCBool = false
        return fileExists(atPath: path, isDirectory: &directory) && directory.boolValue
    }
}
