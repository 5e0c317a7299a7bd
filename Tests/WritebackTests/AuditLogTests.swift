import Foundation
import Testing
import Writeback

@Suite("the audit log")
struct AuditLogTests {
    @Test("one JSON line per change, 0600, rotated by size keeping the newest files")
    func linesAndRotation() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("audit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("audit.jsonl").path
        let log = AuditLog(path: path, maxBytes: 1000, keep: 2)
        for index in 0..<30 {
            log.record(AuditLog.Entry(operation: "upload", path: "Accounts/Acme Corp/doc-\(index).txt", itemId: "01ITEM\(index)",
                                      recordId: "001ACME", outcome: "done"))
        }
        var info = stat()
        #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o600)
        #expect(info.st_size <= 1000)
        #expect(FileManager.default.fileExists(atPath: path + ".1") && FileManager.default.fileExists(atPath: path + ".2"))
        #expect(!FileManager.default.fileExists(atPath: path + ".3"), "only `keep` old files")
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        let last = try #require(try JSONSerialization.jsonObject(with: Data(lines.last!.utf8)) as? [String: Any])
        #expect(last["path"] as? String == "Accounts/Acme Corp/doc-29.txt" && last["outcome"] as? String == "done" && last["user"] is String)
        #expect(last["time"] is String && last["itemId"] as? String == "01ITEM29" && last["recordId"] as? String == "001ACME")
    }
}
