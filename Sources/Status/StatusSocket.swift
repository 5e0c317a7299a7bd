import Foundation
import NIOCore
import NIOPosix

/// The daemon's end: a Unix socket in the state directory (0600 in a 0700 directory: only the user reaches
/// it) that answers each connection with the mount's status as one JSON document, then closes.
public final class StatusServer: Sendable {
    private let channel: any Channel
    public let path: String

    private init(channel: any Channel, path: String) {
        self.channel = channel
        self.path = path
    }

    /// Listens at `path` (a socket a crashed daemon left there is replaced); `report` is asked at each connection.
    public static func start(at path: String, report: @escaping @Sendable () -> MountStatus) async throws -> StatusServer {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Answer(report: report)) }
            }
            .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true)
            .get()
        chmod(path, 0o600)
        return StatusServer(channel: channel, path: path)
    }

    public func stop() async {
        try? await channel.close()
        unlink(path)
    }

    private final class Answer: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let report: @Sendable () -> MountStatus

        init(report: @escaping @Sendable () -> MountStatus) { self.report = report }

        func channelActive(context: ChannelHandlerContext) {
            let data = (try? MountStatus.encoder.encode(report())) ?? Data("{}".utf8)
            let buffer = context.channel.allocator.buffer(bytes: data)
            let channel = context.channel
            context.writeAndFlush(NIOAny(buffer)).whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

/// `crmfs status`'s end: reads what a mount's socket answers.
public enum StatusClient {
    public struct Unreachable: Error, CustomStringConvertible {
        public var path: String
        public var reason: String
        public var description: String { "no answer on \(path): \(reason)" }
    }

    public static func fetch(from path: String) async throws -> MountStatus {
        let received = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: ByteBuffer.self)
        do {
            _ = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Collector(done: received)) }
                }
                .connect(unixDomainSocketPath: path)
                .get()
        } catch {
            received.fail(error)  // never connected: nothing else completes it
            throw Unreachable(path: path, reason: "\(error)")
        }
        var buffer: ByteBuffer
        do { buffer = try await received.futureResult.get() } catch { throw Unreachable(path: path, reason: "\(error)") }
        let data = Data(buffer.readBytes(length: buffer.readableBytes) ?? [])
        do {
            return try MountStatus.decoder.decode(MountStatus.self, from: data)
        } catch {
            throw Unreachable(path: path, reason: "the answer is not a mount's status (\(error))")
        }
    }

    /// Gathers what the daemon sends until it closes.
    private final class Collector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        private var buffer = ByteBuffer()
        private let done: EventLoopPromise<ByteBuffer>

        init(done: EventLoopPromise<ByteBuffer>) { self.done = done }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var chunk = unwrapInboundIn(data)
            buffer.writeBuffer(&chunk)
        }

        /// Completed once: an error closes the channel, which then goes inactive too. (On its event loop only.)
        private var finished = false

        func channelInactive(context: ChannelHandlerContext) {
            guard !finished else { return }
            finished = true
            done.succeed(buffer)
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            if !finished {
                finished = true
                done.fail(error)
            }
            context.close(promise: nil)
        }
    }
}
