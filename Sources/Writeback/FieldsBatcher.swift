import Foundation
import Graph
import HTTP

/// Gathers the column writes of documents sent at about the same time (an rsync of many files into a
/// record) into `$batch` calls of up to 20: a write waits `linger` for company, or goes as soon as 20 are
/// waiting. A write alone goes as a plain PATCH.
final class FieldsBatcher: @unchecked Sendable {
    private let graph: any DriveService
    private let linger: Duration
    private let lock = NSLock()
    private var waiting: [(update: FieldsUpdate, answer: CheckedContinuation<[String: JSONValue], Error>)] = []

    init(graph: any DriveService, linger: Duration = .milliseconds(25)) {
        self.graph = graph
        self.linger = linger
    }

    func write(driveID: String, itemID: String, fields: [String: JSONValue]) async throws -> [String: JSONValue] {
        try await withCheckedThrowingContinuation { continuation in
            let (first, full) = lock.withLock { () -> (Bool, [(update: FieldsUpdate, answer: CheckedContinuation<[String: JSONValue], Error>)]?) in
                waiting.append((FieldsUpdate(driveID: driveID, itemID: itemID, fields: fields), continuation))
                if waiting.count >= GraphClient.batchLimit {
                    defer { waiting.removeAll() }
                    return (false, waiting)
                }
                return (waiting.count == 1, nil)
            }
            if let full {
                Task { await self.send(full) }
            } else if first {
                Task {
                    try? await Task.sleep(for: self.linger)
                    let due = self.lock.withLock { () -> [(update: FieldsUpdate, answer: CheckedContinuation<[String: JSONValue], Error>)] in
                        defer { self.waiting.removeAll() }
                        return self.waiting
                    }
                    await self.send(due)
                }
            }
        }
    }

    private func send(_ writes: [(update: FieldsUpdate, answer: CheckedContinuation<[String: JSONValue], Error>)]) async {
        guard !writes.isEmpty else { return }
        let results = await graph.updateFields(writes.map(\.update))
        for (index, write) in writes.enumerated() {
            write.answer.resume(with: index < results.count ? results[index]
                                : .failure(GraphError(status: 0, code: "noAnswer", request: "column write of \(write.update.itemID)")))
        }
    }
}
