import CRM
import Config
import Foundation
import Graph
import HTTP
import Logging
import SharePointNaming

public struct TreeOptions: Sendable {
    /// How long listings and attributes are trusted before they are fetched again.
    public var attributeTimeout: TimeInterval = 60
    /// Graph children page size.
    public var pageSize = 200
    /// Whether records carry what the signed-in user may do with them (a user's own sign-in): records they
    /// may only read, and their documents, show and act read-only.
    public var checksRecordAccess = false
    /// The longest a remount's opens of kept documents wait for the library's first catch-up (`KeptContentGate`).
    public var keptContentWait: Duration = .seconds(20)

    public init(attributeTimeout: TimeInterval = 60, pageSize: Int = 200, checksRecordAccess: Bool = false, keptContentWait: Duration = .seconds(20)) {
        self.attributeTimeout = attributeTimeout
        self.pageSize = pageSize
        self.checksRecordAccess = checksRecordAccess
        self.keptContentWait = keptContentWait
    }
}

/// The namespace users see: configured objects, their records, and each record's SharePoint documents,
/// with an inode table whose numbers stay the same for the life of the mount.
/// Listings are loaded on first use (one load per directory at a time) and trusted for the attribute timeout.
///
/// Lock order: the tree's `lock`, then the record folder index's (forgotten when a folder appears). The
/// library mirror's lock is never taken with the tree's held.
/// The kept content gate's lock is a leaf, never held while another is taken.
public final class Tree: @unchecked Sendable {
    public static let rootIno: UInt64 = 1

    public let config: MountConfig
    public let driveID: String
    let siteID: String
    /// The library's column definitions, loaded at the first column edit.
    var columnDefinitions: [ColumnDefinition]?
    let graph: any DriveService
    /// Where the content URLs the tree's listings bring go, for the reader's first reads.
    let downloadLinks: DownloadLinks
    let salesforce: any RecordService
    public let options: TreeOptions
    let logger: Logger
    /// Where record web URLs point: the Salesforce instance.
    let recordURLBase: String
    let mountedAt = Date()

    let lock = NSLock()
    var nodes: [UInt64: Node] = [:]
    var inodes: [NodeKey: UInt64] = [:]
    private var nextIno: UInt64 = 2
    private var loads: [UInt64: Task<Void, Error>] = [:]
    /// Items deleted or moved through the mount whose change has not reached the service yet: listings skip them.
    var hiddenItems: [String: Int] = [:]
    /// When the mount's own changes of each item last ended (a count, see `feedMark`), so a feed round
    /// asked for before one ended cannot put back what it changed.
    var ownChangesEnded: [String: UInt64] = [:]
    var ownChangeCount: UInt64 = 0
    var nextLocalKey: UInt64 = 1
    /// Journal changes from before this mount, waiting for their directory's first listing.
    var restoredChanges: [RestoredChange] = []
    var restoredPlaced: (@Sendable ([(changeID: Int64, ino: UInt64)]) -> Void)?
    let recordFolders = RecordFolderIndex()
    /// The whole library from the drive's delta, once enumerated.
    let mirror = LibraryMirror()
    /// Shut on a remount until the library's first catch-up: opens of kept documents' bytes wait for it.
    let keptContent: KeptContentGate
    /// A remount's kept listings (encoded) not applied yet, the storage keys of those applied, and the
    /// journal changes they placed, not reported yet (see `applyKeptListings`).
    var keptListings: [DirectoryListing.Key: Data] = [:]
    var keptUsed: Set<String> = []
    /// Items applied while kept listings waited (see `applyNewerThanKept`); emptied with them.
    var newerThanKept: [String: DriveItem] = [:]
    var keptPlaced: [(changeID: Int64, ino: UInt64)] = []
    /// Directories whose listing changed since the metadata store last took them.
    var changedListings: Set<UInt64> = []
    /// Nodes that a feed round passed over while the mount's own change held them (pinned): what the
    /// service said of them is behind the feed's position but in no listing until their change ends and
    /// the node takes the item it made (see `feedPositionKeepable`). True once a keep found its changes ended.
    var passedOver: [UInt64: Bool] = [:]
    /// What the kernel must forget (directories whose entries changed, names and nodes the mount took back)
    /// since the file system last told it.
    private var kernelNotices: Set<KernelNotice> = []
    private var onEntriesChanged: (@Sendable () -> Void)?

