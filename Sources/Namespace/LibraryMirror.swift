import Foundation
import Graph

/// The whole library's items as the drive's delta enumerated them, kept up to date by every later delta
/// round: once the first enumeration is complete, a directory listed for the first time and a record's
/// folder are answered from here, so walking ten thousand records costs the enumeration's pages (999
/// items each), not a listing per folder. Until then, and for listing a directory again, the service is asked,
/// except by a tree walk: once first listings come faster than a person asks for them, they wait for the
/// enumeration instead of racing it folder by folder (each such listing would cost a request and slow the
/// enumeration down, and the walk would end no sooner).
final class LibraryMirror: @unchecked Sendable {
    /// First listings the mirror could not answer within `walkWindow` that make a walk.
    static let walkThreshold = 6
    static let walkWindow: TimeInterval = 5
    /// The longest a walk waits for the enumeration before listing folder by folder after all.
    static let longestWait: Duration = .seconds(300)

    private let lock = NSLock()
    private var items: [String: DriveItem] = [:]
    private var children: [String: Set<String>] = [:]
    /// Per folder, its items by lower-cased name (SharePoint names ignore case): a path is found in one
    /// step per segment, however many thousand record folders share a parent.
    private var named: [String: [String: String]] = [:]
    private var rootID: String?
    private var isComplete = false
    /// Folders whose items the mirror no longer knows for sure (a fleet mount read only what it shows):
    /// they are listed from the service.
    private var staleFolders: Set<String> = []
    private var enumerating = false
    private var recentMisses: [Date] = []
    private var waiters: [UUID: CheckedContinuation<Void, Never>] = [:]

    var complete: Bool { lock.withLock { isComplete } }

    /// Items in their latest state (a deletion removes the item, and what was below it stays unreachable).
    func apply(_ changes: [DriveItem]) {
        lock.withLock {
            for item in changes {
                if let old = items[item.id], let parent = old.parentReference?.id {
                    children[parent]?.remove(item.id)
                    if let name = old.name?.lowercased(), named[parent]?[name] == item.id { named[parent]?[name] = nil }
                }
                if item.isDeleted {
                    items[item.id] = nil
                    continue
                }
                var item = item
                if let old = items[item.id], item.listItem == nil, old.eTag == item.eTag { item.listItem = old.listItem }
                items[item.id] = item
                if item.root != nil { rootID = item.id }
                if let parent = item.parentReference?.id {
                    children[parent, default: []].insert(item.id)
                    if let name = item.name?.lowercased() { named[parent, default: [:]][name] = item.id }
                }
            }
        }
    }

    /// An item changed that the mirror was not told about in full: it and its folders are not answered from here.
    func forget(_ id: String, parentID: String?) {
        lock.withLock {
            if let old = items.removeValue(forKey: id), let parent = old.parentReference?.id {
                children[parent]?.remove(id)
                if let name = old.name?.lowercased(), named[parent]?[name] == id { named[parent]?[name] = nil }
                staleFolders.insert(parent)
            }
            staleFolders.insert(id)
            if let parentID { staleFolders.insert(parentID) }
        }
    }

    /// The first enumeration has reached its end: every item of the library is here.
    func markComplete() {
        lock.withLock { isComplete = true }
        enumerationStopped()
    }

    /// An enumeration is running (a first mount's first round).
    func enumerationStarted() {
        lock.withLock { enumerating = !isComplete }
    }

    /// The enumeration ended, complete or not: walks waiting for it go on.
    func enumerationStopped() {
        let waiting = lock.withLock {
            enumerating = false
            defer { waiters.removeAll() }
            return Array(waiters.values)
        }
        for waiter in waiting { waiter.resume() }
    }

    /// A first listing the mirror could not answer: waits for the enumeration when it is running and this
    /// looks like a walk. Whether the mirror is complete now.
    func waitIfWalking() async -> Bool {
        let walking = lock.withLock { () -> Bool in
            guard enumerating, !isComplete else { return false }
            let now = Date()
            recentMisses = recentMisses.filter { now.timeIntervalSince($0) < Self.walkWindow } + [now]
            return recentMisses.count > Self.walkThreshold
        }
        guard walking else { return false }
        let id = UUID()
        let timeout = Task { [weak self] in
            try await Task.sleep(for: Self.longestWait)
            self?.stopWaiting(id)
        }
        await withCheckedContinuation { continuation in
            let waiting = lock.withLock { () -> Bool in
                guard enumerating, !isComplete else { return false }
                waiters[id] = continuation
                return true
            }
            if !waiting { continuation.resume() }
        }
        timeout.cancel()
        return complete
    }

    private func stopWaiting(_ id: UUID) {
        lock.withLock { waiters.removeValue(forKey: id) }?.resume()
    }

    /// A folder's items, in name order; nil while the mirror is not complete.
    func children(of folderID: String) -> [DriveItem]? {
        lock.withLock {
            guard isComplete, !staleFolders.contains(folderID) else { return nil }
            return (children[folderID] ?? []).compactMap { items[$0] }.sorted { ($0.name ?? "") < ($1.name ?? "") }
        }
    }

    /// The item at `path` below the root (names compared as SharePoint does, ignoring case); `.some(nil)` when
    /// the library has no such item, nil while the mirror is not complete.
    func item(atPath path: String) -> DriveItem?? {
        lock.withLock {
            guard isComplete, var current = rootID else { return nil }
            for part in path.split(separator: "/") {
                if staleFolders.contains(current) { return nil }
                guard let next = named[current]?[part.lowercased()] else { return .some(nil) }
                current = next
            }
            return .some(items[current])
        }
    }
}
