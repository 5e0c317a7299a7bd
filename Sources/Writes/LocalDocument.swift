import Foundation
import Graph

/// What the mount holds for one document (or folder) with local writes, in `LocalWrites.documents`
/// under `LocalWrites.lock`: the session open on it for writing, the journal changes not done yet, the
/// newest of them that uploads its bytes, and what its last change's settling left to say. The bytes, times and base
/// version of an open document are its `WriteSession`'s; a closed document's are in its journaled change.
/// The entry goes once it holds nothing.
struct LocalDocument {
    /// Open for writing: every handle on the document shares it.
    var session: WriteSession?
    /// Every journal change of the node not done yet.
    var changes: Set<Int64> = []
    /// The newest upload not done yet: a later version replaces or follows it, a time rides on it.
    var upload: Int64?
    /// What `user.crmfs.sync` says once its last change settled unlike a plain upload (a conflict, or
    /// the service rewrote the document as it stored it), until the document is written again.
    var settledNote: String?
    /// The shadow this new file took (it was made under the name a document renamed to a temporary name
    /// left): removed before its bytes went, the temporary file holds that document again.
    var takenShadow: Shadow?
    /// Renames of it under way: until each has journaled what it moved, the node's name and place are the
    /// rename's, and an upload of it ending meanwhile must not show it where the service has it.
    var renaming = 0
    /// What such an upload made, kept for the rename's end: a rename that journals no move after all (it
    /// failed) leaves the node where the service has it.
    var sentWhileRenaming: DriveItem?

    var isEmpty: Bool {
        session == nil && changes.isEmpty && upload == nil && settledNote == nil && takenShadow == nil && renaming == 0 && sentWhileRenaming == nil
    }
}

/// A remote document renamed to a temporary name (vim's `doc~`, Word's `~WRL0001.tmp`): the service
/// keeps it under its old name until the temporary file is deleted (then it is deleted) or a new file
/// takes the old name (then that file's bytes become its next version).
struct Shadow {
    var ino: UInt64
    var base: BaseVersion
    var itemID: String { base.itemID }
    var parent: UInt64
    var name: String
}

/// A service document, and the version of it local bytes are based on: its eTag (an overwrite is guarded
/// by it) and the hash of its bytes then (an overwrite that meets a newer eTag over the same bytes, as a
/// column write or a rename leaves, goes on the current version instead of being a conflict).
struct BaseVersion {
    var itemID: String
    var eTag: String?
    var hash: String?
}

/// Who a journal change belongs to in the tree.
struct ChangeOwner {
    var ino: UInt64
    /// The directory it was made in, to learn a record folder's id once the engine made it.
    var parent: UInt64
    /// The item a delete or replace hid from listings until the service has the change.
    var hiddenItem: String?
    /// An upload met a remote change and goes as a copy beside it (keep-both): its item is not the node's.
    var keptBoth = false
}
