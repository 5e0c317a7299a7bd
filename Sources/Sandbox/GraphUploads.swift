import Foundation
import QuickXor

/// Where an upload goes: over an existing file, or a new name in a folder.
enum UploadTarget {
    case existing(ItemRow)
    case new(parent: ItemRow, name: String)
}

/// Graph's uploads per docs/wire-facts.md G6: simple PUT of content, and resumable upload sessions whose
/// pre-authenticated URL takes fragments in order (all but the last a multiple of 320 KiB), answers
/// 202 with `nextExpectedRanges`, and commits on the last fragment with 201 (new) or 200 (replaced).
extension GraphService {
    static let fragmentUnit: Int64 = 320 * 1024
    static let maxFragment = 60 << 20

    func simpleUpload(_ request: SandboxRequest, drive: DriveRow, target: UploadTarget) throws -> SandboxResponse {
        stats.increment("graph.upload.simple")
        guard Int64(request.body.count) <= options.simpleUploadLimit else {
            throw GraphErrors.failure(413, "invalidRequest", "The file is too large for a simple upload; use an upload session.")
        }
        try checkTarget(target, request: request)
        let staging = store.stagingPath()
        guard FileManager.default.createFile(atPath: staging, contents: request.body) else { throw CocoaError(.fileWriteUnknown) }
        // PUT content replaces by default (docs/wire-facts.md G4); the behaviour is a query parameter here.
        let behaviour = request.query["@microsoft.graph.conflictBehavior"] ?? "replace"
        return try commit(staging: staging, size: Int64(request.body.count), target: target, behaviour: behaviour,
                          fileSystemInfo: [:], drive: drive, request: request)
    }

    func createUploadSession(_ request: SandboxRequest, drive: DriveRow, target: UploadTarget) throws -> SandboxResponse {
        stats.increment("graph.upload.session")
        try checkTarget(target, request: request)
        let body = try jsonBody(request)
        let properties = body["item"] as? [String: Any] ?? [:]
        if let name = properties["name"] as? String, case .new(_, let pathName) = target, name != pathName {
            throw GraphErrors.failure(400, "invalidRequest", "The name in the body must match the name in the path.")
        }
        if case .new(_, let name) = target { _ = try validName(name, isFolder: false) }
        let session = UploadSession(target: target, driveID: drive.id,
                                    behaviour: properties["@microsoft.graph.conflictBehavior"] as? String ?? "fail",
                                    fileSystemInfo: properties["fileSystemInfo"] as? [String: String] ?? [:],
                                    deferCommit: body["deferCommit"] as? Bool ?? false,
                                    staging: store.stagingPath(), expires: Date().addingTimeInterval(options.uploadSessionLifetime))
        var answer = session.status
        // SharePoint's shape: the URL's own credential rides in the query (`tempauth`), so a client that
        // logs URLs without their query never logs it.
        answer["uploadUrl"] = "\(request.origin)\(UploadSessions.path)?guid='\(UUID().uuidString.lowercased())'&overwrite=True&rename=False&dc=0&tempauth=\(uploads.open(session))"
        return .json(200, answer)
    }

    /// The file an upload would overwrite must be a file, and match If-Match when one is given.
    private func checkTarget(_ target: UploadTarget, request: SandboxRequest) throws {
        let current: ItemRow? = switch target {
        case .existing(let item): item
        case .new(let parent, let name): try store.child(of: parent.id, named: name)
        }
        guard let current else { return }
        guard !current.isFolder else { throw GraphErrors.failure(400, "invalidRequest", "The target item is a folder.") }
        try checkPreconditions(request, item: current)
    }

