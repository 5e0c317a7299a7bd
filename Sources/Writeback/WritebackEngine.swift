import Config
import CRM
import Foundation
import Graph
import HTTP
import Logging

/// How the changes of one CRM object are linked and stamped.
public struct ObjectLinking: Sendable {
    public var model: LinkModel
    public var mappings: [FieldMapping]
    public var conflictPolicy: ConflictPolicy

    public init(model: LinkModel, mappings: [FieldMapping], conflictPolicy: ConflictPolicy = .keepBoth) {
        self.model = model
        self.mappings = mappings
        self.conflictPolicy = conflictPolicy
    }
}

/// Sends the journal's changes in the background, oldest first: upload, link, stamp columns, then forget
/// the change and its staged file. A restarted engine resumes from what the journal says. Failures are
/// retried with backoff up to `maxAttempts`; conflicts are settled by the object's policy. `wait(for:)`
/// serves `fsync`, `drain()` serves `crmfs sync`.
public final class WritebackEngine: @unchecked Sendable {
    let journal: Journal
    let staging: StagingArea
    public let uploader: Uploader
    let linker: Linker
    let graph: any DriveService
    /// Column stamps of documents sent together go out together.
    let stamps: FieldsBatcher
    let salesforce: any RecordService
    let objects: [String: ObjectLinking]
    let maxAttempts: Int
    let retryDelay: Duration
    let logger: Logger

    let lock = NSLock()
    private var wakeup: CheckedContinuation<Void, Never>?
    private var pendingWake = false
    private var passes = 0
    private var loop: Task<Void, Never>?
    /// Last failure of changes that gave up, for waiters.
    private var failures: [Int64: String] = [:]
    /// When each change that gave up is tried again on its own, and how many times it has given up: an
    /// outage ends, and what was written during it goes without a remount (see `reviveDue`).
    private var revivesAt: [Int64: ContinuousClock.Instant] = [:]
    private var givenUpCount: [Int64: Int] = [:]
    /// The pause before a change that gave up is tried again; it doubles each time, up to `maxRevivalDelay`.
    let revivalDelay: Duration
    static let maxRevivalDelay: Duration = .seconds(900)
    /// Changes the service refused for good (see `refuse`), with why, for waiters, `crmfs sync` and `crmfs status`.
    var refusals: [Int64: (name: String, reason: String)] = [:]
    /// Versions the mount's own changes made, by the document and the version they were guarded by
    /// (`ITEM ETAG` → the eTag after): see `rebase(after:made:)`.
    var ownVersions: [String: String] = [:]
    /// Journal rows whose trouble was logged already (0: the whole journal), so a lasting one is logged once.
    var journalUnreadable: Set<Int64> = []
    /// Refusals a `drain` (`crmfs sync`) has already reported.
    private var reportedRefusals: Set<Int64> = []
    /// Changes whose staged file is still open for writing: not sent until released.
    private var held: Set<Int64> = []
    /// Changes being sent now: they can no longer be amended or withdrawn.
    private var running: Set<Int64> = []
    /// Changes whose bytes an fsync could not make durable: held, until a later close seals them and amends the change.
    private var unsealed: Set<Int64> = []
    /// Changes that failed wait until then before the next attempt.
    private var notBefore: [Int64: ContinuousClock.Instant] = [:]
    /// Changes just released wait until then (see `release(_:after:)`); `drain` does not wait for it.
    private var quietUntil: [Int64: ContinuousClock.Instant] = [:]
    /// Uploads that made a new document, from the moment they are done until the mount has taken the
    /// item in: a change recorded meanwhile still names the document by place and learns its item here.
    private var madeItems: [Int64: (PendingChange, DriveItem)] = [:]
    /// Records read for stamping, kept for 30 s (see WritebackEngine+Stamping).
    let records = SingleFlight<[String: JSONValue]>(keepFor: .seconds(30))
    /// How many uploads go at once.
    let width: Int
    private var observers: [@Sendable (ChangeOutcome) -> Void] = []
    /// `wait(for:)` and `drain()` callers, woken whenever a change ends, fails, is withdrawn or released;
    /// each checks again what it waits for. Keyed, so a cancelled caller can leave.
    private var progressWaiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    private var lastWaiter: UInt64 = 0

