import Foundation
import Status
import Testing

@Suite("status: the socket and the text")
struct StatusTests {
    static let sample = MountStatus(
        mountpoint: "/home/sam/crm", config: "/home/sam/.config/crmfs/sales.conf", stateDirectory: "/home/sam/.local/state/crmfs/sales",
        pid: 42, mountedAt: Date(timeIntervalSince1970: 1_800_000_000), readOnly: false,
        signIns: [.init(service: "graph", kind: "user", account: "sam.rivera@contoso.onmicrosoft.com", problem: nil),
                  .init(service: "salesforce", kind: "user", account: nil, problem: "the sign-in to Salesforce no longer works (revoked)")],
        uploads: [.init(name: "Proposal.docx", bytesSent: 5 << 20, bytes: 20 << 20, bytesPerSecond: Double(1 << 20), secondsLeft: 15)],
        waiting: 3, conflicts: ["notes (conflict 2026-11-30 ws12).txt"], failed: [.init(name: "MSA-2026.pdf", reason: "access denied")],
        libraryCaughtUp: Date(timeIntervalSince1970: 1_800_000_100), crmCaughtUp: nil, graphUnitsLastMinute: 12, graphUnitsPerMinute: 1200,
        salesforceCallsToday: 340, salesforceDailyLimit: 15000, cacheBytes: 120 << 20, cacheLimit: 1 << 30)

    @Test("the text says each fact, with a progress bar per upload")
    func text() {
        let text = StatusText.render(Self.sample, now: Date(timeIntervalSince1970: 1_800_000_103))
        #expect(text.contains("/home/sam/crm  (/home/sam/.config/crmfs/sales.conf)"))
        #expect(text.contains("Microsoft 365 as sam.rivera@contoso.onmicrosoft.com"))
        #expect(text.contains("Salesforce: NOT SIGNED IN (the sign-in to Salesforce no longer works (revoked)); run `crmfs login"))
        #expect(text.contains("uploading Proposal.docx  [#####---------------]  5.0 MiB of 20.0 MiB  1.0 MiB/s  15 s left"), "\(text)")
        #expect(text.contains("changes: 3 waiting to be sent, 1 in conflicts/, 1 failed"))
        #expect(text.contains("failed: MSA-2026.pdf: access denied"))
        #expect(text.contains("caught up: library 3 s ago, CRM not yet"))
        #expect(text.contains("Graph 12 resource units in the last minute of 1200; Salesforce 340 calls today of 15000"))
        #expect(text.contains("cache: 120.0 MiB of 1.0 GiB"))
    }

    @Test("the daemon's socket answers `status` with the status and `sync` with its report; a caller that goes away cancels its sync; a socket nobody serves is a clear error")
    func socket() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("status-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent(MountStatus.socketName).path
        Self.leaveStaleSocket(at: path)  // as a daemon that crashed leaves it
        let syncs = SyncCalls()
        let server = try await StatusServer.start(at: path, report: { Self.sample }, sync: { await syncs.run() })
        var info = stat()
        #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o600 && info.st_mode & S_IFMT == S_IFSOCK)
        for _ in 0..<3 { #expect(try await StatusClient.fetch(from: path) == Self.sample) }
        #expect(try await StatusClient.sync(at: path) == SyncReport(.gaveUp, detail: "notes.txt: 503"))

        // A `crmfs sync` interrupted: its connection closes while the daemon waits, and the wait ends.
        syncs.waitForCancellation()
        let caller = Self.connect(to: path)
        _ = "sync\n".withCString { write(caller, $0, 5) }
        for _ in 0..<100 where !syncs.started { try await Task.sleep(for: .milliseconds(20)) }
        close(caller)
        for _ in 0..<100 where !syncs.cancelled { try await Task.sleep(for: .milliseconds(20)) }
        #expect(syncs.cancelled)

        await server.stop()
        #expect(!FileManager.default.fileExists(atPath: path))
        await #expect(throws: StatusClient.Unreachable.self) { try await StatusClient.fetch(from: path) }
        await #expect(throws: StatusClient.Unreachable.self) { try await StatusClient.sync(at: path) }
    }

    /// The sync a test daemon does: answers at once, or (once told to) waits until cancelled.
    final class SyncCalls: @unchecked Sendable {
        private let lock = NSLock()
        private var waits = false
        private var sawStart = false
        private var sawCancellation = false

        var started: Bool { lock.withLock { sawStart } }
        var cancelled: Bool { lock.withLock { sawCancellation } }
        func waitForCancellation() { lock.withLock { waits = true } }

        func run() async -> SyncReport {
            guard lock.withLock({ sawStart = true; return waits }) else { return SyncReport(.gaveUp, detail: "notes.txt: 503") }
            while !Task.isCancelled { try? await Task.sleep(for: .milliseconds(10)) }
            lock.withLock { sawCancellation = true }
            return SyncReport(.cancelled)
        }
    }

    /// A plain client connection to the Unix socket at `path`.
    static func connect(to path: String) -> Int32 {
        let descriptor = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = Self.address(path)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        return descriptor
    }

    static func address(_ path: String) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8.prefix(raw.count - 1))
            raw.copyBytes(from: bytes)
        }
        return address
    }

    /// Binds a Unix socket at `path` and closes it without removing it.
    static func leaveStaleSocket(at path: String) {
        let descriptor = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = Self.address(path)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        close(descriptor)
    }
}
