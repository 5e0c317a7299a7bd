import Config
import CRM
import Foundation
import Graph
import HTTP
import Logging

/// Applying one change to the services: upload, link and stamp; folders, moves, deletes, columns.
extension WritebackEngine {
    /// One change, from wherever it stopped.
    func process(_ original: PendingChange) async throws {
        guard let id = original.id else { return }
        defer { madeItemAdopted(by: id) }
        let change = try await placed(original)
        var result: DriveItem?
        switch change.kind {
        case .upload:
            var item: DriveItem
            if change.state == .linking, let itemID = change.itemID {
                item = try await graph.item(driveID: change.driveID, itemID: itemID)
            } else {
                item = try await uploader.upload(change)
            }
            if let recordID = change.recordID, let objectName = change.objectName, let linking = objects[objectName] {
                try await linker.link(item, driveID: change.driveID, recordID: recordID, objectName: objectName, model: linking.model)
                if !linking.mappings.isEmpty,
                   let stamped = try await stamp(item, driveID: change.driveID, objectName: objectName, recordID: recordID, mappings: linking.mappings,
                                                 isNew: change.itemID == nil && change.state != .linking) {
                    item = stamped  // column values are part of the version: the document's eTag moved on
                }
            }
            // Later writes of the same document were based on this version, and now know where it is; so
            // do the ones recorded from now until the mount has taken the item in (see `record`).
            madeItem(item, by: change)
            try rebase(after: change, made: item)
            // A rename or a time recorded while this upload was under way (it knew no version to be based on)
            // is based on the version it made.
            try journal.updateWaiting(where: { $0.id != id && $0.kind == .move && $0.itemID == item.id && $0.baseETag == nil }) { $0.baseETag = item.eTag }
            // Named by its place only when this upload made the document: a version of a known item leaves later
            // changes that name its place to whatever is there by then (a new document under a name it was moved from).
            let made = original.itemID == nil || (original.state == .linking && original.baseETag == nil)
            // Nor past a deletion or move of the document journaled since: a new file given that name after it
            // is a document of its own (this upload waited in an outage while the user removed what it made).
            let left = try journal.changes(of: item.id).compactMap { later -> Int64? in
                guard let laterID = later.id, laterID > id, later.kind == .delete || (later.kind == .move && !later.isTimeOnly) else { return nil }
                return laterID
            }.min()
            try journal.updateWaiting(where: { later in
                guard let laterID = later.id, laterID != id else { return false }
                if let left, laterID > left, later.itemID != item.id { return false }
                return Self.follows(later, change, madeItem: item, made: made)
            }) { later in
                Self.learn(item, into: &later)
            }
            result = item
            try journal.complete(id: id)
            if let file = change.stagedFile { try lock.withLock { try removeUnnamed(file) } }
        case .createFolder:
            guard let parentID = change.parentItemID else { throw WritebackError.incomplete(change.name) }
            let folder: DriveItem
            do {
                folder = try await graph.createFolder(driveID: change.driveID, parentID: parentID, name: change.name, conflictBehavior: .fail)
            } catch let error as GraphError where error.status == 409 {
                // Made by an earlier attempt (or by someone else): the folder the user asked for exists.
                guard let existing = try await graph.children(driveID: change.driveID, itemID: parentID)
                    .first(where: { $0.isFolder && $0.name?.caseInsensitiveCompare(change.name) == .orderedSame }) else { throw error }
                folder = existing
            }
            result = folder
            try journal.complete(id: id)
        case .move:
            guard let itemID = change.itemID else { throw WritebackError.incomplete(change.name) }
            // Renaming over an existing name replaces it, as rename(2) does. Guarded by the version it was made
            // on, so that when it applies, what waits on that version is known to be on this one now (`rebase`);
            // someone else's change meanwhile does not stop a rename, only that knowledge.
            var guarded = change
            // A time alone names nothing: sent late (after a retry), it must not take back a rename made since.
            let name = change.isTimeOnly ? nil : change.name
            let moved: DriveItem
            do {
                moved = try await graph.update(driveID: change.driveID, itemID: itemID, name: name, parentID: change.parentItemID,
                                               modified: change.modified, ifMatch: change.baseETag, conflictBehavior: name.map { _ in .replace })
            } catch let error as GraphError where error.status == 412 && change.baseETag != nil {
                guarded.baseETag = nil
                moved = try await graph.update(driveID: change.driveID, itemID: itemID, name: name, parentID: change.parentItemID,
                                               modified: change.modified, ifMatch: nil, conflictBehavior: name.map { _ in .replace })
            }
            try rebase(after: guarded, made: moved)
            if let recordID = change.recordID, let objectName = change.objectName, let linking = objects[objectName], linking.model != .folder {
                // The link follows the document; a moved folder takes every document inside it along.
                for document in moved.isFolder ? try await documents(in: moved, driveID: change.driveID) : [moved] {
                    try await linker.link(document, driveID: change.driveID, recordID: recordID, objectName: objectName, model: linking.model)
                }
            }
            result = moved
            try journal.complete(id: id)
        case .delete:
            guard let itemID = change.itemID else { throw WritebackError.incomplete(change.name) }
            try await graph.delete(driveID: change.driveID, itemID: itemID)
            if let objectName = change.objectName, let linking = objects[objectName] {
                try await linker.unlink(itemID: itemID, model: linking.model)
            }
            try journal.complete(id: id)
        case .setColumns:
            guard let itemID = change.itemID, let json = change.columns,
                  let values = try? JSONDecoder().decode([String: JSONValue].self, from: Data(json.utf8)) else {
                throw WritebackError.incomplete(change.name)
            }
            _ = try await graph.updateFields(driveID: change.driveID, itemID: itemID, fields: values)
            try journal.complete(id: id)
        }
        finished(.done(change, result))
    }

