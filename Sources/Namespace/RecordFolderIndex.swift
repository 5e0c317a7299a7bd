import Foundation
import Graph

/// The record folders of an object, found by listing their common parent folder once instead of one
/// path lookup per record. Opening a few records costs a lookup each; from the `threshold`-th record
/// within the attribute timeout on (`find`, `rsync`, `ls -R`), the parent's listing answers, so a walk
/// over ten thousand records costs one listing per record, not two requests.
final class RecordFolderIndex: @unchecked Sendable {
    static let threshold = 8

    private let lock = NSLock()
    private var listings: [String: (task: Task<[String: String], Error>, started: Date)] = [:]
    private var lookups: [String: (count: Int, since: Date)] = [:]

    /// Lists the parents again at their next use: a folder appeared somewhere the mount does not show.
    func forgetListings() {
        lock.withLock { listings.removeAll() }
    }

    /// Splits a folder template whose fixed parent is followed by one per-record segment
    /// (`Accounts/{Name}`): the parent path and the segment's template. Nil when the parent varies too.
    static func split(_ folderTemplate: String) -> (parent: String, leaf: String)? {
        let trimmed = folderTemplate.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        guard let slash = trimmed.lastIndex(of: "/") else { return trimmed.contains("{") ? ("", trimmed) : nil }
        let parent = String(trimmed[..<slash])
        guard !parent.contains("{") else { return nil }
        return (parent, String(trimmed[trimmed.index(after: slash)...]))
    }

    /// Item ids of the folders in `parentPath`, by lower-cased name (SharePoint names ignore case), once
    /// they are worth listing (or at once, `now`); nil before that (the caller looks its one folder up).
    /// Empty when the parent does not exist yet.
    func folders(in parentPath: String, graph: any DriveService, driveID: String, pageSize: Int, timeout: TimeInterval,
                 now: Bool = false) async throws -> [String: String]? {
        let worthListing = now || lock.withLock { () -> Bool in
            if let listing = listings[parentPath], Date().timeIntervalSince(listing.started) < timeout { return true }
            var entry = lookups[parentPath] ?? (0, Date())
            if Date().timeIntervalSince(entry.since) >= timeout { entry = (0, Date()) }
            entry.count += 1
            lookups[parentPath] = entry
            return entry.count >= Self.threshold
        }
        guard worthListing else { return nil }
        let task = lock.withLock { () -> Task<[String: String], Error> in
            if let listing = listings[parentPath], Date().timeIntervalSince(listing.started) < timeout { return listing.task }
            let task = Task {
                let parent: DriveItem
                do {
                    parent = try await graph.item(driveID: driveID, path: parentPath)
                } catch let error as GraphError where error.isNotFound {
                    return [String: String]()
                }
                let children = try await graph.children(driveID: driveID, itemID: parent.id, pageSize: pageSize, expandFields: false)
                return Dictionary(children.compactMap { item in item.isFolder && !item.isDeleted ? item.name.map { ($0.lowercased(), item.id) } : nil },
                                  uniquingKeysWith: { first, _ in first })
            }
            listings[parentPath] = (task, Date())
            return task
        }
        do {
            return try await task.value
        } catch {
            lock.withLock { if listings[parentPath]?.task == task { listings[parentPath] = nil } }
            throw error
        }
    }
}
