import CCurl
import Foundation
import Logging

public struct TransportOptions: Sendable {
    /// Give up connecting after this long.
    public var connectTimeoutMilliseconds = 10_000
    /// A transfer slower than `lowSpeedBytesPerSecond` for `lowSpeedSeconds` is aborted (and retried if idempotent).
    public var lowSpeedBytesPerSecond = 1
    public var lowSpeedSeconds = 60
    /// Connections open to one host at once; further requests queue inside libcurl.
    public var maxConnectionsPerHost = 8
    /// SharePoint prioritises decorated traffic.
    public var userAgent = "NONISV|crmfs|crmfs/0.1"
    /// Certificate authorities (PEM files) to trust instead of the system's, by host: a private
    /// service's own CA (`ca_file` in mount.conf).
    public var certificateAuthorities: [String: String] = [:]

    public init() {}
}

/// An async HTTP transport over one libcurl multi handle, driven by one thread.
///
/// All transfers share the multi handle's connection pool, so a thousand requests to one host
/// reuse a handful of connections (HTTP/2 multiplexed where the server offers it).
/// Redirects are never followed here: the caller decides what to do with a 3xx.
public final class CurlTransport: @unchecked Sendable {
    private static let globalInit: Void = { curl_global_init(Int(CURL_GLOBAL_ALL)) }()

    private let multi: UnsafeMutableRawPointer
    private let options: TransportOptions
    private let lock = NSLock()
    // Guarded by `lock`:
    private var incoming: [Transfer] = []
    private var cancelledIDs: Set<UInt64> = []
    private var stopping = false
    private var cleanedUp = false
    private var nextID: UInt64 = 0
    // Owned by the worker thread:
    private var active: [Int: Transfer] = [:]
    private let stopped = DispatchSemaphore(value: 0)

    public init(options: TransportOptions = TransportOptions()) {
        _ = Self.globalInit
        self.options = options
        multi = curl_multi_init()
        _ = crmfs_multi_setopt_long(multi, CURLMOPT_MAX_HOST_CONNECTIONS, options.maxConnectionsPerHost)
        _ = crmfs_multi_setopt_long(multi, CURLMOPT_PIPELINING, Int(CURLPIPE_MULTIPLEX))
        let thread = Thread { [self] in self.run() }
        thread.name = "crmfs-curl"
        thread.start()
    }

    /// Stops the worker once the transfers under way have finished, and closes its connections. Once
    /// only: a later call does nothing, and a request after it fails at once.
    public func shutdown() {
        let first = lock.withLock { () -> Bool in
            defer { stopping = true }
            return !stopping
        }
        guard first else { return }
        curl_multi_wakeup(multi)
        stopped.wait()
        // Under the lock: a cancellation arriving now must not wake a handle that is gone.
        lock.withLock {
            cleanedUp = true
            curl_multi_cleanup(multi)
        }
    }

    /// Sends one request and waits for the whole response. Cancelling the calling task aborts the transfer.
    public func perform(_ request: HTTPRequest, sink: ResponseSink = .memory(limit: ResponseSink.defaultMemoryLimit)) async throws -> HTTPResponse {
        let id = lock.withLock { nextID += 1; return nextID }
        let transfer = Transfer(id: id, request: request, sink: sink)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                if Task.isCancelled { continuation.resume(throwing: CancellationError()); return }
                transfer.continuation = continuation
                // Woken under the lock: once the worker has ended, `shutdown` frees the handle.
                let accepted = lock.withLock { () -> Bool in
                    guard !stopping else { return false }
                    incoming.append(transfer)
                    curl_multi_wakeup(multi)
                    return true
                }
                guard accepted else {
                    transfer.finish(.failure(HTTPError.transport(code: -1, message: "the transport was shut down", request: request.logDescription)))
                    return
                }
            }
        } onCancel: {
            lock.withLock {
                cancelledIDs.insert(id)
                if !cleanedUp { curl_multi_wakeup(multi) }
            }
        }
    }

    // MARK: Worker thread

    private func run() {
        var running: Int32 = 0
        while true {
            // A cancellation can arrive before its transfer does: ids stay in cancelledIDs until matched.
            let (newTransfers, cancelled, shouldStop) = lock.withLock {
                defer { incoming.removeAll() }
                return (incoming, cancelledIDs, stopping)
            }
            for transfer in newTransfers {
                if cancelled.contains(transfer.id) { cancel(transfer); continue }
                start(transfer)
            }
            for (key, transfer) in active where cancelled.contains(transfer.id) {
                curl_multi_remove_handle(multi, transfer.easy)
                active[key] = nil
                cancel(transfer)
            }
            curl_multi_perform(multi, &running)
            var left: Int32 = 0
            while let message = curl_multi_info_read(multi, &left) {
                guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
                let result = crmfs_msg_result(message)
                curl_multi_remove_handle(multi, easy)
                if let transfer = active.removeValue(forKey: Int(bitPattern: easy)) {
                    lock.withLock { _ = cancelledIDs.remove(transfer.id) }
                    transfer.complete(result: result)
                }
            }
            if shouldStop && active.isEmpty { break }
            curl_multi_poll(multi, nil, 0, 1000, nil)
        }
        stopped.signal()
    }

    private func cancel(_ transfer: Transfer) {
        lock.withLock { _ = cancelledIDs.remove(transfer.id) }
        transfer.finish(.failure(CancellationError()))
    }

    private func start(_ transfer: Transfer) {
        do {
            try transfer.configure(options: options)
            active[Int(bitPattern: transfer.easy)] = transfer
            curl_multi_add_handle(multi, transfer.easy)
        } catch {
            transfer.finish(.failure(error))
        }
    }
}

