import Foundation
import HTTP

/// What the service does when the name is taken (`@microsoft.graph.conflictBehavior`).
public enum ConflictBehavior: String, Sendable {
    case fail, replace, rename
}

/// Where an upload goes: a new name in a folder (a taken name is a conflict), or over an item by id.
public enum UploadDestination: Sendable {
    case child(parentID: String, name: String)
    case item(id: String)
}

public struct UploadOptions: Sendable {
    public var conflictBehavior: ConflictBehavior
    /// The eTag the local copy was based on: the upload fails with 412 if the document changed since.
    public var ifMatch: String?
    /// The file's times, carried by the upload itself (a later PATCH would make another version).
    public var modified: Date?
    public var created: Date?
    /// Bytes per fragment; rounded down to a multiple of 320 KiB, at least one unit.
    public var fragmentSize: Int
    /// How many times a lost or expired session is started over before giving up.
    public var sessionRestarts: Int
    /// Answers in a row that accept a fragment without moving `nextExpectedRanges` before the upload
    /// stops (to be retried later): a service that never advances must not keep the loop going for ever.
    public var stalledFragments: Int
    /// The longest a whole session upload may take; nil gives 10 minutes plus 4 s per MiB (256 KiB/s).
    public var timeLimit: Duration?
    /// Told how many bytes the service holds: as a session's sending starts, and after each fragment.
    public var progress: (@Sendable (Int64) -> Void)?

    public init(conflictBehavior: ConflictBehavior = .replace, ifMatch: String? = nil, modified: Date? = nil, created: Date? = nil,
                fragmentSize: Int = 10 << 20, sessionRestarts: Int = 3, stalledFragments: Int = 3, timeLimit: Duration? = nil) {
        self.conflictBehavior = conflictBehavior
        self.ifMatch = ifMatch
        self.modified = modified
        self.created = created
        self.fragmentSize = fragmentSize
        self.sessionRestarts = sessionRestarts
        self.stalledFragments = stalledFragments
        self.timeLimit = timeLimit
    }

    func timeLimit(forSize size: Int64) -> Duration { timeLimit ?? .seconds(600 + size / (256 << 10)) }

    static let fragmentUnit = 320 * 1024
    var alignedFragmentSize: Int { max(Self.fragmentUnit, fragmentSize / Self.fragmentUnit * Self.fragmentUnit) }
}

/// Graph's writes: folders, rename/move/times, delete, simple and resumable uploads (docs/wire-facts.md G6, G7).
extension GraphClient {
    public func createFolder(driveID: String, parentID: String, name: String, conflictBehavior: ConflictBehavior = .fail) async throws -> DriveItem {
        try await sendJSON("POST", "\(endpoint)/drives/\(GraphPath.segment(driveID))/items/\(GraphPath.segment(parentID))/children",
                           body: ["name": .string(name), "folder": [:], "@microsoft.graph.conflictBehavior": .string(conflictBehavior.rawValue)])
    }

    /// Renames, moves (within the drive) and/or sets the file's times, guarded by `ifMatch` when given.
    public func update(driveID: String, itemID: String, name: String? = nil, parentID: String? = nil, modified: Date? = nil,
                       ifMatch: String? = nil, conflictBehavior: ConflictBehavior? = nil) async throws -> DriveItem {
        var body: [String: JSONValue] = [:]
        if let name { body["name"] = .string(name) }
        if let parentID { body["parentReference"] = ["id": .string(parentID)] }
        if let modified { body["fileSystemInfo"] = ["lastModifiedDateTime": .string(modified.formatted(.iso8601))] }
        if let conflictBehavior { body["@microsoft.graph.conflictBehavior"] = .string(conflictBehavior.rawValue) }
        return try await sendJSON("PATCH", "\(endpoint)/drives/\(GraphPath.segment(driveID))/items/\(GraphPath.segment(itemID))", body: body, ifMatch: ifMatch)
    }

    /// Sets SharePoint column values of an item (`user.sp.*`); answers the whole fieldValueSet. Only the
    /// columns given change; `.null` clears one. A value the column refuses is a 400 GraphError.
    public func updateFields(driveID: String, itemID: String, fields: [String: JSONValue], ifMatch: String? = nil) async throws -> [String: JSONValue] {
        try await sendJSON("PATCH", "\(endpoint)/drives/\(GraphPath.segment(driveID))/items/\(GraphPath.segment(itemID))/listItem/fields", body: fields, ifMatch: ifMatch)
    }