    public init(journal: Journal, staging: StagingArea, uploader: Uploader, linker: Linker, graph: any DriveService, salesforce: any RecordService,
                objects: [String: ObjectLinking], maxAttempts: Int = 5, retryDelay: Duration = .seconds(2), revivalDelay: Duration = .seconds(60),
                width: Int = 4, logger: Logger = Logger(label: "crmfs.writeback")) {
        self.revivalDelay = revivalDelay
        self.width = max(1, width)
        self.journal = journal
        self.staging = staging
        self.uploader = uploader
        self.linker = linker
        self.graph = graph
        stamps = FieldsBatcher(graph: graph)
        self.salesforce = salesforce
        self.objects = objects
        self.maxAttempts = maxAttempts
        self.retryDelay = retryDelay
        self.logger = logger
        // Company for a column write: documents sending their bytes, and documents closed a moment ago
        // (an rsync slower than the uploads still has its next files in their quiet moment).
        stamps.expectCompany { [weak self, progress = uploader.progress] in progress.count + (self?.releasedNotStarted ?? 0) }
    }

    /// Changes let go (after a close) whose upload has not started yet.
    private var releasedNotStarted: Int {
        lock.withLock { quietUntil.keys.count { !running.contains($0) && !held.contains($0) && failures[$0] == nil } }
    }

    /// A change as the journal has it now; nil once it is done or withdrawn. (The engine is the journal's
    /// one user while the mount runs: the write path asks it.)
    public func change(id: Int64) throws -> PendingChange? { try journal.change(id: id) }

    /// Every change not done yet, oldest first.
    public func outstanding() throws -> [PendingChange] { try journal.outstanding() }

    /// Column and record field edits, sent at once.
    public var metadata: MetadataWrites { MetadataWrites(graph: graph, salesforce: salesforce) }

    public func start() {
        lock.withLock {
            guard loop == nil else { return }
            loop = Task { await self.run() }
        }
    }

    public func stop() async {
        let task = lock.withLock { loop }
        task?.cancel()
        kick()
        await task?.value
    }

    /// New work is in the journal.
    public func kick() {
        let waiting = lock.withLock { () -> CheckedContinuation<Void, Never>? in
            defer { wakeup = nil }
            if wakeup == nil { pendingWake = true }
            return wakeup
        }
        waiting?.resume()
    }

    /// Calls `observer` (on the engine's task) after each change is done or settled.
    public func observe(_ observer: @escaping @Sendable (ChangeOutcome) -> Void) {
        lock.withLock { observers.append(observer) }
    }

    /// Lets a held change go, at once or after a quiet moment.
    public func release(_ id: Int64, after delay: Duration = .zero) {
        lock.withLock {
            held.remove(id)
            quietUntil[id] = delay > .zero ? .now + delay : nil
        }
        kick()
        progressed()
    }

    /// Changes a change whose bytes are not on the service yet and that is not being sent now; false when
    /// it is being sent (or linked, or done). One that failed or gave up (`givenUp`) starts again from its
    /// first attempt and from a new upload session: the user changed it since. A change held back by a
    /// failed flush (`sealFailed`) is made sendable again when the update says its bytes are sealed.
    @discardableResult
    public func amend(_ id: Int64, _ update: (inout PendingChange) -> Void) throws -> Bool {
        let reinstated = try lock.withLock { () -> Bool? in
            guard !running.contains(id), let change = try journal.change(id: id) else { return nil }
            var updated = change
            update(&updated)
            if unsealed.contains(id), updated.sealed {
                unsealed.remove(id)
                try journal.update(id: id) { change in
                    update(&change)
                    change.startAfresh()
                }
                failures[id] = nil
                notBefore[id] = nil
                return true
            }
            guard change.state.notSent else { return nil }
            if change.state == .staged && failures[id] == nil {
                try journal.update(id: id, update)
            } else {
                try journal.update(id: id) { change in
                    update(&change)
                    change.startAfresh()
                }
                failures[id] = nil
                notBefore[id] = nil
            }
            return false
        }
        if reinstated == true { uploader.seals.reset(id) }
        if reinstated != nil { kick() }  // one that had failed or given up may go now
        return reinstated != nil
    }

    /// The bytes of change `id` (recorded unsealed by an fsync) are on disk now.
    public func sealed(_ id: Int64) throws {
        try journal.update(id: id) { $0.sealed = true }
        // An earlier fsync's failed flush no longer holds it: should it give up later, it goes again.
        lock.withLock { _ = unsealed.remove(id) }
        uploader.seals.sealed(id)
    }

    /// The bytes of change `id` could not be made durable: its upload stops before the last fragment,
    /// `user.crmfs.sync` and waiters get `reason`, and it is held until a later close seals the bytes and
    /// amends it. Nothing else waits for it.
    public func sealFailed(_ id: Int64, reason: String) {
        let failure = SealFailure(reason: reason)
        lock.withLock {
            unsealed.insert(id)
            held.insert(id)
            failures[id] = failure.description
        }
        uploader.seals.failed(id, reason: reason)
        progressed()
        logger.error("a staged file could not be made durable; its change waits for the next close", metadata: ["error": "\(reason)"])
        kick()
    }

