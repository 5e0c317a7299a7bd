import Config
import Foundation
import HTTP
import Testing
import TestSupport

/// The `crmfs sandbox` command as a user runs it: a real process, its first line, its config, its signals.
@Suite("crmfs sandbox command")
struct SandboxCommandTests {
    static var binary: String { Tools.crmfs }

    /// Starts the command and returns it with its first line. (Subprocess, not Foundation's Process: its
    /// waits block no thread of the test process's task pool.)
    static func launch(state: URL, arguments: [String] = [], stderr: Subprocess.Stream = .null) async throws -> (Subprocess, String) {
        let process = try Subprocess(binary, ["sandbox", "--state", state.path, "--listen", "127.0.0.1:0"] + arguments, stdout: .pipe, stderr: stderr)
        let output = await process.readOutput(until: "\n")
        return (process, output.split(separator: "\n").first.map(String.init) ?? "")
    }

    @Test("prints its URL, writes a mount.conf with 0600 secrets, stops on SIGTERM, and keeps its tenant across restarts")
    func lifecycle() async throws {
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("crmfs-cli-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: state) }
        let (process, line) = try await Self.launch(state: state, arguments: ["--records", "5"])
        #expect(line.hasPrefix("sandbox listening on http://127.0.0.1:"))
        let baseURL = String(line.dropFirst("sandbox listening on ".count))

        let config = try ConfigLoader.load(path: state.appendingPathComponent("mount.conf").path)
        #expect(config.graph.endpoint == "\(baseURL)/v1.0")
        #expect(config.salesforce.instanceURL == baseURL)
        #expect(config.objects.map(\.directory) == ["Accounts", "Opportunities", "Cases"])
        for name in ["graph-client-secret", "salesforce-client-secret", "salesforce-refresh-token"] {
            let attributes = try FileManager.default.attributesOfItem(atPath: state.appendingPathComponent("secrets/\(name)").path)
            #expect((attributes[.posixPermissions] as? Int) == 0o600, "\(name)")
        }
        let transport = CurlTransport()
        let info = try await transport.perform(HTTPRequest(url: "\(baseURL)/_sandbox/info"))
        let driveID = try JSONDecoder().decode([String: String].self, from: info.body)["driveId"]

        process.signal(SIGTERM)
        #expect(await process.wait() == 0, "stops on SIGTERM with status 0")

        // Restarted with the load options as well: they are accepted (their effects are ServiceLoadTests').
        let (again, line2) = try await Self.launch(state: state, arguments: ["--records", "99", "--latency", "5ms", "--latency-jitter", "2ms",
                                                                             "--stream-rate", "40MiB/s", "--ru-per-minute", "1200", "--api-per-day", "5000"])
        let baseURL2 = String(line2.dropFirst("sandbox listening on ".count))
        let info2 = try? await transport.perform(HTTPRequest(url: "\(baseURL2)/_sandbox/info"))
        again.signal(SIGTERM)
        _ = await again.wait()
        #expect(try JSONDecoder().decode([String: String].self, from: try #require(info2).body)["driveId"] == driveID)
    }

    @Test("--verbose logs each service request (path, no query); `requests` counts what the services saw, not the sandbox's own admin calls")
    func verboseAndRequestCount() async throws {
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("crmfs-cli-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: state) }
        let log = state.path + ".log"
        defer { try? FileManager.default.removeItem(atPath: log) }
        let (process, line) = try await Self.launch(state: state, arguments: ["--records", "5", "--verbose"], stderr: .file(log))
        let baseURL = String(line.dropFirst("sandbox listening on ".count))
        let transport = CurlTransport()
        _ = try await transport.perform(HTTPRequest(url: "\(baseURL)/v1.0/sites/root?secret=query"))
        for _ in 0..<3 { _ = try await transport.perform(HTTPRequest(url: "\(baseURL)/_sandbox/info")) }
        let stats = try await transport.perform(HTTPRequest(url: "\(baseURL)/_sandbox/stats"))
        let counts = try JSONDecoder().decode([String: Int64].self, from: stats.body)
        process.signal(SIGTERM)
        _ = await process.wait()
        #expect(counts["requests"] == 1, "\(counts)")
        #expect(counts["admin.requests"] == 4, "\(counts)")
        let logged = try String(contentsOfFile: log, encoding: .utf8)
        #expect(logged.contains("/v1.0/sites/root") && logged.contains("status="), "\(logged)")
        #expect(!logged.contains("secret=query"))
    }

    @Test("a bad option is refused with a message naming it", arguments: [
        ["--faults", "429:2"], ["--latency", "soon"], ["--latency", "2h"], ["--latency-jitter", "-5ms"],
        ["--stream-rate", "fast"], ["--stream-rate", "0MiB/s"], ["--ru-per-minute", "-1"], ["--api-per-day", "0"],
    ])
    func badOption(_ option: [String]) async throws {
        let result = try await Tools.run(Self.binary, ["sandbox", "--state", "/tmp/unused-\(UUID().uuidString)"] + option)
        #expect(result.status != 0)
        #expect(result.errors.contains(option[0]), "\(result.errors)")
    }
}