    /// A tree over a library whose site and drive are known (`LibraryLocation.find`, or kept from an earlier mount).
    public convenience init(config: MountConfig, location: LibraryLocation, graph: any DriveService, salesforce: any RecordService, recordURLBase: String,
                            options: TreeOptions = TreeOptions(), downloadLinks: DownloadLinks = DownloadLinks(),
                            logger: Logger = Logger(label: "crmfs.namespace")) {
        self.init(config: config, siteID: location.siteID, driveID: location.driveID, graph: graph, salesforce: salesforce,
                  recordURLBase: recordURLBase, options: options, downloadLinks: downloadLinks, logger: logger)
    }

    init(config: MountConfig, siteID: String, driveID: String, graph: any DriveService, salesforce: any RecordService, recordURLBase: String,
         options: TreeOptions, downloadLinks: DownloadLinks = DownloadLinks(), logger: Logger) {
        self.config = config
        self.siteID = siteID
        self.driveID = driveID
        self.graph = graph
        self.downloadLinks = downloadLinks
        self.salesforce = salesforce
        self.recordURLBase = recordURLBase
        self.options = options
        self.logger = logger
        keptContent = KeptContentGate(longestWait: options.keptContentWait, logger: logger)
        let root = Node(ino: Self.rootIno, key: .root, parent: Self.rootIno, name: "", type: .directory)
        root.modified = mountedAt
        root.changed = mountedAt
        root.created = mountedAt
        nodes[Self.rootIno] = root
        inodes[.root] = Self.rootIno
    }

    // MARK: Operations the file system calls

    /// Finds `name` in a directory and counts one more kernel reference to it.
    public func lookup(parent: UInt64, name: String) async throws -> NodeSnapshot {
        try await ensureChildren(of: parent)
        do {
            return try lock.withLock { try lookupLocked(parent: parent, name: name) }
        } catch NamespaceError.notFound where lock.withLock({ missIsUnconfirmed(parent) }) {
            // A remount's kept listing lacks what was made after it was kept (the last moments before a
            // crash, the mount's own uploads among them): a name it does not hold is not answered ENOENT
            // before the first catch-up has said so (bounded, as opens are).
            _ = await keptContent.wait()
            try await ensureChildren(of: parent)
            return try lock.withLock { try lookupLocked(parent: parent, name: name) }
        }
    }

    /// Whether a name `parent` does not list may still be there: its listing is a remount's kept one and the
    /// first catch-up has not ended. Lock held (the gate's lock is a leaf).
    private func missIsUnconfirmed(_ parent: UInt64) -> Bool {
        nodes[parent]?.childrenKept == true && keptContent.current == .waiting
    }

    /// `lookup` when the directory's listing is fresh, answered at once; nil when it would take the services.
    public func lookupIfKnown(parent: UInt64, name: String) -> Result<NodeSnapshot, Error>? {
        lock.withLock {
            guard let directory = nodes[parent], directory.type == .directory else { return nil }
            applyKeptListingLocked(directory)
            guard childrenFresh(directory) else { return nil }
            let found = Result { try lookupLocked(parent: parent, name: name) }
            if case .failure = found, missIsUnconfirmed(parent) { return nil }  // `lookup` waits for the catch-up
            return found
        }
    }

    private func lookupLocked(parent: UInt64, name: String) throws -> NodeSnapshot {
        guard let directory = nodes[parent], let ino = directory.childIndex[name], let node = nodes[ino] else { throw NamespaceError.notFound }
        node.lookups += 1
        return snapshot(of: node)
    }

    /// Counts one more kernel reference (readdirplus entries).
    public func retain(_ inodes: [UInt64]) {
        guard !inodes.isEmpty else { return }
        lock.withLock { for ino in inodes { nodes[ino]?.lookups += 1 } }
    }

    /// The kernel dropped `count` references. Nodes stay (their numbers must not change while the mount lives);
    /// a node nobody references that its parent no longer lists is removed.
    public func forget(_ ino: UInt64, count: UInt64) {
        lock.withLock {
            guard let node = nodes[ino], ino != Self.rootIno else { return }
            node.lookups = node.lookups > count ? node.lookups - count : 0
            if node.lookups == 0, let parent = nodes[node.parent], parent.childIndex[node.name] != ino {
                nodes[ino] = nil
                inodes[node.key] = nil
            }
        }
    }