    /// Withdraws a change whose bytes are not on the service yet and that is not being sent now (a newer
    /// write or a delete made it pointless; one that failed or gave up too), with its staged file unless
    /// another change names it or `keepingFile` (the document stays, local only); false when it is being
    /// sent (or linked, or done).
    @discardableResult
    public func withdraw(_ id: Int64, keepingFile: Bool = false) throws -> Bool {
        let withdrawn = try lock.withLock {
            guard !running.contains(id), let change = try journal.change(id: id), change.state.notSent else { return false }
            try journal.complete(id: id)
            forgetLocked(id)
            if let file = change.stagedFile, !keepingFile { try removeUnnamed(file) }
            return true
        }
        if withdrawn {
            kick()  // what waited behind it may go now
            progressed()
        }
        return withdrawn
    }

    /// Withdraws the renames, times and column edits of document or folder `itemID` that are not being
    /// sent (waiting, failed or given up): its deletion, recorded next, makes them pointless, and sent
    /// after it (a change that gave up goes again at the next mount) they would find it gone. With
    /// `timesOnly`, only the changes that carry nothing but a time: a new version, recorded next, carries
    /// its own, which a late one would overwrite. Returns the changes withdrawn.
    public func withdrawEdits(of itemID: String, timesOnly: Bool = false) throws -> [Int64] {
        let withdrawn = try lock.withLock { try withdrawEditsLocked(of: itemID, timesOnly: timesOnly) }
        if !withdrawn.isEmpty {
            kick()
            progressed()
        }
        return withdrawn
    }

    private func withdrawEditsLocked(of itemID: String, timesOnly: Bool = false, keeping kept: Int64? = nil) throws -> [Int64] {
        // Every close that records a new version comes here: one indexed read, not the whole journal.
        let edits = try journal.changes(of: itemID).filter { change in
            guard let id = change.id, id != kept, !running.contains(id) else { return false }
            return timesOnly ? change.isTimeOnly : change.kind == .move || change.kind == .setColumns
        }
        for id in edits.compactMap(\.id) {
            try journal.complete(id: id)
            failures[id] = nil
            notBefore[id] = nil
        }
        return edits.compactMap(\.id)
    }

    /// Records `deletion` of a document or folder, withdrawing its edits as `withdrawEdits` does. When one
    /// of those is a move not sent, the deletion takes its place in the journal: what was recorded after
    /// the move may rely on the name it frees (a new document given that name), and the document still
    /// holds that name on the service until one of them goes. Returns the deletion as saved and the
    /// changes withdrawn (the replaced move among them: its id now names the deletion).
    public func recordDeletion(_ deletion: PendingChange) throws -> (saved: PendingChange, withdrawn: [Int64]) {
        guard let itemID = deletion.itemID else { return (try record(deletion), []) }
        let (replaced, withdrawn) = try lock.withLock { () -> (PendingChange?, [Int64]) in
            var move = try journal.changes(of: itemID).first { change in
                guard let id = change.id, !running.contains(id), change.kind == .move, !change.isTimeOnly else { return false }
                return change.state.notSent
            }
            // Not ahead of what names it after the move (a document moved out of a folder being deleted, a
            // version of the document): those need it where they were recorded.
            if let id = move?.id, try journal.outstanding().contains(where: { later in
                guard let laterID = later.id, laterID > id, !(later.itemID == itemID && (later.kind == .move || later.kind == .setColumns)) else { return false }
                return later.itemID == itemID || later.parentItemID == itemID || (later.leaving?.hasPrefix("\(itemID)/") ?? false)
            }) {
                move = nil
            }
            let withdrawn = try withdrawEditsLocked(of: itemID, keeping: move?.id)
            guard let move, let id = move.id else { return (nil, withdrawn) }
            let replaced = try journal.update(id: id) { change in
                let leaving = change.leaving
                change = deletion
                change.id = id
                change.createdAt = move.createdAt
                change.leaving = deletion.leaving ?? leaving
            }
            failures[id] = nil
            notBefore[id] = nil
            revivesAt[id] = nil
            givenUpCount[id] = nil
            return (replaced, withdrawn + [id])
        }
        kick()
        progressed()
        return (try replaced ?? record(deletion), withdrawn)
    }

    /// Removes staged file `file` once no change in the journal names it (the write path's copies a
    /// change has not taken, or has let go). With the engine's lock held, or from the engine's task.
    func removeUnnamed(_ file: String) throws {
        guard try !journal.names(stagedFile: file) else { return }
        try staging.remove(file)
    }

