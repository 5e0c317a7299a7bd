import Foundation

public struct MountOptions: Sendable {
    /// Let other users see the mount (needs user_allow_other in /etc/fuse.conf for non-root); implies default_permissions.
    public var allowOther = false
    /// How long the kernel may trust names and attributes.
    public var entryTimeout: Double = 60
    public var attributeTimeout: Double = 60
    /// Shown in mount listings (the source column).
    public var fsname = "crmfs"
    public var debug = false
    /// Owner and group every file shows (the mounting user's by default), and the permission bits taken
    /// away from every file and directory: with `allow_other`, `umask=027` keeps other users out, since the
    /// kernel checks these bits (`default_permissions`).
    public var uid: uid_t = getuid()
    public var gid: gid_t = getgid()
    public var umask: mode_t = 0o022
    /// Let the kernel keep directory listings and stop sending opendir/releasedir (see ReaderListings):
    /// only when every listing change reaches the mount without asking (the change feeds), since the
    /// kernel then asks for a listing again only when told it changed.
    public var kernelKeepsListings = false

    public init() {}
}

public struct MountError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}
