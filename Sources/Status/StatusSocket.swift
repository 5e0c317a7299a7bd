import Foundation
import NIOCore
import NIOPosix

/// The daemon's end: a Unix socket in the state directory (0600 in a 0700 directory: only the user reaches
/// it). Each connection asks one thing with a line: `status` is answered with the mount's status as one
/// JSON document; `sync` waits until every change made so far is sent, then answers with a `SyncReport`
/// (the caller going away cancels the wait, not the changes). Then the connection closes.
///
/// `crmfs sync` asks here rather than through the mount: the kernel holds a file's inode locked while
/// its extended attribute is set, and the mount's root locked for minutes would hold up `ls` of it.
public final class StatusServer: Sendable {
    private let channel: any Channel
    public let path: String

    private init(channel: any Channel, path: String) {
        self.channel = channel
        self.path = path
    }

    /// Listens at `path` (a socket a crashed daemon left there is replaced); `report` is asked at each
    /// `status`, `sync` at each `sync`.
    public static func start(at path: String, report: @escaping @Sendable () -> MountStatus,
                             sync: @escaping @Sendable () async -> SyncReport) async throws -> StatusServer {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Answer(report: report, sync: sync)) }
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

    /// One connection's request and answer. (On its channel's event loop only.)
    private final class Answer: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let report: @Sendable () -> MountStatus
        let sync: @Sendable () async -> SyncReport
        private var request = ByteBuffer()
        private var answering = false
        private var syncing: Task<Void, Never>?

        init(report: @escaping @Sendable () -> MountStatus, sync: @escaping @Sendable () async -> SyncReport) {
            self.report = report
            self.sync = sync
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var chunk = unwrapInboundIn(data)
            guard !answering else { return }
            request.writeBuffer(&chunk)
            guard let end = request.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
                if request.readableBytes > 64 { answer(Data("{\"error\":\"no request line\"}".utf8), context: context) }
                return
            }
            let word = String(decoding: request.readableBytesView[..<end], as: UTF8.self)
            answering = true
            switch word {
            case "status":
                answer((try? MountStatus.encoder.encode(report())) ?? Data("{}".utf8), context: context)
            case "sync":
                let loop = context.eventLoop
                let bound = NIOLoopBound((self, context), eventLoop: loop)
                let sync = self.sync
                syncing = Task {
                    let report = await sync()
                    let data = (try? MountStatus.encoder.encode(report)) ?? Data("{}".utf8)
                    loop.execute { bound.value.0.answer(data, context: bound.value.1) }
                }
            default:
                answer(Data("{\"error\":\"unknown request\"}".utf8), context: context)
            }
        }

        /// The caller went away: a `sync` it waited for stops waiting.
        func channelInactive(context: ChannelHandlerContext) {
            syncing?.cancel()
            context.fireChannelInactive()
        }

        private func answer(_ data: Data, context: ChannelHandlerContext) {
            let channel = context.channel
            guard channel.isActive else { return }
            context.writeAndFlush(NIOAny(channel.allocator.buffer(bytes: data))).whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

/// What a `sync` request answers.
public struct SyncReport: Codable, Sendable, Equatable {
    public enum Outcome: String, Codable, Sendable {
        /// Every change made before the request is on the services.
        case sent
        /// Some gave up after retries; they stay journaled and are retried at the next mount.
        case gaveUp = "gave-up"
        /// The service refused some for good (access denied); the user's copies are in conflicts/.
        case refused
        /// The mount is read-only: there is nothing to send.
        case readOnly = "read-only"
        /// The wait was cancelled (the daemon is stopping).
        case cancelled
    }

    public var outcome: Outcome
    /// Which changes, and why, for `gave-up` and `refused`.
    public var detail: String?

    public init(_ outcome: Outcome, detail: String? = nil) {
        self.outcome = outcome
        self.detail = detail
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
        try await ask("status", at: path, answer: "a mount's status")
    }

    /// Asks the mount to send every change made so far and waits for it (`crmfs sync`). A daemon too old
    /// to know the request answers with something else: that is `Unreachable` too.
    public static func sync(at path: String) async throws -> SyncReport {
        try await ask("sync", at: path, answer: "a sync report")
    }

    /// `ask`, with the answer decoded as `Answer` (`what` names it in the error when it is not one).
    private static func ask<Answer: Decodable>(_ request: String, at path: String, answer what: String) async throws -> Answer {
        let data = try await ask(request, at: path)
        do {
            return try MountStatus.decoder.decode(Answer.self, from: data)
        } catch {
            throw Unreachable(path: path, reason: "the answer is not \(what) (\(error))")
        }
    }

    /// Sends `request` as a line and gathers what the daemon answers until it closes.
    private static func ask(_ request: String, at path: String) async throws -> Data {
        let received = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: ByteBuffer.self)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Collector(done: received)) }
                }
                .connect(unixDomainSocketPath: path)
                .get()
        } catch {
            received.fail(error)  // never connected: nothing else completes it
            throw Unreachable(path: path, reason: "\(error)")
        }
        channel.writeAndFlush(channel.allocator.buffer(string: request + "\n"), promise: nil)
        var buffer: ByteBuffer
        do { buffer = try await received.futureResult.get() } catch { throw Unreachable(path: path, reason: "\(error)") }
        return Data(buffer.readBytes(length: buffer.readableBytes) ?? [])
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
