import Cache
import Config
import FileSystem
import Fleet
import Foundation
import Freshness
import Graph
import Logging
import Namespace
import Services
import Writeback
import Writes

/// A file system built from a config, with the parts that keep it fresh and report on it. Nothing is
/// mounted yet: the CLI hands `fileSystem` to the FUSE adapter; tests call it directly.
public struct BuiltMount: Sendable {
    public let fileSystem: CRMFileSystem
    public let feeds: ChangeFeeds
    /// With `[fleet]`: the subscription to the relay's change log that replaces the mount's own polling.
    public let follower: FleetFollower?
    public let connections: Connections
    /// Held (locked) for as long as the mount lives.
    public let state: StateDirectory
    public var stateDirectory: URL { state.url }
    public let cache: BlockCache
    /// Nil for a read-only mount.
    public let engine: WritebackEngine?

    /// Stops the feeds and the follower (what the end of a mount does once the kernel let go).
    public func stop() async {
        await follower?.stop()
        feeds.stop()
    }
}

/// Builds a mount's file system from its config: one builder for the CLI, the tests and the benchmarks.
/// Everything that can fail before the kernel is involved fails here, with a reason a person can act on.
/// A remount takes what it must know of the services from the state directory and needs no round trip.
public struct MountBuilder: Sendable {
    /// How long the kernel and the tree trust names and attributes when the change feeds tell them of every
    /// remote change (a safety net, should a change ever be missed), and when nothing does.
    public static let fedTimeout: Double = 600
    public let config: MountConfig
    /// Where the mount goes (the state directory is locked in its name); tests name any path.
    public let mountpoint: String
    public let options: ParsedMountOptions
    let logger = Logger(label: "crmfs.mount")
    /// Where the file system's own lines go (refusals, failed writes): tests keep them to read.
    let fileSystemLogger: Logger
    /// Test hooks into the write path (none for a real mount).
    let hooks: WriteHooks

    public init(config: MountConfig, mountpoint: String, options: ParsedMountOptions, fileSystemLogger: Logger = Logger(label: "crmfs.fs"),
                hooks: WriteHooks = WriteHooks()) {
        self.config = config
        self.mountpoint = mountpoint
        self.options = options
        self.fileSystemLogger = fileSystemLogger
        self.hooks = hooks
    }

    public func build() async throws -> BuiltMount {
        try checkSharing()
        let stateDirectory = try StateDirectory(path: config.resolve(config.cache.directory), mountpoint: mountpoint)
        let state = stateDirectory.url
        let connections = try Connections(config: config)
        let store = metadataStore(in: state)
        let factsKey = ServiceFacts.key(for: config)
        let kept = store.flatMap { try? $0.facts(for: factsKey) }
        let facts: ServiceFacts
        if let kept {
            facts = kept
        } else {
            facts = try await learnFacts(connections, key: factsKey)
            try? store?.keep(facts)
        }
        // The content URLs the tree's listings bring are the reader's for first reads.
        let downloadLinks = DownloadLinks()
        let tree = Tree(config: config, location: facts.location, graph: connections.graph, salesforce: connections.salesforce,
                        recordURLBase: facts.instanceURL, options: TreeOptions(attributeTimeout: mountOptions.attributeTimeout,
                                                                                 checksRecordAccess: config.salesforceSignsInAsUser),
                        downloadLinks: downloadLinks)
        let cache = try BlockCache(directory: state.appendingPathComponent("blocks"), capacity: options.cacheSize ?? config.cache.size,
                                   blockSize: Int(options.blockSize ?? config.cache.blockSize))
        let reader = BlockReader(cache: cache, graph: connections.graph, downloadLinks: downloadLinks)
        let writes = options.readOnly ? nil : try writeSupport(state: state, connections: connections)
        let fileSystem = CRMFileSystem(tree: tree, reader: reader, options: mountOptions, writeSupport: writes,
                                       logger: fileSystemLogger)
        let feeds = ChangeFeeds(tree: tree, graph: connections.graph, records: connections.salesforce, settings: config.freshness,
                                store: store) { [fileSystem] changes in
            fileSystem.applied(changes)
        }
        // With a fleet, the relay's log tells the mount what changed; it polls only while the log is out of reach.
        let follower = try config.fleet.map { FleetFollower(database: try FleetDatabase(config: config, settings: $0), feeds: feeds) }
        reader.onNewerVersion { [feeds] itemID in Task { await feeds.refresh(itemID: itemID) } }
        feeds.start(polling: follower == nil)
        follower?.start()
        if let kept, let store {
            Task { [self] in await confirm(kept, connections: connections, store: store, feeds: feeds) }
        }
        return BuiltMount(fileSystem: fileSystem, feeds: feeds, follower: follower, connections: connections, state: stateDirectory,
                          cache: cache, engine: writes?.engine)
    }

    /// Signs in to Salesforce and checks the config's objects against the org, while the library is
    /// looked up in SharePoint: the round trips of both services side by side.
    private func learnFacts(_ connections: Connections, key: String) async throws -> ServiceFacts {
        async let instance = checkSalesforce(connections)
        async let location = findLibrary(connections)
        let instanceURL = try await instance
        return ServiceFacts(key: key, location: try await location, instanceURL: instanceURL)
    }

    private func checkSalesforce(_ connections: Connections) async throws -> String {
        let instance: String
        do {
            instance = try await connections.salesforceToken.token().instanceURL ?? config.salesforce.instanceURL
        } catch {
            throw MountError(message: "cannot sign in to Salesforce at \(config.salesforce.instanceURL): \(error)")
        }
        try await ObjectValidation.validate(config, salesforce: connections.salesforce)
        return instance
    }

