import Foundation
import Prometheus
import Status
import Testing

@Suite("metrics: a loopback port nobody can use up")
struct MetricsServerTests {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// A server on a port of 127.0.0.1 the system chooses, with one counter to show.
    static func start(idleTimeout: Duration = .seconds(60), maxConnections: Int = 8) async throws -> MetricsServer {
        let registry = PrometheusCollectorRegistry()
        registry.makeCounter(name: "crmfs_test_scrapes_total").increment()
        return try await MetricsServer.start(at: .tcp(host: "127.0.0.1", port: 0), registry: registry,
                                             idleTimeout: idleTimeout, maxConnections: maxConnections, refresh: {})
    }

    @Test("beyond the cap a new connection is closed at once; those within it still answer a scrape, and so does a new one after")
    func connectionCap() async throws {
        let cap = 8, extra = 5
        let server = try await Self.start(maxConnections: cap)
        do {
            let port = try #require(server.port)
            // The kernel completes each connection whether or not the server has taken it yet.
            let descriptors = try (0..<cap + extra).map { _ in try Self.connect(port: port) }
            defer { for descriptor in descriptors { close(descriptor) } }
            let closed = Self.waitUntilClosed(descriptors, count: extra, within: .seconds(20))
            #expect(closed.count == extra, "\(closed.count) of \(cap + extra) connections were closed; the cap is \(cap)")
            for descriptor in descriptors where !closed.contains(descriptor) {
                let answer = try Self.scrape(descriptor)
                #expect(answer.hasPrefix("HTTP/1.1 200") && answer.contains("crmfs_test_scrapes_total"), "\(answer)")
            }
            // Those scraped are closed by the server; a new connection is served again once it has let them go.
            let deadline = ContinuousClock.now + .seconds(20)
            var answer = ""
            while !answer.hasPrefix("HTTP/1.1 200"), ContinuousClock.now < deadline {
                let fresh = try Self.connect(port: port)
                answer = (try? Self.scrape(fresh)) ?? ""
                close(fresh)
                if !answer.hasPrefix("HTTP/1.1 200") { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(answer.hasPrefix("HTTP/1.1 200") && answer.contains("crmfs_test_scrapes_total"), "\(answer)")
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    @Test("a connection that sends nothing is closed after the idle timeout")
    func idleTimeout() async throws {
        let server = try await Self.start(idleTimeout: .milliseconds(200))
        do {
            let port = try #require(server.port)
            let descriptor = try Self.connect(port: port)
            defer { close(descriptor) }
            let opened = ContinuousClock.now
            let closed = Self.waitUntilClosed([descriptor], count: 1, within: .seconds(20))
            #expect(closed == [descriptor], "an idle connection was left open")
            #expect(ContinuousClock.now - opened >= .milliseconds(100), "closed before the idle timeout")
            // One that asks is answered as before.
            let asking = try Self.connect(port: port)
            defer { close(asking) }
            #expect(try Self.scrape(asking).hasPrefix("HTTP/1.1 200"))
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    // MARK: A plain TCP client

    /// A connection to 127.0.0.1:`port`.
    static func connect(port: Int) throws -> Int32 {
        let descriptor = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw Failure(description: "socket: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            let error = errno
            close(descriptor)
            throw Failure(description: "connect to 127.0.0.1:\(port): errno \(error)")
        }
        return descriptor
    }

    /// Waits until `count` of `descriptors` are closed by the server (or `limit` passes), and says which are.
    static func waitUntilClosed(_ descriptors: [Int32], count: Int, within limit: Duration) -> Set<Int32> {
        let deadline = ContinuousClock.now + limit
        var closed = Set<Int32>()
        while closed.count < count, ContinuousClock.now < deadline {
            var entries = descriptors.filter { !closed.contains($0) }.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            guard !entries.isEmpty else { break }
            guard poll(&entries, nfds_t(entries.count), 100) > 0 else { continue }
            for entry in entries where entry.revents != 0 && Self.isClosed(entry.fd) {
                closed.insert(entry.fd)
            }
        }
        return closed
    }

    /// Whether the server has closed `descriptor` (called once it is readable): the end of the stream, or a reset.
    static func isClosed(_ descriptor: Int32) -> Bool {
        var byte: UInt8 = 0
        let got = recv(descriptor, &byte, 1, Int32(MSG_PEEK))
        return got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)
    }

    /// Asks for the metrics on `descriptor` and reads the answer to its end (the server closes after it);
    /// a server silent for 20 s fails it rather than hang the test.
    static func scrape(_ descriptor: Int32) throws -> String {
        let request = Array("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8)
        let sent = request.withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == request.count else { throw Failure(description: "send: errno \(errno)") }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 20_000) == 1 else { throw Failure(description: "no answer in 20 s") }
            let count = recv(descriptor, &buffer, buffer.count, 0)
            guard count > 0 else { break }
            answer += buffer[..<count]
        }
        return String(decoding: answer, as: UTF8.self)
    }
}
