import CLinux
import Foundation
import Graph
import HTTP
import Sandbox
import Services
import Testing
import TestSupport

/// The model-based fault test: seeded random sequences of file-system calls on a few documents and folders
/// of one record, through the kernel into a real mount, interleaved with faults (throttling storms,
/// outages, expiring tokens, the daemon killed and mounted again). A reference model (ReferenceModel) says
/// what each call must answer; once the faults stop and `crmfs sync` returns, the service must hold exactly
/// the model's documents (names, bytes, and the mtimes set explicitly), every mount must show the times
/// the service holds, nothing may be `pending` or set aside, and the daemon must never have died unless
/// killed. A failing seed prints itself and the shortest list of operations found that still fails.
///
/// `CRMFS_MODEL_SEEDS=A-B` (or one seed) and `CRMFS_MODEL_OPERATIONS=N` choose what runs; bench/soak.sh
/// runs seed after seed for as long as asked.
@Suite("model-based faults", .serialized)
struct ModelFaultTests {
    /// The seeds `CRMFS_MODEL_SEEDS` names (`A-B`, or one); unset, the seeded runs do not run. CI runs
    /// 1-3 beside the whole suite (packaging/run-tests.sh); bench/soak.sh runs as many as time allows.
    static var seeds: [UInt64] {
        guard let text = ProcessInfo.processInfo.environment["CRMFS_MODEL_SEEDS"], !text.isEmpty else { return [] }
        let bounds = text.split(separator: "-").compactMap { UInt64($0) }
        return bounds.count == 2 ? Array(bounds[0]...bounds[1]) : bounds
    }

    static var operationCount: Int { Int(ProcessInfo.processInfo.environment["CRMFS_MODEL_OPERATIONS"] ?? "") ?? 40 }

    @Test("a seeded run of calls and faults ends with the service holding exactly what the model says",
          .enabled(if: !seeds.isEmpty, "seeds run when CRMFS_MODEL_SEEDS names them (bench/soak.sh)"), arguments: seeds)
    func seeded(seed: UInt64) async throws {
        let operations = ReferenceModel.operations(seed: seed, count: Self.operationCount)
        let failure = await Self.run(operations, seed: seed)
        guard let failure else { return }
        let budget = Duration.seconds(Int(ProcessInfo.processInfo.environment["CRMFS_MODEL_SHRINK_SECONDS"] ?? "") ?? 300)
        let shortest = await ReferenceModel.shrink(operations, budget: budget) { candidate in await Self.run(candidate, seed: seed) != nil }
        Issue.record("""
            seed \(seed) failed: \(failure)
            re-run: CRMFS_MODEL_SEEDS=\(seed) swift test --filter ModelFaultTests
            shortest failing list (\(shortest.count) of \(operations.count) operations):
            \(shortest.map { "  \($0)" }.joined(separator: "\n"))
            """)
    }

    static var runSlow: Bool { ProcessInfo.processInfo.environment["CRMFS_MODEL_SLOW"] == "1" }