    /// Moves an item to the recycle bin. A 404 means it is already gone, which is what was wanted.
    public func delete(driveID: String, itemID: String, ifMatch: String? = nil) async throws {
        var headers: HTTPHeaders = [:]
        if let ifMatch { headers["If-Match"] = ifMatch }
        let request = HTTPRequest(method: "DELETE", url: "\(endpoint)/drives/\(GraphPath.segment(driveID))/items/\(GraphPath.segment(itemID))", headers: headers)
        do {
            _ = try await send(request, auth: auth)
        } catch let error as GraphError where error.isNotFound {
            return
        }
    }

    /// One PUT of a whole small file's bytes. It cannot carry the file's times: use a session for those.
    public func simpleUpload(driveID: String, to destination: UploadDestination, file path: String, size: Int64, options: UploadOptions) async throws -> DriveItem {
        var headers: HTTPHeaders = ["Content-Type": "application/octet-stream"]
        if let ifMatch = options.ifMatch { headers["If-Match"] = ifMatch }
        let url = switch destination {
        case .child(let parentID, let name):
            "\(endpoint)/drives/\(GraphPath.segment(driveID))/items/\(GraphPath.segment(parentID)):/\(GraphPath.escape(name)):/content?@microsoft.graph.conflictBehavior=\(options.conflictBehavior.rawValue)"
        case .item(let id):
            "\(endpoint)/drives/\(GraphPath.segment(driveID))/items/\(GraphPath.segment(id))/content"
        }
        let request = HTTPRequest(method: "PUT", url: url, headers: headers, body: .file(path: path, offset: 0, length: size))
        return try decode(try await send(request, auth: auth), request: request)
    }

    /// A resumable upload of `size` bytes of a file: a session whose fragments stream from the file,
    /// resumed from the service's `nextExpectedRanges` after a failed fragment, started over when the
    /// session is lost or expired. The upload URL is pre-authenticated: no Authorization goes to it.
    ///
    /// `resuming` is the URL of a session an earlier attempt (perhaps an earlier process) opened: the
    /// upload goes on from the first byte the service is missing. `onSession` hears each new session's
    /// URL, so the caller can record it for such a resume. `beforeLastFragment` runs before the fragment
    /// that completes the file is sent (the caller may still be making the file durable).
    public func sessionUpload(driveID: String, to destination: UploadDestination, file path: String, size: Int64, options: UploadOptions,
                              resuming: String? = nil, onSession: @Sendable (String) throws -> Void = { _ in },
                              beforeLastFragment: @Sendable () async throws -> Void = {}) async throws -> DriveItem {
        let deadline = ContinuousClock.now + options.timeLimit(forSize: size)
        var restarts = 0
        var session = resuming
        while true {
            let url: String
            var offset: Int64 = 0
            if let existing = session {
                url = existing
                do {
                    offset = try Self.nextExpected(in: try await send(HTTPRequest(url: existing), auth: nil).body, size: size) ?? 0
                } catch let error as GraphError where error.isNotFound {
                    session = nil  // expired or lost: a new one
                    continue
                }
            } else {
                url = try await createUploadSession(driveID: driveID, destination: destination, size: size, options: options)
                try onSession(url)
            }
            do {
                return try await sendFragments(to: url, from: offset, file: path, size: size, options: options,
                                               deadline: deadline, beforeLastFragment: beforeLastFragment)
            } catch let error as GraphError where error.isNotFound && restarts < options.sessionRestarts {
                restarts += 1  // the session expired or was lost: start over in a new one
                session = nil
            }
        }
    }

