import Foundation
import Testing
import Writeback

@Suite("staging area and journal")
struct WritebackTests {
    static func temporaryDirectory() throws -> URL {
        let url = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("crmfs-writeback-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test("staged files are private, sealed to disk, and orphans are found")
    func staging() throws {
        let root = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let staging = try StagingArea(directory: root.appendingPathComponent("staging"))
        var info = stat()
        #expect(stat(staging.directory.path, &info) == 0 && info.st_mode & 0o777 == 0o700)

        let (name, descriptor) = try staging.create()
        let bytes = Array("hello, SharePoint".utf8)
        #expect(write(descriptor, bytes, bytes.count) == bytes.count)
        try staging.seal(name, descriptor: descriptor)
        close(descriptor)
        #expect(stat(staging.path(of: name), &info) == 0 && info.st_mode & 0o777 == 0o600)
        #expect(try Data(contentsOf: URL(fileURLWithPath: staging.path(of: name))) == Data(bytes))

        let (stray, strayDescriptor) = try staging.create()
        close(strayDescriptor)
        #expect(try staging.orphans(keeping: [name]) == [stray])
        try staging.remove(stray)
        try staging.remove(stray)  // already gone: fine
        #expect(try staging.orphans(keeping: [name]).isEmpty)
    }

    @Test("an mtime a hair before a whole second stays in that second through the journal (rsync compares seconds)")
    func mtimeKeepsItsSecond() throws {
        let root = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let journal = try Journal(path: root.appendingPathComponent("journal.sqlite").path)
        let local = Date(timeIntervalSince1970: 1_795_996_473.9996)
        let saved = try journal.add(PendingChange(kind: .upload, driveID: "b!1", name: "doc-0.txt", parentItemID: "01P", stagedFile: "f", size: 13, modified: local))
        #expect(try journal.change(id: saved.id!)?.modified == Date(timeIntervalSince1970: 1_795_996_473))
        try journal.update(id: saved.id!) { $0.modified = Date(timeIntervalSince1970: 1_795_996_480.9999) }
        #expect(try journal.change(id: saved.id!)?.modified == Date(timeIntervalSince1970: 1_795_996_480))
    }

    @Test("changes survive reopening the journal, in order, with their progress; done ones are forgotten")
    func journal() throws {
        let root = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root) }
        let path = root.appendingPathComponent("journal.sqlite").path
        do {
            let journal = try Journal(path: path)
            #expect(try journal.pragma("journal_mode") == "wal")
            #expect(try journal.pragma("synchronous") == "2")  // FULL
            let first = try journal.add(PendingChange(kind: .upload, driveID: "b!1", name: "MSA.pdf", parentItemID: "01P", recordID: "001A",
                                                      stagedFile: "f1", size: 10, modified: Date(timeIntervalSince1970: 1_700_000_000), baseETag: "\"{x},3\""))
            try journal.add(PendingChange(kind: .delete, driveID: "b!1", name: "old.pdf", itemID: "01OLD"))
            try journal.update(id: first.id!) { change in
                change.state = .uploading
                change.uploadURL = "http://127.0.0.1/_api/v2.0/uploadSession/abc"
                change.uploadedBytes = 327_680
            }
        }
        let reopened = try Journal(path: path)
        let changes = try reopened.outstanding()
        #expect(changes.map(\.kind) == [.upload, .delete])
        #expect(changes[0].state == .uploading)
        #expect(changes[0].uploadedBytes == 327_680)
        #expect(changes[0].modified == Date(timeIntervalSince1970: 1_700_000_000))
        #expect(changes[0].baseETag == "\"{x},3\"")
        #expect(try reopened.stagedFiles() == ["f1"])
        try reopened.complete(id: changes[0].id!)
        #expect(try reopened.count == 1)
        #expect(try reopened.change(id: changes[0].id!) == nil)
        var info = stat()
        #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o600)
    }
}

@Suite("names that stay local")
struct LocalOnlyNameTests {
    @Test("editors' and rsync's temporary files stay local", arguments: [
        ".~lock.Proposal.docx#", "~$oposal.docx", "~WRL0001.tmp", "lu12345abcd.tmp", ".MSA.pdf.swp", "notes.txt~", "4913",
        ".#notes.txt", ".goutputstream-AB12CD", ".MSA-2026.pdf.a1B2c3",
    ])
    func local(name: String) {
        #expect(LocalOnlyNames().isLocalOnly(name))
    }

    @Test("documents are uploaded", arguments: ["MSA-2026.pdf", "Proposal.docx", ".profile", "notes.txt", "a~b.txt", "lunch.tmp.pdf", "report.2024.pdf"])
    func uploaded(name: String) {
        #expect(!LocalOnlyNames().isLocalOnly(name))
    }

    @Test("patterns are configurable")
    func configured() {
        let names = LocalOnlyNames(patterns: ["*.partial"])
        #expect(names.match("big.bin.partial") == "*.partial")
        #expect(!names.isLocalOnly("notes.txt~"))
    }
}
