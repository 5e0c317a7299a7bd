import Foundation
import HTTP
import SharePointCosts

/// Microsoft Graph for SharePoint document libraries: the read side crmfs uses.
/// URLs the service hands out (next, delta and download links) are followed exactly as given.
public final class GraphClient: Sendable {
    /// `https://graph.microsoft.com/v1.0`, or the sandbox's.
    public let endpoint: String
    let http: HTTPClient
    let auth: any AccessTokenProvider

    /// The `$select` crmfs asks for on items, so listings carry everything `stat` needs.
    public static let itemSelect = "id,name,size,eTag,cTag,file,folder,root,deleted,parentReference,fileSystemInfo,createdDateTime,lastModifiedDateTime,webUrl"

    /// Keeps requests inside the tenant's resource-unit budget; nil sends them as they come.
    public let pacer: ResourcePacer?

    public init(endpoint: String, http: HTTPClient, auth: any AccessTokenProvider, pacer: ResourcePacer? = nil) {
        self.endpoint = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
        self.http = http
        self.auth = auth
        self.pacer = pacer
    }

    // MARK: Sites, drives, lists

    /// `GET /sites/{hostname}:/{server-relative-path}`, e.g. `contoso.sharepoint.com`, `/sites/Sales`.
    public func site(hostname: String, path: String) async throws -> Site {
        try await get("\(endpoint)/sites/\(GraphPath.siteAddress(hostname: hostname, path: path).dropLast())")
    }

    public func drives(siteID: String) async throws -> [Drive] {
        try await collect("\(endpoint)/sites/\(siteID)/drives")
    }

    public func list(driveID: String) async throws -> ListInfo {
        try await get("\(endpoint)/drives/\(GraphPath.segment(driveID))/list")
    }

    public func columns(siteID: String, listID: String) async throws -> [ColumnDefinition] {
        try await collect("\(endpoint)/sites/\(siteID)/lists/\(GraphPath.segment(listID))/columns")
    }

    // MARK: Items

    public func item(driveID: String, itemID: String, expandFields: Bool = false) async throws -> DriveItem {
        try await get("\(endpoint)/drives/\(GraphPath.segment(driveID))/items/\(GraphPath.segment(itemID))?\(itemQuery(expandFields: expandFields, includeDownloadURL: false))")
    }

    /// An item by its path below the drive root (`Accounts/Acme Corp/Contracts`).
    public func item(driveID: String, path: String, expandFields: Bool = false) async throws -> DriveItem {
        try await get("\(itemURL(driveID: driveID, path: path))?\(itemQuery(expandFields: expandFields, includeDownloadURL: false))")
    }

    /// Pages of an item's children, following `@odata.nextLink` as given.
    public func childrenPages(driveID: String, itemID: String, pageSize: Int = 200, expandFields: Bool = false) -> AsyncThrowingStream<[DriveItem], Error> {
        // Each document's download URL comes along at no cost (`DownloadLinks`): reading one of them next
        // needs no request for it.
        let first = "\(endpoint)/drives/\(GraphPath.segment(driveID))/items/\(GraphPath.segment(itemID))/children?\(itemQuery(expandFields: expandFields, includeDownloadURL: true))&$top=\(pageSize)"
        return pages(startingAt: first, as: DriveItem.self)
    }

    public func children(driveID: String, itemID: String, pageSize: Int = 200, expandFields: Bool = false) async throws -> [DriveItem] {
        var all: [DriveItem] = []
        for try await page in childrenPages(driveID: driveID, itemID: itemID, pageSize: pageSize, expandFields: expandFields) {
            all += page
        }
        return all
    }

    /// A document's versions, newest first, the current one included.
    public func versions(driveID: String, itemID: String) async throws -> [DriveItemVersion] {
        try await collect("\(endpoint)/drives/\(GraphPath.segment(driveID))/items/\(GraphPath.segment(itemID))/versions")
    }

    public func fields(driveID: String, itemID: String) async throws -> [String: JSONValue] {
        try await get("\(endpoint)/drives/\(GraphPath.segment(driveID))/items/\(GraphPath.segment(itemID))/listItem/fields")
    }

    // MARK: Content