    /// Whether `later` writes the document that `change`'s upload stored as `item`: its next version, or a
    /// time set while the upload was under way. Only when the upload `made` the document may `later` name it
    /// by its place (recorded before the item was known); a version of a document the mount knew by its item
    /// had every later change of it name the item, and one naming the place is another document's.
    static func follows(_ later: PendingChange, _ change: PendingChange, madeItem item: DriveItem, made: Bool) -> Bool {
        later.kind == .upload
            && (later.itemID == item.id || (made && later.itemID == nil && samePlace(later, change) && later.name == change.name))
            || made && later.kind == .move && later.itemID == nil && later.parentItemID == nil && later.name == change.name
                && later.recordID == change.recordID
    }

    /// Whether two changes go into the same folder: by its id, or by its path (a folder made through the
    /// mount is named by path until it is made; a change recorded meanwhile still names it so, while the
    /// one that made it has its id as well).
    static func samePlace(_ one: PendingChange, _ other: PendingChange) -> Bool {
        (one.parentItemID != nil && one.parentItemID == other.parentItemID) || (one.parentPath != nil && one.parentPath == other.parentPath)
    }

    /// `later` applies to `item` (a later version, or a move, is based on its eTag).
    static func learn(_ item: DriveItem, into later: inout PendingChange) {
        if later.kind == .upload || later.kind == .move { later.baseETag = item.eTag }
        if later.kind == .upload { later.baseHash = item.file?.hashes?.quickXorHash }
        later.itemID = item.id
    }

    /// The mount's own change took the document from the version it was guarded by (`change.baseETag`, which
    /// the service checked) to `item`'s: every change of it still waiting on that version is on this one now.
    /// (SharePoint moves a document's eTag for a rename, a new time or a column edit too: without this, the
    /// mount's next upload of it would look like someone else's change, and a keep-both copy would appear.)
    func rebase(after change: PendingChange, made item: DriveItem) throws {
        guard let id = change.id, let old = change.baseETag, let new = item.eTag, old != new else { return }
        // Under the engine's lock, so a change recorded at the same moment is either rebased here or finds
        // the step in `ownVersions` (see `record`).
        try lock.withLock {
            if ownVersions.count >= 10_000 { ownVersions.removeAll() }  // bounded: only documents open that long lose it
            ownVersions["\(item.id) \(old)"] = new
            try journal.rebase(itemID: item.id, from: old, to: new, except: id)
        }
    }

    /// The version the mount's own changes took `baseETag` of `itemID` to: a document opened before one of
    /// them ended and closed after it was based on what the mount itself made. (Lock held.)
    func latestOwnVersion(of itemID: String, from baseETag: String) -> String {
        var version = baseETag
        for _ in 0..<1000 {
            guard let next = ownVersions["\(itemID) \(version)"] else { break }
            version = next
        }
        return version
    }

    /// The change with its parent folder made and known: a change recorded under a folder that did not
    /// exist remotely yet names it by path; the folder is made (with its parents) now, and remembered.
    func placed(_ change: PendingChange) async throws -> PendingChange {
        // (A deletion names its place only to be ordered with what comes there next: it needs no folder.)
        guard change.kind != .delete, change.parentItemID == nil, let path = change.parentPath, let id = change.id else { return change }
        let parentID = try await linker.ensureFolder(driveID: change.driveID, path: path)
        return try journal.update(id: id) { $0.parentItemID = parentID } ?? change
    }

    /// Every document below a folder, however deep.
    func documents(in folder: DriveItem, driveID: String) async throws -> [DriveItem] {
        var found: [DriveItem] = []
        var folders = [folder.id]
        while let next = folders.popLast() {
            for child in try await graph.children(driveID: driveID, itemID: next) {
                if child.isFolder { folders.append(child.id) } else { found.append(child) }
            }
        }
        return found
    }
}
