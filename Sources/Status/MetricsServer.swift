import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus

/// Serves the mount's metrics in Prometheus's text format at `GET /metrics`, on a Unix socket (0600) or a
/// loopback port: off unless `[metrics]` is configured. `refresh` runs before each scrape, to set the
/// gauges that are read rather than counted (queue lengths, cache size, how far behind the feeds are).
///
/// Any local user can reach a loopback port: a connection that sends nothing for `idleTimeout` is closed,
/// and beyond `maxConnections` open at once a new one is closed at once, so that idle connections cannot
/// use up the daemon's file descriptors (its own reads and creates would fail with EMFILE).
public final class MetricsServer: Sendable {
    /// How long a connection may send nothing before it is closed.
    public static let defaultIdleTimeout = Duration.seconds(10)
    /// How many connections may be open at once.
    public static let defaultMaxConnections = 64

    public enum Address: Sendable {
        case unixSocket(String)
        case tcp(host: String, port: Int)
    }

    private let channel: any Channel
    private let socketPath: String?

    private init(channel: any Channel, socketPath: String?) {
        self.channel = channel
        self.socketPath = socketPath
    }

    /// The port it listens on (for `tcp` with port 0, the one the system chose).
    public var port: Int? { channel.localAddress?.port }

    public static func start(at address: Address, registry: PrometheusCollectorRegistry,
                             idleTimeout: Duration = defaultIdleTimeout, maxConnections: Int = defaultMaxConnections,
                             refresh: @escaping @Sendable () -> Void) async throws -> MetricsServer {
        let open = OpenConnections(limit: maxConnections)
        let idle = TimeAmount(idleTimeout)
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                // Over the cap: failing the initializer makes the bootstrap close the connection at once.
                guard open.admit() else { return channel.eventLoop.makeFailedFuture(TooManyConnections()) }
                channel.closeFuture.whenComplete { _ in open.leave() }
                return channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(IdleStateHandler(readTimeout: idle))
                    try pipeline.addHandler(CloseWhenIdle())
                    try pipeline.configureHTTPServerPipeline()
                    try pipeline.addHandler(Scrape(registry: registry, refresh: refresh))
                }
            }
        switch address {
        case .unixSocket(let path):
            let channel = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
            chmod(path, 0o600)
            return MetricsServer(channel: channel, socketPath: path)
        case .tcp(let host, let port):
            return MetricsServer(channel: try await bootstrap.bind(host: host, port: port).get(), socketPath: nil)
        }
    }

    public func stop() async {
        try? await channel.close()
        if let socketPath { unlink(socketPath) }
    }

    /// The connections open now, at most `limit`.
    private final class OpenConnections: @unchecked Sendable {
        private let lock = NSLock()
        private var count = 0
        let limit: Int

        init(limit: Int) { self.limit = max(1, limit) }

        /// Counts a new connection in; false when `limit` are open already.
        func admit() -> Bool {
            lock.withLock {
                guard count < limit else { return false }
                count += 1
                return true
            }
        }

        func leave() { lock.withLock { count -= 1 } }
    }

    private struct TooManyConnections: Error {}

    /// Closes a connection when the `IdleStateHandler` before it says nothing was read for the timeout.
    private final class CloseWhenIdle: ChannelInboundHandler, Sendable {
        typealias InboundIn = NIOAny

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if event is IdleStateHandler.IdleStateEvent {
                context.close(promise: nil)
            } else {
                context.fireUserInboundEventTriggered(event)
            }
        }
    }

    private final class Scrape: ChannelInboundHandler, Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let registry: PrometheusCollectorRegistry
        let refresh: @Sendable () -> Void

        init(registry: PrometheusCollectorRegistry, refresh: @escaping @Sendable () -> Void) {
            self.registry = registry
            self.refresh = refresh
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .head(let head) = unwrapInboundIn(data) else { return }
            let found = head.method == .GET && head.uri.split(separator: "?").first == "/metrics"
            var body = context.channel.allocator.buffer(capacity: 4096)
            if found {
                refresh()
                body.writeBytes(registry.emitToBuffer())
            } else {
                body.writeString("not found: metrics are at GET /metrics\n")
            }
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: found ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain")
            headers.add(name: "Content-Length", value: String(body.readableBytes))
            headers.add(name: "Connection", value: "close")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: found ? .ok : .notFound, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