    /// A node's attributes, refreshed from the services once they are older than the attribute timeout.
    public func attributes(_ ino: UInt64) async throws -> NodeSnapshot {
        if let known = attributesIfKnown(ino) { return try known.get() }
        if lock.withLock({ nodes[ino].map(hasStaleListing) ?? false }) {
            // Failing that, the attributes known do: the load logged why.
            try? await ensureChildren(of: ino)
        }
        if lock.withLock({ nodes[ino].map(isStaleItem) ?? false }) { try await ensureChildren(of: parent(of: ino)) }
        return try lock.withLock {
            guard let node = nodes[ino] else { throw NamespaceError.notFound }
            return snapshot(of: node)
        }
    }

    /// `attributes` when they are fresh, answered at once; nil when they would take the services.
    /// A directory the kernel has listed answers after listing it again once the listing is stale: the
    /// kernel asks for attributes before reusing a listing it keeps, and lets go of it when the mtime moved.
    public func attributesIfKnown(_ ino: UInt64) -> Result<NodeSnapshot, Error>? {
        lock.withLock {
            guard let node = nodes[ino] else { return .failure(NamespaceError.notFound) }
            if isStaleItem(node) || hasStaleListing(node) { return nil }
            return .success(snapshot(of: node))
        }
    }

    /// A directory listed before, whose listing is older than the timeout.
    private func hasStaleListing(_ node: Node) -> Bool {
        node.type == .directory && node.children != nil && !childrenFresh(node)
    }

    /// A document or folder whose own attributes are older than the timeout (its parent's listing renews them).
    private func isStaleItem(_ node: Node) -> Bool {
        guard case .item = node.key else { return false }
        return Date().timeIntervalSince(node.fetchedAt) > options.attributeTimeout
    }

    /// A directory's entries, in listing order.
    public func list(_ ino: UInt64) async throws -> [DirectoryEntry] {
        try await ensureChildren(of: ino)
        return try lock.withLock { try listLocked(ino) }
    }

    /// `list` when the listing is fresh, answered at once; nil when it would take the services.
    public func listIfKnown(_ ino: UInt64) -> Result<[DirectoryEntry], Error>? {
        lock.withLock {
            guard let directory = nodes[ino] else { return .failure(NamespaceError.notFound) }
            guard directory.type == .directory else { return .failure(NamespaceError.notDirectory) }
            applyKeptListingLocked(directory)
            guard childrenFresh(directory) else { return nil }
            return Result { try listLocked(ino) }
        }
    }

    private func listLocked(_ ino: UInt64) throws -> [DirectoryEntry] {
        guard let directory = nodes[ino], let children = directory.children else { throw NamespaceError.notFound }
        return children.compactMap { child in nodes[child.ino].map { DirectoryEntry(name: child.name, node: snapshot(of: $0)) } }
    }

    public func parent(of ino: UInt64) -> UInt64 {
        lock.withLock { nodes[ino]?.parent ?? Self.rootIno }
    }

    /// Extended attributes of a node, in a stable order: `user.crm.*`, `user.sp.*`, `user.crmfs.*`.
    /// `columns`: whether `user.sp.*` is wanted. A document known from the change feed or an upload has no
    /// column values yet; they are fetched at the first ask that needs them, never for `user.crm.*` or `user.crmfs.*`.
    public func extendedAttributes(_ ino: UInt64, columns: Bool = true) async throws -> [(name: String, value: String)] {
        _ = try await attributes(ino)
        let unfetched = !columns ? nil : lock.withLock { () -> (driveID: String, itemID: String)? in
            guard let node = nodes[ino], case .item(let id) = node.key, let item = node.item, item.listItem == nil, item.root == nil else { return nil }
            return (item.parentReference?.driveId ?? driveID, id)
        }
        if let unfetched {
            let fields: [String: JSONValue]
            do {
                fields = try await graph.fields(driveID: unfetched.driveID, itemID: unfetched.itemID)
            } catch let error as SignInRequired {
                throw error
            } catch {
                logger.warning("could not read a document's SharePoint columns", metadata: ["item": "\(unfetched.itemID)", "error": "\(error)"])
                throw NamespaceError.remote("\(error)")
            }
            lock.withLock {
                if let node = nodes[ino], node.item?.id == unfetched.itemID, node.item?.listItem == nil {
                    node.item?.listItem = ListItem(fields: fields)
                    changedListings.insert(node.parent)
                }
            }
        }
        return try lock.withLock {
            guard let node = nodes[ino] else { throw NamespaceError.notFound }
            return ExtendedAttributes.of(node, tree: self, recordNode: node.recordID.flatMap { inodes[.record($0)] }.flatMap { nodes[$0] })
        }
    }