    private func findLibrary(_ connections: Connections) async throws -> LibraryLocation {
        do {
            return try await LibraryLocation.find(config: config, graph: connections.graph)
        } catch let error as ConfigError {
            throw error
        } catch {
            throw MountError(message: "cannot reach SharePoint site \(config.graph.siteHostname):\(config.graph.sitePath): \(error)")
        }
    }

    /// A remount's kept facts, learned again once it is up: a library replaced since (same name, another
    /// drive) is logged and nothing of it is kept, so the next mount starts cold; an org that lost what
    /// the config names is logged and the facts forgotten, so the next mount fails with the config error.
    private func confirm(_ kept: ServiceFacts, connections: Connections, store: MetadataStore, feeds: ChangeFeeds) async {
        do {
            let learned = try await learnFacts(connections, key: kept.key)
            if !learned.location.isSameLibrary(as: kept.location) {
                logger.error("the library is not the one the kept tree came from (it was replaced since the last mount): unmount and mount again to see it as it is",
                             metadata: ["library": "\(config.graph.library)"])
                try feeds.dropKeptTree()
            } else if learned != kept {
                try store.keep(learned)
            }
        } catch let error as ConfigError {
            logger.error("the org no longer has what the config names; the next mount fails until the config is fixed", metadata: ["error": "\(error)"])
            try? store.forgetFacts()
        } catch {
            logger.warning("could not confirm what the last mount learned of the services; it is used as it was", metadata: ["error": "\(error)"])
        }
    }

    /// The kept tree of earlier mounts. It is a cache: a file that cannot be opened (damaged, from a newer
    /// crmfs) is set aside and a new one started, and without any the mount starts cold.
    private func metadataStore(in state: URL) -> MetadataStore? {
        let path = state.appendingPathComponent("metadata.sqlite").path
        do {
            return try MetadataStore(path: path, config: config)
        } catch {
            logger.warning("the kept tree could not be opened; it is set aside and the mount starts cold", metadata: ["error": "\(error)"])
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.moveItem(atPath: path + suffix, toPath: path + suffix + ".damaged") }
            return try? MetadataStore(path: path, config: config)
        }
    }

    /// An `allow_other` mount under one user's own sign-in shows what that user may see to every local
    /// user, unless the mount says who may see it: refused without `umask` (or `uid`/`gid`).
    private func checkSharing() throws {
        guard options.mount.allowOther, !config.userSignIns.isEmpty, !options.ownershipGiven else { return }
        throw MountError(message: "allow_other with \(config.path)'s own sign-in (auth = \"device-code\") would show your documents to every user of this machine: "
            + "add umask=077 (only you), umask=027 with gid=GROUP (you and a group), or uid=/gid= to say who may see them")
    }

    /// The mount options with crmfs's defaults filled in: the file system's name, and timeouts as long as the feeds allow.
    private var mountOptions: MountOptions {
        var mount = options.mount
        if mount.fsname == "crmfs" { mount.fsname = "crmfs:\(config.path)" }
        if !options.timeoutsGiven && config.freshness.feedsEverything {
            mount.entryTimeout = Self.fedTimeout
            mount.attributeTimeout = Self.fedTimeout
        }
        mount.kernelKeepsListings = config.freshness.feedsEverything
        return mount
    }

    /// The write path over the state directory: staged files, the journal, and the engine sending them,
    /// started at once so changes a crash left behind resume.
    private func writeSupport(state: URL, connections: Connections) throws -> WriteSupport {
        let staging = try StagingArea(directory: state.appendingPathComponent("staging"), beforeSeal: hooks.beforeSeal)
        let journal = try Journal(path: state.appendingPathComponent("journal.sqlite").path, beforeAdd: hooks.beforeJournalAdd)
        let uploader = Uploader(graph: connections.graph, staging: staging, journal: journal,
                                fragmentSize: Int(config.writeback.fragmentSize), simpleUploadMax: config.writeback.simpleUploadMax)
        var objects: [String: ObjectLinking] = [:]
        for object in config.objects {
            objects[object.object] = ObjectLinking(model: object.link, mappings: object.mappings, conflictPolicy: object.conflictPolicy)
        }
        let engine = WritebackEngine(journal: journal, staging: staging, uploader: uploader,
                                     linker: Linker(graph: connections.graph, salesforce: connections.salesforce),
                                     graph: connections.graph, salesforce: connections.salesforce, objects: objects,
                                     width: config.writeback.uploads)
        let leftovers = try engine.setAsideCrashLeftovers()
        for change in leftovers.unsealed {
            logger.warning("an fsync interrupted by a crash left a change whose bytes may be incomplete; its staged file is kept aside",
                           metadata: ["name": "\(change.name)"])
        }
        for file in leftovers.keptAside {
            logger.warning("a staged file no change names (written but not closed before a restart, or kept local) was moved aside",
                           metadata: ["file": "\(file)"])
        }
        let pending = try journal.count
        if pending > 0 { logger.info("resuming changes from the journal", metadata: ["changes": "\(pending)"]) }
        engine.start()
        return WriteSupport(staging: staging, engine: engine,
                            localOnly: LocalOnlyNames(patterns: config.writeback.localOnly ?? LocalOnlyNames.defaults),
                            audit: AuditLog(path: state.appendingPathComponent("audit.jsonl").path), hooks: hooks)
    }
}