    /// Downloads `range` (inclusive) of a file, or all of it. `/content` answers 302 to a
    /// pre-authenticated URL, fetched without Authorization; a server that ignores the range
    /// and sends the whole file is handled by keeping only the window asked for.
    public func download(driveID: String, itemID: String, range: ClosedRange<Int64>? = nil) async throws -> Download {
        try await download(location: try await downloadLocation(driveID: driveID, itemID: itemID), range: range)
    }

    /// Downloads from a pre-authenticated URL got from `downloadLocation`, which may be reused
    /// for a short while (read-ahead of one file); an expired one answers 401/403/404.
    public func download(location: String, range: ClosedRange<Int64>?) async throws -> Download {
        let window = RangeWindow(range: range)
        var headers = HTTPHeaders()
        if let range { headers["Range"] = "bytes=\(range.lowerBound)-\(range.upperBound)" }
        let request = HTTPRequest(url: location, headers: headers)
        let response = try await send(request, auth: nil, sink: .stream { status, offset, bytes in window.consume(status: status, offset: offset, bytes) })
        return try window.result(response: response, request: request)
    }

    /// Downloads `range` of a pre-authenticated URL into `descriptor`, its first byte at the file's
    /// offset 0, streaming: a block fetch goes straight into its cache file. The result's `data` is empty.
    public func download(location: String, range: ClosedRange<Int64>, into descriptor: Int32) async throws -> Download {
        let window = RangeWindow(range: range, destination: .file(descriptor: descriptor))
        let request = HTTPRequest(url: location, headers: ["Range": "bytes=\(range.lowerBound)-\(range.upperBound)"])
        let response = try await send(request, auth: nil, sink: .stream { status, offset, bytes in window.consume(status: status, offset: offset, bytes) })
        return try window.result(response: response, request: request)
    }

    /// Downloads a whole file into an open descriptor at `offset`, streaming: memory stays flat whatever its size.
    public func download(driveID: String, itemID: String, to descriptor: Int32, offset: Int64 = 0) async throws -> Int64 {
        let location = try await downloadLocation(driveID: driveID, itemID: itemID)
        let request = HTTPRequest(url: location)
        let response = try await send(request, auth: nil, sink: .file(descriptor: descriptor, offset: offset))
        return response.bytesReceived
    }

    /// Listings carry each file's pre-authenticated URL when it is selected: one request for a folder's
    /// worth (its first `limit` children), with what a read of each needs.
    public func folderDocuments(driveID: String, folderID: String, limit: Int) async throws -> [ListedDocument] {
        let url = "\(endpoint)/drives/\(GraphPath.segment(driveID))/items/\(GraphPath.segment(folderID))/children?$select=id,name,size,eTag,file,@microsoft.graph.downloadUrl&$top=\(limit)"
        let page: Collection<DriveItem> = try await get(url)
        return page.value.compactMap(ListedDocument.init)
    }

    /// The pre-authenticated URL behind `/content`. Short-lived: fetched afresh for each download.
    public func downloadLocation(driveID: String, itemID: String) async throws -> String {
        let request = HTTPRequest(url: "\(endpoint)/drives/\(GraphPath.segment(driveID))/items/\(GraphPath.segment(itemID))/content")
        let response = try await send(request, auth: auth)
        guard response.status == 302, let location = response.headers["Location"] else {
            throw GraphError(response: HTTPResponse(status: response.status, headers: response.headers, body: response.body), request: request)
        }
        return location
    }

    // MARK: Delta

    /// One page of changes. Pass nil to start a full enumeration, or the last page's
    /// `nextLink`/`deltaLink` exactly as given. A 410 throws a `GraphError` whose `location` restarts it.
    public func delta(driveID: String, link: String? = nil, pageSize: Int = 200) async throws -> DeltaPage {
        let url = link ?? "\(endpoint)/drives/\(GraphPath.segment(driveID))/root/delta?$select=\(Self.itemSelect)&$top=\(pageSize)"
        let page: Collection<DriveItem> = try await get(url)
        return DeltaPage(items: page.value, nextLink: page.nextLink, deltaLink: page.deltaLink)
    }

    /// A delta link that starts from now, without enumerating what exists.
    public func latestDeltaLink(driveID: String) async throws -> String {
        let page: Collection<DriveItem> = try await get("\(endpoint)/drives/\(GraphPath.segment(driveID))/root/delta?token=latest")
        guard let link = page.deltaLink else { throw GraphError(response: HTTPResponse(status: 500), request: HTTPRequest(url: "delta")) }
        return link
    }

