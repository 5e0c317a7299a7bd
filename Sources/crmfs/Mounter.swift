import Config
import CoreMetrics
import FileSystem
import Foundation
import FuseAdapter
import Logging
import MountBuilder
import Prometheus
import Status

/// A file system ready to mount, the parts keeping it fresh, and what `crmfs status` is told.
struct PreparedMount {
    let built: BuiltMount
    let status: StatusReporter
    var fileSystem: CRMFileSystem { built.fileSystem }
}

/// Puts a config's tree on a mount point and serves it until it is unmounted.
struct Mounter {
    let config: MountConfig
    let mountpoint: String
    let options: ParsedMountOptions

    /// The mount point is checked, then the file system built (`MountBuilder`): everything that can fail
    /// before the kernel is involved fails here, with a reason a person can act on.
    func prepare() async throws -> PreparedMount {
        try checkMountpoint()
        let built = try await MountBuilder(config: config, mountpoint: mountpoint, options: options).build()
        let status = StatusReporter(config: config, mountpoint: mountpoint, stateDirectory: built.stateDirectory, connections: built.connections,
                                    feeds: built.feeds, follower: built.follower, cache: built.cache, engine: built.engine)
        return PreparedMount(built: built, status: status)
    }

    /// `crmfs sync`'s answer: everything sent, or what kept it from being.
    private static func syncReport(_ fileSystem: CRMFileSystem) async -> SyncReport {
        do {
            try await fileSystem.sendEverything()
            return SyncReport(.sent)
        } catch SyncShortfall.gaveUp(let detail) {
            return SyncReport(.gaveUp, detail: detail)
        } catch SyncShortfall.refused(let detail) {
            return SyncReport(.refused, detail: detail)
        } catch SyncShortfall.readOnly {
            return SyncReport(.readOnly)
        } catch {
            Logger(label: "crmfs.mount").info("crmfs sync interrupted; what it waited for goes on")
            return SyncReport(.cancelled)
        }
    }

    /// Runs the FUSE loop on a thread of its own; returns when the file system is unmounted.
    static func serve(_ mount: PreparedMount, at mountpoint: String, ready: @escaping @Sendable (Result<Void, MountError>) -> Void) async -> Int32 {
        let logger = Logger(label: "crmfs.mount")
        // `crmfs status` asks here; a mount without it still works.
        let statusServer: StatusServer?
        do {
            statusServer = try await StatusServer.start(at: mount.status.socketPath, report: mount.status.report,
                                                        sync: { [fileSystem = mount.fileSystem] in await syncReport(fileSystem) })
        } catch {
            logger.warning("no status socket; `crmfs status` cannot reach this mount", metadata: ["error": "\(error)"])
            statusServer = nil
        }
        let metricsServer = await startMetrics(mount)
        let adapter = FuseAdapter(fileSystem: mount.fileSystem)
        let result = await withCheckedContinuation { continuation in
            let thread = Thread {
                continuation.resume(returning: adapter.run(mountpoint: mountpoint, ready: ready))
            }
            thread.name = "crmfs-fuse"
            thread.start()
        }
        await statusServer?.stop()
        await metricsServer?.stop()
        await mount.built.stop()
        return result
    }

    /// The Prometheus registry every metric of this process goes to, once `[metrics]` turns them on.
    static let metricsRegistry = PrometheusCollectorRegistry()

    /// Turns metrics on for this process when the config asks, before anything counts (once: a mount
    /// process mounts one config).
    static func bootstrapMetrics(_ config: MountConfig) {
        guard config.metrics != nil else { return }
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: metricsRegistry))
    }

    /// Serves the metrics where `[metrics] listen` says; a mount without them still works.
    private static func startMetrics(_ mount: PreparedMount) async -> MetricsServer? {
        guard let listener = mount.status.config.metrics else { return nil }
        let address: MetricsServer.Address = switch listener {
        case .unixSocket(let path): .unixSocket(path.hasPrefix("/") ? path : mount.status.stateDirectory.appendingPathComponent(path).path)
        case .tcp(let host, let port): .tcp(host: host, port: port)
        }
        do {
            let server = try await MetricsServer.start(at: address, registry: metricsRegistry, refresh: mount.status.recordGauges)
            Logger(label: "crmfs.mount").info("metrics served", metadata: ["at": "\(listener)"])
            return server
        } catch {
            Logger(label: "crmfs.mount").error("metrics cannot be served; the mount goes on without them", metadata: ["at": "\(listener)", "error": "\(error)"])
            return nil
        }
    }

    private func checkMountpoint() throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: mountpoint, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw MountError(message: "mount point \(mountpoint) does not exist or is not a directory")
        }
        if Self.isMountPoint(mountpoint) {
            throw MountError(message: "\(mountpoint) is already a mount point; unmount it first (fusermount3 -u \(mountpoint))")
        }
    }

    /// Whether a directory has something mounted on it, per /proc/self/mountinfo.
    static func isMountPoint(_ path: String) -> Bool {
        let target = URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
        guard let table = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return false }
        return table.split(separator: "\n").contains { line in
            let fields = line.split(separator: " ")
            guard fields.count > 4 else { return false }
            let point = String(fields[4]).replacingOccurrences(of: "\\040", with: " ")
            return point == target
        }
    }
}
