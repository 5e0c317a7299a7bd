import CRM
import Config
import Foundation
import Graph
import Logging
import Namespace

/// Keeps a mounted tree fresh: reads the drive's delta and polls the CRM for changed and deleted records,
/// applies what changed to the tree, and hands the result on (to the kernel, by the file system) through `deliver`.
/// A failed round is logged and tried again at the next interval, later and later while it keeps failing; the
/// feed's position is kept, so nothing is missed.
public final class ChangeFeeds: @unchecked Sendable {
    let tree: Tree
    let graph: any DriveService
    let records: any RecordService
    private let settings: FreshnessSettings
    /// Items per delta page.
    private let deltaPageSize = 999
    /// How far before the newest change seen a CRM poll looks again, for changes committed late.
    private let crmOverlap: TimeInterval = 30
    let deliver: @Sendable (AppliedChanges) -> Void
    private let store: MetadataStore?
    let logger: Logger
    private let startedAt = Date()

    private let lock = NSLock()
    private var deltaLink: String?
    /// Where a fleet mount is in the relay's change log (kept with the tree), as the follower writes it.
    private var fleetPosition: String?
    private var loops: [Task<Void, Never>] = []
    /// The drive and CRM polls, while they run (a fleet mount polls only while its feed is down).
    private var pollLoops: [Task<Void, Never>] = []
    private var polls = true
    private var loopsStarted = false
    private var stopped = false
    /// When each feed last caught up (a whole round answered), for `crmfs status`.
    private var driveCaughtUp: Date?
    private var crmCaughtUp: Date?
    /// Cleared when the kept tree no longer belongs to the library (`dropKeptTree`).
    private var keepsTree = true
    /// Entered while the kept tree is restored in the background.
    private let restoring = DispatchGroup()
    /// Items being read again by `refresh`, so a burst of reads that found them changed asks once.
    private var refreshing: Set<String> = []

    public init(tree: Tree, graph: any DriveService, records: any RecordService, settings: FreshnessSettings, store: MetadataStore? = nil,
                logger: Logger = Logger(label: "crmfs.feeds"), deliver: @escaping @Sendable (AppliedChanges) -> Void) {
        self.store = store
        self.tree = tree
        self.graph = graph
        self.records = records
        self.settings = settings
        self.logger = logger
        self.deliver = deliver
    }

    /// When the library's feed and the CRM's last caught up; nil for one that has not yet.
    public var caughtUp: (drive: Date?, crm: Date?) { lock.withLock { (driveCaughtUp, crmCaughtUp) } }

    /// Restores the kept tree, if there is one, and the drive feed's position with it (a round of catch-up
    /// starts at once); without one, the first round enumerates the whole library by delta pages, which the
    /// tree answers first listings from once it is complete. Then polls, and keeps the tree every few seconds.
    /// The kept tree is a cache: one that cannot be read costs a cold start, never the mount.
    public func start(polling: Bool = true) {
        lock.withLock { polls = polling }
        guard let store else { return startPolling(restored: false) }
        let kept: (listings: [String: Data], deltaLink: String?, fleetPosition: String?)
        do {
            kept = try store.load()
        } catch {
            logger.warning("the kept tree could not be read; starting from the services", metadata: ["error": "\(error)"])
            return startPolling(restored: false)
        }
        guard !kept.listings.isEmpty else { return startPolling(restored: false) }
        lock.withLock {
            deltaLink = kept.deltaLink
            fleetPosition = kept.fleetPosition
        }
        // The cached bytes of kept documents may be of versions changed meanwhile: opens of them wait for the
        // first catch-up (of the drive's feed, or the fleet's log). Without a feed of the library, the kept
        // listings are trusted for the attribute timeout, as any listing.
        if settings.drivePoll > 0 || !polling { tree.holdKeptContent() }
        tree.offerKeptListings(kept.listings)
        logger.info("the last known tree is back; catching up", metadata: ["directories": "\(kept.listings.count)"])
        let restore: @Sendable () -> Void = { [self] in
            do { try store.keepOnly(tree.applyKeptListings()) } catch {
                logger.warning("could not drop the kept listings the tree no longer has", metadata: ["error": "\(error)"])
            }
            startPolling(restored: true)
        }
        // Changes a crash left in the journal are placed as their directories are restored: all of them
        // before the mount shows anything. Otherwise the tree shows at once and restores in the background.
        if tree.hasRestoredChanges { restore() } else { restoring.enter(); Thread { restore(); self.restoring.leave() }.start() }
    }

