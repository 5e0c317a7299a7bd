import FileSystem
import Foundation
import Testing
import TestSupport
import Writeback
import Writes

/// Races a busy machine or a failing disk brings into the write path, made to happen with the write
/// path's hooks, in process.
@Suite("write races, in process", .serialized)
struct WriteRaceTests {
    static let acme = "Accounts/Acme Corp"

    /// The race CI caught: a new document renamed just as its upload started (past the rename's look at its
    /// changes) was uploaded twice from one staged file, the first upload's success removed the file, and
    /// the second failed forever: the document stayed under its old name. Now, once the upload is up, the
    /// document moves. The hook holds the rename until the upload is done.
    @Test("a new document renamed just as its upload starts arrives under its new name, once")
    func renameAsUploadStarts() async throws {
        try await withSandbox(records: 3, docsPerRecord: 1, separateProcess: true) { sandbox in
            let uploaded = { @Sendable in
                let stats = (try? await sandbox.stats()) ?? [:]
                return stats["graph.upload.simple", default: 0] + stats["graph.upload.session", default: 0] > 0
            }
            let hooks = WriteHooks(beforeRenameActs: { _ = await Tools.eventually(within: .seconds(30), uploaded) })
            let fs = try await FileSystemFixture.build(sandbox, hooks: hooks)
            try await fs.mkdir("\(Self.acme)/Drafts")
            try await sandbox.admin("stats/reset")
            try await fs.write("\(Self.acme)/two.txt", "two\n")
            try await fs.rename("\(Self.acme)/two.txt", "\(Self.acme)/Drafts/two.txt")
            #expect(await uploaded(), "the upload ran while the rename was held")
            try await fs.sync()
            let remote = try await RemoteDrive(sandbox)
            #expect(try await remote.bytes("\(SeededPaths.acmeFolder)/Drafts/two.txt") == Data("two\n".utf8))
            #expect(try await remote.item("\(SeededPaths.acmeFolder)/two.txt") == nil)
            await fs.close()
        }
    }

