import ArgumentParser
import Config
import Foundation
import Logging
import Sandbox

/// `crmfs sandbox`: the local emulator of Entra ID, Microsoft Graph and Salesforce, with a seeded demo tenant.
struct SandboxCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandbox",
        abstract: "Run the local emulator of Entra ID, Microsoft Graph and Salesforce with a demo tenant.",
        discussion: """
            On start it prints `sandbox listening on http://HOST:PORT` and writes STATE/mount.conf,
            a config that points crmfs at it. The tenant persists in STATE across restarts.
            """)

    @Option(help: "Address to listen on, HOST:PORT (port 0 picks a free one).")
    var listen = "127.0.0.1:0"

    @Option(help: "State directory: the tenant's database, blobs and the generated mount.conf.")
    var state: String

    @Option(help: "Seed of the demo tenant; the same seed makes the same tenant.")
    var seed: UInt64 = 1

    @Option(help: "Records per object (Accounts, Opportunities, Cases).")
    var records = 40

    @Option(name: .customLong("docs-per-record"), help: "Documents linked to each record.")
    var docsPerRecord = 3

    @Option(name: .customLong("large-file"), help: "Add one document of this size (e.g. 1GiB) for benchmarks.")
    var largeFile: String?

    @Option(name: .customLong("bulk-folder"), help: "Add a folder of this many small files under Acme Corp, for paging.")
    var bulkFolder: Int?

    @Option(name: .customLong("token-lifetime"), help: "Seconds an access token lives.")
    var tokenLifetime: Double = 3600

    @Option(help: "Injected faults as KIND:FRACTION pairs, e.g. 429:0.1,503:0.05,reset:0.02,norange:0.1.")
    var faults = ""

    @Option(help: "Time each request waits before it is answered, e.g. 100ms or 0.1s (a bare number is milliseconds).")
    var latency = "0"

    @Option(name: .customLong("latency-jitter"), help: "Each request's wait varies by up to this much either way, e.g. 50ms.")
    var latencyJitter = "0"

    @Option(name: .customLong("stream-rate"), help: "Cap of each download and upload stream, e.g. 40MiB/s (none by default).")
    var streamRate: String?

    @Option(name: .customLong("ru-per-minute"), help: "SharePoint's per-app budget of resource units a minute, e.g. 1200 (none by default).")
    var ruPerMinute = 0

    @Option(name: .customLong("page-cap"), help: "The most items a listing or delta page holds, whatever $top asks (the service may return fewer); 999 by default.")
    var pageCap = 999

    @Option(name: .customLong("api-per-day"), help: "Salesforce's daily API allowance.")
    var apiPerDay = 1_000_000

    @Option(name: .customLong("fault-seed"), help: "Seed of the fault dice.")
    var faultSeed: UInt64 = 42

    @Option(name: .customLong("retry-after"), help: "Seconds named in Retry-After on injected 429/503.")
    var retryAfter = 1

    @Option(name: .customLong("page-size"), help: "Graph children/delta page size when the client names no $top.")
    var pageSize = 200

    @Option(name: .customLong("query-batch-size"), help: "Largest Salesforce query batch.")
    var queryBatchSize = 2000

    @Flag(help: "Serve HTTPS with a certificate authority of its own (ca.pem in the state directory; the written mount.conf trusts it with ca_file).")
    var tls = false

    @Option(help: "Changes a minute made by other users: documents edited, added, renamed, moved and deleted; accounts created, renamed, deleted and changed.")
    var churn = 0

    @Flag(name: .customLong("keep-office-files"), help: "Store uploaded Office documents as sent (SharePoint rewrites their properties, so by default the sandbox does too).")
    var keepOfficeFiles = false

    @Option(name: .customLong("device-code-interval"), help: "Seconds a device sign-in asks its client to wait between polls (the services say 5).")
    var deviceCodeInterval = 5

    @Option(name: .customLong("approve-device-codes-as"), help: "Approve every device sign-in at once as this demo user (sam, sky or morgan); otherwise each code waits for its verification page.")
    var approveDeviceCodesAs: String?

    @Flag(help: "Log each request.")
    var verbose = false

    func run() async throws {
        CRMFS.bootstrapLogging(level: verbose ? .debug : .info)
        let (host, port) = try parseListen()
        var options = SandboxOptions(stateDirectory: URL(fileURLWithPath: state).standardizedFileURL)
        options.host = host
        options.port = port
        options.seed = SeedOptions(seed: seed, records: records, docsPerRecord: docsPerRecord, bulkFolderSize: bulkFolder)
        if let largeFile {
            guard let size = ByteSize.parse(largeFile) else { throw ValidationError("--large-file: '\(largeFile)' is not a size (try 1GiB or 200MiB)") }
            options.seed.largeFileSize = size
        }
        options.tokenLifetime = tokenLifetime
        do { options.faults = try FaultPlan(spec: faults) } catch { throw ValidationError("--faults: \(error)") }
        options.faults.latencyMilliseconds = try Self.milliseconds(latency, option: "--latency")
        options.faults.latencyJitterMilliseconds = try Self.milliseconds(latencyJitter, option: "--latency-jitter")
        if let streamRate {
            let perSecond = streamRate.hasSuffix("/s") ? String(streamRate.dropLast(2)) : streamRate
            guard let rate = ByteSize.parse(perSecond), rate > 0 else {
                throw ValidationError("--stream-rate: '\(streamRate)' is not a rate (try 40MiB/s)")
            }
            options.faults.streamBytesPerSecond = rate
        }
        guard ruPerMinute >= 0 else { throw ValidationError("--ru-per-minute: must be 0 (no budget) or more") }
        options.resourceUnitsPerMinute = ruPerMinute
        guard pageCap > 0 else { throw ValidationError("--page-cap: must be more than 0") }
        options.pageCap = pageCap
        guard apiPerDay > 0 else { throw ValidationError("--api-per-day: must be more than 0") }
        options.salesforceDailyLimit = apiPerDay
        options.faults.seed = faultSeed
        options.faults.retryAfterSeconds = retryAfter
        options.childrenPageSize = pageSize
        options.queryBatchSize = queryBatchSize
        options.tls = tls
        options.rewriteOfficeFiles = !keepOfficeFiles
        guard churn >= 0 else { throw ValidationError("--churn: must be 0 (a still tenant) or more") }
        options.churnPerMinute = churn
        guard deviceCodeInterval >= 1 else { throw ValidationError("--device-code-interval: must be 1 or more") }
        options.deviceCodeInterval = deviceCodeInterval
        let users = SandboxUser.demo(domain: "contoso.onmicrosoft.com").map(\.name)
        if let approveDeviceCodesAs, !users.contains(approveDeviceCodesAs) {
            throw ValidationError("--approve-device-codes-as: '\(approveDeviceCodesAs)' is not a demo user; one of \(users.joined(separator: ", "))")
        }
        options.approveDeviceCodesAs = approveDeviceCodesAs

        try FileManager.default.createDirectory(at: options.stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let server = try await SandboxServer.start(options: options)
        let config = try server.writeMountConfig()
        print("sandbox listening on \(server.baseURL)")
        print("config written to \(config.path)")
        fflush(nil)

        let signals = SignalWaiter(signals: [SIGINT, SIGTERM])
        await signals.wait()
        await server.stop()
    }

    /// A duration as `100ms`, `0.1s` or a bare number of milliseconds, within an hour.
    static func milliseconds(_ text: String, option: String) throws -> Int {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let (number, scale): (String, Double) = trimmed.hasSuffix("ms") ? (String(trimmed.dropLast(2)), 1)
            : trimmed.hasSuffix("s") ? (String(trimmed.dropLast()), 1000) : (trimmed, 1)
        guard let value = Double(number), value.isFinite, value >= 0, value * scale <= 3_600_000 else {
            throw ValidationError("\(option): '\(text)' is not a duration (try 100ms or 0.1s)")
        }
        return Int((value * scale).rounded())
    }

    private func parseListen() throws -> (String, Int) {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port) else {
            throw ValidationError("--listen: '\(listen)' is not HOST:PORT")
        }
        return (String(listen[..<colon]), port)
    }
}

/// Waits for the first of some signals, which are ignored for their default action meanwhile.
final class SignalWaiter: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    private let stream: AsyncStream<Int32>
    private let continuation: AsyncStream<Int32>.Continuation

    init(signals: [Int32]) {
        (stream, continuation) = AsyncStream<Int32>.makeStream()
        for number in signals {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            let continuation = self.continuation
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            sources.append(source)
        }
    }

    @discardableResult
    func wait() async -> Int32 {
        for await number in stream { return number }
        return 0
    }
}