    // MARK: Plumbing

    public func itemURL(driveID: String, path: String) -> String {
        let trimmed = path.split(separator: "/").map { GraphPath.escape(String($0)) }.joined(separator: "/")
        return trimmed.isEmpty ? "\(endpoint)/drives/\(GraphPath.segment(driveID))/root" : "\(endpoint)/drives/\(GraphPath.segment(driveID))/root:/\(trimmed):"
    }

    private func itemQuery(expandFields: Bool, includeDownloadURL: Bool) -> String {
        var select = Self.itemSelect
        if includeDownloadURL { select += ",@microsoft.graph.downloadUrl" }
        var query = "$select=\(select)"
        if expandFields { query += "&$expand=listItem($expand=fields)" }
        return query
    }

    func get<T: Decodable>(_ url: String) async throws -> T {
        let request = HTTPRequest(url: url, headers: ["Accept": "application/json"])
        let response = try await send(request, auth: auth)
        guard response.status == 200 else { throw GraphError(response: response, request: request) }
        return try decode(response, request: request)
    }

    /// The response's JSON as `T`; a body that is not one is a 502 `invalidResponse`.
    func decode<T: Decodable>(_ response: HTTPResponse, request: HTTPRequest) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: response.body)
        } catch {
            throw GraphError(response: HTTPResponse(status: 502, body: Data(#"{"error":{"code":"invalidResponse","message":"\#(error)"}}"#.utf8)), request: request)
        }
    }

    private func collect<T: Decodable & Sendable>(_ url: String) async throws -> [T] {
        var all: [T] = []
        for try await page in pages(startingAt: url, as: T.self) { all += page }
        return all
    }

    private func pages<T: Decodable & Sendable>(startingAt url: String, as: T.Type = T.self) -> AsyncThrowingStream<[T], Error> {
        AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    var next: String? = url
                    while let current = next {
                        let page: Collection<T> = try await get(current)
                        continuation.yield(page.value)
                        next = page.nextLink
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Sends through the pacer and the shared retry rules, turning exhausted retries into the service's error.
    func send(_ request: HTTPRequest, auth: (any AccessTokenProvider)?, sink: ResponseSink = .memory(limit: ResponseSink.defaultMemoryLimit)) async throws -> HTTPResponse {
        do {
            var observe: (@Sendable (HTTPResponse) -> Void)?
            if let pacer {
                try await pacer.admit(cost: ResourceUnits.cost(method: request.method, url: request.url))
                observe = { pacer.observe($0) }
            }
            let response: HTTPResponse
            do {
                response = try await http.send(request, auth: auth, sink: sink, observe: observe)
            } catch {
                ServiceMetrics.request(service: "graph", status: (error as? HTTPError).flatMap(\.lastStatus))
                throw error
            }
            ServiceMetrics.request(service: "graph", status: response.status)
            if !response.isSuccess && response.status != 302 && response.status != 304 {
                throw GraphError(response: response, request: request)
            }
            return response
        } catch HTTPError.retriesExhausted(_, let attempts, _, let response?) {
            throw GraphError(response: response, request: request, attempts: attempts)
        }
    }
}

public enum GraphPath {
    private static let allowed: CharacterSet = {
        var set = CharacterSet()
        set.insert(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        return set
    }()

    /// Percent-encodes one path segment (RFC 3986): space is %20, `#` %23, `%` %25.
    static func escape(_ segment: String) -> String {
        segment.addingPercentEncoding(withAllowedCharacters: allowed) ?? segment
    }

    /// The characters of Graph's drive and drive item ids: letters, digits, `!` (`b!…` drive ids, OneDrive's
    /// `…!123` item ids), `-` and `_` (base64url).
    private static let idCharacters: Set<UInt8> = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!-_".utf8)

    /// Whether `id` has the shape of a Graph drive or drive item id (1 to 256 of `idCharacters`): nothing
    /// else read from outside (the fleet's change log) goes into a request.
    public static func isID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 256 && id.utf8.allSatisfy { idCharacters.contains($0) }
    }

    /// An id (drive, item) as one path segment: anything but unreserved characters and `!` percent-encoded
    /// (`/` is %2F, `?` %3F, `:` %3A), and the dot segments `.` and `..` written out as %2E, so an id
    /// addresses one item and never another path.
    public static func segment(_ id: String) -> String {
        if !id.isEmpty, id.allSatisfy({ $0 == "." }), id.count <= 2 { return String(repeating: "%2E", count: id.count) }
        return id.addingPercentEncoding(withAllowedCharacters: idSegment) ?? id
    }

    private static let idSegment: CharacterSet = {
        var set = GraphPath.allowed
        set.insert(charactersIn: "!")
        return set
    }()

    /// A site addressed by its host and server-relative path, `host:/sites/Sales:`: Graph takes it
    /// wherever a site id goes, so what hangs off the site (`/drives`) is one request away.
    public static func siteAddress(hostname: String, path: String) -> String {
        "\(hostname):/\(path.split(separator: "/").map { escape(String($0)) }.joined(separator: "/")):"
    }
}

/// Collects the bytes of one requested window from a response that may be 206 (just the window)
/// or 200 (the whole file, range ignored), in memory or straight into a file (the window's first byte
/// at the file's offset 0). Writes are positional, so a retried response overwrites what it sent before.
final class RangeWindow: @unchecked Sendable {
    enum Destination {
        case memory
        case file(descriptor: Int32)
    }

    private let start: Int64
    private let end: Int64?
    private let destination: Destination
    private var buffer = Data()
    private var filled: Int64 = 0
    private var writeError: Int32 = 0
    private let lock = NSLock()

    init(range: ClosedRange<Int64>?, destination: Destination = .memory) {
        start = range?.lowerBound ?? 0
        end = range?.upperBound
        self.destination = destination
        // A known window is reserved once: no growing and copying while bytes arrive.
        if case .memory = destination, let range, range.count <= 256 << 20 { buffer.reserveCapacity(Int(range.count)) }
    }

    func consume(status: Int, offset: Int64, _ bytes: UnsafeRawBufferPointer) -> Bool {
        lock.withLock {
            let absolute = (status == 206 ? start : 0) + offset
            let pieceEnd = absolute + Int64(bytes.count)  // exclusive
            let windowEnd = end.map { $0 + 1 } ?? Int64.max
            let from = max(absolute, start), to = min(pieceEnd, windowEnd)
            if from < to {
                let target = Int(from - start)
                let piece = UnsafeRawBufferPointer(rebasing: bytes[Int(from - absolute)..<Int(to - absolute)])
                guard write(piece, at: target) else { return false }
                filled = max(filled, Int64(target + piece.count))
            }
            return pieceEnd < windowEnd
        }
    }

    private func write(_ piece: UnsafeRawBufferPointer, at target: Int) -> Bool {
        switch destination {
        case .memory:
            if target > buffer.count { buffer.append(Data(count: target - buffer.count)) }
            let overlap = min(piece.count, buffer.count - target)
            if overlap > 0 {
                buffer.replaceSubrange(target..<target + overlap, with: UnsafeRawBufferPointer(rebasing: piece[..<overlap]))
            }
            if overlap < piece.count { buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: piece[overlap...])) }
            return true
        case .file(let descriptor):
            do { try pwriteAll(descriptor, piece, at: off_t(target)) } catch {
                writeError = (error as? POSIXError)?.code.rawValue ?? EIO
                return false
            }
            return true
        }
    }

    func result(response: HTTPResponse, request: HTTPRequest) throws -> Download {
        var total: Int64?
        if response.status == 206, let contentRange = response.headers["Content-Range"] {
            // bytes START-END/TOTAL
            let parts = contentRange.replacingOccurrences(of: "bytes ", with: "").split(separator: "/")
            if let first = parts.first?.split(separator: "-").first, Int64(first) != start {
                throw GraphError(response: HTTPResponse(status: 502, body: Data(#"{"error":{"code":"invalidRange","message":"server sent range \#(contentRange) for a request at \#(start)"}}"#.utf8)), request: request)
            }
            if parts.count == 2 { total = Int64(parts[1]) }
        } else if response.status == 200, end == nil || response.bytesReceived < (end! + 1) {
            total = response.bytesReceived
        }
        let (data, count, failure) = lock.withLock { (filled == buffer.count ? buffer : Data(buffer.prefix(Int(filled))), filled, writeError) }
        if failure != 0 { throw POSIXError(POSIXErrorCode(rawValue: failure) ?? .EIO) }
        return Download(data: data, byteCount: count, eTag: response.headers["ETag"], totalSize: total)
    }
}
