import Foundation

/// What a fleet mount holds, so it fetches details only for the feed's entries that concern it: an item
/// it shows or a folder it has listed, a record it shows. Everything else costs it no request.
extension Tree {
    /// The drive entries (item and, where known, its folder) the mount must read: items it shows, and items
    /// whose folder it has listed (a new or moved-in document). For the others, the library mirror forgets
    /// what it knew: those folders are listed from the service when first visited.
    public func driveEntriesHeld(_ entries: [(id: String, parentID: String?)]) -> Set<String> {
        let held = lock.withLock { () -> Set<String> in
            let listed = Set(directoriesByItem().filter { nodes[$0.value]?.children != nil }.keys)
            return Set(entries.compactMap { entry in
                let shown = inodes[.item(entry.id)] != nil || listed.contains(entry.id)
                return shown || entry.parentID.map(listed.contains) == true ? entry.id : nil
            })
        }
        for entry in entries where !held.contains(entry.id) { mirror.forget(entry.id, parentID: entry.parentID) }
        return held
    }

    /// The records of these the mount shows.
    public func recordsHeld(_ ids: [String]) -> Set<String> {
        lock.withLock { Set(ids.filter { inodes[.record($0)] != nil }) }
    }
}