    /// Requests to a session's upload URL: PUT a fragment, GET the status, DELETE to cancel, POST to commit a deferred one.
    /// With `stall`, a fragment is answered 202 with the session where it was, as a service that does
    /// not advance would.
    func uploadSession(_ request: SandboxRequest, stall: Bool = false) throws -> SandboxResponse {
        guard request.header("Authorization") == nil else {
            throw GraphErrors.failure(401, "unauthenticated", "Upload URLs are pre-authenticated and must not carry an Authorization header.")
        }
        guard let token = request.query["tempauth"], let session = uploads.session(token) else {
            throw GraphErrors.failure(404, "itemNotFound", "The upload session was not found.", inner: "uploadSessionNotFound")
        }
        return try session.lock.withLock {
            switch request.method {
            case "GET":
                return .json(200, session.status)
            case "DELETE":
                uploads.close(token)
                unlink(session.staging)
                return .empty(204)
            case "POST":
                guard session.deferCommit, let total = session.total, session.received == total else {
                    throw GraphErrors.failure(400, "invalidRequest", "The upload is not complete.", inner: "uploadSessionIncomplete")
                }
                return try commit(session, token: token, request: request)
            case "PUT" where stall:
                stats.increment("graph.upload.stalled")
                return .json(202, session.status)
            case "PUT":
                stats.increment("graph.upload.chunk")
                try accept(fragment: request, into: session)
                session.expires = Date().addingTimeInterval(options.uploadSessionLifetime)
                if session.received == session.total, !session.deferCommit { return try commit(session, token: token, request: request) }
                return .json(202, session.status)
            default:
                throw GraphErrors.failure(405, "notSupported", "The \(request.method) method is not supported for upload URLs.")
            }
        }
    }

    /// Checks a fragment against the session (in order, fixed total, 320 KiB multiples) and appends it.
    private func accept(fragment request: SandboxRequest, into session: UploadSession) throws {
        guard let header = request.header("Content-Range"), let range = ContentRange(header) else {
            throw GraphErrors.failure(400, "invalidRequest", "A Content-Range header 'bytes START-END/TOTAL' is required.")
        }
        let length = Int64(request.body.count)
        guard range.end - range.start + 1 == length else {
            throw GraphErrors.failure(400, "invalidRequest", "Content-Range does not match the bytes sent.", inner: "fragmentLengthMismatch")
        }
        guard length <= Self.maxFragment else {
            throw GraphErrors.failure(413, "invalidRequest", "Fragments must be under 60 MiB.", inner: "maxFragmentLengthExceeded")
        }
        if let total = session.total, total != range.total {
            throw GraphErrors.failure(400, "invalidRequest", "The total size differs from earlier fragments.", inner: "fragmentLengthMismatch")
        }
        guard range.start >= session.received else {
            throw GraphErrors.failure(416, "invalidRange", "The fragment overlaps bytes already received.", inner: "fragmentOverlap")
        }
        guard range.start == session.received else {
            throw GraphErrors.failure(416, "invalidRange", "Fragments must be sent in order.", inner: "fragmentOutOfOrder")
        }
        let isLast = range.end + 1 == range.total
        guard isLast || length % Self.fragmentUnit == 0 else {
            throw GraphErrors.failure(400, "invalidRequest", "Every fragment but the last must be a multiple of 320 KiB.", inner: "fragmentLengthMismatch")
        }
        let descriptor = open(session.staging, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw CocoaError(.fileWriteUnknown) }
        defer { close(descriptor) }
        let written = request.body.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, off_t(range.start)) }
        guard written == request.body.count else { throw CocoaError(.fileWriteUnknown) }
        session.total = range.total
        session.received = range.end + 1
    }

    private func commit(_ session: UploadSession, token: String, request: SandboxRequest) throws -> SandboxResponse {
        guard let drive = try store.drive(id: session.driveID) else { throw notFound() }
        // A name conflict leaves the session open until it expires, as the service does.
        let response = try commit(staging: session.staging, size: session.total ?? 0, target: session.target, behaviour: session.behaviour,
                                  fileSystemInfo: session.fileSystemInfo, drive: drive, request: request)
        uploads.close(token)
        return response
    }

    /// Makes the staged bytes the content of the target: a new file (201) or a new version of one (200).
    private func commit(staging: String, size: Int64, target: UploadTarget, behaviour: String, fileSystemInfo: [String: String],
                        drive: DriveRow, request: SandboxRequest) throws -> SandboxResponse {
        if !FileManager.default.fileExists(atPath: staging) { FileManager.default.createFile(atPath: staging, contents: nil) }
        let times = (created: fileSystemInfo["createdDateTime"].flatMap(GraphTime.parse).map(GraphTime.format),
                     modified: fileSystemInfo["lastModifiedDateTime"].flatMap(GraphTime.parse).map(GraphTime.format))
        let existing: ItemRow?
        let parent: ItemRow
        let name: String
        switch target {
        case .existing(let item):
            guard let current = try store.item(id: item.id), !current.deleted else { throw notFound() }
            existing = current
            parent = try store.item(id: current.parentId ?? "") ?? current
            name = current.name
        case .new(let folder, let wanted):
            parent = folder
            let claim = try claimName(wanted, in: folder.id, behaviour: behaviour)
            name = claim.name
            existing = claim.replacing  // checkTarget made sure it is a file
        }
        var size = size
        if options.rewriteOfficeFiles, OfficeRewrite.applies(to: name),
           OfficeRewrite.promoteProperties(fileAt: staging, version: (existing?.contentVersion ?? 0) + 1) {
            // As SharePoint does: the stored document is not the one sent.
            size = (try FileManager.default.attributesOfItem(atPath: staging)[.size] as? Int64) ?? size
            stats.increment("graph.upload.rewritten")
        }
        let hash = try QuickXorHash.hash(fileAt: staging)
        let saved = try store.storeUpload(staging: staging, size: size, hash: hash, over: existing, parent: parent, name: name,
                                          fsCreated: times.created, fsModified: times.modified, by: "crmfs sandbox app")
        return .json(existing == nil ? 201 : 200, try itemJSON(saved, drive: drive, parentPath: nil, query: ItemQuery(request: request), inDelta: false))
    }
}

