import Foundation

/// `crmfs relay CONFIG` running for a test, its log in a file beside the config.
public final class RelayFixture: @unchecked Sendable {
    public let process: Subprocess
    public let logPath: String
    private let lock = NSLock()
    /// Set once the process was waited for: its pid may belong to another process from then on.
    private var reaped = false

    public static func start(config: String) throws -> RelayFixture {
        let log = config + ".\(UUID().uuidString.prefix(8)).log"
        return RelayFixture(process: try Subprocess(Tools.crmfs, ["relay", config, "--log-level", "debug"], stdout: .file(log + ".out"), stderr: .file(log)),
                            logPath: log)
    }

    /// Starts a relay for `body` and stops it afterwards, whatever happens in it.
    public static func using<T>(config: String, _ body: (RelayFixture) async throws -> T) async throws -> T {
        let relay = try start(config: config)
        do {
            let result = try await body(relay)
            await relay.stop()
            return result
        } catch {
            await relay.stop()
            throw error
        }
    }

    private init(process: Subprocess, logPath: String) {
        self.process = process
        self.logPath = logPath
    }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// SIGTERM, and its exit status.
    @discardableResult
    public func stop() async -> Int32 {
        guard !lock.withLock({ reaped }) else { return 0 }
        process.signal(SIGTERM)
        return await ended()
    }

    /// SIGKILL: a crash. (Nothing, on one that already ended.)
    public func kill() async {
        guard !lock.withLock({ reaped }) else { return }
        process.signal(SIGKILL)
        _ = await ended()
    }

    private func ended() async -> Int32 {
        let status = await process.wait()
        lock.withLock { reaped = true }
        return status
    }
}
