import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One HTTP request as the sandbox's services see it: the whole body read.
struct SandboxRequest: Sendable {
    var method: String
    /// The raw (percent-encoded) path, without the query.
    var path: String
    /// Query parameters, decoded.
    var query: [String: String]
    var headers: HTTPHeaders
    var body: Data
    /// `http(s)://host:port` as the client addressed this server: the base of every URL the sandbox hands out.
    var origin: String

    init(head: HTTPRequestHead, body: Data, localPort: Int, scheme: String = "http") {
        method = head.method.rawValue
        let parts = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        path = String(parts.first ?? "")
        var query: [String: String] = [:]
        if parts.count > 1 {
            for (key, value) in FormDecoding.decode(String(parts[1])) { query[key] = value }
        }
        self.query = query
        headers = head.headers
        self.body = body
        origin = "\(scheme)://\(head.headers.first(name: "Host") ?? "127.0.0.1:\(localPort)")"
    }

    func header(_ name: String) -> String? { headers.first(name: name) }

    var bearerToken: String? {
        guard let value = header("Authorization"), value.lowercased().hasPrefix("bearer ") else { return nil }
        return String(value.dropFirst(7)).trimmingCharacters(in: .whitespaces)
    }

    /// Path segments, percent-decoded.
    var segments: [String] {
        path.split(separator: "/").map { String($0).removingPercentEncoding ?? String($0) }
    }
}

struct SandboxResponse: Sendable {
    enum Body: Sendable {
        case empty
        case data(Data)
        case file(path: String, offset: Int64, length: Int64)
    }

    var status: Int
    var headers: [(String, String)] = []
    var body: Body = .empty

    static func json(_ status: Int, _ object: Any, headers: [(String, String)] = []) -> SandboxResponse {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes])) ?? Data("{}".utf8)
        return SandboxResponse(status: status, headers: [("Content-Type", "application/json; charset=utf-8")] + headers, body: .data(data))
    }

    static func empty(_ status: Int, headers: [(String, String)] = []) -> SandboxResponse {
        SandboxResponse(status: status, headers: headers)
    }
}

enum SandboxReply: Sendable {
    case response(SandboxResponse)
    /// Drop the connection without answering, as a flaky network does.
    case reset
}

/// A service's refusal, carried as the exact response the real service sends.
struct ServiceFailure: Error {
    var response: SandboxResponse
}

enum FormDecoding {
    static func decode(_ text: String) -> [(String, String)] {
        text.split(separator: "&").map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) -> String { String(s).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(s) }
            return (decode(parts[0]), parts.count > 1 ? decode(parts[1]) : "")
        }
    }
}

/// The sandbox's HTTP/1.1 server on SwiftNIO.
public final class SandboxServer: Sendable {
    public let port: Int
    public let host: String
    public let stateDirectory: URL
    private let channel: any Channel
    let app: SandboxApp

    public let tls: Bool

    public var baseURL: String { "\(tls ? "https" : "http")://\(host):\(port)" }

    /// Opens (or seeds) the tenant in `options.stateDirectory` and starts listening.
    public static func start(options: SandboxOptions, logger: Logger = Logger(label: "crmfs.sandbox")) async throws -> SandboxServer {
        let app = try SandboxApp(options: options, logger: logger)
        let maxBody = options.maxRequestBodyBytes
        let tls = try options.tls ? SandboxTLS.context(stateDirectory: options.stateDirectory) : nil
        let scheme = tls == nil ? "http" : "https"
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(SandboxHTTPHandler(app: app, maxBody: maxBody, scheme: scheme))
                }
            }
            .bind(host: options.host, port: options.port)
            .get()
        let port = channel.localAddress?.port ?? options.port
        return SandboxServer(port: port, host: options.host, tls: tls != nil, stateDirectory: options.stateDirectory, channel: channel, app: app)
    }

    private init(port: Int, host: String, tls: Bool, stateDirectory: URL, channel: any Channel, app: SandboxApp) {
        self.port = port
        self.tls = tls
        self.host = host
        self.stateDirectory = stateDirectory
        self.channel = channel
        self.app = app
    }

    /// Writes `mount.conf` and its 0600 secret files into the state directory; returns the config's path.
    @discardableResult
    public func writeMountConfig() throws -> URL {
        try MountConfigWriter(app: app, baseURL: baseURL, directory: stateDirectory,
                              certificateAuthority: tls ? SandboxTLS.authorityFile(in: stateDirectory).lastPathComponent : nil).write()
    }

    public func stop() async {
        try? await channel.close()
    }

    /// Blocks until the listening socket closes.
    public func wait() async {
        try? await channel.closeFuture.get()
    }
}