    /// Lists the model test found failing (shrunk), kept as regression tests, each named for what it caught.
    static let regressions: [String: [ModelOperation]] = [
        // Not found by a seed: the shape of a refusal the generator draws (SharePoint's 403 once an administrator
        // lets the user only read the document), then the document written again, renamed and the daemon killed.
        "refusedThenWrittenAgain": [
            .write(path: "a.txt", offset: 0, length: 70000, pattern: 11), .close(path: "a.txt"),
            .refusedEdit(path: "a.txt", length: 5000, pattern: 12), .read(path: "a.txt"),
            .write(path: "a.txt", offset: 100, length: 3000, pattern: 13), .close(path: "a.txt"),
            .refusedEdit(path: "a.txt", length: 9000, pattern: 14), .rename(from: "a.txt", to: "b.bin"), .kill,
        ],
        // seed 2 with disk faults (CI): a new document whose close failed on the full disk, recorded by the
        // sync after freeing it, then written again and read.
        "closeFailedOnAFullDisk": [
            .write(path: "a.txt", offset: 861, length: 75566, pattern: 193), .close(path: "a.txt"), .rename(from: "a.txt", to: "b.bin"),
            .fillDisk, .write(path: "a.txt", offset: 1093, length: 120_687, pattern: 36), .close(path: "a.txt"), .freeDisk,
            .write(path: "a.txt", offset: 121_426, length: 95773, pattern: 115), .close(path: "a.txt"), .read(path: "a.txt"),
        ],
        // seed 1: a new version sent from the journal after a kill, before its folder was listed again: the first
        // listing came from the library's last feed round and showed the earlier version's time (and size).
        "largeRewriteThenKill": [
            .write(path: "c.txt", offset: 1863, length: 121_085, pattern: 138), .write(path: "a.txt", offset: 1175, length: 24622, pattern: 247),
            .close(path: "c.txt"), .close(path: "a.txt"), .write(path: "a.txt", offset: 491, length: 4_790_375, pattern: 97), .close(path: "a.txt"), .kill,
        ],
        // seed 1: a document uploaded by fsync, renamed over another, then truncated: the truncate's upload was
        // based on the eTag before the rename and came back 412, a keep-both copy where one version was written.
        "renamedOverThenTruncated": [
            .write(path: "c.txt", offset: 1863, length: 121_085, pattern: 138), .fsync(path: "c.txt"),
            .write(path: "a.txt", offset: 1175, length: 24622, pattern: 247), .close(path: "c.txt"), .close(path: "a.txt"),
            .rename(from: "c.txt", to: "a.txt"), .truncate(path: "a.txt", size: 33672),
        ],
        // soak seed 1004: a new version moved into a folder, back, and over a new document, then a new document under
        // the name it left: the new one took the moved document's item and went as its next version (c.txt held its
        // bytes, b.bin was gone; with other timing a 412 and a keep-both copy). (EngineSchedulingTests/newDocumentWhereOneWasMovedFrom)
        "movedBackAndOverAfterKill": [
            .write(path: "b.bin", offset: 140, length: 191_432, pattern: 189), .close(path: "b.bin"),
            .write(path: "a.txt", offset: 34887, length: 109_780, pattern: 104), .close(path: "a.txt"), .kill,
            .write(path: "c.txt", offset: 65251, length: 189_317, pattern: 14), .close(path: "c.txt"),
            .write(path: "b.bin", offset: 195_045, length: 161_092, pattern: 9), .mkdir(path: "F"), .close(path: "b.bin"),
            .rename(from: "b.bin", to: "F/e.bin"), .rename(from: "F/e.bin", to: "b.bin"), .rename(from: "b.bin", to: "c.txt"),
            .write(path: "b.bin", offset: 46653, length: 64286, pattern: 168),
        ],
        // soak seed 1017: a large file sent by fsync (an upload session), a small one renamed over it while its
        // close went, then the name unlinked: the document stayed on the service (the withdrawn upload was all
        // that named it; in the soak, a keep-both copy after the check's restart). (LocalWritesTests/renamedOverThenUnlinked)
        "sessionRenamedOverThenUnlinked": [
            .write(path: "b.bin", offset: 42766, length: 5_217_554, pattern: 255), .fsync(path: "b.bin"),
            .write(path: "c.txt", offset: 3875, length: 87403, pattern: 17), .close(path: "c.txt"), .close(path: "b.bin"),
            .rename(from: "c.txt", to: "b.bin"), .unlink(path: "b.bin"),
        ],
        // seed 3 (a sandbox bug, not crmfs's): a column write beside an upload of the same document, each request
        // writing back the whole item it had read: the column (or a rename) was undone, with 200s all round.
        // The sandbox applies each request to the item as it is now. (GraphWriteTests/concurrentWritesDoNotUndoEachOther)
        "columnWrittenBesideAnUpload": [
            .write(path: "a.txt", offset: 3833, length: 163_886, pattern: 147), .write(path: "b.bin", offset: 23638, length: 43158, pattern: 215),
            .write(path: "c.txt", offset: 1939, length: 42401, pattern: 24), .close(path: "b.bin"),
            .write(path: "b.bin", offset: 62030, length: 171_263, pattern: 35), .write(path: "b.bin", offset: 165_423, length: 136_863, pattern: 97),
            .close(path: "b.bin"), .unlink(path: "b.bin"), .fsync(path: "a.txt"), .touch(path: "c.txt", seconds: -11_644_473_601), .close(path: "a.txt"),
            .remoteEdit(path: "a.txt", length: 76351, pattern: 123), .close(path: "c.txt"), .rename(from: "c.txt", to: "b.bin"),
            .write(path: "b.bin", offset: 3767, length: 66432, pattern: 246), .write(path: "b.bin", offset: 24123, length: 160_323, pattern: 134),
            .write(path: "c.txt", offset: 3742, length: 1367, pattern: 194), .write(path: "c.txt", offset: 6756, length: 77181, pattern: 2),
            .setColumn(path: "a.txt", value: "Other"), .truncate(path: "b.bin", size: 14712), .touch(path: "c.txt", seconds: 560_268_132),
            .close(path: "b.bin"), .close(path: "c.txt"), .rename(from: "b.bin", to: "c.txt"), .setColumn(path: "c.txt", value: "Other"),
        ],
        // seed 1003 (after the model learnt columns and other users' edits): a document written again after a
        // restart, renamed while that version waited to go: its upload's outcome still named it by its old name,
        // was taken for a keep-both copy's, and the mount kept the version before. Its first write then copied
        // remote bytes of another version and failed ESTALE.
        "renamedAfterRestartWhileUploadWaits": [
            .mkdir(path: "F"), .write(path: "a.txt", offset: 1459, length: 48704, pattern: 193), .close(path: "a.txt"), .kill,
            .write(path: "a.txt", offset: 664, length: 10325, pattern: 93), .close(path: "a.txt"), .rename(from: "a.txt", to: "F/e.bin"),
            .write(path: "F/d.txt", offset: 1485, length: 92779, pattern: 96), .fsync(path: "F/d.txt"), .truncate(path: "F/e.bin", size: 27929),
        ],
        // soak seed 1016: the mount went on showing a.txt after it was renamed over and renamed away.
        "renamedOverTwiceThenAway": [
            .write(path: "a.txt", offset: 3458, length: 188_648, pattern: 215), .write(path: "c.txt", offset: 2304, length: 168_849, pattern: 63),
            .write(path: "c.txt", offset: 160_350, length: 109_551, pattern: 197), .expireTokens, .close(path: "a.txt"),
            .write(path: "b.bin", offset: 1960, length: 190_477, pattern: 44), .close(path: "c.txt"), .rename(from: "c.txt", to: "a.txt"),
            .close(path: "b.bin"), .write(path: "a.txt", offset: 21849, length: 4_324_579, pattern: 37),
            .write(path: "b.bin", offset: 3235, length: 91305, pattern: 59), .mkdir(path: "F"), .touch(path: "b.bin", seconds: -11_644_473_601),
            .truncate(path: "a.txt", size: 2_379_944), .write(path: "F/d.txt", offset: 377, length: 31898, pattern: 117), .close(path: "F/d.txt"),
            .close(path: "a.txt"), .rename(from: "F/d.txt", to: "a.txt"), .rename(from: "a.txt", to: "c.txt"), .unlink(path: "c.txt"),
            .close(path: "b.bin"),
        ],
    ]

