import Foundation

/// The built crmfs binary and ordinary command-line tools, run as a user would.
public enum Tools {
    public static var crmfs: String {
        if let override = ProcessInfo.processInfo.environment["CRMFS_BINARY"] { return override }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/crmfs").path
    }

    /// A new empty directory under the temporary directory (a mount point, a scratch area); the caller removes it.
    public static func emptyDirectory(_ prefix: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    public struct Result: Sendable {
        public var status: Int32
        public var output: String
        public var errors: String
    }

    /// Runs a program to completion on a thread of its own (it may call back into a mount this process serves).
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String]) async throws -> Result {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("run-\(UUID().uuidString)")
        let outPath = scratch.path + ".out", errPath = scratch.path + ".err"
        defer { unlink(outPath); unlink(errPath) }
        let process = try Subprocess(executable, arguments, stdout: .file(outPath), stderr: .file(errPath))
        let status = await process.wait()
        func text(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
        return Result(status: status, output: text(outPath), errors: text(errPath))
    }

    /// `sh -c SCRIPT`.
    @discardableResult
    public static func shell(_ script: String) async throws -> Result { try await run("/bin/sh", ["-c", script]) }

    /// Reads a whole file on a thread of its own, through the kernel.
    public static func read(_ path: String) async throws -> Data {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                do { continuation.resume(returning: try Data(contentsOf: URL(fileURLWithPath: path))) } catch { continuation.resume(throwing: error) }
            }.start()
        }
    }

    /// Runs a blocking body on a thread of its own.
    public static func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Swift.Result { try body() }) }.start()
        }
    }
}
