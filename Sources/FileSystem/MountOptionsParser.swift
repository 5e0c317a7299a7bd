import Config
import Foundation

/// `-o a,b=c` options as mount(8), fstab and systemd pass them.
public struct ParsedMountOptions: Sendable {
    public var mount = MountOptions()
    public var cacheSize: Int64?
    public var blockSize: Int64?
    /// `ro`: nothing can be written through the mount.
    public var readOnly = false
    /// Whether `entry_timeout` or `attr_timeout` was given (otherwise the mount picks them by its change feeds).
    public var timeoutsGiven = false
    /// Whether `uid`, `gid` or `umask` was given: who may see an `allow_other` mount was said.
    public var ownershipGiven = false

    public init() {}

    /// Options meant for mount(8) or systemd, accepted and ignored here.
    static let ignored: Set<String> = ["_netdev", "noauto", "auto", "nofail", "defaults", "user", "nouser", "users", "owner",
                                       "suid", "nosuid", "dev", "nodev", "exec", "noexec", "atime", "noatime", "relatime",
                                       "strictatime", "nodiratime", "async", "sync", "rw", "default_permissions", "loop"]

    public static func parse(_ lists: [String]) throws -> ParsedMountOptions {
        var parsed = ParsedMountOptions()
        var unknown: [String] = []
        for option in lists.flatMap({ $0.split(separator: ",").map(String.init) }) where !option.isEmpty {
            let parts = option.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            let name = parts[0], value = parts.count > 1 ? parts[1] : nil
            func number() throws -> Double {
                guard let value, let number = Double(value), number.isFinite, number >= 0, number <= 86_400 * 365 else { throw MountOptionError("option \(name) needs a number of seconds up to a year, e.g. \(name)=30") }
                return number
            }
            func id() throws -> UInt32 {
                guard let value, let id = UInt32(value), id != UInt32.max else { throw MountOptionError("option \(name) needs a numeric id, e.g. \(name)=1000") }
                return id
            }
            func size() throws -> Int64 {
                guard let value, let size = ByteSize.parse(value), size > 0 else { throw MountOptionError("option \(name) needs a size, e.g. \(name)=4MiB") }
                return size
            }
            switch name {
            case "allow_other": parsed.mount.allowOther = true
            case "entry_timeout":
                parsed.mount.entryTimeout = try number()
                parsed.timeoutsGiven = true
            case "attr_timeout":
                parsed.mount.attributeTimeout = try number()
                parsed.timeoutsGiven = true
            case "cache_size": parsed.cacheSize = try size()
            case "block_size":
                // The bounds of mount.conf's `[cache] block_size`: a tiny block makes a block map entry per byte.
                let block = try size()
                guard block >= 64 << 10, block <= 64 << 20 else { throw MountOptionError("option block_size must be between 64KiB and 64MiB, e.g. block_size=4MiB") }
                parsed.blockSize = block
            case "fsname": parsed.mount.fsname = value ?? parsed.mount.fsname
            case "debug": parsed.mount.debug = true
            case "uid":
                parsed.mount.uid = try id()
                parsed.ownershipGiven = true
            case "gid":
                parsed.mount.gid = try id()
                parsed.ownershipGiven = true
            case "umask":
                guard let value, let mask = mode_t(value, radix: 8), mask <= 0o777 else { throw MountOptionError("option umask needs octal permission bits, e.g. umask=027") }
                parsed.mount.umask = mask
                parsed.ownershipGiven = true
            case "ro": parsed.readOnly = true
            case _ where ignored.contains(name) || name.hasPrefix("x-systemd.") || name.hasPrefix("x-") || name == "comment":
                continue
            default: unknown.append(option)
            }
        }
        if !unknown.isEmpty {
            throw MountOptionError("unknown mount option\(unknown.count > 1 ? "s" : ""): \(unknown.joined(separator: ", ")) "
                + "(crmfs takes ro, allow_other, uid=N, gid=N, umask=OCTAL, entry_timeout=S, attr_timeout=S, cache_size=SIZE, block_size=SIZE, fsname=NAME, debug)")
        }
        return parsed
    }
}

public struct MountOptionError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