    /// Lists that take minutes each (outages retried to the end, daemons killed under load): run by
    /// bench/soak.sh (`CRMFS_MODEL_SLOW=1`), not in CI, where the in-process tests named beside each
    /// cover the same rules in milliseconds.
    static let slowRegressions: [String: [ModelOperation]] = [
        // soak seed 1202 (shrunk): a time set on a file still open after its fsync waited for the close in the
        // handle, unpinned; the feed put the upload's time over it, and the close sent that as the time set
        // (LocalWritesTests/timeAfterFsyncWhileOpen). Slow: an outage's given-up changes wait out their pause.
        "timeAfterFsyncWhileOpen": [
            .write(path: "b.bin", offset: 257, length: 4846945, pattern: 218),
            .write(path: "c.txt", offset: 1184, length: 807, pattern: 95), .close(path: "b.bin"), .close(path: "c.txt"),
            .rename(from: "b.bin", to: "c.txt"), .kill, .write(path: "a.txt", offset: 1990, length: 159924, pattern: 14),
            .fsync(path: "a.txt"), .write(path: "a.txt", offset: 93679, length: 152428, pattern: 52),
            .write(path: "a.txt", offset: 180893, length: 194966, pattern: 5), .read(path: "c.txt"),
            .write(path: "b.bin", offset: 1210, length: 54351, pattern: 24), .outage, .touch(path: "c.txt", seconds: 1982449184),
            .fillDisk, .write(path: "a.txt", offset: 181538, length: 90452, pattern: 1), .close(path: "b.bin"),
            .write(path: "a.txt", offset: 322958, length: 79189, pattern: 123),
            .write(path: "a.txt", offset: 376560, length: 158900, pattern: 240),
            .write(path: "a.txt", offset: 502667, length: 52098, pattern: 33), .close(path: "a.txt"), .freeDisk,
            .touch(path: "c.txt", seconds: Int.min), .touch(path: "b.bin", seconds: 1063938405),
            .rename(from: "a.txt", to: "b.bin"), .calm, .write(path: "c.txt", offset: 159783, length: 140035, pattern: 139),
            .truncate(path: "b.bin", size: 144794), .fsync(path: "c.txt"), .touch(path: "c.txt", seconds: 1720931160),
            .write(path: "a.txt", offset: 3010, length: 4515824, pattern: 223), .read(path: "b.bin"),
            .write(path: "a.txt", offset: 579030, length: 11514, pattern: 68),
            .write(path: "b.bin", offset: 96907, length: 20139, pattern: 170),
            .write(path: "a.txt", offset: 920455, length: 90325, pattern: 185),
            .write(path: "b.bin", offset: 107044, length: 164179, pattern: 190),
            .write(path: "a.txt", offset: 172095, length: 42449, pattern: 149), .fillDisk,
            .write(path: "a.txt", offset: 750456, length: 196964, pattern: 37),
            .write(path: "a.txt", offset: 524510, length: 128522, pattern: 159),
            .write(path: "c.txt", offset: 126687, length: 64387, pattern: 58), .close(path: "c.txt"),
            .write(path: "b.bin", offset: 103012, length: 174450, pattern: 237), .close(path: "a.txt"),
            .write(path: "b.bin", offset: 231797, length: 116868, pattern: 252),
        ],
        // Soak seeds of 60 operations that failed with the generator as it is since column writes and other
        // users' edits joined it (a change to the generator changes what these run: shrink them then).
        // 1008 and 1010: a save renamed over a document whose column had been written met 412 and was kept
        // as a copy (LocalWritesTests/columnThenRenamedOver); 1015: after kills, a folder's kept listing put
        // earlier times back over what the journal's changes had made (ChangeFeedTests/ownChangeBeforeTheKeptListing),
        // then `crmfs sync` returned before the last remount's first catch-up, and `stat` showed the kept
        // tree's older times (RemoteChangeTests/remountReadsNewBytes).
        // 1043: a new document given the name a rename that gave up was to free went first, met the name taken
        // and was kept as a copy; so it did when the renamed document was then removed (its deletion came last)
        // (LocalWritesTests/newDocumentWhereARenameGaveUp, EngineSchedulingTests/newDocumentBehindAGivenUpMoveAway).
        // 1050: after kills, a read failed ESTALE: the kept delta position had passed over the mount's own new
        // version, which the kept listing lacked (KeptTreeTests/passedOverWhileHeld).
        // 1209 (and 1015 again): after a kill, a journaled change sent before its folder was listed did not
        // count as the mount's own, so the remount's first enumeration, asked before, filled the library's
        // mirror with the earlier version; the first listing showed it and the next write failed ESTALE
        // (TreeTests/restoredChangeSentBeforeListing).
        "soakSeed1008": ReferenceModel.operations(seed: 1008, count: 60, diskFaults: false, refusals: false),
        "soakSeed1010": ReferenceModel.operations(seed: 1010, count: 60, diskFaults: false, refusals: false),
        "soakSeed1015": ReferenceModel.operations(seed: 1015, count: 60, diskFaults: false, refusals: false),
        "soakSeed1043": ReferenceModel.operations(seed: 1043, count: 60, diskFaults: false, refusals: false),
        "soakSeed1050": ReferenceModel.operations(seed: 1050, count: 60, diskFaults: false, refusals: false),
        "soakSeed1209": ReferenceModel.operations(seed: 1209, count: 60),
        // 1265: a remount's kept listing from before renames the stopped mount sent (b.bin -> a.txt, then
        // c.txt -> b.bin): the version of the second went while the first still showed as b.bin, and the second
        // left the directory for good. (TreeTests/keptListingBeforeSentRenames)
        "soakSeed1265": ReferenceModel.operations(seed: 1265, count: 60),
        // 1320: a.txt's time gave up in an outage, a.txt was renamed away and a new a.txt written; its fsync,
        // with the services up again, answered EIO at once: its upload stood behind the time and rename that
        // had given up. (LocalWritesTests/fsyncBehindATimeThatGaveUp)
        "soakSeed1320": ReferenceModel.operations(seed: 1320, count: 60),
        // 1326 (shrunk): a new document fsynced and still open, another one written, the state disk full: the
        // next write to the first, copying its bytes to a fresh staged copy, wrote short and answered the errno
        // an earlier call had left (ENOENT) instead of ENOSPC. (FileWritesTests/diskFillsMidWrite)
        "soakSeed1326": [
            .write(path: "a.txt", offset: 27203, length: 193_565, pattern: 217), .fsync(path: "a.txt"),
            .write(path: "c.txt", offset: 106, length: 195_577, pattern: 57), .fillDisk, .truncate(path: "c.txt", size: 162_004),
            .write(path: "a.txt", offset: 219_156, length: 75695, pattern: 84),
        ],
        // 1356 (failed about 1 replay in 3): e.bin renamed F/e.bin -> G/f.txt just as its first upload started; the
        // upload's end showed the node where the service had it (F/e.bin) while the rename ran, and the rename then
        // journaled a move to G under that old name: the service got G/e.bin, and the model's next calls met a tree
        // that had lost G/f.txt (ENOENT, or G/e.bin after a restart). A rename under way now holds the node's name
        // and place (`LocalDocument.renaming`), and its move names what the rename gave. 9 replays of 9 pass.
        "soakSeed1356": ReferenceModel.operations(seed: 1356, count: 60),
        // b.bin opened for writing after a restart (its first write copied its block), then an outage: its
        // close found the rest of its bytes could not be copied and answered EIO, where the model said
        // success. The close cannot make the file whole, so EIO is right (docs/semantics.md); what was
        // written stays and goes on its own once the service is back (WriteRaceTests/closedInAnOutage), and
        // the model now allows it.
        "soakSeed1371": ReferenceModel.operations(seed: 1371, count: 60),
        // seed 13: times that gave up under an outage, then renames over their documents: the renames and the
        // deletion went, and the times, retried at the next mount, found a deleted item (404) or named a renamed
        // document back. (LocalWritesTests/timeGaveUpThenRenamedOver, EngineSchedulingTests/renameBehindAGivenUpTime)
        "timesThenRenamedOver": [
            .outage, .write(path: "c.txt", offset: 1611, length: 145_177, pattern: 65), .close(path: "c.txt"), .rename(from: "c.txt", to: "a.txt"), .kill,
            .mkdir(path: "G"), .write(path: "b.bin", offset: 2445, length: 55622, pattern: 10), .close(path: "b.bin"),
            .write(path: "G/f.txt", offset: 123, length: 55647, pattern: 128), .close(path: "G/f.txt"), .kill,
            .touch(path: "b.bin", seconds: 1_209_542_346), .touch(path: "a.txt", seconds: -11_644_473_601), .touch(path: "b.bin", seconds: 768_542_834),
            .touch(path: "G/f.txt", seconds: 253_402_300_800), .touch(path: "a.txt", seconds: 200_712_045), .touch(path: "b.bin", seconds: Int.min),
            .rename(from: "G/f.txt", to: "c.txt"), .rename(from: "b.bin", to: "c.txt"), .write(path: "G/f.txt", offset: 1200, length: 111_472, pattern: 73),
        ],
        // seed 2, under load: a rename sent from the journal after a kill (a.txt -> G/f.txt) never showed.
        "killAfterRenameThenWrite": [
            .write(path: "c.txt", offset: 1863, length: 121_085, pattern: 138), .fsync(path: "c.txt"), .touch(path: "c.txt", seconds: 1_768_649_127),
            .write(path: "a.txt", offset: 1175, length: 24622, pattern: 247), .close(path: "c.txt"), .close(path: "a.txt"),
            .rename(from: "c.txt", to: "a.txt"), .mkdir(path: "G"), .write(path: "a.txt", offset: 491, length: 4_790_375, pattern: 97),
            .close(path: "a.txt"), .rename(from: "a.txt", to: "G/f.txt"), .kill, .write(path: "c.txt", offset: 3634, length: 84547, pattern: 9),
            .storm, .write(path: "c.txt", offset: 8932, length: 77622, pattern: 75), .mkdir(path: "F"),
            .write(path: "b.bin", offset: 2724, length: 117_772, pattern: 146), .close(path: "c.txt"),
        ],
    ]

