import ArgumentParser
import CLinux
import Foundation

/// `crmfs sync MOUNTPOINT`: waits until everything written through the mount is uploaded and linked.
/// It asks the daemon through the mount itself (setting `user.crmfs.sync` on its root), so it needs no
/// socket and works for whoever can see the mount.
struct SyncCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync",
        abstract: "Wait until every change made through a mount has reached SharePoint and Salesforce.",
        discussion: "Exits 0 when all is sent; 1 when some changes gave up after retries (the mount's log says which; they stay journaled and are retried at the next mount) or were refused by the service (access denied: kept in conflicts/).")

    @Argument(help: "A crmfs mount point.")
    var mountpoint: String

    func run() throws {
        let value = "now"
        let result = setxattr(mountpoint, "user.crmfs.sync", value, value.utf8.count, 0)
        if result == 0 { return }
        let code = errno
        let reason: String = switch code {
        case EIO: "some changes could not be sent after retries; see the mount's log (they stay journaled and are retried at the next mount)"
        case EACCES: "the service refused some changes (access denied); your copies are in the state directory's conflicts/ (see `crmfs status`)"
        case EOPNOTSUPP, ENOTSUP: "\(mountpoint) is not a crmfs mount"
        case EROFS: "\(mountpoint) is mounted read-only; there is nothing to send"
        default: String(cString: strerror(code))
        }
        FileHandle.standardError.write(Data("crmfs sync: \(mountpoint): \(reason)\n".utf8))
        throw ExitCode(1)
    }
}
