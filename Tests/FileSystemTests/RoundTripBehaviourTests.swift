import FileSystem
import Foundation
import Testing
import TestSupport

/// Round trips of the file system's own operations, in process: each makes the fewest requests the wire
/// facts allow. These count the requests the sandbox saw, not their time (`bench/latency.sh` times them).
/// What ordinary tools cost through the kernel (rsync, cp, reads with the kernel's read-ahead) is in
/// MountTests' RoundTripTests.
@Suite("round trips, in process", .serialized)
struct RoundTripBehaviourTests {
    @Test("a first mount asks the site's drives by path in one request, beside the sign-ins and describes; a remount needs no request at all")
    func mountRoundTrips() async throws {
        try await withSandbox(records: 3, docsPerRecord: 1, separateProcess: true) { sandbox in
            try await sandbox.admin("stats/reset")
            let first = try await FileSystemFixture.build(sandbox)
            #expect(try await first.list("Accounts").count == 3)
            await first.close()
            let kinds = try await sandbox.requestKinds()
            #expect(kinds["GET site drives by path"] == 1, "the library found in one request: \(kinds)")
            #expect(kinds["GET site"] == nil, "no look-up of the site on its own: \(kinds)")
            #expect(kinds["POST token"] == 2, "one sign-in to each service: \(kinds)")
            #expect(kinds["GET describe"] == 3, "each configured object described once: \(kinds)")

            // Everything a mount must know before it shows the tree is kept: a remount comes up and shows
            // the kept tree while every request to the services fails.
            try await sandbox.admin("faults", ["faults": "503:1.0", "retryAfter": 1])
            let second = try await FileSystemFixture.build(sandbox)
            #expect(try await second.list("Accounts").count == 3)
            await second.close()
            try await sandbox.admin("faults", ["faults": "503:0"])
        }
    }

    @Test("documents copied at once into a record that has no folder yet make its folder once")
    func recordFolderMadeOnce() async throws {
        try await withSandbox(records: 3, docsPerRecord: 1, separateProcess: true) { sandbox in
            _ = try await sandbox.connections().salesforce.create("Account", fields: ["Name": "Roundtrip Holdings"])
            let fs = try await FileSystemFixture.build(sandbox)
            let record = try #require(try await fs.list("Accounts").first { $0.hasPrefix("Roundtrip Holdings") })
            try await sandbox.admin("stats/reset")
            // As rsync -a writes them: each closed, then given its own time (which rides in an upload session).
            for index in 0..<20 {
                let path = "Accounts/\(record)/note-\(index).txt"
                try await fs.write(path, try Tools.randomBytes(4096))
                try await fs.setModified(path, to: Date(timeIntervalSince1970: 1_700_000_000 + Double(index)))
            }
            try await fs.sync()
            let sent = try await sandbox.requestKinds()
            #expect(sent["POST children"] == 1, "the record's folder made once for 20 documents: \(sent)")
            #expect(sent["POST createUploadSession"] == 20, "\(sent)")
            #expect(try await fs.list("Accounts/\(record)").count == 20)
            await fs.close()
        }
    }

    @Test("a 50 MiB file written into a record goes as one session and one fragment")
    func largeCopyFragments() async throws {
        try await withFileSystem(records: 3, docsPerRecord: 1) { fs in
            _ = try await fs.list("Accounts/Acme Corp")
            try await fs.sandbox.admin("stats/reset")
            let bytes = try Tools.randomBytes(50 << 20)
            let handle = try await fs.open("Accounts/Acme Corp/large.bin", O_WRONLY | O_CREAT | O_TRUNC)
            // As cp writes it: 128 KiB at a time.
            var offset = 0
            while offset < bytes.count {
                let end = min(bytes.count, offset + (128 << 10))
                try await fs.write(handle, bytes.subdata(in: offset..<end), at: Int64(offset))
                offset = end
            }
            try await fs.close(handle)
            try await fs.sync()
            let sent = try await fs.sandbox.requestKinds()
            #expect(sent["POST createUploadSession"] == 1, "\(sent)")
            #expect(sent["PUT upload fragment"] == 1, "\(sent)")
        }
    }
}