    /// The regressions that run: all the quick ones (and the slow ones with `CRMFS_MODEL_SLOW=1`), or only
    /// those `CRMFS_MODEL_REGRESSIONS` names (comma-separated), to replay one while fixing it.
    static var regressionNames: [String] {
        if let named = ProcessInfo.processInfo.environment["CRMFS_MODEL_REGRESSIONS"], !named.isEmpty {
            return named.split(separator: ",").map(String.init).filter { regressions[$0] != nil || slowRegressions[$0] != nil }
        }
        return regressions.keys.sorted() + (runSlow ? slowRegressions.keys.sorted() : [])
    }

    @Test("lists the model test found failing hold now", arguments: regressionNames)
    func regression(name: String) async throws {
        let failure = await Self.run(Self.regressions[name] ?? Self.slowRegressions[name]!, seed: 0)
        #expect(failure == nil, "\(name): \(failure ?? "")")
    }

    // MARK: One run

    /// What one run counted, for bench/soak.sh.
    struct Tally {
        var operations = 0
        var faults = 0
    }

    /// Runs `operations` against a fresh sandbox and mount; nil when everything held, else what did not.
    static func run(_ operations: [ModelOperation], seed: UInt64) async -> String? {
        // SharePoint's per-item permissions bind a signed-in user, not the app-only integration: a run that
        // has an administrator take write access away mounts as a user (`user`).
        let signedIn = operations.contains { if case .refusedEdit = $0 { true } else { false } }
        do {
            // The state directory on a disk of its own, which the run fills and frees.
            return try await Tools.withSmallDisk(size: "256m") { disk in try await withSandbox(records: 2, docsPerRecord: 1, separateProcess: true, configure: {
                if signedIn {
                    $0.approveDeviceCodesAs = Self.user
                    $0.deviceCodeInterval = 1
                }
            }) { sandbox in
                var config = try String(contentsOfFile: sandbox.configPath, encoding: .utf8)
                    .replacingOccurrences(of: "directory = \"crmfs-state\"", with: "directory = \"\(disk)/state\"")
                if signedIn { config = SignInTests.asUser(config) }
                try config.write(toFile: sandbox.configPath, atomically: true, encoding: .utf8)
                if signedIn {
                    let login = try await Tools.run(Tools.crmfs, ["login", sandbox.configPath], timeLimit: .seconds(60))
                    guard login.status == 0 else { throw MountFailure(message: "crmfs login as \(Self.user): \(login.errors)") }
                }
                var driver = try await Driver(sandbox: sandbox, seed: seed, disk: disk)
                do {
                    var outcome = try await driver.perform(operations)
                    if outcome == nil { outcome = try await driver.check() }
                    await driver.finish()
                    Self.report(operations, failed: outcome != nil)
                    return outcome
                } catch {
                    await driver.finish()
                    throw error
                }
            } }
        } catch {
            return "the run stopped: \(error)"
        }
    }

