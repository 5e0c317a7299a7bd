import Foundation
import Graph
import HTTP
import Logging
import QuickXor

/// Why an upload did not go through.
public enum UploadFailure: Error, CustomStringConvertible, Sendable {
    /// The document changed remotely since the local copy was read (412 on its eTag).
    case conflict(name: String)
    case missingDestination(name: String)

    public var description: String {
        switch self {
        case .conflict(let name): "\(name) changed remotely since it was opened"
        case .missingDestination(let name): "\(name): neither the document nor its folder is known"
        }
    }
}

/// Sends the bytes of a staged upload: one PUT for a small file whose time need not travel, otherwise an
/// upload session that carries the file's mtime in `fileSystemInfo`. An overwrite states the eTag the
/// local copy was based on, so a remote change is detected (`.conflict`), never silently replaced.
/// Each step is recorded in the journal; the hash the service reports is checked against the staged bytes.
public final class Uploader: Sendable {
    let graph: any DriveService
    let staging: StagingArea
    let journal: Journal
    let fragmentSize: Int
    let simpleUploadMax: Int64
    /// Where uploads of bytes an `fsync` is still flushing wait before their last fragment.
    public let seals = SealGate()
    /// The uploads under way and how far each has got.
    public let progress = UploadProgress()
    let logger: Logger

    public init(graph: any DriveService, staging: StagingArea, journal: Journal, fragmentSize: Int, simpleUploadMax: Int64,
                logger: Logger = Logger(label: "crmfs.writeback")) {
        self.graph = graph
        self.staging = staging
        self.journal = journal
        self.fragmentSize = fragmentSize
        self.simpleUploadMax = simpleUploadMax
        self.logger = logger
    }

    /// Uploads a staged change and moves it on to `.linking`; returns the stored document.
    public func upload(_ change: PendingChange) async throws -> DriveItem {
        do {
            return try await uploadOnce(change)
        } catch UploadFailure.conflict where change.itemID != nil && change.baseHash != nil {
            // SharePoint moves a document's eTag for a rename, a new time or a column edit too (the mount's own,
            // or a colleague's): when it still holds the bytes this version was based on, nothing was changed
            // under the user's feet, and the upload goes again on the version it has now. Once.
            guard let id = change.id, let itemID = change.itemID else { throw UploadFailure.conflict(name: change.name) }
            let current: DriveItem
            do {
                current = try await graph.item(driveID: change.driveID, itemID: itemID)
            } catch {
                // Could not look (a storm, an expired token): a failure to retry, not a conflict.
                try? journal.update(id: id) { $0.state = .failed; $0.lastError = "\(error)" }
                throw error
            }
            guard current.file?.hashes?.quickXorHash == change.baseHash, let eTag = current.eTag,
                  let rebased = try? journal.update(id: id, { $0.state = .staged; $0.baseETag = eTag; $0.uploadURL = nil }) else {
                throw UploadFailure.conflict(name: change.name)
            }
            logger.info("the document's name, time or columns changed since it was opened, not its bytes: uploading on its current version",
                        metadata: ["name": "\(change.name)"])
            return try await uploadOnce(rebased)
        }
    }