    // MARK: Loading

    private func ensureChildren(of ino: UInt64) async throws {
        let pending: Task<Void, Error> = try lock.withLock {
            guard let node = nodes[ino] else { throw NamespaceError.notFound }
            guard node.type == .directory else { throw NamespaceError.notDirectory }
            applyKeptListingLocked(node)
            if childrenFresh(node) { return Task {} }
            if let running = loads[ino] { return running }
            let task = Task { try await self.load(ino) }
            loads[ino] = task
            return task
        }
        do {
            try await pending.value
        } catch {
            lock.withLock { loads[ino] = nil }
            throw error
        }
        lock.withLock { loads[ino] = nil }
    }

    /// Whether a directory's listing can be trusted without asking the services. Called with the lock held.
    private func childrenFresh(_ directory: Node) -> Bool {
        guard let loaded = directory.childrenLoadedAt, directory.children != nil else { return false }
        return directory.key == .root || Date().timeIntervalSince(loaded) < options.attributeTimeout
    }

    private func load(_ ino: UInt64) async throws {
        let key = try lock.withLock { () -> NodeKey in
            guard let node = nodes[ino] else { throw NamespaceError.notFound }
            return node.key
        }
        do {
            switch key {
            case .root: loadRoot()
            case .object(let index): try await loadRecords(directory: ino, objectIndex: index)
            case .record(let id): try await loadRecordDocuments(directory: ino, recordID: id)
            case .item(let id): try await loadFolder(directory: ino, itemID: id)
            case .local:
                let placed = lock.withLock { () -> [(changeID: Int64, ino: UInt64)] in
                    guard let node = nodes[ino] else { return [] }
                    setChildren(node, node.children?.map { ($0.name, $0.ino) } ?? [])
                    return placeRestored(in: node)
                }
                reportRestored(placed)
            }
            if case .local = key {} else { lock.withLock { nodes[ino]?.childrenKept = false } }  // listed by the services now
        } catch let error as NamespaceError {
            throw error
        } catch let error as SignInRequired {
            throw error  // EACCES, said once in the log by the token's provider
        } catch {
            // The services cannot be reached (after the client's retries): a directory listed before answers
            // from that listing, as offline, and is asked again after the attribute timeout, so a long outage
            // costs one wait per directory and timeout, and `ls`, lookups and new files go on working.
            let listedBefore = ServiceOutage.explains(error) && lock.withLock { () -> Bool in
                guard let node = nodes[ino], node.children != nil else { return false }
                node.childrenLoadedAt = Date()
                return true
            }
            if listedBefore {
                logger.warning("listing failed; the last listing answers until it is asked again", metadata: ["error": "\(error)"])
                return
            }
            logger.error("listing failed", metadata: ["error": "\(error)"])
            throw NamespaceError.remote("\(error)")
        }
    }

    private func loadRoot() {
        lock.withLock { loadRootLocked() }
    }

    func loadRootLocked() {
        let root = nodes[Self.rootIno]!
        var children: [(String, UInt64)] = []
        for (index, object) in config.objects.enumerated() {
            let node = node(for: .object(index), parent: Self.rootIno, name: object.directory, type: .directory)
            node.objectIndex = index
            node.modified = mountedAt
            node.changed = mountedAt
            node.created = mountedAt
            children.append((object.directory, node.ino))
        }
        setChildren(root, children)
    }

    /// The fields the mount reads of an object's records.
    public func recordFields(objectIndex: Int) -> [String] { queryFields(for: config.objects[objectIndex]) }

    /// The fields a record query needs: names, folder paths, xattrs and stamping all read from it.
    func queryFields(for object: ObjectSettings) -> [String] {
        var fields = ["Id", "CreatedDate", "LastModifiedDate", "SystemModstamp"]
        let wanted = Template(object.nameTemplate).fields + Template(object.folderTemplate ?? "").fields + object.fields + object.mappings.map(\.crmField)
        for field in wanted where !fields.contains(where: { $0.caseInsensitiveCompare(field) == .orderedSame }) { fields.append(field) }
        return fields
    }

