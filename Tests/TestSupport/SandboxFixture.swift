import Config
import Foundation
import HTTP
import Sandbox
import Services

/// A sandbox tenant on a loopback port, in a temporary state directory, for one test.
///
/// Client tests run it inside the test process. Mount tests run it as a `crmfs sandbox` process of its own:
/// a test blocked in a syscall on the mount must not starve the sandbox the mount is waiting for.
public final class SandboxFixture: Sendable {
    private let server: SandboxServer?
    private let process: Subprocess?
    public let baseURL: String
    public let directory: URL
    public let configPath: String
    public let transport: CurlTransport

    public static func start(records: Int = 12, docsPerRecord: Int = 2, largeFile: Int64? = nil, bulkFolder: Int? = nil,
                             separateProcess: Bool = false,
                             configure: (inout SandboxOptions) -> Void = { _ in }) async throws -> SandboxFixture {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("crmfs-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var options = SandboxOptions(stateDirectory: directory)
        options.seed = SeedOptions(records: records, docsPerRecord: docsPerRecord, largeFileSize: largeFile, bulkFolderSize: bulkFolder)
        configure(&options)
        if separateProcess {
            let (process, baseURL) = try await launch(options)
            return SandboxFixture(server: nil, process: process, baseURL: baseURL, directory: directory,
                                  configPath: directory.appendingPathComponent("mount.conf").path)
        }
        let server = try await SandboxServer.start(options: options)
        let config = try server.writeMountConfig()
        return SandboxFixture(server: server, process: nil, baseURL: server.baseURL, directory: directory, configPath: config.path)
    }

    /// `crmfs sandbox` with the same options, returning once it has printed its URL.
    private static func launch(_ options: SandboxOptions) async throws -> (Subprocess, String) {
        var arguments = ["sandbox", "--state", options.stateDirectory.path, "--listen", "127.0.0.1:0",
                         "--seed", String(options.seed.seed), "--records", String(options.seed.records),
                         "--docs-per-record", String(options.seed.docsPerRecord), "--token-lifetime", String(options.tokenLifetime)]
        if let large = options.seed.largeFileSize { arguments += ["--large-file", String(large)] }
        if let bulk = options.seed.bulkFolderSize { arguments += ["--bulk-folder", String(bulk)] }
        if options.tls { arguments.append("--tls") }
        if options.pageCap != 999 { arguments += ["--page-cap", String(options.pageCap)] }
        if options.faults.latencyMilliseconds > 0 { arguments += ["--latency", "\(options.faults.latencyMilliseconds)ms"] }
        if let user = options.approveDeviceCodesAs { arguments += ["--approve-device-codes-as", user] }
        if options.deviceCodeInterval != 5 { arguments += ["--device-code-interval", String(options.deviceCodeInterval)] }
        let process = try Subprocess(Tools.crmfs, arguments, stdout: .pipe)
        let line = await process.readOutput(until: "\n")
        guard let url = line.split(separator: "\n").first?.split(separator: " ").last, line.hasPrefix("sandbox listening on ") else {
            process.signal(SIGKILL)
            _ = await process.wait()
            throw MountFailure(message: "crmfs sandbox did not start: \(line)")
        }
        return (process, String(url))
    }

    private init(server: SandboxServer?, process: Subprocess?, baseURL: String, directory: URL, configPath: String) {
        self.server = server
        self.process = process
        self.baseURL = baseURL
        self.directory = directory
        self.configPath = configPath
        // Over HTTPS, the fixture's own requests trust the sandbox's CA, as the mount does.
        var options = TransportOptions()
        let authority = directory.appendingPathComponent("ca.pem").path
        if baseURL.hasPrefix("https:") { options.certificateAuthorities["127.0.0.1"] = authority }
        transport = CurlTransport(options: options)
    }

    public func config() throws -> MountConfig { try ConfigLoader.load(path: configPath) }

    /// Fresh clients with their own token caches, as a new mount would have.
    public func connections(retry: RetryPolicy = RetryPolicy(baseDelay: .milliseconds(20), maxDelay: .milliseconds(200))) throws -> Connections {
        try Connections(config: try config(), transport: transport, retry: retry, registry: TokenCacheRegistry())
    }

    /// `GET /_sandbox/stats`: what crossed the wire so far.
    public func stats() async throws -> [String: Int] {
        let response = try await transport.perform(HTTPRequest(url: "\(baseURL)/_sandbox/stats"))
        let json = try JSONDecoder().decode([String: Int].self, from: response.body)
        return json
    }

    /// `GET /_sandbox/requests`: "METHOD path" of every service request since the last `stats/reset`, in order.
    public func requests() async throws -> [String] {
        (try await adminGet("requests"))["requests"] as? [String] ?? []
    }

    public func info() async throws -> [String: String] {
        let response = try await transport.perform(HTTPRequest(url: "\(baseURL)/_sandbox/info"))
        return try JSONDecoder().decode([String: String].self, from: response.body)
    }

    /// POSTs a JSON admin command (`faults`, `tokens/expire`, `downloads/expire`, `delta/expire`, `stats/reset`).
    /// Returns what it answered, when it answered with a JSON object.
    @discardableResult
    public func admin(_ path: String, _ body: [String: Any] = [:]) async throws -> [String: Any] {
        let data = try JSONSerialization.data(withJSONObject: body)
        let response = try await transport.perform(HTTPRequest(method: "POST", url: "\(baseURL)/_sandbox/\(path)",
                                                               headers: ["Content-Type": "application/json"], body: .bytes(data)))
        // An error, not a crash: a crashed test process would leave its mounts behind.
        guard response.status == 204 || response.status == 200 else { throw MountFailure(message: "admin \(path) answered \(response.status)") }
        return (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any] ?? [:]
    }

    /// GETs an admin resource (`churn`, `info`) as JSON.
    public func adminGet(_ path: String) async throws -> [String: Any] {
        let response = try await transport.perform(HTTPRequest(url: "\(baseURL)/_sandbox/\(path)"))
        guard response.status == 200 else { throw MountFailure(message: "admin \(path) answered \(response.status)") }
        return (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any] ?? [:]
    }

    public func stop() async {
        // Its own connections first: a pooled keep-alive connection keeps the sandbox's handler, its
        // database and two descriptors alive for as long as the test process runs.
        // (On a thread of its own: it waits for any request still on its way.)
        let transport = self.transport
        _ = try? await Tools.blocking { transport.shutdown() }
        await server?.stop()
        if let process {
            process.signal(SIGTERM)
            _ = await process.wait()
        }
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Runs `body` with a fresh sandbox, stopping it afterwards whatever happens.
public func withSandbox<T>(records: Int = 12, docsPerRecord: Int = 2, largeFile: Int64? = nil, bulkFolder: Int? = nil,
                           separateProcess: Bool = false, configure: (inout SandboxOptions) -> Void = { _ in },
                           _ body: (SandboxFixture) async throws -> T) async throws -> T {
    let fixture = try await SandboxFixture.start(records: records, docsPerRecord: docsPerRecord, largeFile: largeFile,
                                                 bulkFolder: bulkFolder, separateProcess: separateProcess, configure: configure)
    do {
        let result = try await body(fixture)
        await fixture.stop()
        return result
    } catch {
        await fixture.stop()
        throw error
    }
}

/// Paths in every seeded tenant (the first account is always Acme Corp, with the brief's contract).
public enum SeededPaths {
    public static let acmeID = "0018d0000000001AAA"
    public static let acmeFolder = "Accounts/Acme Corp (\(acmeID))"
    public static let acmeContract = "\(acmeFolder)/Contracts/MSA-2026.pdf"
}
