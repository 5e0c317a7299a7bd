import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus

/// Serves the mount's metrics in Prometheus's text format at `GET /metrics`, on a Unix socket (0600) or a
/// loopback port: off unless `[metrics]` is configured. `refresh` runs before each scrape, to set the
/// gauges that are read rather than counted (queue lengths, cache size, how far behind the feeds are).
public final class MetricsServer: Sendable {
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
                             refresh: @escaping @Sendable () -> Void) async throws -> MetricsServer {
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(Scrape(registry: registry, refresh: refresh))
                    }
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