    private func loadRecords(directory: UInt64, objectIndex: Int) async throws {
        let object = config.objects[objectIndex]
        var soql = "SELECT \(queryFields(for: object).joined(separator: ", ")) FROM \(object.object)"
        if let filter = object.filter { soql += " WHERE \(filter)" }
        soql += " ORDER BY Id"
        let records = try await withRecordAccess(try await salesforce.query(soql))
        lock.withLock {
            guard let parent = nodes[directory] else { return }
            applyRecords(records, to: parent, objectIndex: objectIndex)
        }
    }

    /// `records` with what the signed-in user may do with each (`RecordAccess`), when the mount checks it.
    public func withRecordAccess(_ records: [SObjectRecord]) async throws -> [SObjectRecord] {
        guard options.checksRecordAccess else { return records }
        return try await RecordAccess.annotate(records, service: salesforce)
    }

    /// A node as the file system sees it (lock held): records the user may only read, and everything
    /// below them, are read-only.
    func snapshot(of node: Node) -> NodeSnapshot {
        var snapshot = node.snapshot(driveID: driveID)
        if options.checksRecordAccess, let recordID = node.recordID {
            let record = node.key == .record(recordID) ? node.record : inodes[.record(recordID)].flatMap { nodes[$0] }?.record
            snapshot.readOnly = record?.isEditable == false
        }
        return snapshot
    }

    /// An object directory's entries from its records (all of them): names by the object's template,
    /// unique by final form; the newest `SystemModstamp` seen is where the CRM feed goes on from.
    func applyRecords(_ records: [SObjectRecord], to parent: Node, objectIndex: Int) {
        let template = Template(config.objects[objectIndex].nameTemplate)
        let names = EntryNaming.names(for: records.compactMap { record in
            record.id.map { (id: $0, base: template.expand { FieldText.display(record[$0]) }) }
        })
        let now = Date()
        var children: [(String, UInt64)] = []
        children.reserveCapacity(records.count)
        for record in records {
            guard let id = record.id, let name = names[id] else { continue }
            let node = node(for: .record(id), parent: parent.ino, name: name, type: .directory)
            node.objectIndex = objectIndex
            node.recordID = id
            node.record = record
            node.modified = FieldText.date(record["LastModifiedDate"]) ?? mountedAt
            node.changed = node.modified
            node.created = FieldText.date(record["CreatedDate"]) ?? node.modified
            node.fetchedAt = now
            children.append((name, node.ino))
            if let stamp = FieldText.date(record["SystemModstamp"]), stamp > parent.recordsChangedUpTo ?? .distantPast {
                parent.recordsChangedUpTo = stamp
            }
        }
        setChildren(parent, children)
    }

    /// The record's folder in the library, from the object's folder template. None yet: an empty directory.
    private func loadRecordDocuments(directory: UInt64, recordID: String) async throws {
        let (objectIndex, record, knownFolder, firstListing) = try lock.withLock { () -> (Int, SObjectRecord?, String?, Bool) in
            guard let node = nodes[directory], let index = node.objectIndex else { throw NamespaceError.notFound }
            return (index, node.record, node.folderItemID, node.children == nil)
        }
        var folderID = knownFolder
        if folderID == nil, let folderTemplate = config.objects[objectIndex].folderTemplate, let record {
            folderID = try await recordFolder(template: folderTemplate, record: record, recordID: recordID)
        }
        var items: [DriveItem] = []
        if let folderID { items = try await documents(in: folderID, firstListing: firstListing) }
        let placed = lock.withLock { () -> [(changeID: Int64, ino: UInt64)] in
            guard let node = nodes[directory] else { return [] }
            node.folderItemID = folderID
            applyItems(items, to: node)
            return placeRestored(in: node)
        }
        reportRestored(placed)
    }