    /// The demo user a run signs in as when it needs one (sam owns Acme Corp, where the runs write).
    static let user = "sam"

    /// One line per run in `CRMFS_MODEL_TALLY` (operations, faults, failed), for bench/soak.sh.
    static func report(_ operations: [ModelOperation], failed: Bool) {
        guard let path = ProcessInfo.processInfo.environment["CRMFS_MODEL_TALLY"], !path.isEmpty else { return }
        let line = "\(operations.count { !$0.isFault }) \(operations.count { $0.isFault }) \(failed ? 1 : 0)\n"
        guard let handle = FileHandle(forWritingAtPath: path) ?? (FileManager.default.createFile(atPath: path, contents: nil) ? FileHandle(forWritingAtPath: path) : nil) else { return }
        handle.seekToEndOfFile()
        handle.write(Data(line.utf8))
        try? handle.close()
    }

    /// Drives one mount through a list of operations, keeping the model beside it.
    struct Driver {
        let sandbox: SandboxFixture
        var mount: MountFixture
        /// The test's folder: below the record in the mount, and below its SharePoint folder in the library.
        let folder: String
        let remoteFolder: String
        var model = ReferenceModel()
        /// Open handles for writing, by document.
        var handles: [String: Int32] = [:]
        var daemon: Int32?
        /// Documents whose last close failed (for want of room, or in an outage before their copy was whole):
        /// their bytes are staged but not journaled, so not promised across a crash until `crmfs sync` (or their
        /// next close) records them.
        var unjournaled: Set<String> = []
        /// Documents open for writing since a write while the services answered, on bytes the service had:
        /// their copy may still be under way when an outage starts.
        var openedOnline: Set<String> = []
        /// Documents whose last change the service refused: `user.crmfs.sync` may say so until they are written again.
        var refused: Set<String> = []
        /// The disk the state directory is on, and the file that fills it.
        let disk: String
        var filler: String { "\(disk)/filler" }

        init(sandbox: SandboxFixture, seed: UInt64, disk: String) async throws {
            self.sandbox = sandbox
            self.disk = disk
            mount = try await MountFixture.mount(sandbox)
            folder = "Accounts/Acme Corp/model-\(seed)"
            remoteFolder = "\(SeededPaths.acmeFolder)/model-\(seed)"
            guard mkdir(mount.path(folder), 0o755) == 0 else { throw MountFailure(message: "mkdir of the test's folder: \(String(cString: strerror(errno)))") }
            daemon = try await mount.daemonPID()
        }

        func path(_ relative: String) -> String { mount.path("\(folder)/\(relative)") }

        /// Performs each operation and compares its answer with the model's; the first difference ends the run.
        mutating func perform(_ operations: [ModelOperation]) async throws -> String? {
            for (index, operation) in operations.enumerated() {
                do {
                    if let problem = try await step(index, operation) { return problem }
                } catch {
                    return "operation \(index) (\(operation)) stopped the run: \(error)" + (await evidence())
                }
            }
            return nil
        }

        /// One operation of `perform`: nil when it answered as the model says.
        private mutating func step(_ index: Int, _ operation: ModelOperation) async throws -> String? {
            let before = model
            let expected = model.apply(operation)
            if case .write(let path, _, _, _) = operation, !before.open.contains(path) {
                if before.documents[path].map({ !$0.bytes.isEmpty }) == true && before.faults != .outage && !before.diskFull {
                    openedOnline.insert(path)
                } else {
                    openedOnline.remove(path)
                }
            }
            defer { if case .close(let path) = operation { openedOnline.remove(path) } }
            let answer = try await perform(operation)
            if answer == .notDone {
                model = before
                return nil
            }
            // Out of room, or (an outage) a document open for writing whose earlier bytes were still being
            // copied, which cannot be made whole: as docs/semantics.md allows, nothing happened, or (a write)
            // what it wrote did; a close that failed still leaves the file holding what was written, to be sent
            // once there is room (or the service is back). Soak seed 1371 found the outage's case.
            let outage = before.faults == .outage && !before.diskFull && Self.needsItsCopy(operation, openedOnline: openedOnline)
            if before.diskFull || outage, operation.isDataCall, let failed = Self.failedForRoom(answer, outage: outage) {
                switch (operation, failed) {
                case (.write(let path, let offset, _, let pattern), let written):
                    model = before  // and, when it opened the document, what it wrote
                    if let written { _ = model.apply(.write(path: path, offset: offset, length: written, pattern: pattern)) }
                case (.truncate, _):
                    model = before
                case (.close(let path), _):
                    unjournaled.insert(path)
                    // In an outage it would go on its own once the service is back; recorded now (the outage
                    // lifted for a `crmfs sync`), so no later call meets a document the model cannot judge.
                    if outage, try await !recordUnjournaled() {
                        return "operation \(index) (\(operation)): crmfs sync could not record what the failed close left" + (await evidence())
                    }
                default:
                    break
                }
                return nil
            }
            if case .close(let path) = operation { unjournaled.remove(path) }
            switch operation {
            case .write(let path, _, _, _), .unlink(let path): refused.remove(path)
            case .rename(let from, let to): if refused.remove(from) != nil { refused.insert(to) } else { refused.remove(to) }
            default: break
            }
            if answer != expected {
                return "operation \(index) (\(operation)) answered \(Self.describe(answer)), the model says \(Self.describe(expected))" + (await evidence())
            }
            if case .read(let path) = operation, let problem = try await checkRead(path) {
                return "operation \(index) (\(operation)): \(problem)"
            }
            if let pid = daemon, kill(pid, 0) != 0 {
                return "operation \(index) (\(operation)): the daemon died\n\(mount.logTail())"
            }
            return nil
        }

