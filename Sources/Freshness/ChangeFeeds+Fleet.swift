import Foundation
import Graph

/// A fleet mount's side of the relay's change log: the entries carry identifiers only, and the mount
/// reads the details of those it holds with its own user's token, in as few calls as the services allow
/// (`$batch` for items, one composite of queries for records). Entries for anything else cost nothing.
extension ChangeFeeds {
    /// Applies a run of the log's entries; returns how many changes reached the tree.
    @discardableResult
    public func apply(_ entries: [FeedEntry]) async throws -> Int {
        try await applyDriveEntries(entries.filter { $0.source == .drive(tree.driveID) }) + (try await applyRecordEntries(entries))
    }

    private func applyDriveEntries(_ entries: [FeedEntry]) async throws -> Int {
        guard !entries.isEmpty else { return 0 }
        // The latest entry of each item decides (a deletion after a change needs no read).
        var latest: [String: FeedEntry] = [:]
        for entry in entries { latest[entry.id] = entry }
        let held = tree.driveEntriesHeld(latest.values.map { ($0.id, $0.parentID) })
        guard !held.isEmpty else { return 0 }
        let deleted = held.filter { latest[$0]?.kind == .deleted }
        let read = try await graph.items(driveID: tree.driveID, ids: held.subtracting(deleted).sorted())
        var items: [DriveItem] = []
        for id in held.sorted() {
            if let item = read[id] ?? nil {
                items.append(item)
            } else {
                items.append(.deleted(id: id))  // deleted, or no longer the user's to see
            }
        }
        let changes = tree.applyDriveChanges(items)
        deliver(changes)
        return changes.applied
    }

    private func applyRecordEntries(_ entries: [FeedEntry]) async throws -> Int {
        var reads: [RecordRead] = []
        var access: [String] = []
        for (index, _) in tree.listedObjects() {
            let object = tree.config.objects[index].object
            let mine = entries.filter { $0.source == .object(object) && Self.isRecordID($0.id) }
            guard !mine.isEmpty else { continue }
            // Records it shows, and new ones (whether the user may see a new record only the service knows);
            // under a filter, any changed one (the change may bring it under the filter).
            let held = tree.recordsHeld(mine.map(\.id))
            let filtered = tree.config.objects[index].filter != nil
            let asked = Set(mine.filter { held.contains($0.id) || $0.kind == .created || (filtered && $0.kind == .changed) }.map(\.id))
            guard !asked.isEmpty else { continue }
            let list = asked.sorted().map { "'\($0)'" }.joined(separator: ", ")
            reads.append(RecordRead(objectIndex: index, condition: "Id IN (\(list))", orderBy: nil, askedFor: asked))
            access += held.sorted()
        }
        guard !reads.isEmpty else { return 0 }
        return try await read(reads, accessOf: tree.options.checksRecordAccess ? access : [])
    }

    /// A Salesforce record Id (15 or 18 letters and digits): nothing else goes into a query.
    static func isRecordID(_ id: String) -> Bool {
        (id.count == 15 || id.count == 18) && id.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) }
    }
}
