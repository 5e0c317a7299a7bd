import Config
import Foundation
import HTTP
import Testing
import TestSupport

/// The `crmfs sandbox` command as a user runs it: a real process, its first line, its config, its signals.
@Suite("crmfs sandbox command")
struct SandboxCommandTests {
    static var binary: String { Tools.crmfs }

    /// Starts the command and returns it with the URL from its first line.
    static func launch(state: URL, arguments: [String] = []) throws -> (Process, String, Pipe) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["sandbox", "--state", state.path, "--listen", "127.0.0.1:0"] + arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        let first = String(decoding: line, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
        return (process, first, output)
    }

    @Test("prints its URL, writes a mount.conf with 0600 secrets, stops on SIGTERM, and keeps its tenant across restarts")
    func lifecycle() async throws {
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("crmfs-cli-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: state) }
        let (process, line, _) = try Self.launch(state: state, arguments: ["--records", "5"])
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

        process.terminate()
        process.waitUntilExit()
        #expect(process.terminationReason == .exit && process.terminationStatus == 0)

        // Restarted with the load options as well: they are accepted (their effects are ServiceLoadTests').
        let (again, line2, _) = try Self.launch(state: state, arguments: ["--records", "99", "--latency", "5ms", "--latency-jitter", "2ms",
                                                                          "--stream-rate", "40MiB/s", "--ru-per-minute", "1200", "--api-per-day", "5000"])
        defer { again.terminate(); again.waitUntilExit() }
        let baseURL2 = String(line2.dropFirst("sandbox listening on ".count))
        let info2 = try await transport.perform(HTTPRequest(url: "\(baseURL2)/_sandbox/info"))
        #expect(try JSONDecoder().decode([String: String].self, from: info2.body)["driveId"] == driveID)
    }

    @Test("a bad option is refused with a message naming it", arguments: [
        ["--faults", "429:2"], ["--latency", "soon"], ["--latency", "2h"], ["--latency-jitter", "-5ms"],
        ["--stream-rate", "fast"], ["--stream-rate", "0MiB/s"], ["--ru-per-minute", "-1"], ["--api-per-day", "0"],
    ])
    func badOption(_ option: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = ["sandbox", "--state", "/tmp/unused-\(UUID().uuidString)"] + option
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus != 0)
        #expect(text.contains(option[0]), "\(text)")
    }
}
