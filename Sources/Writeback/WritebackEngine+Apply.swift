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
            try journal.updateWaiting(where: { later in later.id != id && Self.follows(later, change, madeItem: item) }) { later in
                Self.learn(item, into: &later)
            }
            result = item
            try journal.complete(id: id)
            if let file = change.stagedFile { try staging.remove(file) }
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
            // Renaming over an existing name replaces it, as rename(2) does.
            let moved = try await graph.update(driveID: change.driveID, itemID: itemID, name: change.name, parentID: change.parentItemID,
                                               modified: change.modified, conflictBehavior: .replace)
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

    /// Whether `later` writes the document that `change`'s upload made as `item`: its next version, or a
    /// time set while the upload was under way, both recorded before the item was known.
    static func follows(_ later: PendingChange, _ change: PendingChange, madeItem item: DriveItem) -> Bool {
        later.kind == .upload
            && (later.itemID == item.id || (later.itemID == nil && later.parentItemID == change.parentItemID && later.name == change.name))
            || later.kind == .move && later.itemID == nil && later.parentItemID == nil && later.name == change.name
                && later.recordID == change.recordID
    }

    /// `later` applies to `item` (a later version is based on its eTag).
    static func learn(_ item: DriveItem, into later: inout PendingChange) {
        if later.kind == .upload { later.baseETag = item.eTag }
        later.itemID = item.id
    }

    /// The change with its parent folder made and known: a change recorded under a folder that did not
    /// exist remotely yet names it by path; the folder is made (with its parents) now, and remembered.
    func placed(_ change: PendingChange) async throws -> PendingChange {
        guard change.parentItemID == nil, let path = change.parentPath, let id = change.id else { return change }
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