        /// An answer a full disk may give (ENOSPC or EIO), or an outage (EIO): nil for others; else the bytes a
        /// write put down before it failed (nil when it could not even open the document).
        static func failedForRoom(_ answer: ModelExpectation, outage: Bool = false) -> Int?? {
            switch answer {
            case .failure(let code) where code == EIO || code == ENOSPC && !outage: .some(nil)
            case .partial(let written, let code) where code == EIO || code == ENOSPC && !outage: .some(written)
            default: nil
            }
        }

        /// Whether `operation` may need the rest of its document's copy, which an outage stops: a write, a
        /// truncate to a non-zero size or a close of a document opened on the service's bytes while it answered.
        static func needsItsCopy(_ operation: ModelOperation, openedOnline: Set<String>) -> Bool {
            switch operation {
            case .write(let path, _, _, _), .close(let path): openedOnline.contains(path)
            case .truncate(let path, let size): size > 0 && openedOnline.contains(path)
            default: false
            }
        }

        /// What failed closes left staged but not journaled, recorded and sent by `crmfs sync` with the services
        /// answering meanwhile; then the faults the model has again. False when the sync failed.
        mutating func recordUnjournaled() async throws -> Bool {
            guard !unjournaled.isEmpty else { return true }
            let faults = model.faults
            _ = try await sandbox.admin("faults", ["faults": ""])
            let sync = try await mount.sync(timeLimit: .seconds(600))
            if sync.status != 0 { return false }
            unjournaled.removeAll()
            if faults != .calm { _ = try await perform(faults == .storm ? .storm : .outage) }
            return true
        }

        static func describe(_ expectation: ModelExpectation) -> String {
            switch expectation {
            case .success: "success"
            case .failure(let code): "\(String(cString: strerror(code))) (errno \(code))"
            case .partial(let written, let code): "\(String(cString: strerror(code))) (errno \(code)) after \(written) bytes"
            case .notDone: "not done"
            }
        }

        mutating func perform(_ operation: ModelOperation) async throws -> ModelExpectation {
            switch operation {
            case .write(let path, let offset, let length, let pattern):
                let fullPath = self.path(path)
                let existing = handles[path]
                let bytes = ModelOperation.bytes(length: length, pattern: pattern, offset: offset)
                let (descriptor, done, code) = try await Tools.blocking { () -> (Int32, Int, Int32) in
                    let descriptor = existing ?? open(fullPath, O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
                    guard descriptor >= 0 else { return (-1, 0, errno) }
                    var done = 0
                    while done < bytes.count {
                        let written = bytes.withUnsafeBytes { pwrite(descriptor, $0.baseAddress! + done, $0.count - done, off_t(offset + done)) }
                        guard written > 0 else { return (descriptor, done, errno) }
                        done += written
                    }
                    return (descriptor, done, 0)
                }
                if descriptor >= 0 { handles[path] = descriptor }
                if code == 0 { return .success }
                return descriptor >= 0 ? .partial(written: done, errno: code) : .failure(code)
            case .truncate(let path, let size):
                let (descriptor, fullPath) = (handles[path], self.path(path))
                return try await Self.call { descriptor.map { ftruncate($0, off_t(size)) } ?? truncate(fullPath, off_t(size)) }
            case .fsync(let path):
                guard let descriptor = handles[path] else { return .failure(EBADF) }
                return try await Self.call { fsync(descriptor) }
            case .close(let path):
                guard let descriptor = handles.removeValue(forKey: path) else { return .failure(EBADF) }
                return try await Self.call { close(descriptor) }
            case .rename(let from, let to):
                let (source, target) = (self.path(from), self.path(to))
                return try await Self.call { rename(source, target) }
            case .unlink(let path):
                let fullPath = self.path(path)
                return try await Self.call { unlink(fullPath) }
            case .mkdir(let path):
                let fullPath = self.path(path)
                return try await Self.call { mkdir(fullPath, 0o755) }
            case .rmdir(let path):
                let fullPath = self.path(path)
                return try await Self.call { rmdir(fullPath) }
            case .touch(let path, let seconds):
                let fullPath = self.path(path)
                return try await Self.call {
                    // atime left as it is (UTIME_OMIT), mtime as given.
                    var times = [timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2), timespec(tv_sec: seconds, tv_nsec: 0)]
                    return utimensat(AT_FDCWD, fullPath, &times, 0)
                }
            case .read:
                return .success  // compared in checkRead
            case .setColumn(let path, let value):
                let fullPath = self.path(path)
                return try await Self.call { setxattr(fullPath, "user.sp.DocumentType", value, value.utf8.count, 0) }
            case .remoteEdit(let path, let length, let pattern):
                return try await editAsAnotherUser(path, bytes: ModelOperation.bytes(length: length, pattern: pattern, offset: 0))
            case .refusedEdit(let path, let length, let pattern):
                return try await editRefused(path, bytes: ModelOperation.bytes(length: length, pattern: pattern, offset: 0))
            case .storm:
                _ = try await sandbox.admin("faults", ["faults": "429:0.15,503:0.1,reset:0.05", "retryAfter": 1])
            case .outage:
                _ = try await sandbox.admin("faults", ["faults": "503:1", "retryAfter": 1])
            case .calm:
                _ = try await sandbox.admin("faults", ["faults": ""])
            case .expireTokens:
                _ = try await sandbox.admin("tokens/expire")
            case .fillDisk:
                // What is free now, or (the daemon writing meanwhile) a little less: tmpfs refuses an allocation
                // that does not fit. Again while the daemon frees room (its cache gives some back).
                for part in 0..<8 where Tools.freeBytes(disk) > 1 << 20 {
                    var size = Tools.freeBytes(disk)
                    while size > 4096, try await Tools.run("/usr/bin/fallocate", ["-l", "\(size)", "\(filler)-\(part)"]).status != 0 { size -= max(size / 64, 4096) }
                }
                if Tools.freeBytes(disk) > 1 << 20 { throw MountFailure(message: "the state disk did not fill: \(Tools.freeBytes(disk)) bytes free") }
            case .freeDisk:
                for part in 0..<8 { try? FileManager.default.removeItem(atPath: "\(filler)-\(part)") }
                // Room again: as docs/semantics.md says, `crmfs sync` records (and sends) what the failed closes left.
                if try await !recordUnjournaled() { return .failure(EIO) }
            case .kill:
                try await killAndMount()
                // A rename or delete the journal holds shows once it is sent (docs/semantics.md, "After a
                // restart"): the run goes on once the journal is through, under the faults it had.
                let faults = model.faults
                _ = try await sandbox.admin("faults", ["faults": ""])
                let sync = try await mount.sync(timeLimit: .seconds(600))
                if sync.status != 0 { return .failure(EIO) }
                // ... and once the mount shows what was sent (within a round of the library's feed).
                if let unsettled = try await settled() { throw MountFailure(message: "after the restart: \(unsettled)\n\(mount.logTail())") }
                if faults != .calm { _ = try await perform(faults == .storm ? .storm : .outage) }
            }
            return .success
        }