    /// Removes a staged copy the write path no longer needs, unless a change still names it (then the
    /// change's end removes it).
    public func discardStaged(_ file: String) throws {
        try lock.withLock { try removeUnnamed(file) }
    }

    /// Tries `attempt` (an `amend` or a `withdraw` of change `id`) again after each attempt to send the
    /// change that it found under way; false once the change has its bytes on the service (or is done),
    /// when only waiting for it is left.
    public func whenNotSending(_ id: Int64, _ attempt: () throws -> Bool) async throws -> Bool {
        while true {
            if try attempt() { return true }
            // An attempt under way whose bytes are not all up yet may still end failed, and then can be changed.
            let sending = lock.withLock {
                guard running.contains(id), let state = (try? journal.change(id: id))?.state else { return false }
                return state.notSent || state == .uploading
            }
            guard sending else { return false }
            await notRunning(id)
        }
    }

    /// What `user.crmfs.sync` says of change `id`: nil once it is done.
    public func status(of id: Int64) -> SyncStatus? {
        if let failure = lock.withLock({ failures[id] }) { return .error(failure) }
        guard let change = try? journal.change(id: id) else { return nil }
        switch change.state {
        case .staged: return .pending
        case .uploading, .linking: return .uploading
        case .conflict: return .conflict
        case .failed: return change.lastError.map { .retrying($0) } ?? .pending
        }
    }

    /// Changes that gave up, with why.
    public var givenUp: [Int64: String] { lock.withLock { failures } }

    /// A change that gave up or that the service refused, by its document's name.
    public struct Problem: Sendable, Equatable {
        public var name: String
        public var reason: String
    }

    /// Every change of this mount that gave up after retries or was refused for good.
    public var problems: [Problem] {
        let (failed, refused) = lock.withLock { (failures, refusals) }
        var problems = failed.sorted { $0.key < $1.key }.map { id, reason in
            Problem(name: (try? journal.change(id: id))?.name ?? "change \(id)", reason: reason)
        }
        problems += refused.sorted { $0.key < $1.key }.map { Problem(name: $0.value.name, reason: $0.value.reason) }
        return problems
    }

    /// Returns once change `id` is done (a conflict settled by its policy counts); throws its last error
    /// when it gave up, and CancellationError when the caller is cancelled (the change goes on).
    /// `tryingAgain` (an fsync, an edit that needs the change done): the first time the change is found
    /// given up, or behind changes that gave up, those go again from their first attempt (`tryAgain(aheadOf:)`),
    /// and the wait throws only when they give up again. Once only: the outage may go on.
    public func wait(for id: Int64, tryingAgain: Bool = false) async throws {
        var mayTryAgain = tryingAgain
        while true {
            if let failure = lock.withLock({ failures[id] ?? givenUpWith()[id] }) {
                if mayTryAgain, tryAgain(aheadOf: id) {
                    mayTryAgain = false
                    continue
                }
                throw WritebackError.gaveUp(failure)
            }
            if let refusal = lock.withLock({ refusals[id] }) { throw WritebackError.refused(refusal.reason) }
            guard try journal.change(id: id) != nil || lock.withLock({ running.contains(id) }) else { return }
            try Task.checkCancellation()
            await waitForProgress { failures[id] != nil || givenUpWith()[id] != nil || ((try? journal.change(id: id)) == nil && !running.contains(id)) }
        }
    }

    /// Returns once change `id` is not being sent (its attempt ended, or it never started), cancelled or not.
    public func notRunning(_ id: Int64) async {
        await waitForProgress(cancellable: false) { !running.contains(id) }
    }

    /// Returns once every change recorded before the call is done or has given up (changes recorded
    /// meanwhile are not waited for, so a busy writer cannot keep it waiting). Changes still held for an
    /// open file are released first by their owner (`LocalWrites.drain`). Every change that gave up is
    /// tried again first, from its first attempt, in journal order (`crmfs sync` asks for all of them).
    public func drain() async throws {
        lock.withLock { quietUntil.removeAll() }
        reviveDue(all: true)
        kick()
        let targets = Set(try journal.outstanding().compactMap(\.id))
        func unfinished() -> Bool {
            let outstanding = (try? journal.outstanding()) ?? []
            let stuck = givenUpWith(outstanding)
            return outstanding.contains { change in change.id.map { targets.contains($0) && failures[$0] == nil && stuck[$0] == nil } ?? false }
        }
        while lock.withLock({ unfinished() }) {
            try Task.checkCancellation()
            await waitForProgress { !unfinished() }
        }
        // Every refusal not reported yet, also one that came before this call began (its change is gone from
        // the journal by then): a `crmfs sync` right after a refused write must say so, however fast it was.
        let refused = lock.withLock {
            let unreported = refusals.filter { !reportedRefusals.contains($0.key) }
            reportedRefusals.formUnion(unreported.keys)
            return unreported.values.map { "\($0.name): \($0.reason)" }
        }
        if !refused.isEmpty { throw WritebackError.refused(refused.sorted().joined(separator: "; ")) }
    }