    /// The folder holding a record's documents, by its object's folder template: from the library's mirror
    /// once it is complete; otherwise a path lookup each for the first records, then one listing of the
    /// folder holding all the record folders.
    private func recordFolder(template folderTemplate: String, record: SObjectRecord, recordID: String) async throws -> String? {
        let path = Self.folderPath(folderTemplate, record: record, recordID: recordID)
        let split = RecordFolderIndex.split(folderTemplate)
        let byId = folderTemplate.range(of: "{Id}", options: .caseInsensitive) != nil
        var mirrored = mirror.item(atPath: path)
        if mirrored == nil, await mirror.waitIfWalking() { mirrored = mirror.item(atPath: path) }
        if let mirrored {
            if let folder = mirrored { return folder.id }
            // Renamed in the CRM since its folder was made: the folder keeps the old name, and its Id.
            guard byId, let split, let parent = mirror.item(atPath: split.parent) ?? nil, let siblings = mirror.children(of: parent.id) else { return nil }
            let named = siblings.filter { $0.isFolder && ($0.name ?? "").lowercased().contains(recordID.lowercased()) }
            return named.count == 1 ? named[0].id : nil
        }
        var folderID: String?
        if let split, let folders = try await recordFolders.folders(in: split.parent, graph: graph, driveID: driveID,
                                                                    pageSize: options.pageSize, timeout: options.attributeTimeout) {
            folderID = folders[Template(split.leaf).expand(folderSegment(record: record, recordID: recordID)).lowercased()]
        } else {
            do {
                folderID = try await graph.item(driveID: driveID, path: path).id
            } catch let error as GraphError where error.isNotFound {
                folderID = nil
            }
        }
        if folderID == nil, byId, let split {
            let folders = try await recordFolders.folders(in: split.parent, graph: graph, driveID: driveID, pageSize: options.pageSize,
                                                          timeout: options.attributeTimeout, now: true) ?? [:]
            let named = folders.filter { $0.key.contains(recordID.lowercased()) }
            if named.count == 1 { folderID = named.first?.value }
        }
        return folderID
    }

    /// A folder's documents and sub-folders: listed first from the library's mirror when it is complete
    /// (listing again asks the service: the mirror may not have a change made through the mount yet).
    private func documents(in folderID: String, firstListing: Bool) async throws -> [DriveItem] {
        if firstListing {
            if let mirrored = mirror.children(of: folderID) { return mirrored }
            if await mirror.waitIfWalking(), let mirrored = mirror.children(of: folderID) { return mirrored }
        }
        let items = try await graph.children(driveID: driveID, itemID: folderID, pageSize: options.pageSize, expandFields: true)
        downloadLinks.remember(items, inFolder: folderID)
        return items
    }

    /// Where a record's documents live in the library: its object's folder template, expanded.
    static func folderPath(_ template: String, record: SObjectRecord, recordID: String) -> String {
        Template(template).expand(folderSegment(record: record, recordID: recordID))
    }

    /// One template field's text in a folder path: SharePoint-safe; `{Id}` as it is when it is an id (letters
    /// and digits), cleaned like any other id otherwise, so no answer can lead a path elsewhere (`../`).
    private static func folderSegment(record: SObjectRecord, recordID: String) -> (String) -> String {
        { field in
            field.caseInsensitiveCompare("Id") == .orderedSame ? EntryNaming.safeID(recordID) : SharePointNames.sanitize(FieldText.display(record[field]), maxLength: 100)
        }
    }

    private func folderSegment(record: SObjectRecord, recordID: String) -> (String) -> String { Self.folderSegment(record: record, recordID: recordID) }

    private func loadFolder(directory: UInt64, itemID: String) async throws {
        let firstListing = lock.withLock { nodes[directory]?.children == nil }
        let items = try await documents(in: itemID, firstListing: firstListing)
        let placed = lock.withLock { () -> [(changeID: Int64, ino: UInt64)] in
            guard let node = nodes[directory] else { return [] }
            applyItems(items, to: node)
            return placeRestored(in: node)
        }
        reportRestored(placed)
    }

    // MARK: Table (call with the lock held)