    /// The feeds' loops, once the kept tree (if any) is whole: each change they apply finds its place.
    private func startPolling(restored: Bool) {
        lock.withLock {
            guard !stopped else { return }
            loopsStarted = true
            if polls { startPollLoops(crmNow: restored) }
            if store != nil { loops.append(loop("keeping the tree", startNow: false, every: { Self.keepInterval }) { try self.keep() }) }
        }
    }

    /// Under the lock. A first mount learns the library from the delta's own pages (the first round enumerates it).
    private func startPollLoops(crmNow: Bool) {
        if settings.drivePoll > 0 {
            pollLoops.append(loop("the drive feed", startNow: true, every: { [settings] in settings.drivePoll }) { try await self.pollDrive() })
        }
        if settings.crmPoll > 0 {
            pollLoops.append(loop("the CRM feed", startNow: crmNow, every: { [settings, records] in Self.crmInterval(settings.crmPoll, usage: records.apiUsage) }) {
                try await self.pollRecords()
            })
        }
    }

    /// Turns the mount's own polling on (a fleet mount whose feed is down) or off (it follows the feed
    /// again). Turned on, both feeds poll at once: the feed may have missed something meanwhile.
    public func setPolling(_ on: Bool) {
        lock.withLock {
            guard !stopped, polls != on else { return }
            polls = on
            guard loopsStarted else { return }  // the kept tree is still being restored: the loops start after it
            if on {
                startPollLoops(crmNow: true)
            } else {
                pollLoops.forEach { $0.cancel() }
                pollLoops.removeAll()
            }
        }
    }

    /// Whether the mount polls the services itself now.
    public var isPolling: Bool { lock.withLock { polls } }

    /// Returns once the kept tree (if any) is in place, so changes applied from then on find their directories.
    public func restored() async {
        await withCheckedContinuation { continuation in restoring.notify(queue: .global()) { continuation.resume() } }
    }

    /// One round of each feed: a fleet mount catching up on its own (a first mount, or one away longer
    /// than the change log keeps entries).
    public func catchUp() async throws {
        try await pollDrive()
        try await pollRecords()
    }

    /// A fleet mount has applied the change log up to its present: the kept documents are as fresh as the feed.
    public func keptContentConfirmed() {
        tree.keptContentConfirmed()
    }

    /// Where a fleet mount was in the change log when the tree was last kept.
    public var keptFleetPosition: String? { lock.withLock { fleetPosition } }

    /// The fleet follower has applied the change log up to `position`: kept with the tree from now on.
    public func noteFleetPosition(_ position: String) {
        lock.withLock { fleetPosition = position }
    }

    /// Stops polling and keeps the tree as it is now.
    public func stop() {
        lock.withLock {
            stopped = true
            loops.forEach { $0.cancel() }
            pollLoops.forEach { $0.cancel() }
        }
        restoring.wait()  // a restore still running must finish before the tree is kept
        do {
            try keep()
        } catch {
            logger.warning("could not keep the tree for the next mount", metadata: ["error": "\(error)"])
        }
    }

    /// How often changed listings are written to the metadata store.
    static let keepInterval: TimeInterval = 5

    /// Writes the listings changed since the last time, with the delta link taken first (the kept one
    /// stays while the link has passed over what no listing holds yet: see `Tree.feedPositionKeepable`).
    public func keep() throws {
        guard let store, lock.withLock({ keepsTree }) else { return }
        let (link, position) = lock.withLock { (deltaLink, fleetPosition) }
        let keepable = tree.feedPositionKeepable()
        try store.save(tree.takeChangedListings(), deltaLink: keepable ? link : nil, fleetPosition: keepable ? position : nil)
    }

    /// Forgets the kept tree and keeps nothing more of this mount's: its library is not the one the
    /// config names any more (replaced since), so the next mount must start cold.
    public func dropKeptTree() throws {
        lock.withLock { keepsTree = false }
        try store?.forgetAll()
    }

    /// The CRM poll's interval as the daily allowance runs down: as configured while less than half
    /// is used, then longer and longer, so polling never spends what users' own work needs.
    public static func crmInterval(_ base: TimeInterval, usage: APIUsage?) -> TimeInterval {
        guard let used = usage?.fractionUsed else { return base }
        switch used {
        case ..<0.5: return base
        case ..<0.8: return base * 2
        case ..<0.95: return base * 8
        default: return max(base * 60, 3600)
        }
    }