    private func createUploadSession(driveID: String, destination: UploadDestination, size: Int64, options: UploadOptions) async throws -> String {
        var item: [String: JSONValue] = ["@microsoft.graph.conflictBehavior": .string(options.conflictBehavior.rawValue), "fileSize": .number(Double(size))]
        var times: [String: JSONValue] = [:]
        if let modified = options.modified { times["lastModifiedDateTime"] = .string(modified.formatted(.iso8601)) }
        if let created = options.created { times["createdDateTime"] = .string(created.formatted(.iso8601)) }
        if !times.isEmpty { item["fileSystemInfo"] = .object(times) }
        let url = switch destination {
        case .child(let parentID, let name): "\(endpoint)/drives/\(GraphPath.segment(driveID))/items/\(GraphPath.segment(parentID)):/\(GraphPath.escape(name)):/createUploadSession"
        case .item(let id): "\(endpoint)/drives/\(GraphPath.segment(driveID))/items/\(GraphPath.segment(id))/createUploadSession"
        }
        let session: UploadSessionInfo = try await sendJSON("POST", url, body: ["item": .object(item)], ifMatch: options.ifMatch)
        return session.uploadUrl
    }

    private func sendFragments(to uploadURL: String, from start: Int64, file path: String, size: Int64, options: UploadOptions,
                               deadline: ContinuousClock.Instant, beforeLastFragment: @Sendable () async throws -> Void) async throws -> DriveItem {
        var offset = start
        var resumes = 0
        var stalled = 0
        options.progress?(offset)
        while true {
            guard ContinuousClock.now < deadline else {
                throw UploadStalled(request: "PUT upload session", reason: "the upload took longer than its limit of \(options.timeLimit(forSize: size))")
            }
            let length = min(Int64(options.alignedFragmentSize), size - offset)
            if offset + length == size { try await beforeLastFragment() }
            let request = HTTPRequest(method: "PUT", url: uploadURL,
                                      headers: ["Content-Range": "bytes \(offset)-\(offset + length - 1)/\(size)"],
                                      body: .file(path: path, offset: offset, length: length))
            do {
                let response = try await send(request, auth: nil)
                if response.status == 200 || response.status == 201 {
                    options.progress?(size)
                    return try decode(response, request: request)
                }
                let next = try Self.nextExpected(in: response.body, size: size) ?? offset + length
                options.progress?(next)
                stalled = next > offset ? 0 : stalled + 1
                if stalled >= options.stalledFragments {
                    throw UploadStalled(request: request.logDescription, reason: "\(stalled) fragments in a row were accepted without the session moving past byte \(offset)")
                }
                offset = next
            } catch let error as GraphError where !error.isNotFound && error.status != 409 && error.status != 412 && resumes < 5 {
                // A fragment failed (overlap after a retried send, a server error): ask where to go on from.
                resumes += 1
                let status = try await send(HTTPRequest(url: uploadURL), auth: nil)
                guard let next = try Self.nextExpected(in: status.body, size: size) else { throw error }
                offset = next
            }
        }
    }

    /// The first byte the session still wants, from `nextExpectedRanges`; nil when it names none within the
    /// file (0...size): a start past the end would make a fragment of negative length.
    static func nextExpected(in body: Data, size: Int64) throws -> Int64? {
        let status = try JSONDecoder().decode(UploadSessionStatus.self, from: body)
        guard let first = status.nextExpectedRanges?.first, let start = first.split(separator: "-").first else { return nil }
        return WireNumber.int64(String(start), in: 0...Int64.max).flatMap { $0 <= size ? $0 : nil }
    }

    /// A JSON request answered by JSON, guarded by `ifMatch` when given.
    private func sendJSON<T: Decodable>(_ method: String, _ url: String, body: [String: JSONValue], ifMatch: String? = nil) async throws -> T {
        var headers: HTTPHeaders = ["Content-Type": "application/json", "Accept": "application/json"]
        if let ifMatch { headers["If-Match"] = ifMatch }
        let request = HTTPRequest(method: method, url: url, headers: headers, body: .bytes(try JSONEncoder().encode(body)),
                                  isIdempotent: method != "POST")
        return try decode(try await send(request, auth: auth), request: request)
    }
}

/// An upload session that does not get anywhere: it is abandoned for now, and the upload retried later.
public struct UploadStalled: Error, CustomStringConvertible, Sendable {
    public var request: String
    public var reason: String
    public var description: String { "\(request): upload stopped: \(reason)" }
}

struct UploadSessionInfo: Decodable {
    var uploadUrl: String
}

struct UploadSessionStatus: Decodable {
    var nextExpectedRanges: [String]?
}
