import Foundation

/// Header fields in order, compared case-insensitively by name.
public struct HTTPHeaders: Sendable, Sequence, ExpressibleByDictionaryLiteral {
    public private(set) var fields: [(name: String, value: String)] = []

    public init() {}
    public init(dictionaryLiteral elements: (String, String)...) {
        for (name, value) in elements { add(name, value) }
    }

    public init(_ dictionary: [String: String]) {
        for (name, value) in dictionary { add(name, value) }
    }

    public subscript(name: String) -> String? {
        get { fields.last { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value }
        set {
            fields.removeAll { $0.name.caseInsensitiveCompare(name) == .orderedSame }
            if let newValue { fields.append((name, newValue)) }
        }
    }

    public mutating func add(_ name: String, _ value: String) { fields.append((name, value)) }
    public func contains(_ name: String) -> Bool { self[name] != nil }
    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> { fields.makeIterator() }
}

/// Where a request body comes from. File bodies stream from disk; nothing is loaded whole.
public enum RequestBody: Sendable {
    case none
    case bytes(Data)
    case file(path: String, offset: Int64, length: Int64)

    var length: Int64 {
        switch self {
        case .none: return 0
        case .bytes(let data): return Int64(data.count)
        case .file(_, _, let length): return length
        }
    }
}

/// Where the bytes of a successful (2xx) response go. Error bodies always land in memory,
/// so the caller can read the service's error code whatever sink it chose.
public enum ResponseSink: Sendable {
    /// Collect in memory, failing the transfer past `limit` bytes.
    case memory(limit: Int)
    /// Write to an open file descriptor, starting at `offset`.
    case file(descriptor: Int32, offset: Int64)
    /// Hand each piece to the caller as it arrives (on the transport's thread: keep it short),
    /// with the response status and the piece's offset in this response's body. A retried request
    /// starts again at offset 0, so positional consumers stay correct across retries.
    /// Return false to stop the transfer early; that is not an error.
    case stream(@Sendable (_ status: Int, _ offset: Int64, _ bytes: UnsafeRawBufferPointer) -> Bool)

    public static let defaultMemoryLimit = 64 << 20
}

public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: HTTPHeaders
    public var body: RequestBody
    /// Safe to send again after a connection reset or timeout. GET/HEAD/PUT/DELETE are by default.
    public var isIdempotent: Bool

    public init(method: String = "GET", url: String, headers: HTTPHeaders = [:], body: RequestBody = .none, isIdempotent: Bool? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.isIdempotent = isIdempotent ?? ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"].contains(method)
    }

    /// The request line for logs: method and URL without its query (which may carry pre-authenticated tokens).
    public var logDescription: String {
        let withoutQuery = url.split(separator: "?", maxSplits: 1).first.map(String.init) ?? url
        return "\(method) \(withoutQuery)"
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    /// The body when the sink was `.memory`, or for any non-2xx status.
    public var body: Data
    /// Bytes delivered to the sink (or to `body`).
    public var bytesReceived: Int64

    public init(status: Int, headers: HTTPHeaders = [:], body: Data = Data(), bytesReceived: Int64 = 0) {
        self.status = status
        self.headers = headers
        self.body = body
        self.bytesReceived = bytesReceived
    }

    public var isSuccess: Bool { (200..<300).contains(status) }
}

public enum HTTPError: Error, CustomStringConvertible, Sendable {
    /// The status of the last answer, when there was one (retries ran out on it).
    public var lastStatus: Int? {
        if case .retriesExhausted(let status, _, _, _) = self { return status }
        return nil
    }

    /// libcurl failed the transfer (connect, reset, timeout, ...).
    case transport(code: Int, message: String, request: String)
    /// The body exceeded the memory sink's limit.
    case bodyTooLarge(limit: Int, request: String)
    /// An upload source could not be read.
    case uploadSource(path: String, errno: Int32)
    /// 429/503/5xx kept coming until the retry budget ran out.
    case retriesExhausted(status: Int, attempts: Int, request: String, response: HTTPResponse?)
    /// Plain http to a host that is not this machine: refused before anything is sent.
    case cleartext(request: String)
    /// A bearer token would go to an origin the config does not name for its service (a URL a service
    /// handed back, the other service's host, another port): `host` is that origin.
    case untrustedHost(host: String, request: String)

    public var description: String {
        switch self {
        case .transport(let code, let message, let request): return "\(request): transport error \(code): \(message)"
        case .bodyTooLarge(let limit, let request): return "\(request): response body over \(limit) bytes"
        case .uploadSource(let path, let err): return "cannot read upload source \(path): \(String(cString: strerror(err)))"
        case .retriesExhausted(let status, let attempts, let request, _):
            return "\(request): gave up after \(attempts) attempts (last status \(status))"
        case .cleartext(let request): return "\(request): refused: plain http is allowed to loopback only"
        case .untrustedHost(let host, let request):
            return "\(request): refused to send a token to \(host), which the config does not name for the token's service"
        }
    }

    /// Connection-level failures that a fresh attempt may not hit again.
    public var isRetryableTransportFailure: Bool {
        guard case .transport(let code, _, _) = self else { return false }
        // CURLE_COULDNT_CONNECT 7, OPERATION_TIMEDOUT 28, SEND_ERROR 55, RECV_ERROR 56,
        // GOT_NOTHING 52, PARTIAL_FILE 18, HTTP2 16, HTTP2_STREAM 92, SSL_CONNECT 35, and SEND_FAIL_REWIND 65:
        // a kept-alive connection reset under a request with a body, which curl cannot resend by itself.
        return [7, 16, 18, 28, 35, 52, 55, 56, 65, 92].contains(code)
    }
}