final class SandboxHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let app: SandboxApp
    private let maxBody: Int
    /// `http` or `https`, for the URLs the sandbox hands out.
    private let scheme: String
    private var head: HTTPRequestHead?
    private var headArrived = NIODeadline.now()
    private var body = ByteBuffer()
    private var bodyTooLarge = false

    init(app: SandboxApp, maxBody: Int, scheme: String) {
        self.app = app
        self.maxBody = maxBody
        self.scheme = scheme
    }

    func channelActive(context: ChannelHandlerContext) {
        app.stats.increment("connections")
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            headArrived = .now()
            body.clear()
            bodyTooLarge = false
            // As the real services do: a client that asks before sending its body is told to go on.
            if head.headers["expect"].contains(where: { $0.lowercased() == "100-continue" }) {
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
            }
        case .body(var chunk):
            if body.readableBytes + chunk.readableBytes > maxBody { bodyTooLarge = true } else { body.writeBuffer(&chunk) }
        case .end:
            guard let head else { return }
            self.head = nil
            dispatch(head: head, context: context)
        }
    }

    private func dispatch(head: HTTPRequestHead, context: ChannelHandlerContext) {
        let keepAlive = head.isKeepAlive
        let version = head.version
        let isHead = head.method == .HEAD
        let request = SandboxRequest(head: head, body: Data(body.readableBytesView), localPort: context.localAddress?.port ?? 0, scheme: scheme)
        let app = self.app
        let tooLarge = bodyTooLarge
        let promise = context.eventLoop.makePromise(of: SandboxReply.self)
        let arrived = headArrived
        promise.completeWithTask {
            if tooLarge { return .response(GraphErrors.response(413, "invalidRequest", "The request body is too large.")) }
            // An upload stream moves no faster than the stream rate: its answer waits until the body
            // could have arrived at that rate.
            let rate = app.faults.plan.streamBytesPerSecond
            if rate > 0, !request.body.isEmpty {
                let due = arrived + .nanoseconds(Int64(Double(request.body.count) / Double(rate) * 1e9))
                let wait = due - .now()
                if wait > .zero { try? await Task.sleep(for: .nanoseconds(wait.nanoseconds)) }
            }
            return await app.handle(request)
        }
        let boundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        let boundSelf = NIOLoopBound(self, eventLoop: context.eventLoop)
        promise.futureResult.whenSuccess { reply in
            boundSelf.value.write(reply, context: boundContext.value, keepAlive: keepAlive, version: version, omitBody: isHead)
        }
    }

    private func write(_ reply: SandboxReply, context: ChannelHandlerContext, keepAlive: Bool, version: HTTPVersion, omitBody: Bool) {
        guard case .response(let response) = reply else {
            // SO_LINGER 0 makes close() send a TCP reset rather than a clean FIN.
            let channel = context.channel
            if let provider = channel as? SocketOptionProvider {
                provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in channel.close(promise: nil) }
            } else {
                channel.close(promise: nil)
            }
            return
        }
        var headers = HTTPHeaders(response.headers)
        var fileHandle: NIOFileHandle?
        var bodyPart: IOData?
        switch response.body {
        case .empty:
            if response.status != 204 && response.status != 304 { headers.replaceOrAdd(name: "Content-Length", value: "0") }
        case .data(let data):
            headers.replaceOrAdd(name: "Content-Length", value: String(data.count))
            bodyPart = .byteBuffer(context.channel.allocator.buffer(bytes: data))
        case .file(let path, let offset, let length):
            headers.replaceOrAdd(name: "Content-Length", value: String(length))
            if scheme == "https" {
                // TLS cannot send a file region (sendfile): the bytes go through memory. The HTTPS
                // sandbox is for correctness, not for benchmarks.
                if let handle = FileHandle(forReadingAtPath: path) {
                    try? handle.seek(toOffset: UInt64(offset))
                    let data = (try? handle.read(upToCount: Int(length))) ?? Data()
                    try? handle.close()
                    bodyPart = .byteBuffer(context.channel.allocator.buffer(bytes: data))
                }
            } else if let handle = try? NIOFileHandle(_deprecatedPath: path) {
                fileHandle = handle
                bodyPart = .fileRegion(FileRegion(fileHandle: handle, readerIndex: Int(offset), endIndex: Int(offset + length)))
            }
        }
        headers.replaceOrAdd(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        headers.replaceOrAdd(name: "Date", value: HTTPDates.now())
        let status = HTTPResponseStatus(statusCode: response.status)
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: status, headers: headers))), promise: nil)
        let channel = context.channel
        let finish = { [self] in
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
                try? fileHandle?.close()
                if !keepAlive { channel.close(promise: nil) }
            }
        }
        guard let bodyPart, !omitBody, length(of: bodyPart) > 0 else { return finish() }
        let rate = app.faults.plan.streamBytesPerSecond
        if rate > 0 {
            writePaced(bodyPart, rate: rate, context: context, started: .now(), sent: 0, then: finish)
        } else {
            context.write(wrapOutboundOut(.body(bodyPart)), promise: nil)
            finish()
        }
    }

    /// Sends a body at most `rate` bytes a second (a download stream's cap), in slices of a twentieth
    /// of a second's worth, each sent when the bytes before it would have arrived; then `then`.
    private func writePaced(_ body: IOData, rate: Int64, context: ChannelHandlerContext, started: NIODeadline, sent: Int, then: @escaping () -> Void) {
        let total = length(of: body)
        guard sent < total, context.channel.isActive else { return then() }
        let slice = min(total - sent, max(16 << 10, Int(rate / 20)))
        switch body {
        case .byteBuffer(let buffer):
            context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(buffer.getSlice(at: buffer.readerIndex + sent, length: slice)!))), promise: nil)
        case .fileRegion(let region):
            let part = FileRegion(fileHandle: region.fileHandle, readerIndex: region.readerIndex + sent, endIndex: region.readerIndex + sent + slice)
            context.writeAndFlush(wrapOutboundOut(.body(.fileRegion(part))), promise: nil)
        }
        let done = sent + slice
        let due = started + .nanoseconds(Int64(Double(done) / Double(rate) * 1e9))
        let boundSelf = NIOLoopBound(self, eventLoop: context.eventLoop)
        let boundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        let boundThen = NIOLoopBound(then, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(deadline: due) {
            boundSelf.value.writePaced(body, rate: rate, context: boundContext.value, started: started, sent: done, then: boundThen.value)
        }
    }

    private func length(of data: IOData) -> Int {
        switch data {
        case .byteBuffer(let buffer): return buffer.readableBytes
        case .fileRegion(let region): return region.readableBytes
        }
    }
}

enum HTTPDates {
    static func now() -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.string(from: Date())
    }
}