/// One request in flight: the easy handle and everything its callbacks touch.
/// Only the worker thread uses it once it has been queued.
private final class Transfer: @unchecked Sendable {
    let id: UInt64
    let request: HTTPRequest
    let sink: ResponseSink
    var continuation: CheckedContinuation<HTTPResponse, Error>?
    private(set) var easy: UnsafeMutableRawPointer?
    private var headerList: UnsafeMutablePointer<curl_slist>?
    private let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)

    private var status = 0
    private var headers = HTTPHeaders()
    private var body = Data()
    private var bytesReceived: Int64 = 0
    private var sinkError: Error?
    private var stoppedByConsumer = false

    private var uploadPosition: Int64 = 0
    private var uploadDescriptor: Int32 = -1

    init(id: UInt64, request: HTTPRequest, sink: ResponseSink) {
        self.id = id
        self.request = request
        self.sink = sink
        errorBuffer.initialize(to: 0)
    }

    deinit {
        if let easy { curl_easy_cleanup(easy) }
        if let headerList { curl_slist_free_all(headerList) }
        if uploadDescriptor >= 0 { close(uploadDescriptor) }
        errorBuffer.deallocate()
    }

    func configure(options: TransportOptions) throws {
        guard let easy = curl_easy_init() else {
            throw HTTPError.transport(code: -1, message: "curl_easy_init failed", request: request.logDescription)
        }
        self.easy = easy
        // TLS everywhere but loopback: libcurl speaks nothing else, and http only to this machine.
        let url = URLComponents(string: request.url)
        if url?.scheme?.lowercased() != "https", !Loopback.isLoopback(host: url?.host ?? "") {
            throw HTTPError.cleartext(request: request.logDescription)
        }
        if let host = url?.host?.lowercased(), let authority = options.certificateAuthorities[host] {
            _ = crmfs_easy_setopt_string(easy, CURLOPT_CAINFO, authority)
        }
        _ = crmfs_easy_setopt_string(easy, CURLOPT_PROTOCOLS_STR, "https,http")
        _ = crmfs_easy_setopt_string(easy, CURLOPT_REDIR_PROTOCOLS_STR, "https")
        let me = Unmanaged.passUnretained(self).toOpaque()
        _ = crmfs_easy_setopt_string(easy, CURLOPT_URL, request.url)
        _ = crmfs_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
        _ = crmfs_easy_setopt_long(easy, CURLOPT_FOLLOWLOCATION, 0)
        _ = crmfs_easy_setopt_long(easy, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_2TLS))
        _ = crmfs_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, options.connectTimeoutMilliseconds)
        _ = crmfs_easy_setopt_long(easy, CURLOPT_LOW_SPEED_LIMIT, options.lowSpeedBytesPerSecond)
        _ = crmfs_easy_setopt_long(easy, CURLOPT_LOW_SPEED_TIME, options.lowSpeedSeconds)
        _ = crmfs_easy_setopt_long(easy, CURLOPT_TCP_KEEPALIVE, 1)
        // Larger pieces per callback: a 4 MiB block arrives in 16 pieces, not 256.
        _ = crmfs_easy_setopt_long(easy, CURLOPT_BUFFERSIZE, 256 << 10)
        _ = crmfs_easy_setopt_string(easy, CURLOPT_USERAGENT, options.userAgent)
        _ = crmfs_easy_setopt_pointer(easy, CURLOPT_ERRORBUFFER, errorBuffer)

        // Expect: 100-continue would stall every upload for a round trip.
        var list: UnsafeMutablePointer<curl_slist>? = curl_slist_append(nil, "Expect:")
        for (name, value) in request.headers.fields {
            list = curl_slist_append(list, "\(name): \(value)")
        }
        headerList = list
        _ = crmfs_easy_setopt_slist(easy, CURLOPT_HTTPHEADER, list)

        _ = crmfs_easy_setopt_pointer(easy, CURLOPT_HEADERDATA, me)
        _ = crmfs_easy_setopt_header_function(easy) { pointer, size, count, context in
            let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
            transfer.receiveHeaderLine(UnsafeRawBufferPointer(start: pointer, count: size * count))
            return size * count
        }
        _ = crmfs_easy_setopt_pointer(easy, CURLOPT_WRITEDATA, me)
        _ = crmfs_easy_setopt_write_function(easy) { pointer, size, count, context in
            let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
            return transfer.receiveBody(UnsafeRawBufferPointer(start: pointer, count: size * count)) ? size * count : 0
        }

        switch request.method {
        case "GET":
            _ = crmfs_easy_setopt_long(easy, CURLOPT_HTTPGET, 1)
        case "HEAD":
            _ = crmfs_easy_setopt_long(easy, CURLOPT_NOBODY, 1)
        case "DELETE" where request.body.length == 0:
            _ = crmfs_easy_setopt_string(easy, CURLOPT_CUSTOMREQUEST, "DELETE")
        default:
            try prepareUpload()
            _ = crmfs_easy_setopt_long(easy, CURLOPT_UPLOAD, 1)
            // libcurl's largest send buffer: a 10 MiB fragment is read in 5 pieces, not 160.
            _ = crmfs_easy_setopt_long(easy, CURLOPT_UPLOAD_BUFFERSIZE, 2 << 20)
            _ = crmfs_easy_setopt_off(easy, CURLOPT_INFILESIZE_LARGE, curl_off_t(request.body.length))
            _ = crmfs_easy_setopt_string(easy, CURLOPT_CUSTOMREQUEST, request.method)
            _ = crmfs_easy_setopt_pointer(easy, CURLOPT_READDATA, me)
            _ = crmfs_easy_setopt_read_function(easy) { pointer, size, count, context in
                let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
                return transfer.sendBody(into: UnsafeMutableRawBufferPointer(start: pointer, count: size * count))
            }
        }
    }

    private func prepareUpload() throws {
        guard case .file(let path, _, _) = request.body else { return }
        uploadDescriptor = open(path, O_RDONLY | O_CLOEXEC)
        if uploadDescriptor < 0 { throw HTTPError.uploadSource(path: path, errno: errno) }
    }

    // MARK: Callbacks (worker thread)

    private func receiveHeaderLine(_ raw: UnsafeRawBufferPointer) {
        let line = String(decoding: raw, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if line.hasPrefix("HTTP/") {
            // A new response starts (after 1xx, say): forget the previous one's headers.
            headers = HTTPHeaders()
            let parts = line.split(separator: " ")
            status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
        } else if let colon = line.firstIndex(of: ":") {
            let name = String(line[..<colon])
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            headers.add(name, value)
        }
    }

    private func receiveBody(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard (200..<300).contains(status) else {
            if body.count < 1 << 20 { body.append(contentsOf: bytes) }
            return true
        }
        switch sink {
        case .memory(let limit):
            if body.count + bytes.count > limit {
                sinkError = HTTPError.bodyTooLarge(limit: limit, request: request.logDescription)
                return false
            }
            body.append(contentsOf: bytes)
        case .file(let descriptor, let offset):
            do { try pwriteAll(descriptor, bytes, at: off_t(offset + bytesReceived)) } catch {
                sinkError = error
                return false
            }
        case .stream(let consume):
            if !consume(status, bytesReceived, bytes) { stoppedByConsumer = true; return false }
        }
        bytesReceived += Int64(bytes.count)
        return true
    }

    private func sendBody(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        let remaining = request.body.length - uploadPosition
        let count = Int(min(Int64(buffer.count), remaining))
        guard count > 0 else { return 0 }
        switch request.body {
        case .none: return 0
        case .bytes(let data):
            let start = data.startIndex + Int(uploadPosition)
            data.copyBytes(to: buffer.bindMemory(to: UInt8.self).baseAddress!, from: start..<start + count)
        case .file(_, let offset, _):
            let n = pread(uploadDescriptor, buffer.baseAddress!, count, off_t(offset + uploadPosition))
            if n <= 0 { return crmfs_readfunc_abort() }
            uploadPosition += Int64(n)
            return n
        }
        uploadPosition += Int64(count)
        return count
    }

    // MARK: Completion

    func complete(result: CURLcode) {
        if let sinkError, !stoppedByConsumer {
            finish(.failure(sinkError))
        } else if result == CURLE_OK || stoppedByConsumer {
            finish(.success(HTTPResponse(status: status, headers: headers, body: body, bytesReceived: bytesReceived)))
        } else {
            let detail = String(cString: errorBuffer)
            let message = detail.isEmpty ? String(cString: curl_easy_strerror(result)) : detail
            finish(.failure(HTTPError.transport(code: Int(result.rawValue), message: message, request: request.logDescription)))
        }
    }

    func finish(_ result: Result<HTTPResponse, Error>) {
        continuation?.resume(with: result)
        continuation = nil
    }
}