    private func loop(_ name: String, startNow: Bool, every interval: @escaping @Sendable () -> TimeInterval,
                      _ round: @escaping @Sendable () async throws -> Void) -> Task<Void, Never> {
        Task.detached { [logger] in
            var rounds = FeedRounds(name, logger: logger)
            var first = startNow
            while !Task.isCancelled {
                let wait = first ? 0 : rounds.delay(every: interval())
                first = false
                try? await Task.sleep(nanoseconds: UInt64(wait * 1e9))
                if Task.isCancelled { break }
                try? await rounds.run(round)
            }
        }
    }

    // MARK: Drive

    /// One round of the drive's delta: every page up to the next delta link. An expired position (410)
    /// enumerates the drive again from the `Location` the service names, and what that does not return is gone.
    /// The first round to end opens the tree's kept content gate: confirmed when it answered, unconfirmed
    /// when it failed (the cached bytes serve while the service cannot be reached).
    @discardableResult
    public func pollDrive() async throws -> Int {
        do {
            let applied = try await driveRound()
            tree.keptContentConfirmed()
            return applied
        } catch {
            if !(error is CancellationError) { tree.keptContentUnconfirmed(error) }
            throw error
        }
    }

    /// Reads one document again and applies it, as a feed round would: a read found the service serving
    /// another version than the tree names, so the next open reads that one, without waiting for the round.
    public func refresh(itemID: String) async {
        guard lock.withLock({ refreshing.insert(itemID).inserted }) else { return }
        defer { _ = lock.withLock { refreshing.remove(itemID) } }
        let asked = tree.feedMark()
        do {
            let item = try await graph.item(driveID: tree.driveID, itemID: itemID, expandFields: false)
            deliver(tree.applyDriveChanges([item], askedAt: asked))
        } catch {
            logger.debug("reading a changed document again failed; the next round of the feed brings it", metadata: ["item": "\(itemID)", "error": "\(error)"])
        }
    }

    private func driveRound() async throws -> Int {
        var link = lock.withLock { deltaLink }
        let enumerating = link == nil
        var seen: Set<String>?
        var applied = 0
        if enumerating { tree.libraryEnumerationStarted() }
        var finished = false
        defer { if enumerating && !finished { tree.libraryEnumerationFailed() } }
        // The next page is asked for while this one is applied: an enumeration is a long chain of pages.
        var nextPage: Task<DeltaPage, Error>?
        defer { nextPage?.cancel() }
        // Before the first page is asked for (the others are asked for while the previous one is applied).
        let asked = tree.feedMark()
        while true {
            let page: DeltaPage
            do {
                if let fetching = nextPage {
                    nextPage = nil
                    page = try await fetching.value
                } else {
                    page = try await graph.delta(driveID: tree.driveID, link: link, pageSize: deltaPageSize)
                }
            } catch let error as GraphError where error.needsResync && seen == nil {
                logger.warning("the drive's change feed position expired; reading the whole library again")
                seen = []
                link = error.location
                continue
            }
            if let next = page.nextLink {
                nextPage = Task { [graph, tree, deltaPageSize] in try await graph.delta(driveID: tree.driveID, link: next, pageSize: deltaPageSize) }
            }
            seen?.formUnion(page.items.map(\.id))
            let changes = tree.applyDriveChanges(page.items, askedAt: asked)
            applied += changes.applied
            deliver(changes)
            if let next = page.nextLink {
                link = next
                continue
            }
            if let seen {
                let gone = tree.removeItems(notIn: seen)
                applied += gone.applied
                deliver(gone)
            }
            if enumerating || seen != nil {
                tree.libraryEnumerated()
                finished = true
                logger.info("the library is enumerated")
            }
            let next = page.deltaLink
            lock.withLock {
                deltaLink = next ?? deltaLink
                driveCaughtUp = Date()
            }
            return applied
        }
    }

    // MARK: CRM

    /// One poll of every object the mount has listed, in one call: per object, one `queryAll` for the records
    /// changed or deleted since the newest change it has seen (`IsDeleted` tells which), and for an object
    /// with a filter, which of them it still shows. (A composite holds at most 5 queries: three objects, or
    /// five without filters, poll in one call.) Under a user's sign-in, what they may do with every listed
    /// record is asked again in the same call (sharing changes leave records' SystemModstamp alone).
    @discardableResult
    public func pollRecords() async throws -> Int {
        let objects = tree.listedObjects()
        guard !objects.isEmpty else {
            lock.withLock { crmCaughtUp = Date() }  // nothing listed: nothing to catch up with
            return 0
        }
        let reads = objects.map { index, changedUpTo in
            let since = Self.soqlDateTime((changedUpTo ?? startedAt.addingTimeInterval(-300)).addingTimeInterval(-crmOverlap))
            return RecordRead(objectIndex: index, condition: "SystemModstamp > \(since)", orderBy: "SystemModstamp", askedFor: nil)
        }
        let applied = try await read(reads, accessOf: tree.options.checksRecordAccess ? tree.listedRecordIDs() : [])
        lock.withLock { crmCaughtUp = Date() }
        return applied
    }