    private func uploadOnce(_ change: PendingChange) async throws -> DriveItem {
        guard let id = change.id, let stagedFile = change.stagedFile else { throw UploadFailure.missingDestination(name: change.name) }
        let destination: UploadDestination
        if let itemID = change.itemID {
            destination = .item(id: itemID)
        } else if let parentID = change.parentItemID {
            destination = .child(parentID: parentID, name: change.name)
        } else {
            throw UploadFailure.missingDestination(name: change.name)
        }
        try journal.update(id: id) { $0.state = .uploading }
        let path = staging.path(of: stagedFile)
        // A new document must not replace one someone else made under the same name meanwhile: `fail`
        // turns that into a conflict. An overwrite names its document and guards it with If-Match.
        var options = UploadOptions(conflictBehavior: change.itemID == nil ? .fail : .replace, ifMatch: change.baseETag,
                                    modified: change.modified, fragmentSize: fragmentSize)
        progress.begin(id, name: change.name, bytes: change.size)
        defer { progress.end(id) }
        options.progress = { [progress] held in progress.advance(id, to: held) }
        var item: DriveItem
        do {
            // A session cannot carry zero bytes; a simple PUT cannot carry the mtime.
            if change.size == 0 || (change.modified == nil && change.size <= simpleUploadMax) {
                try await waitUntilSealed(id)
                item = try await graph.simpleUpload(driveID: change.driveID, to: destination, file: path, size: change.size, options: options)
                if change.size == 0, let modified = change.modified {
                    // An empty file cannot go through a session, the only upload that carries a time: it
                    // gets its mtime by a PATCH (one more version of an empty document), so rsync does not resend it.
                    item = try await graph.update(driveID: change.driveID, itemID: item.id, modified: modified)
                }
            } else {
                // The session's URL goes into the journal first, so a restarted daemon resumes it instead of resending.
                item = try await graph.sessionUpload(driveID: change.driveID, to: destination, file: path, size: change.size, options: options,
                                                     resuming: change.uploadURL, onSession: { [journal] url in
                    try journal.update(id: id) { $0.uploadURL = url }
                }, beforeLastFragment: { try await self.waitUntilSealed(id) })
            }
        } catch let error as GraphError where error.status == 412 || error.status == 409 {
            // A retry of a request whose answer was lost finds its own bytes there: that is success, not a conflict.
            if let landed = try await alreadyThere(change, destination: destination, stagedPath: path) {
                item = landed
            } else {
                try journal.update(id: id) { $0.state = .conflict; $0.lastError = "\(error)" }
                logger.warning("remote change since open", metadata: ["name": "\(change.name)", "error": "\(error)"])
                throw UploadFailure.conflict(name: change.name)
            }
        } catch {
            try journal.update(id: id) { $0.state = .failed; $0.lastError = "\(error)" }
            throw error
        }
        if change.storedDifferently(in: item) {
            // The item it answered with is the document now: sending it again would be rewritten again.
            logger.notice("the service changed the document as it stored it; its copy is the document now",
                          metadata: ["name": "\(change.name)", "sent": "\(change.size) bytes", "stored": "\(item.size ?? 0) bytes"])
        }
        ServiceMetrics.uploaded(bytes: change.size)
        try journal.update(id: id) { $0.state = .linking; $0.itemID = item.id; $0.lastError = nil; $0.uploadURL = nil }
        logger.info("uploaded", metadata: ["name": "\(change.name)", "item": "\(item.id)", "bytes": "\(change.size)",
                                           "mtime": "\(change.modified.map { "\($0.timeIntervalSince1970)" } ?? "the service's")"])
        return item
    }

    /// The service must not get the whole file before it is durable here: an `fsync` still flushing it
    /// holds back only the last fragment.
    private func waitUntilSealed(_ id: Int64) async throws {
        try await seals.wait(for: id) { [journal] in
            guard let change = try journal.change(id: id) else { throw CancellationError() }
            return change.sealed
        }
    }

    /// The document at the destination when it already holds exactly the staged bytes.
    private func alreadyThere(_ change: PendingChange, destination: UploadDestination, stagedPath: String) async throws -> DriveItem? {
        let current: DriveItem
        do {
            switch destination {
            case .item(let id): current = try await graph.item(driveID: change.driveID, itemID: id)
            case .child(let parentID, let name):
                guard let found = try await graph.children(driveID: change.driveID, itemID: parentID)
                    .first(where: { $0.name?.caseInsensitiveCompare(name) == .orderedSame }) else { return nil }
                current = found
            }
        } catch let error as GraphError where error.isNotFound {
            return nil
        }
        guard current.size == change.size, let reported = current.file?.hashes?.quickXorHash,
              try QuickXorHash.hash(fileAt: stagedPath) == reported else { return nil }
        return current
    }
}

extension PendingChange {
    /// Whether the service stored other bytes than this upload sent: SharePoint rewrites Office documents
    /// (and some images) as it stores them (docs/wire-facts.md G13). Told by size, which needs no second read of
    /// the file; a rewrite that keeps the size goes unremarked, and is harmless all the same.
    public func storedDifferently(in item: DriveItem) -> Bool {
        kind == .upload && item.size.map { $0 != size } == true
    }
}
