import Foundation
import Graph
import HTTP

/// Gathers the column writes of documents sent at about the same time (an rsync of many files into a
/// record) into `$batch` calls of up to 10 documents (each write with the read of its new version). The
/// first write waits for company, up to `longest`, while other documents are on their way (`companions`:
/// sending their bytes, or closed and waiting to start) or, while writes keep coming each within `gap`
/// of the one before, until none has come for `gap` (a copy slower than its uploads, as on a busy
/// machine, has moments with nothing on its way). A lone write goes at once, and a full batch too.
final class FieldsBatcher: @unchecked Sendable {
    private typealias Waiting = (update: FieldsUpdate, answer: CheckedContinuation<DriveItem, Error>)
    private let graph: any DriveService
    private let gap: Duration
    private let longest: Duration
    private let lock = NSLock()
    private var waiting: [Waiting] = []
    private var lastArrival: ContinuousClock.Instant?
    /// Whether the last write came within `gap` of the one before: a copy is under way.
    private var streaming = false
    /// How many documents are on their way to a column write, besides those waiting here.
    private var companions: @Sendable () -> Int = { 0 }

    init(graph: any DriveService, gap: Duration = .milliseconds(250), longest: Duration = .seconds(1)) {
        self.graph = graph
        self.gap = gap
        self.longest = longest
    }

    /// Tells the batcher how to count the documents that will want their columns written soon.
    func expectCompany(from count: @escaping @Sendable () -> Int) {
        lock.withLock { companions = count }
    }

    func write(driveID: String, itemID: String, fields: [String: JSONValue]) async throws -> DriveItem {
        try await withCheckedThrowingContinuation { continuation in
            let (first, full) = lock.withLock { () -> (Bool, [Waiting]?) in
                waiting.append((FieldsUpdate(driveID: driveID, itemID: itemID, fields: fields), continuation))
                let now = ContinuousClock.now
                streaming = lastArrival.map { now - $0 < gap } ?? false
                lastArrival = now
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
                    let deadline = ContinuousClock.now + self.longest
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

    /// Whether the batch has room and more documents are coming: some are on their way, or they keep
    /// coming one after another.
    private func expectsCompany() -> Bool {
        let (here, coming, onTheirWay) = lock.withLock {
            (waiting.count, streaming && lastArrival.map { ContinuousClock.now - $0 < gap } == true, companions)
        }
        guard here > 0, here < Self.documentsPerBatch else { return false }
        return coming || onTheirWay() > 0
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