    /// A directory's entries from a listing, merged with what the mount knows better: nodes with local
    /// changes outstanding stay where the user put them, items deleted or moved away through the mount stay hidden.
    func applyItems(_ items: [DriveItem], to directory: Node) {
        let now = Date()
        var children: [(String, UInt64)] = (directory.children ?? []).filter { child in
            nodes[child.ino].map { $0.isPinned && $0.parent == directory.ino } ?? false
        }.map { ($0.name, $0.ino) }
        let localNames = Dictionary(children, uniquingKeysWith: { first, _ in first })
        let visible = items.filter { $0.name != nil && !$0.isDeleted && hiddenItems[$0.id] == nil }
        // Names other clients gave (a `/`, `..`, more than 255 bytes, two items of one name) become safe,
        // stable and unique, by the rules of record names.
        let names = EntryNaming.unique(visible.map { (id: $0.id, base: $0.name!, keepsExtension: !$0.isFolder) })
        for item in visible {
            guard var name = names[item.id] else { continue }
            if let holder = localNames[name], let holding = nodes[holder] {
                // A document the mount is still sending holds the name. A new one (or one renamed over this
                // item) replaces this item when it goes: hidden meanwhile. Another service item holds it under a
                // name the service no longer gives it (a colleague renamed it meanwhile, or a restart's kept
                // listing predates a rename the stopped mount sent): this one shows as NAME (ID).EXT until the
                // holder's change is sent and both take the service's names.
                guard case .item(let other) = holding.key, other != item.id else { continue }
                name = EntryNaming.withID(name, id: item.id, keepingExtension: !item.isFolder)
                if localNames[name] != nil { continue }
            }
            if let ino = inodes[.item(item.id)], let existing = nodes[ino], existing.isPinned { continue }
            let node = node(for: .item(item.id), parent: directory.ino, name: name, type: item.isFolder ? .directory : .file)
            node.item = item
            node.objectIndex = directory.objectIndex
            node.recordID = directory.recordID
            node.size = item.isFolder ? 0 : item.byteSize
            node.modified = FieldText.date(item.fileSystemInfo?.lastModifiedDateTime ?? item.lastModifiedDateTime) ?? mountedAt
            node.changed = FieldText.date(item.lastModifiedDateTime) ?? node.modified
            node.created = FieldText.date(item.fileSystemInfo?.createdDateTime ?? item.createdDateTime) ?? node.modified
            node.fetchedAt = now
            children.append((name, node.ino))
        }
        setChildren(directory, children)
    }

    func setChildren(_ directory: Node, _ children: [(String, UInt64)]) {
        changedListings.insert(directory.ino)
        let before = directory.children == nil ? nil : directory.childIndex
        directory.children = children.map { (name: $0.0, ino: $0.1) }
        directory.childIndex = Dictionary(children, uniquingKeysWith: { first, _ in first })
        directory.childrenLoadedAt = Date()
        if let before, before != directory.childIndex { entriesChanged(directory) }
    }

    /// The kernel may keep a directory's listing (see the file system's ReaderListings): one that changed
    /// gets a newer mtime and is handed to `onEntriesChanged`, so the kernel lets go of it.
    private func entriesChanged(_ directory: Node) {
        directory.entriesChangedAt = Date()
        kernelMustListAgain(directory.ino)
    }

    /// Called with the lock held.
    func kernelMustListAgain(_ ino: UInt64) { kernelMustForget(.inode(ino)) }

    /// Called with the lock held.
    func kernelMustForget(_ notice: KernelNotice) {
        let first = kernelNotices.isEmpty
        kernelNotices.insert(notice)
        if first { onEntriesChanged?() }
    }

    /// What the kernel must forget, gathered since the last call.
    public func takeKernelNotices() -> [KernelNotice] {
        lock.withLock {
            defer { kernelNotices.removeAll() }
            return Array(kernelNotices)
        }
    }

    /// Called (with the tree's lock held: it must only schedule work) when `takeKernelNotices` has something new.
    public func whenEntriesChange(_ handler: @escaping @Sendable () -> Void) {
        lock.withLock { onEntriesChanged = handler }
    }

    /// The node for `key`, created with a new inode number the first time, moved/renamed when it changed.
    func node(for key: NodeKey, parent: UInt64, name: String, type: NodeType) -> Node {
        if let ino = inodes[key], let existing = nodes[ino] {
            existing.parent = parent
            existing.name = name
            existing.type = type
            return existing
        }
        let ino = nextIno
        nextIno += 1
        let node = Node(ino: ino, key: key, parent: parent, name: name, type: type)
        nodes[ino] = node
        inodes[key] = ino
        return node
    }
}

/// How CRM and SharePoint values read as text.
enum FieldText {
    /// Plain text: strings as they are, integral numbers without a fraction, Salesforce datetimes in ISO 8601 with Z.
    static func display(_ value: JSONValue?) -> String {
        guard let value, !value.isNull else { return "" }
        if case .string(let text) = value, text.hasSuffix("+0000"), text.count >= 24, text.dropFirst(10).first == "T" {
            return String(text.dropLast(5)) + "Z"
        }
        return value.description
    }

    static func date(_ value: JSONValue?) -> Date? { date(value?.stringValue) }

    static func date(_ text: String?) -> Date? { text.flatMap(ServiceTime.parse) }
}