    /// Suspends until the engine makes progress, unless `done` (checked under the lock, so no progress
    /// between the check and the wait is missed) already holds; a `cancellable` wait also ends when the
    /// calling task is cancelled (a `crmfs sync` or an fsync interrupted by a signal).
    private func waitForProgress(cancellable: Bool = true, unless done: () -> Bool) async {
        let key = lock.withLock { () -> UInt64 in
            lastWaiter &+= 1
            return lastWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                // Under the lock: a cancellation either finds this waiter, or came first and is seen here.
                let now = lock.withLock { () -> Bool in
                    if done() || cancellable && Task.isCancelled { return true }
                    progressWaiters[key] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            guard cancellable else { return }
            lock.withLock { progressWaiters.removeValue(forKey: key) }?.resume()
        }
    }

    /// Wakes every waiter to check again.
    func progressed() {
        let waiting = lock.withLock { () -> [CheckedContinuation<Void, Never>] in
            defer { progressWaiters.removeAll() }
            return Array(progressWaiters.values)
        }
        for waiter in waiting { waiter.resume() }
    }

    /// Changes of a document (or folder) waiting behind an earlier change of it that gave up (an upload
    /// not linked, a rename the service kept refusing, a conflict not settled): they cannot go before it
    /// does (at the next mount, in order), so they have given up too, for `drain`, `wait(for:)` and the
    /// scheduler, with its reason. With the lock held.
    func givenUpWith(_ outstanding: [PendingChange]? = nil) -> [Int64: String] {
        givenUpChains(outstanding).filter { failures[$0.key] == nil }.mapValues(\.reason)
    }

    /// A change that gave up or waits behind one: why, and the changes that gave up at or ahead of it
    /// (those that must go again for it to go).
    private struct GivenUpChain {
        var reason: String
        var ahead: Set<Int64>
    }

    /// Every change that gave up or waits behind one, in the journal's order. With the lock held.
    private func givenUpChains(_ outstanding: [PendingChange]?) -> [Int64: GivenUpChain] {
        guard !failures.isEmpty else { return [:] }
        var blocking: [String: GivenUpChain] = [:]
        var chains: [Int64: GivenUpChain] = [:]
        for change in outstanding ?? (try? journal.outstanding()) ?? [] {
            guard let id = change.id else { continue }
            let keys = Self.documentKeys(change)
            let earlier = keys.compactMap { blocking[$0] }
            var ahead = earlier.reduce(into: Set<Int64>()) { $0.formUnion($1.ahead) }
            let reason: String
            if let failure = failures[id] {
                reason = failure
                ahead.insert(id)
                chains[id] = GivenUpChain(reason: failure, ahead: ahead)
            } else if let first = earlier.first {
                reason = first.reason
                chains[id] = GivenUpChain(reason: "an earlier change of \(change.name) gave up: \(first.reason)", ahead: ahead)
            } else {
                continue
            }
            for key in keys { blocking[key] = GivenUpChain(reason: reason, ahead: ahead) }
        }
        return chains
    }

    /// Change `id`, when it gave up, and the changes that gave up ahead of it start again from their first
    /// attempt (in journal order, as ever); false when there is none, or one of them waits for a close to
    /// seal its bytes. The other changes that gave up keep their pause.
    private func tryAgain(aheadOf id: Int64) -> Bool {
        let revived = lock.withLock { () -> Set<Int64>? in
            guard let ahead = givenUpChains(nil)[id]?.ahead, ahead.isDisjoint(with: unsealed) else { return nil }
            revive(ahead)
            return ahead
        }
        guard let revived else { return false }
        logger.info("changes that gave up are tried again", metadata: ["changes": "\(revived.count)"])
        progressed()
        kick()
        return true
    }

    private func isRunnable(_ change: PendingChange, now: ContinuousClock.Instant) -> Bool {
        guard let id = change.id else { return false }
        return lock.withLock {
            failures[id] == nil && !held.contains(id) && (notBefore[id].map { $0 <= now } ?? true) && (quietUntil[id].map { $0 <= now } ?? true)
        }
    }

    /// Whether change `id` failed and waits to be tried again (not given up, not held).
    private func isBackingOff(_ id: Int64, now: ContinuousClock.Instant) -> Bool {
        lock.withLock { failures[id] == nil && !held.contains(id) && (notBefore[id].map { $0 > now } ?? false) }
    }

    /// Marks `change` as being sent, unless it was withdrawn or held meanwhile; returns it as the journal has it now.
    private func claim(_ change: PendingChange) -> PendingChange? {
        lock.withLock {
            guard let id = change.id, !held.contains(id), !running.contains(id), let current = try? journal.change(id: id) else { return nil }
            running.insert(id)
            return current
        }
    }

    /// Which changes may start now, in journal order, as if sent one by one: uploads of different
    /// documents go side by side (up to `width`); anything else (folders, moves, deletes, columns) waits
    /// for every earlier change and holds back every later one, since it may be what they rely on.
    private func startable(_ outstanding: [PendingChange]) -> [PendingChange] {
        let now = ContinuousClock.now
        let (active, stuck) = lock.withLock { (running, givenUpWith(outstanding)) }
        var slots = width - active.count
        var earlierKeys: Set<String> = []
        var chosen: [PendingChange] = []
        var earlierPending = false
        for change in outstanding {
            guard let id = change.id else { continue }
            let isUpload = change.kind == .upload
            if active.contains(id) {
                if !isUpload { return chosen }  // a barrier is under way
                earlierKeys.formUnion(Self.documentKeys(change))
                earlierPending = true
                continue
            }
            let keys = Self.documentKeys(change)
            // (One behind a change of its document that gave up has given up too: see `givenUpWith`.)
            guard isRunnable(change, now: now), stuck[id] == nil else {
                // A folder, move or delete waiting out its backoff still holds back every later change.
                if !isUpload && stuck[id] == nil && isBackingOff(id, now: now) { return chosen }
                if isUpload { earlierKeys.formUnion(keys) }
                continue
            }
            if !isUpload {
                if earlierPending || !active.isEmpty || !chosen.isEmpty { return chosen }
                return [change]
            }
            let waits = !earlierKeys.isDisjoint(with: keys)
            earlierKeys.formUnion(keys)
            if waits { continue }
            earlierPending = true
            if slots > 0 {
                chosen.append(change)
                slots -= 1
            }
        }
        return chosen
    }

    /// What two uploads must not share to go side by side: the document they write, named by its item
    /// and by its place. Both, since an upload learns its item once its bytes are in (while it still
    /// links and stamps) and a later version recorded before that names the document by place only.
    private static func documentKeys(_ change: PendingChange) -> Set<String> {
        var keys: Set<String> = []
        if let itemID = change.itemID { keys.insert("item \(itemID)") }
        // A folder made meanwhile adds its id to a change that named it by path; the path stays.
        for parent in [change.parentItemID, change.parentPath].compactMap({ $0 }) { keys.insert("place \(parent)/\(change.name.lowercased())") }
        // A move holds its old place too until it goes: a new document given that name meets it there.
        for place in change.leaving?.split(separator: "\n") ?? [] { keys.insert("place \(place)") }
        return keys
    }

    /// `change`'s upload made `item` (see `madeItems`).
    func madeItem(_ item: DriveItem, by change: PendingChange) {
        guard change.itemID == nil, let id = change.id else { return }
        lock.withLock { madeItems[id] = (change, item) }
    }

    /// The observers have taken in what change `id` made.
    func madeItemAdopted(by id: Int64) {
        lock.withLock { _ = madeItems.removeValue(forKey: id) }
    }

    /// Tells the observers, then lets waiters go: a waiter sees the mount already updated.
    func finished(_ outcome: ChangeOutcome) {
        for observer in lock.withLock({ observers }) { observer(outcome) }
        let id = outcome.change.id
        lock.withLock {
            guard let id else { return }
            running.remove(id)
            notBefore[id] = nil
            quietUntil[id] = nil
            if case .gaveUp = outcome {} else { givenUpCount[id] = nil }
        }
    }

    /// Records a change; a held one waits for `release`. Under the engine's lock, so it cannot be sent
    /// before it is held.
    @discardableResult
    public func record(_ change: PendingChange, held: Bool = false) throws -> PendingChange {
        let saved = try lock.withLock {
            let saved = try journal.add(prepared(change))
            if held, let id = saved.id { self.held.insert(id) }
            return saved
        }
        if !held { kick() }
        return saved
    }

    /// Records `change`, a document's new version, in place of `previous`, its version before, when that one
    /// has not started: the new one carries the earlier one's item and base version, and the earlier one's row
    /// goes in the same transaction (its staged file after it), so a journal that cannot take the new row
    /// keeps the earlier version, whose close was promised. When `previous` has started (or is done),
    /// `change` is recorded as it is. Returns the saved change and whether it replaced `previous`.
    public func record(_ change: PendingChange, replacing previous: Int64, held: Bool = false) throws -> (saved: PendingChange, replaced: Bool) {
        let (saved, earlier) = try lock.withLock { () -> (PendingChange, PendingChange?) in
            guard !running.contains(previous), let earlier = try journal.change(id: previous), earlier.state.notSent,
                  earlier.stagedFile != change.stagedFile else {
                let saved = try journal.add(prepared(change))
                if held, let id = saved.id { self.held.insert(id) }
                return (saved, nil)
            }
            var change = change
            change.itemID = change.itemID ?? earlier.itemID
            change.baseETag = earlier.baseETag
            change.baseHash = earlier.baseHash
            let saved = try journal.add(prepared(change), replacing: previous)
            forgetLocked(previous)
            if held, let id = saved.id { self.held.insert(id) }
            if let file = earlier.stagedFile { try? removeUnnamed(file) }
            return (saved, earlier)
        }
        if earlier != nil || !held { kick() }
        if earlier != nil { progressed() }
        return (saved, earlier != nil)
    }

    /// What the engine knows that a change about to be journaled lacks: the item an upload of ours made
    /// for it, and our own latest version of its base. With the engine's lock held.
    private func prepared(_ change: PendingChange) -> PendingChange {
        var change = change
        if change.itemID == nil, let (_, item) = madeItems.values.first(where: { Self.follows(change, $0.0, madeItem: $0.1, made: true) }) {
            Self.learn(item, into: &change)
        }
        if let itemID = change.itemID, let base = change.baseETag { change.baseETag = latestOwnVersion(of: itemID, from: base) }
        return change
    }

    /// Forgets what the engine noted of change `id`, which has left the journal unsent. With the engine's lock held.
    private func forgetLocked(_ id: Int64) {
        held.remove(id)
        unsealed.remove(id)
        failures[id] = nil
        notBefore[id] = nil
        quietUntil[id] = nil
    }

    /// How often the engine has looked for changes to send. Idle, it looks when woken (a new change, a
    /// retry or a revival due), never in a loop.
    public var journalPasses: Int { lock.withLock { passes } }

    private func run() async {
        await withTaskGroup(of: Void.self) { group in
            while !Task.isCancelled {
                lock.withLock { passes += 1 }
                reviveDue()
                let ready = startable(readJournal())
                let started = ready.compactMap(claim)
                for change in started {
                    group.addTask {
                        await self.send(change)
                        self.kick()
                    }
                }
                if started.isEmpty { await sleepUntilKicked(orAfter: nextRetry()) }
            }
            group.cancelAll()
        }
    }

    /// Sends one change; a failure is retried later (with backoff) or, after `maxAttempts`, given up.
    private func send(_ change: PendingChange) async {
        guard let id = change.id else { return }
        defer {
            lock.withLock { _ = running.remove(id) }
            progressed()
        }
        do {
            if change.state == .conflict {
                // Left so by a stop between the conflict and its settling, or not settled at its last attempt.
                try await settleConflict(change, id: id)
                return
            }
            try await process(change)
        } catch {
            var error = error
            if let refusal = error as? GraphError, refusal.isAccessDenied {
                do {
                    try refuse(change, id: id, reason: "access denied")
                    return
                } catch let notKept {
                    // Not lost and not hammered either: retried with backoff like any failure below.
                    error = notKept
                }
            }
            if case UploadFailure.conflict = error {
                do {
                    try await settleConflict(change, id: id)
                    return
                } catch let notSettled {
                    error = notSettled  // the row stays in conflict: retried below, settled then
                }
            }
            let failure = error
            let attempts = (try? journal.update(id: id) { $0.attempts += 1; $0.lastError = "\(failure)" })?.attempts ?? maxAttempts
            logger.warning("change failed", metadata: ["name": "\(change.name)", "attempt": "\(attempts)", "error": "\(error)"])
            if attempts >= maxAttempts {
                let pause = lock.withLock { () -> Duration in
                    failures[id] = "\(error)"
                    let count = givenUpCount[id, default: 0]
                    givenUpCount[id] = count + 1
                    let pause = min(revivalDelay * (1 << min(count, 10)), Self.maxRevivalDelay)
                    revivesAt[id] = .now + pause
                    return pause
                }
                logger.error("change given up after retries; it stays in the journal and is tried again later",
                             metadata: ["name": "\(change.name)", "error": "\(error)", "again in": "\(pause)"])
                finished(.gaveUp(change, "\(error)"))
            } else {
                lock.withLock { notBefore[id] = .now + retryDelay * attempts }
            }
        }
    }

    /// Settles an upload in conflict by its object's policy (see `resolveConflict`); one that cannot be
    /// settled now stays in conflict and is retried like any failure.
    private func settleConflict(_ change: PendingChange, id: Int64) async throws {
        do {
            try await resolveConflict(id: id)
        } catch {
            logger.error("conflict not settled", metadata: ["name": "\(change.name)", "error": "\(error)"])
            throw ConflictNotSettled(error: "\(error)")
        }
        finished(.conflict(change, objects[change.objectName ?? ""]?.conflictPolicy ?? .keepBoth))
    }

    /// When the earliest change waiting out its backoff (or its pause after giving up) may go again.
    private func nextRetry() -> Duration? {
        lock.withLock {
            let now = ContinuousClock.now
            return (Array(notBefore.values) + Array(quietUntil.values) + Array(revivesAt.values)).filter { $0 > now }.min().map { $0 - now }
        }
    }

    /// Changes that gave up and whose pause is over (or all of them, `now`: `crmfs sync` asks for
    /// everything to go) start again from their first attempt, resuming an upload session they had.
    /// One held by a failed flush waits for the close that seals its bytes instead.
    func reviveDue(all: Bool = false) {
        let revived = lock.withLock { () -> [Int64] in
            revivesAt = revivesAt.filter { failures[$0.key] != nil }  // amended or withdrawn since
            let now = ContinuousClock.now
            let due = revivesAt.filter { all || $0.value <= now }.keys.filter { failures[$0] != nil && !unsealed.contains($0) }
            revive(due)
            return Array(due)
        }
        if !revived.isEmpty {
            logger.info("changes that gave up are tried again", metadata: ["changes": "\(revived.count)"])
            progressed()
        }
    }

    /// Changes `ids`, which gave up, start again from their first attempt. With the lock held.
    private func revive(_ ids: some Sequence<Int64>) {
        for id in ids {
            revivesAt[id] = nil
            failures[id] = nil
            notBefore[id] = nil
            try? journal.update(id: id) { $0.attempts = 0 }
        }
    }

    private func sleepUntilKicked(orAfter delay: Duration? = nil) async {
        // A timer cancelled because something else woke the loop must not wake it again: each pass would
        // then leave a wake for the next, and the loop would spin while any retry is pending.
        let timer = delay.map { delay in Task { if (try? await Task.sleep(for: delay)) != nil { self.kick() } } }
        defer { timer?.cancel() }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = lock.withLock { () -> Bool in
                if pendingWake || Task.isCancelled { pendingWake = false; return true }
                wakeup = continuation
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

}

/// An upload in conflict whose policy could not be carried out (the service could not be reached).
struct ConflictNotSettled: Error, CustomStringConvertible {
    var error: String
    var description: String { "conflict not settled: \(error)" }
}

/// What became of a change, for the mount's view of it.
public enum ChangeOutcome: Sendable {
    /// Sent; the item it made or moved, when it has one.
    case done(PendingChange, DriveItem?)
    /// The remote copy had changed; the policy settled it.
    case conflict(PendingChange, ConflictPolicy)
    /// Retries are exhausted; it stays in the journal.
    case gaveUp(PendingChange, String)
    /// The service refused it for good (the user may not change the document); it is not retried, and an
    /// upload's bytes are kept in the state directory's `conflicts/`. The note says what happened.
    case refused(PendingChange, note: String)

    /// The change it is the outcome of.
    public var change: PendingChange {
        switch self {
        case .done(let change, _), .conflict(let change, _), .gaveUp(let change, _), .refused(let change, _): change
        }
    }
}

/// A document's state as `user.crmfs.sync` tells it.
public enum SyncStatus: Sendable, Equatable, CustomStringConvertible {
    case pending, uploading, conflict
    /// Failed and being retried.
    case retrying(String)
    /// Retries exhausted.
    case error(String)

    public var description: String {
        switch self {
        case .pending: "pending"
        case .uploading: "uploading"
        case .conflict: "conflict"
        case .retrying(let reason): "pending (retrying: \(reason))"
        case .error(let reason): "error: \(reason)"
        }
    }
}

public enum WritebackError: Error, CustomStringConvertible {
    case gaveUp(String)
    /// The service refused the change for good (403): retrying cannot help.
    case refused(String)
    case incomplete(String)

    public var description: String {
        switch self {
        case .gaveUp(let reason): "gave up after retries: \(reason)"
        case .refused(let reason): "refused by the service: \(reason)"
        case .incomplete(let name): "the journal's change for \(name) lacks the item it applies to"
        }
    }
}
