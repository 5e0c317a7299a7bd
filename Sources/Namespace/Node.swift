import CRM
import Foundation
import Graph
import HTTP

/// What a node stands for; the identity that keeps its inode number stable for the life of the mount.
public enum NodeKey: Hashable, Sendable {
    case root
    /// A configured object's directory, by its index in the config.
    case object(Int)
    /// A record directory, by record Id.
    case record(String)
    /// A SharePoint file or folder, by drive item id (which survives renames).
    case item(String)
    /// A file or folder made through the mount that the service does not have yet (or never will: a
    /// local-only file); becomes `.item` once it is uploaded.
    case local(UInt64)
}

/// Where a node sits: only documents (files and folders below a record) can be written.
public enum NodeLevel: Sendable {
    case root, object, record, document
}

public enum NodeType: Sendable {
    case directory
    case file
}

/// A point-in-time copy of a node, safe to hand to the FUSE layer.
public struct NodeSnapshot: Sendable {
    public var ino: UInt64
    public var type: NodeType
    public var size: Int64
    public var modified: Date
    public var changed: Date
    public var created: Date
    /// Set for files: what reading needs.
    public var content: RemoteContent?
    public var level: NodeLevel
    public var name: String
    public var parent: UInt64
    /// The drive item, once the service has it.
    public var itemID: String?
    public var eTag: String?
    /// Bytes newer than the service's (or all of a file it does not have), in the staging area.
    public var stagedFile: String?
    /// A temporary or lock file that is never uploaded.
    public var localOnly: Bool
    /// The mtime was set explicitly (utimens: `touch -d`, `rsync -t`, `cp -p`), so it must travel with
    /// the upload; otherwise it is just when the bytes were written, and SharePoint's upload time stands.
    public var timeSet: Bool
    /// The signed-in user may read but not change the record this belongs to (`UserRecordAccess`).
    public var readOnly = false
}

/// A SharePoint file's content as it is now: where it is, and which version.
public struct RemoteContent: Sendable, Hashable {
    public var driveID: String
    public var itemID: String
    public var eTag: String
    public var size: Int64
    /// The folder holding it, whose listing can carry the download URLs of all its documents.
    public var folderID: String?
    /// The version of its bytes alone (a rename, a new time or a column edit moves the eTag, not this),
    /// when known, and their hash (quickXorHash): bytes served under a newer eTag are still these when
    /// neither moved.
    public var cTag: String?
    public var hash: String?

    public init(driveID: String, itemID: String, eTag: String, size: Int64, folderID: String? = nil, cTag: String? = nil, hash: String? = nil) {
        self.driveID = driveID
        self.itemID = itemID
        self.eTag = eTag
        self.size = size
        self.folderID = folderID
        self.cTag = cTag
        self.hash = hash
    }
}

public struct DirectoryEntry: Sendable {
    public var name: String
    public var node: NodeSnapshot
}

/// One entry of the inode table. Guarded by the tree's lock.
final class Node: @unchecked Sendable {
    let ino: UInt64
    var key: NodeKey
    var parent: UInt64
    var name: String
    var type: NodeType
    var size: Int64 = 0
    var modified = Date(timeIntervalSince1970: 0)
    var created = Date(timeIntervalSince1970: 0)
    var changed = Date(timeIntervalSince1970: 0)
    /// The object config this node belongs to (nil for the root).
    var objectIndex: Int?
    /// For record directories, and for items below them: the record.
    var recordID: String?
    var record: SObjectRecord?
    var item: DriveItem?
    /// For record directories: the SharePoint folder holding the record's documents, once looked up.
    var folderItemID: String?
    var folderResolved = false
    /// Loaded directory contents: name to inode, in listing order.
    var children: [(name: String, ino: UInt64)]?
    var childIndex: [String: UInt64] = [:]
    var childrenLoadedAt: Date?
    /// The children came from the tree a remount kept, not from the services since: until the first
    /// catch-up, a name they lack may be one the last moments before a crash made (see `Tree.lookup`).
    var childrenKept = false
    /// When an entry was last seen to come, go or change names here (through the mount, a listing or a
    /// feed). A directory's mtime and ctime are at least this, as POSIX has it; the kernel compares the
    /// mtime to decide whether a listing it keeps is still good.
    var entriesChangedAt: Date?
    /// For object directories: the newest `SystemModstamp` of the records listed, where the CRM feed goes on from.
    var recordsChangedUpTo: Date?
    /// When this node's own metadata last came from the services.
    var fetchedAt = Date()
    /// Kernel references (lookup count).
    var lookups: UInt64 = 0
    /// Local state (see NodeSnapshot).
    var stagedFile: String?
    var localOnly = false
    var timeSet = false
    /// Changes and open writers that make the mount's view of this node newer than the service's: while
    /// any are outstanding, listings do not move, rename or resize it.
    var pins = 0

    /// Whether the mount's view of this node wins over what a listing says.
    var isPinned: Bool {
        if case .local = key { return true }
        return pins > 0 || stagedFile != nil || localOnly
    }

    var level: NodeLevel {
        switch key {
        case .root: .root
        case .object: .object
        case .record: .record
        case .item, .local: .document
        }
    }

    init(ino: UInt64, key: NodeKey, parent: UInt64, name: String, type: NodeType) {
        self.ino = ino
        self.key = key
        self.parent = parent
        self.name = name
        self.type = type
    }

    func snapshot(driveID: String?) -> NodeSnapshot {
        var content: RemoteContent?
        if type == .file, let item, let driveID {
            content = RemoteContent(driveID: item.parentReference?.driveId ?? driveID, itemID: item.id, eTag: item.eTag ?? "", size: size,
                                    folderID: item.parentReference?.id, cTag: item.cTag, hash: item.file?.hashes?.quickXorHash)
        }
        let entriesChanged = entriesChangedAt ?? .distantPast
        return NodeSnapshot(ino: ino, type: type, size: size, modified: max(modified, entriesChanged), changed: max(changed, entriesChanged),
                            created: created, content: content,
                            level: level, name: name, parent: parent, itemID: item?.id, eTag: item?.eTag, stagedFile: stagedFile, localOnly: localOnly, timeSet: timeSet)
    }
}

public enum NamespaceError: Error, Sendable, Equatable {
    case notFound
    case notDirectory
    case isDirectory
    /// The remote side failed after retries; the message says how (never with secrets).
    case remote(String)
    /// A file changed remotely while it was being read.
    case stale
    /// Not something the mount lets anyone change (EPERM); the reason is logged.
    case notPermitted(String)
    /// A name or value the service would refuse (EINVAL); the reason is logged.
    case invalid(String)
    /// The signed-in user may not change this (EACCES); the reason is logged.
    case accessDenied(String)
    case exists
    case notEmpty
}