    /// rsync meets this when the kernel's release of its temporary file comes late: the file's last close
    /// (its release) lands while the rename is recording the document's upload.
    @Test("a temporary file renamed to its final name while its last close is still on its way is sent (rsync's temp-then-rename on a busy machine)")
    func renameRacingLastClose() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1, separateProcess: true) { sandbox in
            let armed = Locked(false), recording = Locked(false)
            // Every change recorded while armed takes 400 ms, as on a busy disk.
            let hooks = WriteHooks(beforeJournalAdd: {
                guard armed.value else { return }
                recording.set(true)
                usleep(400_000)
            })
            let fs = try await FileSystemFixture.build(sandbox, hooks: hooks)
            let temporary = "\(Self.acme)/.report.txt.Ab12Cd", final = "\(Self.acme)/report.txt"
            let bytes = Data("quarterly report\n".utf8)
            let handle = try await fs.open(temporary, O_CREAT | O_RDWR)
            try await fs.write(handle, bytes)
            try await fs.flush(handle)  // the close; the release comes later
            armed.set(true)
            let rename = Task { try await fs.rename(temporary, final) }
            #expect(await Tools.eventually(within: .seconds(30)) { recording.value }, "the rename records a change")
            await fs.release(handle)  // the last close, while the rename records
            armed.set(false)
            try await rename.value
            try await fs.sync()
            let remote = try await RemoteDrive(sandbox)
            #expect(try await remote.bytes("\(SeededPaths.acmeFolder)/report.txt") == bytes)
            await fs.close()
        }
    }

    @Test("a failed flush in fsync fails that fsync with its errno, says so in user.crmfs.sync, blocks nothing else, and the next flush sends the bytes")
    func failedFsyncBlocksNothing() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1, separateProcess: true) { sandbox in
            // Every flush of a staged file fails (EIO) while the disk is failing.
            let failing = Locked(true)
            let hooks = WriteHooks(beforeSeal: {
                if failing.value { throw StagingError.system("fsync", "(the failing disk)", EIO) }
            })
            let fs = try await FileSystemFixture.build(sandbox, hooks: hooks)
            let acme = Self.acme
            let bytes = try Tools.randomBytes(700_000)
            let path = "\(acme)/fsynced.bin"
            let handle = try await fs.open(path, O_CREAT | O_WRONLY)
            try await fs.write(handle, bytes)
            #expect(await Errno.of { try await fs.fsync(handle) } == EIO)
            let status = try await fs.getxattr(path, "user.crmfs.sync") ?? ""
            #expect(status.hasPrefix("error: could not make the staged file durable"), "\(status)")
            // A flush right after (a close of a copy of the descriptor) fails too and changes nothing:
            // still one change of these bytes.
            await #expect(throws: (any Error).self) { try await fs.flush(handle) }
            // The disk is well again; the next flush of this file (a close, or crmfs sync) seals it.
            failing.set(false)
            // Everything else goes on: a folder, a new file, a rename.
            try await fs.mkdir("\(acme)/After")
            try await fs.write("\(acme)/After/later.txt", "later\n")
            try await fs.rename("\(acme)/Contracts/MSA-2026.pdf", "\(acme)/Contracts/MSA-renamed.pdf")
            // crmfs sync does not hang on it: like sync(1), it seals and sends it with everything else.
            try await fs.sync()
            let remote = try await RemoteDrive(sandbox)
            #expect(try await remote.bytes("\(SeededPaths.acmeFolder)/After/later.txt") == Data("later\n".utf8))
            #expect(try await remote.item("\(SeededPaths.acmeFolder)/Contracts/MSA-renamed.pdf") != nil)
            #expect(try await remote.bytes("\(SeededPaths.acmeFolder)/fsynced.bin") == bytes)
            try await fs.close(handle)
            try await fs.sync()
            #expect(try await remote.bytes("\(SeededPaths.acmeFolder)/fsynced.bin") == bytes)
            // One upload of those bytes (and one of later.txt), not two.
            let stats = try await sandbox.stats()
            #expect(stats["graph.upload.session", default: 0] + stats["graph.upload.simple", default: 0] == 2, "\(stats)")
            #expect(try await fs.getxattr(path, "user.crmfs.sync") == "clean")
            await fs.close()
        }
    }

    /// Soak seed 1371: a document opened for writing just before an outage, closed in it while the rest of its
    /// bytes were still being copied. The close cannot make the file whole, so it fails (EIO, once the
    /// client's retries are exhausted); what was written stays, and `crmfs sync` sends it once the service is back.
    @Test("a document closed in an outage while its earlier bytes were still being copied: close answers EIO after retries; what was written stays and crmfs sync sends it once the service is back")
    func closedInAnOutage() async throws {
        try await withSandbox(records: 1, docsPerRecord: 1, largeFile: 4 << 20, separateProcess: true) { sandbox in
            let fs = try await FileSystemFixture.build(sandbox, options: ["block_size=256KiB"])
            let path = "Accounts/Acme Corp/Large Files/large-file.bin", remotePath = "\(SeededPaths.acmeFolder)/Large Files/large-file.bin"
            let remote = try await RemoteDrive(sandbox)
            let original = try #require(try await remote.bytes(remotePath))
            // A block a second: the background copy is still under way when the outage starts.
            try await sandbox.admin("faults", ["streamBytesPerSecond": 256 << 10])
            let handle = try await fs.open(path, O_WRONLY)
            let edit = Data("edited just before an outage".utf8)
            try await fs.write(handle, edit)
            try await sandbox.admin("faults", ["faults": "503:1", "retryAfter": 0])
            #expect(await Errno.of { try await fs.close(handle) } == EIO)
            try await sandbox.admin("faults", ["faults": "503:0", "streamBytesPerSecond": 0])
            let expected = edit + original.dropFirst(edit.count)
            try await fs.sync()
            #expect(try await remote.bytes(remotePath) == expected, "sent once the service is back: \(fs.log.lines.suffix(5))")
            await fs.close()
        }
    }

    /// Found by the audit of stop 35: the close held the staged copy alone and waited for the block the
    /// background copy was fetching, which needed the copy to write it: both waited for ever, and so did
    /// every later call on the file (Python's `open(f, "r+")` read and closed, LibreOffice opening a large file).
    @Test("a document opened read-write, read and closed unwritten while its bytes are still being copied: the close returns, nothing is sent")
    func closedUnwrittenWhileCopying() async throws {
        try await withSandbox(records: 1, docsPerRecord: 1, largeFile: 4 << 20, separateProcess: true) { sandbox in
            let fs = try await FileSystemFixture.build(sandbox, options: ["block_size=256KiB"])
            let path = "Accounts/Acme Corp/Large Files/large-file.bin"
            let remote = try await RemoteDrive(sandbox)
            let original = try #require(try await remote.bytes("\(SeededPaths.acmeFolder)/Large Files/large-file.bin"))
            // A block a second: the background copy is fetching its next block when the close comes.
            try await sandbox.admin("faults", ["streamBytesPerSecond": 256 << 10])
            let handle = try await fs.open(path, O_RDWR)
            #expect(try await fs.read(handle, length: 4096) == original.prefix(4096))
            try await sandbox.admin("stats/reset")
            let closed = try await finishes(within: .seconds(120)) { try await fs.close(handle) }
            #expect(closed, "the close of an unwritten handle did not return")
            try await sandbox.admin("faults", ["streamBytesPerSecond": 0])
            #expect(try await fs.read(path) == original)
            try await fs.sync()
            let stats = try await sandbox.stats()
            #expect(stats["graph.upload.session", default: 0] + stats["graph.upload.simple", default: 0] == 0, "\(stats)")
            await fs.close()
        }
    }

    /// Found by the audit of stop 35: an open for writing while the last close was still journaling took a
    /// session of its own, and when that close failed it found the document taken and dropped its bytes.
    @Test("an open while the last close is still journaling waits for it: when that close fails, what it held stays the document's and is sent")
    func openDuringFailingLastClose() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1, separateProcess: true) { sandbox in
            let seals = Locked(0), sealing = Locked(false), reopening = Locked(false)
            // A failing disk while armed (seals counts from 1): the close's flush fails, then its release (the
            // last close) fails too, once the second open has begun.
            let hooks = WriteHooks(beforeSeal: {
                let seal = seals.withLock { count -> Int in
                    if count > 0 { count += 1 }
                    return count
                }
                guard seal >= 2, seal <= 3 else { return }
                if seal == 3 {
                    sealing.set(true)
                    _ = Tools.eventuallyBlocking(within: .seconds(30)) { reopening.value }
                    usleep(200_000)  // the open is under way, not merely asked for
                }
                throw StagingError.system("fsync", "(the failing disk)", EIO)
            })
            let fs = try await FileSystemFixture.build(sandbox, hooks: hooks)
            let path = "\(Self.acme)/edited.txt"
            try await fs.write(path, "first version\n")
            try await fs.sync()
            let handle = try await fs.open(path, O_WRONLY)
            let edit = Data("edited version\n".utf8)
            try await fs.write(handle, edit)
            seals.set(1)
            let firstClose = Task { await Errno.of { try await fs.close(handle) } }
            #expect(await Tools.eventually(within: .seconds(30)) { sealing.value }, "the last close seals")
            reopening.set(true)
            let again = try await fs.open(path, O_WRONLY)
            #expect(await firstClose.value == EIO)
            // The second handle writes nothing; its close journals what the first close kept.
            try await fs.close(again)
            try await fs.sync()
            let remote = try await RemoteDrive(sandbox)
            #expect(try await remote.bytes("\(SeededPaths.acmeFolder)/edited.txt") == edit)
            #expect(try await fs.getxattr(path, "user.crmfs.sync") == "clean")
            await fs.close()
        }
    }

    @Test("truncate(2) by path answers the error when the truncation cannot be journaled (a full disk); what it did stays and is sent")
    func truncateByPathFails() async throws {
        try await withSandbox(records: 2, docsPerRecord: 1, separateProcess: true) { sandbox in
            let failing = Locked(false)
            let hooks = WriteHooks(beforeJournalAdd: { if failing.value { throw POSIXError(.ENOSPC) } })
            let fs = try await FileSystemFixture.build(sandbox, hooks: hooks)
            let path = "\(Self.acme)/notes.txt"
            try await fs.write(path, "twelve bytes")
            try await fs.sync()
            failing.set(true)
            #expect(await Errno.of { try await fs.truncate(path, to: 6) } == ENOSPC)
            failing.set(false)
            #expect(try await fs.stat(path).st_size == 6)
            try await fs.sync()
            let remote = try await RemoteDrive(sandbox)
            #expect(try await remote.bytes("\(SeededPaths.acmeFolder)/notes.txt") == Data("twelve".utf8))
            await fs.close()
        }
    }

    /// Found by the second audit of stop 36: renaming over a file open for writing ended its copy, so its
    /// handle read zeros where the copy had not reached; POSIX's replaced file stays readable through it.
    @Test("a large document renamed over while open read-write still reads its own bytes through that handle; the name holds the new one")
    func renamedOverStillReadable() async throws {
        try await withSandbox(records: 1, docsPerRecord: 1, largeFile: 4 << 20, separateProcess: true) { sandbox in
            let fs = try await FileSystemFixture.build(sandbox, options: ["block_size=256KiB"])
            let folder = "Accounts/Acme Corp/Large Files", path = "\(folder)/large-file.bin"
            let remotePath = "\(SeededPaths.acmeFolder)/Large Files/large-file.bin"
            let remote = try await RemoteDrive(sandbox)
            let original = try #require(try await remote.bytes(remotePath))
            // A block a second: the copy is still under way at the rename.
            try await sandbox.admin("faults", ["streamBytesPerSecond": 256 << 10])
            let handle = try await fs.open(path, O_RDWR)
            try await fs.write(handle, Data("x".utf8))
            let replacement = Data("the replacement\n".utf8)
            try await fs.write("\(folder)/new.bin", replacement)
            try await fs.rename("\(folder)/new.bin", path)
            try await sandbox.admin("faults", ["streamBytesPerSecond": 0])
            let start = 3 << 20
            #expect(try await fs.read(handle, offset: Int64(start), length: 65536) == original.subdata(in: start..<start + 65536))
            try await fs.close(handle)
            try await fs.sync()
            #expect(try await fs.read(path) == replacement)
            #expect(try await remote.bytes(remotePath) == replacement)
            await fs.close()
        }
    }
}
