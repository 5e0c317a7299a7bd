import Foundation
import Graph

/// A fleet mount's side of the relay's change log: the entries carry identifiers only, and the mount
/// reads the details of those it holds with its own user's token, in as few calls as the services allow
/// (`$batch` for items, one composite of queries for records). Entries for anything else cost nothing.
extension ChangeFeeds {
    /// Applies a run of the log's entries: how many changes reached the tree, and the entries whose
    /// details could not be read this time (the follower tries them again). An entry whose ids are not
    /// the services' (`FeedEntry.malformation`) is never used. A `deleted` entry is believed only when
    /// the service agrees (the item answers 404, or comes back deleted): one it still has is read as a change.
    /// Throws when the reads fail as a whole (the `$batch` call, the CRM's composite).
    @discardableResult
    public func apply(_ entries: [FeedEntry]) async throws -> FleetRound {
        let usable = entries.filter { $0.malformation == nil }
        var round = try await applyDriveEntries(usable.filter { $0.source == .drive(tree.driveID) })
        let records = try await applyRecordEntries(usable)
        round.applied += records
        return round
    }

    private func applyDriveEntries(_ entries: [FeedEntry]) async throws -> FleetRound {
        guard !entries.isEmpty else { return FleetRound() }
        // The latest entry of each item decides; whatever its kind, the item is read as it is now.
        var latest: [String: FeedEntry] = [:]
        for entry in entries { latest[entry.id] = entry }
        let held = tree.driveEntriesHeld(latest.values.map { ($0.id, $0.parentID) })
        guard !held.isEmpty else { return FleetRound() }
        let asked = tree.feedMark()
        let read = try await graph.itemResults(driveID: tree.driveID, ids: held.sorted())
        var items: [DriveItem] = []
        var round = FleetRound()
        for id in held.sorted() {
            switch read[id] {
            case .some(.success(.some(let item))):
                items.append(item)  // a deleted one comes back with its `deleted` facet
            case .some(.success(.none)):
                items.append(.deleted(id: id))  // deleted, or no longer the user's to see
            case .some(.failure(let error)):
                if let entry = latest[id] { round.unread.append(UnreadEntry(entry: entry, reason: "\(error)")) }
            case .none:
                if let entry = latest[id] { round.unread.append(UnreadEntry(entry: entry, reason: "the service did not answer for it")) }
            }
        }
        let changes = tree.applyDriveChanges(items, askedAt: asked)
        deliver(changes)
        round.applied = changes.applied
        return round
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

/// What a run of the change log's entries did on a mount.
public struct FleetRound: Sendable {
    /// Changes that reached the tree.
    public var applied = 0
    /// Entries whose details could not be read this time, and why.
    public var unread: [UnreadEntry] = []

    public init(applied: Int = 0, unread: [UnreadEntry] = []) {
        self.applied = applied
        self.unread = unread
    }
}

/// An entry whose details could not be read, and why.
public struct UnreadEntry: Sendable, Equatable {
    public var entry: FeedEntry
    public var reason: String

    public init(entry: FeedEntry, reason: String) {
        self.entry = entry
        self.reason = reason
    }
}

extension FeedEntry {
    /// Why the entry cannot be used, or nil: the ids that go into the services' requests must have their
    /// services' shapes (a drive's and its items' ids Graph's alphabet, a record Id Salesforce's), so a
    /// row the relay never wrote cannot address anything else.
    public var malformation: String? {
        switch source {
        case .drive(let drive):
            if !GraphPath.isID(drive) { return "its drive id is not one Graph gives" }
            if !GraphPath.isID(id) { return "its item id is not one Graph gives" }
            if let parentID, !GraphPath.isID(parentID) { return "its folder id is not one Graph gives" }
        case .object:
            if !ChangeFeeds.isRecordID(id) { return "its record Id is not a Salesforce Id" }
        }
        return nil
    }
}
