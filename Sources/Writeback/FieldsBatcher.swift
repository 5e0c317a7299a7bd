import Foundation
import Graph
import HTTP

/// Gathers the column writes of documents sent at about the same time (an rsync of many files into a
/// record) into `$batch` calls of up to 10 documents (each write with the read of its new version). The
/// first write waits for company while other documents are on their way (`companions`: sending their
/// bytes, or closed and waiting to start), up to `linger`; it goes at once when it is alone, and a batch
/// goes as soon as it is full.
final class FieldsBatcher: @unchecked Sendable {
    private typealias Waiting = (update: FieldsUpdate, answer: CheckedContinuation<DriveItem, Error>)
    private let graph: any DriveService
    private let linger: Duration
    private let lock = NSLock()
    private var waiting: [Waiting] = []
    /// How many documents are on their way to a column write, besides those waiting here.
    private var companions: @Sendable () -> Int = { 0 }

    init(graph: any DriveService, linger: Duration = .milliseconds(250)) {
        self.graph = graph
        self.linger = linger
    }

    /// Tells the batcher how to count the documents that will want their columns written soon.
    func expectCompany(from count: @escaping @Sendable () -> Int) {
        lock.withLock { companions = count }
    }

    func write(driveID: String, itemID: String, fields: [String: JSONValue]) async throws -> DriveItem {
        try await withCheckedThrowingContinuation { continuation in
            let (first, full) = lock.withLock { () -> (Bool, [Waiting]?) in
                waiting.append((FieldsUpdate(driveID: driveID, itemID: itemID, fields: fields), continuation))
                if waiting.count >= Self.documentsPerBatch {
                    defer { waiting.removeAll() }
                    return (false, waiting)
                }
                return (waiting.count == 1, nil)
            }
            if let full {
                Task { await self.send(full) }
            } else if first {
                Task {
                    let deadline = ContinuousClock.now + self.linger
                    while ContinuousClock.now < deadline, self.expectsCompany() {
                        try? await Task.sleep(for: .milliseconds(10))
                    }
                    let due = self.lock.withLock { () -> [Waiting] in
                        defer { self.waiting.removeAll() }
                        return self.waiting
                    }
                    await self.send(due)
                }
            }
        }
    }

    /// Whether documents not waiting here yet are on their way, and the batch has room for them.
    private func expectsCompany() -> Bool {
        let here = lock.withLock { waiting.count }
        let onTheirWay = lock.withLock { companions }
        return here > 0 && here < Self.documentsPerBatch && onTheirWay() > 0
    }

    /// A write and a read per document, 20 requests to a batch.
    static let documentsPerBatch = GraphClient.batchLimit / 2

    private func send(_ writes: [Waiting]) async {
        guard !writes.isEmpty else { return }
        let results = await graph.stampFields(writes.map(\.update))
        for (index, write) in writes.enumerated() {
            write.answer.resume(with: index < results.count ? results[index]
                                : .failure(GraphError(status: 0, code: "noAnswer", request: "column write of \(write.update.itemID)")))
        }
    }
}