    /// Records of one object to read and apply: those `condition` selects. With `askedFor` (records asked
    /// for by Id), one of those not in the answer is gone from the user's sight (deleted, or hidden now).
    struct RecordRead {
        var objectIndex: Int
        var condition: String
        var orderBy: String?
        var askedFor: Set<String>?
    }

    /// Reads `reads` in one composite call (with the user's access to the records `accessOf`, when the mount
    /// checks it) and applies the answers to the tree.
    func read(_ reads: [RecordRead], accessOf accessAsked: [String]) async throws -> Int {
        var queries: [RecordQuery] = []
        var plans: [(read: RecordRead, changed: Int, shown: Int?, askedIsDeleted: Bool)] = []
        for read in reads {
            let object = tree.config.objects[read.objectIndex]
            let changed = queries.count
            var fields = tree.recordFields(objectIndex: read.objectIndex)
            let askedIsDeleted = !fields.contains("IsDeleted")
            if askedIsDeleted { fields.append("IsDeleted") }
            let order = read.orderBy.map { " ORDER BY \($0)" } ?? ""
            queries.append(RecordQuery("SELECT \(fields.joined(separator: ", ")) FROM \(object.object) WHERE \(read.condition)\(order)", includeDeleted: true))
            var shown: Int?
            if let filter = object.filter {
                shown = queries.count
                queries.append(RecordQuery("SELECT Id FROM \(object.object) WHERE (\(filter)) AND \(read.condition)"))
            }
            plans.append((read, changed, shown, askedIsDeleted))
        }
        var accessQueries = 0..<0
        var accessAsked = accessAsked
        if !accessAsked.isEmpty, let userID = try await records.signedInUserID() {
            let asked = RecordAccess.queries(accessAsked, userID: userID)
            accessQueries = queries.count..<(queries.count + asked.count)
            queries += asked
        } else {
            accessAsked = []
        }
        let answers = try await records.queries(queries)
        let levels = RecordAccess.levels(Array(answers[accessQueries]))
        let isDeleted = { (record: SObjectRecord) in record["IsDeleted"]?.boolValue == true }
        var live = plans.flatMap { answers[$0.changed].filter { !isDeleted($0) } }
        if tree.options.checksRecordAccess {
            // What the user may do with the records that changed: the answer above for those the mount holds;
            // only records new to it are asked (all objects' in one go).
            let new = try await tree.withRecordAccess(live.filter { record in record.id.map { levels[$0] == nil } ?? false })
            let asked = Dictionary(new.compactMap { record in record.id.map { ($0, record) } }, uniquingKeysWith: { first, _ in first })
            live = live.map { record in
                guard let id = record.id else { return record }
                return levels[id].map { record.withAccess(editable: $0.edit) } ?? asked[id] ?? record
            }
        }
        var changedRecords = live[...]
        var applied = 0
        for plan in plans {
            let live = answers[plan.changed].count { !isDeleted($0) }
            let changed = changedRecords.prefix(live).map { record in
                var record = record
                if plan.askedIsDeleted { record.fields["IsDeleted"] = nil }  // asked for the feed's sake, as the listing has it
                return record
            }
            changedRecords = changedRecords.dropFirst(live)
            var deleted = answers[plan.changed].filter(isDeleted).compactMap(\.id)
            if let askedFor = plan.read.askedFor {
                let answered = Set(answers[plan.changed].compactMap(\.id))
                deleted += askedFor.subtracting(answered).sorted()
            }
            let changes = tree.applyRecordChanges(objectIndex: plan.read.objectIndex, changed: Array(changed),
                                                  shown: plan.shown.map { Set(answers[$0].compactMap(\.id)) }, deleted: deleted)
            applied += changes.applied
            deliver(changes)
        }
        if !accessAsked.isEmpty {
            let changes = tree.applyRecordAccess(levels, asked: accessAsked)
            applied += changes.applied
            deliver(changes)
        }
        return applied
    }

    /// A SOQL datetime literal (UTC, whole seconds).
    public static func soqlDateTime(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(timeZone: TimeZone(identifier: "UTC")!))
    }
}
