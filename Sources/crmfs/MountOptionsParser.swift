import Config
import FileSystem
import Foundation

/// `-o a,b=c` options as mount(8), fstab and systemd pass them.
struct ParsedMountOptions {
    var mount = MountOptions()
    var cacheSize: Int64?
    var blockSize: Int64?
    /// `ro`: nothing can be written through the mount.
    var readOnly = false

    /// Options meant for mount(8) or systemd, accepted and ignored here.
    static let ignored: Set<String> = ["_netdev", "noauto", "auto", "nofail", "defaults", "user", "nouser", "users", "owner",
                                       "suid", "nosuid", "dev", "nodev", "exec", "noexec", "atime", "noatime", "relatime",
                                       "strictatime", "nodiratime", "async", "sync", "rw", "default_permissions", "loop"]

    static func parse(_ lists: [String]) throws -> ParsedMountOptions {
        var parsed = ParsedMountOptions()
        var unknown: [String] = []
        for option in lists.flatMap({ $0.split(separator: ",").map(String.init) }) where !option.isEmpty {
            let parts = option.split(separator: "=", maxSplits: 1).map(String.init)
            let name = parts[0], value = parts.count > 1 ? parts[1] : nil
            func number() throws -> Double {
                guard let value, let number = Double(value), number >= 0 else { throw MountOptionError("option \(name) needs a number of seconds, e.g. \(name)=30") }
                return number
            }
            func size() throws -> Int64 {
                guard let value, let size = ByteSize.parse(value), size > 0 else { throw MountOptionError("option \(name) needs a size, e.g. \(name)=4MiB") }
                return size
            }
            switch name {
            case "allow_other": parsed.mount.allowOther = true
            case "entry_timeout": parsed.mount.entryTimeout = try number()
            case "attr_timeout": parsed.mount.attributeTimeout = try number()
            case "cache_size": parsed.cacheSize = try size()
            case "block_size": parsed.blockSize = try size()
            case "fsname": parsed.mount.fsname = value ?? parsed.mount.fsname
            case "debug": parsed.mount.debug = true
            case "ro": parsed.readOnly = true
            case _ where ignored.contains(name) || name.hasPrefix("x-systemd.") || name.hasPrefix("x-") || name == "comment":
                continue
            default: unknown.append(option)
            }
        }
        if !unknown.isEmpty {
            throw MountOptionError("unknown mount option\(unknown.count > 1 ? "s" : ""): \(unknown.joined(separator: ", ")) "
                + "(crmfs takes ro, allow_other, entry_timeout=S, attr_timeout=S, cache_size=SIZE, block_size=SIZE, fsname=NAME, debug)")
        }
        return parsed
    }
}

struct MountOptionError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
