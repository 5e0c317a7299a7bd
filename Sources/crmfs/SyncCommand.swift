import ArgumentParser
import CLinux
import Foundation
import Status

/// `crmfs sync MOUNTPOINT`: waits until everything written through the mount is uploaded and linked.
/// It asks the daemon on the mount's status socket. Not through the mount itself: the kernel holds a
/// file's inode locked while an extended attribute of it is set, and the mount's root locked for the
/// minutes a sync can take would hold up `ls` of the mount. Setting `user.crmfs.sync` on the root is the
/// fallback, for a mount whose socket this user cannot reach (another user's, or a daemon without one).
struct SyncCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync",
        abstract: "Wait until every change made through a mount has reached SharePoint and Salesforce.",
        discussion: "Exits 0 when all is sent; 1 when some changes gave up after retries (they stay journaled and are retried at the next mount) or were refused by the service (access denied: kept in conflicts/), and says which.")

    @Argument(help: "A crmfs mount point, or any path inside one (the mount holding it is synced).")
    var path: String

    /// The mount that holds `path`; `path` itself when the mount table names none (the errors then say so).
    private var mountpoint: String { RunningMounts.mountPoint(holding: path) ?? path }

    func run() async throws {
        let mountpoint = self.mountpoint
        if let mount = try RunningMounts.find(mountpoint: mountpoint).first,
           let report = try? await StatusClient.sync(at: mount.socket) {
            finish(report)
        } else {
            try syncThroughTheMount()
        }
    }

    private func finish(_ report: SyncReport) {
        let reason: String
        switch report.outcome {
        case .sent: return
        case .gaveUp: reason = "some changes could not be sent after retries (they stay journaled and are retried at the next mount): \(report.detail ?? "see the mount's log")"
        case .refused: reason = "some changes will not be sent (the service refused them, or the journal could not read them); your copies are in the state directory's conflicts/ or recovered/ (see `crmfs status`): \(report.detail ?? "")"
        case .readOnly: reason = "\(mountpoint) is mounted read-only; there is nothing to send"
        case .cancelled: reason = "the mount stopped before everything was sent; what is left is sent at the next mount"
        }
        fail(reason)
    }

    private func syncThroughTheMount() throws {
        let mountpoint = self.mountpoint
        let value = "now"
        if setxattr(mountpoint, "user.crmfs.sync", value, value.utf8.count, 0) == 0 { return }
        let code = errno
        let reason: String = switch code {
        case EIO: "some changes could not be sent after retries; see the mount's log (they stay journaled and are retried at the next mount)"
        case EACCES: "the service refused some changes (access denied); your copies are in the state directory's conflicts/ (see `crmfs status`)"
        case EOPNOTSUPP, ENOTSUP: "\(mountpoint) is not a crmfs mount"
        case EROFS: "\(mountpoint) is mounted read-only; there is nothing to send"
        default: String(cString: strerror(code))
        }
        fail(reason)
    }

    private func fail(_ reason: String) -> Never {
        FileHandle.standardError.write(Data("crmfs sync: \(mountpoint): \(reason)\n".utf8))
        Foundation.exit(1)
    }
}