        /// Another user's new version of `path`, once the mount has sent what it holds (otherwise not done: which
        /// side's change came first would be a race); then the mount must show it within a minute.
        func editAsAnotherUser(_ path: String, bytes: Data) async throws -> ModelExpectation {
            guard try await mount.sync(timeLimit: .seconds(300)).status == 0 else { return .notDone }
            let remote = try await Remote(sandbox)
            guard let item = try await remote.documents(below: remoteFolder)[path] else {
                throw MountFailure(message: "another user's edit: after crmfs sync the service has no \(path)")
            }
            let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("crmfs-model-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: scratch) }
            try bytes.write(to: scratch)
            _ = try await remote.connections.graph.simpleUpload(driveID: remote.driveID, to: .item(id: item.id), file: scratch.path,
                                                                size: Int64(bytes.count), options: UploadOptions())
            let fullPath = self.path(path)
            for _ in 0..<600 {
                if (try? await Tools.read(fullPath)) == bytes { return .success }
                try await Task.sleep(for: .milliseconds(100))
            }
            throw MountFailure(message: "another user's edit of \(path) did not show through the mount within a minute\n\(mount.logTail())")
        }

        /// The user overwrites `path` after an administrator let them only read it, once the mount has sent what
        /// it holds (otherwise not done). The close succeeds (the mount cannot know) or the open is refused
        /// (EACCES: it knew); then SharePoint refuses the upload, and crmfs must report it, show the service's
        /// copy (the model's) again and keep the user's bytes in conflicts/ (taken away here, as the user
        /// would once dealt with). Write access is given back at the end.
        mutating func editRefused(_ path: String, bytes: Data) async throws -> ModelExpectation {
            guard try await mount.sync(timeLimit: .seconds(300)).status == 0 else { return .notDone }
            let fullPath = self.path(path)
            let itemID = try await Tools.run("getfattr", ["--only-values", "-n", "user.crmfs.item_id", fullPath]).output
            guard !itemID.isEmpty else { throw MountFailure(message: "a refused edit: \(path) has no item id after crmfs sync") }
            _ = try await sandbox.admin("items/\(itemID)/permissions", ["user": ModelFaultTests.user, "role": "read"])
            let code = try await Tools.blocking { () -> Int32 in
                let descriptor = open(fullPath, O_WRONLY | O_TRUNC | O_CLOEXEC)
                guard descriptor >= 0 else { return errno }
                var done = 0, failure: Int32 = 0
                while done < bytes.count, failure == 0 {
                    let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + done, $0.count - done) }
                    if written > 0 { done += written } else { failure = errno }
                }
                return close(descriptor) == 0 ? failure : errno
            }
            if code == 0 {
                let sync = try await mount.sync(timeLimit: .seconds(300))
                guard sync.status != 0, sync.errors.contains("access denied") else {
                    throw MountFailure(message: "a refused edit of \(path): crmfs sync exited \(sync.status) saying '\(sync.errors)'" + (await evidence()))
                }
                let state = try await Tools.run("getfattr", ["--only-values", "-n", "user.crmfs.sync", fullPath]).output
                guard state.hasPrefix("error: access denied"), let kept = state.range(of: "conflicts/") else {
                    throw MountFailure(message: "a refused edit of \(path): user.crmfs.sync says '\(state)'" + (await evidence()))
                }
                // The note ends with the copy's name and a ")"; the name may hold parentheses of its own (`a (2).txt`).
                let keptName = String(state[kept.upperBound...].dropLast(state.hasSuffix(")") ? 1 : 0))
                let keptPath = "\(mount.stateDirectory)/conflicts/\(keptName)"
                guard (try? Data(contentsOf: URL(fileURLWithPath: keptPath))) == bytes else {
                    throw MountFailure(message: "a refused edit of \(path): conflicts/\(keptName) does not hold the bytes written")
                }
                try FileManager.default.removeItem(atPath: keptPath)
                if let problem = try await checkRead(path) { throw MountFailure(message: "a refused edit of \(path): the service's copy does not show again: \(problem)") }
                refused.insert(path)
            } else if code != EACCES {
                throw MountFailure(message: "a refused edit of \(path): the write answered \(String(cString: strerror(code)))")
            }
            _ = try await sandbox.admin("items/\(itemID)/permissions", ["user": ModelFaultTests.user, "role": "write"])
            return .success
        }