/// `bytes START-END/TOTAL`.
struct ContentRange {
    var start: Int64, end: Int64, total: Int64

    init?(_ header: String) {
        guard header.hasPrefix("bytes ") else { return nil }
        let parts = header.dropFirst(6).split(separator: "/")
        guard parts.count == 2, let total = Int64(parts[1]) else { return nil }
        let bounds = parts[0].split(separator: "-")
        guard bounds.count == 2, let start = Int64(bounds[0]), let end = Int64(bounds[1]), start <= end, end < total else { return nil }
        (self.start, self.end, self.total) = (start, end, total)
    }
}

/// One resumable upload: where it goes, what has arrived (in a staging file), when it expires.
final class UploadSession: @unchecked Sendable {
    let target: UploadTarget
    let driveID: String
    let behaviour: String
    let fileSystemInfo: [String: String]
    let deferCommit: Bool
    let staging: String
    let lock = NSLock()
    var expires: Date
    var total: Int64?
    var received: Int64 = 0

    init(target: UploadTarget, driveID: String, behaviour: String, fileSystemInfo: [String: String], deferCommit: Bool, staging: String, expires: Date) {
        self.target = target
        self.driveID = driveID
        self.behaviour = behaviour
        self.fileSystemInfo = fileSystemInfo
        self.deferCommit = deferCommit
        self.staging = staging
        self.expires = expires
    }

    var status: [String: Any] {
        ["expirationDateTime": GraphTime.formatPrecise(expires), "nextExpectedRanges": ["\(received)-"]]
    }
}

/// Open upload sessions by the opaque token in their URL.
final class UploadSessions: @unchecked Sendable {
    static let path = "/_api/v2.0/uploadSession"
    private let lock = NSLock()
    private var sessions: [String: UploadSession] = [:]

    func open(_ session: UploadSession) -> String {
        let token = SandboxCredentials.token(48)
        lock.withLock { sessions[token] = session }
        return token
    }

    /// A live session; an expired one is gone (404), as the service cleans it up.
    func session(_ token: String) -> UploadSession? {
        lock.withLock {
            guard let session = sessions[token] else { return nil }
            guard session.expires > Date() else {
                sessions[token] = nil
                unlink(session.staging)
                return nil
            }
            return session
        }
    }

    func close(_ token: String) { lock.withLock { _ = sessions.removeValue(forKey: token) } }

    func expireAll() { lock.withLock { for session in sessions.values { session.expires = .distantPast } } }
}
