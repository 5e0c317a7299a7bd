import Foundation
import Logging
import QuickXor

/// Other people at work: `--churn N` makes N changes a minute to the tenant as its other users would,
/// so freshness tests and benchmarks have a moving tenant. Documents are edited, added, renamed, moved
/// and deleted; accounts are created, renamed and deleted, and their fields changed. Each change is
/// logged and kept (the last thousand) for `GET /_sandbox/churn`, with when it was made.
final class Churn: @unchecked Sendable {
    struct Change: Sendable {
        var at: Date
        var kind: Kind
        /// The item or record changed.
        var target: String
        var detail: String

        var json: [String: Any] {
            ["at": GraphTime.format(at), "kind": kind.rawValue, "target": target, "detail": detail]
        }
    }

    enum Kind: String, CaseIterable, Sendable {
        case editDocument, addDocument, renameDocument, moveDocument, deleteDocument
        case changeField, renameRecord, createRecord, deleteRecord

        /// How often each comes, out of 100: edits most, deletions least, as in a working tenant.
        var weight: Int {
            switch self {
            case .editDocument: 30
            case .addDocument: 12
            case .renameDocument: 12
            case .moveDocument: 8
            case .deleteDocument: 5
            case .changeField: 18
            case .renameRecord: 7
            case .createRecord: 5
            case .deleteRecord: 3
            }
        }
    }

    static let user = "Someone Else"
    static let kept = 1000

    private let store: SandboxStore
    private let stats: Stats
    private let logger: Logger
    private let lock = NSLock()
    private var rng: SeededGenerator
    private var changes: [Change] = []
    private var serial = 0
    private var loop: Task<Void, Never>?

    init(store: SandboxStore, stats: Stats, logger: Logger, seed: UInt64) {
        self.store = store
        self.stats = stats
        self.logger = logger
        rng = SeededGenerator(seed: seed &+ 7)
    }

    /// Starts (or changes, or with 0 stops) the stream of changes.
    func run(perMinute: Int) {
        lock.withLock {
            loop?.cancel()
            loop = nil
            guard perMinute > 0 else { return }
            let interval = Duration.nanoseconds(Int64(60e9 / Double(perMinute)))
            loop = Task { [weak self] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval)
                    guard let self, !Task.isCancelled else { return }
                    _ = self.makeOne()
                }
            }
        }
    }

    var recent: [Change] { lock.withLock { changes } }

    /// One change, of `kind` or of a kind the dice choose; nil when the tenant has nothing it could change.
    @discardableResult
    func makeOne(_ kind: Kind? = nil) -> Change? {
        let (chosen, roll, number) = lock.withLock { () -> (Kind, UInt64, Int) in
            serial += 1
            var pick = Int(rng.next() % 100)
            let drawn = Kind.allCases.first { kind in
                pick -= kind.weight
                return pick < 0
            } ?? .editDocument
            return (kind ?? drawn, rng.next(), serial)
        }
        do {
            guard let change = try make(chosen, roll: roll, number: number) else { return nil }
            lock.withLock {
                changes.append(change)
                if changes.count > Self.kept { changes.removeFirst(changes.count - Self.kept) }
            }
            stats.increment("churn")
            stats.increment("churn.\(chosen.rawValue)")
            logger.info("churn", metadata: ["kind": "\(chosen.rawValue)", "target": "\(change.target)", "detail": "\(change.detail)"])
            return change
        } catch {
            logger.error("churn change failed", metadata: ["kind": "\(chosen.rawValue)", "error": "\(error)"])
            return nil
        }
    }

    private func make(_ kind: Kind, roll: UInt64, number: Int) throws -> Change? {
        let now = Date()
        func change(_ target: String, _ detail: String) -> Change { Change(at: now, kind: kind, target: target, detail: detail) }
        switch kind {
        case .editDocument:
            guard let item = try store.randomItem(isFolder: false, roll: roll) else { return nil }
            let data = Data("Edited by \(Self.user) at \(GraphTime.format(now)) (change \(number)).\n".utf8)
            guard try store.replaceContent(itemID: item.id, data: data, hash: QuickXorHash.hash(data), modifiedBy: Self.user) != nil else { return nil }
            return change(item.id, "\(item.name): new content, \(data.count) bytes")
        case .addDocument:
            guard let folder = try store.randomItem(isFolder: true, roll: roll) else { return nil }
            let name = "Churn note \(number).txt"
            guard try store.child(of: folder.id, named: name) == nil else { return nil }
            let data = Data("Added by \(Self.user) at \(GraphTime.format(now)).\n".utf8)
            let staging = store.stagingPath()
            try data.write(to: URL(fileURLWithPath: staging))
            let item = try store.storeUpload(staging: staging, size: Int64(data.count), hash: QuickXorHash.hash(data), over: nil,
                                             parent: folder, name: name, fsCreated: nil, fsModified: nil, by: Self.user)
            return change(item.id, "\(name) added in \(folder.name)")
        case .renameDocument:
            guard let item = try store.randomItem(isFolder: false, roll: roll), let parent = item.parentId else { return nil }
            let ext = (item.name as NSString).pathExtension
            let name = "Renamed \(number)" + (ext.isEmpty ? "" : ".\(ext)")
            guard try store.child(of: parent, named: name) == nil else { return nil }
            let old = item.name
            _ = try store.update(itemID: item.id) { $0.name = name }
            return change(item.id, "\(old) renamed \(name)")
        case .moveDocument:
            guard let item = try store.randomItem(isFolder: false, roll: roll),
                  let folder = try store.randomItem(isFolder: true, roll: roll / 7), folder.id != item.parentId,
                  try store.child(of: folder.id, named: item.name) == nil else { return nil }
            _ = try store.update(itemID: item.id) { $0.parentId = folder.id }
            return change(item.id, "\(item.name) moved to \(folder.name)")
        case .deleteDocument:
            guard let item = try store.randomItem(isFolder: false, roll: roll) else { return nil }
            try store.delete(itemID: item.id)
            return change(item.id, "\(item.name) deleted")
        case .changeField:
            guard let record = try store.randomRecord(type: "Account", roll: roll) else { return nil }
            let industry = SalesforceSchema.industries[Int(roll % UInt64(SalesforceSchema.industries.count))]
            try store.updateRecord(id: record.id, values: ["Industry": industry], at: SalesforceTime.format(now))
            return change(record.id, "Industry = \(industry)")
        case .renameRecord:
            guard let record = try store.randomRecord(type: "Account", roll: roll) else { return nil }
            let name = "Renamed Account \(number)"
            try store.updateRecord(id: record.id, values: ["Name": name], at: SalesforceTime.format(now))
            return change(record.id, "Name = \(name)")
        case .createRecord:
            let name = "New Account \(number)"
            let id = try store.insertRecord(type: "Account", keyPrefix: "001", values: ["Name": name, "Industry": SalesforceSchema.industries[0]],
                                            at: SalesforceTime.format(now))
            return change(id, "Account \(name) created")
        case .deleteRecord:
            guard let record = try store.randomRecord(type: "Account", roll: roll) else { return nil }
            try store.deleteRecord(id: record.id, at: SalesforceTime.format(now))
            return change(record.id, "deleted")
        }
    }
}