        /// Waits (at most a minute) until the mount shows every document and folder of the model and no other;
        /// nil once it does, else what it shows.
        func settled() async throws -> String? {
            let expected = Set(model.documents.keys).union(model.folders)
            let root = self.path("")
            for attempt in 0..<600 {
                let shown = try await Tools.blocking { () -> Set<String> in
                    var found: Set<String> = []
                    for name in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] {
                        found.insert(name)
                        var isFolder: ObjCBool = false
                        if FileManager.default.fileExists(atPath: root + "/" + name, isDirectory: &isFolder), isFolder.boolValue {
                            for inner in (try? FileManager.default.contentsOfDirectory(atPath: root + "/" + name)) ?? [] { found.insert(name + "/" + inner) }
                        }
                    }
                    return found
                }
                if shown == expected { return nil }
                if attempt == 599 { return "the mount shows \(shown.sorted()), the model \(expected.sorted())" }
                try await Task.sleep(for: .milliseconds(100))
            }
            return nil
        }

        /// SIGKILL of the daemon and a new mount of the same state directory.
        mutating func killAndMount() async throws {
            if let pid = try await mount.daemonPID() { kill(pid, SIGKILL) }
            _ = try await Tools.run("/bin/umount", ["-l", mount.mountpoint])
            mount = try await MountFixture.mount(sandbox, at: mount.mountpoint)
            daemon = try await mount.daemonPID()
        }

        /// A call answering 0 or -1 with errno, on a thread of its own (it may wait for the service).
        static func call(_ body: @escaping @Sendable () -> Int32) async throws -> ModelExpectation {
            try await Tools.blocking { body() == 0 ? .success : .failure(errno) }
        }

        /// Reads the document back through a new handle: the bytes the model holds.
        func checkRead(_ path: String) async throws -> String? {
            let read = try await Tools.read(self.path(path))
            let expected = model.documents[path]?.bytes ?? Data()
            guard read != expected else { return nil }
            let first = zip(read, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(read.count, expected.count)
            return "read \(read.count) bytes, the model holds \(expected.count); first difference at \(first)"
        }

        /// After the last operation: every handle closed, the faults stopped, everything sent (a mount
        /// again when some changes gave up during the faults: they stay journaled), then the service, the
        /// mount and the state directory compared with the model.
        mutating func check() async throws -> String? {
            for path in handles.keys.sorted() { _ = try await perform(.close(path: path)) }
            _ = try await perform(.freeDisk)
            _ = try await sandbox.admin("faults", ["faults": ""])
            var sync = try await mount.sync(timeLimit: .seconds(600))
            if sync.status != 0 {
                try await killAndMount()
                sync = try await mount.sync(timeLimit: .seconds(600))
            }
            guard sync.status == 0 else { return "crmfs sync after the faults stopped: \(sync.errors)\n\(mount.logTail(lines: 600))" }
            if let pid = daemon, kill(pid, 0) != 0 { return "the daemon died\n\(mount.logTail())" }

            let remote = try await Remote(sandbox)
            let held = try await remote.documents(below: remoteFolder)
            var problems: [String] = []
            let folders = try await remote.folders(below: remoteFolder)
            if folders != model.folders { problems.append("folders: the service has \(folders.sorted()), the model \(model.folders.sorted())") }
            if Set(held.keys) != Set(model.documents.keys) {
                problems.append("documents: the service has \(held.keys.sorted()), the model \(model.documents.keys.sorted())")
            }
            for (path, document) in model.documents.sorted(by: { $0.key < $1.key }) {
                guard let item = held[path] else { continue }
                let bytes = try await remote.bytes(item)
                if bytes != document.bytes { problems.append("\(path): the service holds \(bytes.count) bytes, the model \(document.bytes.count)") }
                let serviceTime = item.fileSystemInfo?.lastModifiedDateTime.flatMap(ServiceTime.parse).map { Int($0.timeIntervalSince1970) }
                if let time = document.time, serviceTime != time {
                    problems.append("\(path): the service's mtime is \(serviceTime.map(String.init) ?? "none"), the time set was \(time)")
                }
                var info = stat()
                if stat(self.path(path), &info) != 0 {
                    problems.append("\(path): stat through the mount failed: \(String(cString: strerror(errno)))")
                } else if serviceTime != info.st_mtim.tv_sec {
                    problems.append("\(path): the mount shows mtime \(info.st_mtim.tv_sec), the service \(serviceTime.map(String.init) ?? "none")")
                }
                let column = try await remote.connections.graph.fields(driveID: remote.driveID, itemID: item.id)["DocumentType"]?.stringValue
                if !document.column.contains(column) {
                    problems.append("\(path): the service's DocumentType is \(column ?? "none"), the model's \(document.column.map { $0 ?? "none" }.sorted())")
                }
                let state = try await Tools.run("getfattr", ["--only-values", "-n", "user.crmfs.sync", self.path(path)]).output
                if state != "clean", !(refused.contains(path) && state.hasPrefix("error: access denied")) { problems.append("\(path): user.crmfs.sync says '\(state)' after crmfs sync") }
            }
            for kept in ["recovered", "conflicts"] {
                let files = (try? FileManager.default.contentsOfDirectory(atPath: "\(mount.stateDirectory)/\(kept)")) ?? []
                if !files.isEmpty { problems.append("\(kept)/ holds \(files.sorted()): nothing should have been set aside") }
            }
            if let log = try? String(contentsOfFile: "\(mount.stateDirectory)/crmfs.log", encoding: .utf8), log.contains("Fatal error") {
                problems.append("the daemon's log has a fatal error")
            }
            guard !problems.isEmpty else { return nil }
            return problems.joined(separator: "\n") + (await evidence())
        }

        /// The daemon's log and the service's side of it: what the mount asked, in order (feed polls left out).
        func evidence() async -> String {
            let requests = ((try? await sandbox.requests()) ?? []).filter { !$0.contains("delta") }.suffix(200)
            // Its own lines only (with CRMFS_TEST_MOUNT_VERBOSE=1 the log holds libfuse's too).
            let log = mount.logTail(lines: 20_000).split(separator: "\n").filter { $0.contains(" crmfs.") }.suffix(80)
            return "\n--- crmfs.log ---\n" + log.joined(separator: "\n") + "\n--- requests the service had ---\n" + requests.joined(separator: "\n")
        }

        mutating func finish() async {
            for descriptor in handles.values { close(descriptor) }
            handles.removeAll()
            _ = try? await sandbox.admin("faults", ["faults": ""])
            await mount.unmount()
        }
    }

    typealias Remote = RemoteDrive
}
