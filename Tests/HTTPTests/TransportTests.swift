import Foundation
import HTTP
import QuickXor
import Testing
import TestSupport

@Suite("libcurl transport against the sandbox")
struct TransportTests {
    @Test("a thousand requests to one host reuse a handful of connections")
    func connectionReuse() async throws {
        try await withSandbox { sandbox in
            let transport = CurlTransport()
            let before = try await sandbox.stats()["connections"] ?? 0
            try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<1000 {
                    if index >= 32 { #expect(try await group.next() == 200) }
                    group.addTask { try await transport.perform(HTTPRequest(url: "\(sandbox.baseURL)/services/data/")).status }
                }
                for try await status in group { #expect(status == 200) }
            }
            let opened = (try await sandbox.stats()["connections"] ?? 0) - before - 1  // the stats call itself may open one
            #expect(opened <= TransportOptions().maxConnectionsPerHost, "opened \(opened) connections for 1000 requests")
            transport.shutdown()
        }
    }

    @Test("a request body streams from a file range, byte for byte")
    func uploadFromFileRange() async throws {
        try await withSandbox { sandbox in
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("upload-\(UUID().uuidString)").path
            let bytes = Data((0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
            FileManager.default.createFile(atPath: path, contents: bytes)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let offset = 123_457, length = 2_000_001
            let response = try await sandbox.transport.perform(HTTPRequest(
                method: "POST", url: "\(sandbox.baseURL)/_sandbox/echo",
                body: .file(path: path, offset: Int64(offset), length: Int64(length))))
            let echo = try JSONDecoder().decode(JSONValue.self, from: response.body)
            #expect(echo["bytes"]?.intValue == length)
            #expect(echo["quickXorHash"]?.stringValue == QuickXorHash.hash(bytes.subdata(in: offset..<offset + length)))
        }
    }

    @Test("redirects are returned to the caller, not followed")
    func redirectsNotFollowed() async throws {
        try await withSandbox { sandbox in
            let connections = try sandbox.connections()
            let info = try await sandbox.info()
            let file = try await connections.graph.item(driveID: info["driveId"]!, path: SeededPaths.acmeContract)
            let token = try await connections.graphToken.token()
            let response = try await sandbox.transport.perform(HTTPRequest(
                url: "\(sandbox.baseURL)/v1.0/drives/\(info["driveId"]!)/items/\(file.id)/content",
                headers: ["Authorization": "Bearer \(token.value.exposedValue)"]))
            #expect(response.status == 302)
            #expect(response.headers["Location"]?.contains("tempauth=") == true)
        }
    }

    @Test("cancelling the calling task aborts a transfer under way")
    func cancellation() async throws {
        // The answer would take a minute; the bound leaves room for a test process whose threads are busy.
        try await withSandbox(configure: { $0.faults.latencyMilliseconds = 60_000 }) { sandbox in
            let started = ContinuousClock.now
            let task = Task { try await sandbox.transport.perform(HTTPRequest(url: "\(sandbox.baseURL)/services/data/")) }
            try await Task.sleep(for: .milliseconds(200))
            task.cancel()
            await #expect(throws: CancellationError.self) { _ = try await task.value }
            #expect(ContinuousClock.now - started < .seconds(30), "the transfer ran to the end instead of aborting")
        }
    }

    @Test("a transport shut down answers a new request with an error at once, and a second shutdown does nothing")
    func afterShutdown() async throws {
        try await withSandbox { sandbox in
            let transport = CurlTransport()
            let answered = try await transport.perform(HTTPRequest(url: "\(sandbox.baseURL)/services/data/"))
            #expect(answered.status == 200)
            transport.shutdown()
            transport.shutdown()  // before: the multi handle freed twice
            // Before: the request was queued for a worker that had ended, and its caller waited for ever.
            let refusal = Locked<String?>(nil)
            let url = "\(sandbox.baseURL)/services/data/"
            #expect(try await finishes(within: .seconds(30)) {
                do { _ = try await transport.perform(HTTPRequest(url: url)) } catch { refusal.set("\(error)") }
            })
            #expect(refusal.value?.contains("shut down") == true, "\(refusal.value ?? "no error")")
        }
    }

    @Test("a response over the memory limit fails clearly instead of growing")
    func memoryLimit() async throws {
        try await withSandbox { sandbox in
            await #expect(throws: HTTPError.self) {
                _ = try await sandbox.transport.perform(HTTPRequest(url: "\(sandbox.baseURL)/services/data/"), sink: .memory(limit: 10))
            }
        }
    }
}

@Suite("retry rules")
struct RetryTests {
    @Test("Retry-After is honoured: the wait is observed")
    func retryAfterHonoured() async throws {
        try await withSandbox { sandbox in
            try await sandbox.admin("faults", ["retryAfter": 2, "next": ["429"]])
            let client = HTTPClient(transport: sandbox.transport, retry: RetryPolicy(baseDelay: .milliseconds(1), maxDelay: .milliseconds(5)))
            let started = ContinuousClock.now
            let response = try await client.send(HTTPRequest(url: "\(sandbox.baseURL)/services/data/"))
            let waited = ContinuousClock.now - started
            #expect(response.status == 200)
            #expect(waited >= .seconds(2), "waited \(waited)")
            #expect(try await sandbox.stats()["faults.429"] == 1)
        }
    }

    @Test("a Retry-After of inf or 1e30 on the wire neither crashes nor waits for ever")
    func hostileRetryAfter() async throws {
        try await withSandbox { sandbox in
            let client = HTTPClient(transport: sandbox.transport, retry: RetryPolicy(maxElapsed: .seconds(30), baseDelay: .milliseconds(1), maxDelay: .milliseconds(5)))
            for value in ["inf", "1e30", "nan", "-3"] {
                try await sandbox.admin("faults", ["retryAfter": value, "next": ["429"]])
                // Not a usable value: the client backs off on its own and the retry succeeds.
                let response = try await client.send(HTTPRequest(url: "\(sandbox.baseURL)/services/data/"))
                #expect(response.status == 200, "Retry-After: \(value)")
            }
            try await sandbox.admin("faults", ["retryAfter": String(repeating: "9", count: 40), "next": ["429"]])
            let started = ContinuousClock.now
            await #expect(throws: HTTPError.self) { _ = try await client.send(HTTPRequest(url: "\(sandbox.baseURL)/services/data/")) }
            #expect(ContinuousClock.now - started < .seconds(5))
        }
    }

    @Test("Retry-After as an HTTP date and as seconds")
    func retryAfterParsing() {
        let now = Date(timeIntervalSince1970: 1_700_000_000)
        #expect(RetryAfter.delay(from: "120", now: now) == .seconds(120))
        #expect(RetryAfter.delay(from: HTTPDate.format(now.addingTimeInterval(30)), now: now) == .seconds(30))
        #expect(RetryAfter.delay(from: "soon", now: now) == nil)
        #expect(RetryAfter.delay(from: nil, now: now) == nil)
    }

    @Test("backoff is full jitter under an exponential cap")
    func backoffBounds() {
        let policy = RetryPolicy(baseDelay: .milliseconds(100), maxDelay: .seconds(1))
        for retry in 0..<12 {
            let delay = policy.backoff(retry: retry)
            #expect(delay >= .zero)
            #expect(delay <= min(.seconds(1), .milliseconds(100 * (1 << retry))))
        }
    }

    @Test("dropped connections are retried for idempotent requests only")
    func resetsRetriedWhenIdempotent() async throws {
        try await withSandbox { sandbox in
            let client = HTTPClient(transport: sandbox.transport, retry: RetryPolicy(baseDelay: .milliseconds(1), maxDelay: .milliseconds(5)))
            try await sandbox.admin("faults", ["next": ["reset", "reset"]])
            #expect(try await client.send(HTTPRequest(url: "\(sandbox.baseURL)/services/data/")).status == 200)
            #expect(try await sandbox.stats()["faults.reset"] == 2)

            try await sandbox.admin("faults", ["next": ["reset"]])
            await #expect(throws: HTTPError.self) {
                _ = try await client.send(HTTPRequest(method: "POST", url: "\(sandbox.baseURL)/services/oauth2/token", body: .bytes(Data("x=1".utf8))))
            }
        }
    }

    @Test("a token request (a POST safe to repeat) reset on a kept-alive connection is sent again")
    func resetPostWithBodyRetried() async throws {
        try await withSandbox { sandbox in
            let client = HTTPClient(transport: sandbox.transport, retry: RetryPolicy(baseDelay: .milliseconds(1), maxDelay: .milliseconds(5)))
            let token = HTTPRequest(method: "POST", url: "\(sandbox.baseURL)/services/oauth2/token", body: .bytes(Data("grant_type=x".utf8)), isIdempotent: true)
            for _ in 0..<5 {
                // A connection kept alive by the request before, then reset under the POST: curl cannot rewind
                // the body it was sending (error 65) and the request must go again, not fail.
                _ = try await client.send(HTTPRequest(url: "\(sandbox.baseURL)/services/data/"))
                try await sandbox.admin("faults", ["next": ["reset"]])
                #expect(try await client.send(token).status == 400)
            }
        }
    }

    @Test("exhausted retries surface one error with the status")
    func retriesExhausted() async throws {
        try await withSandbox { sandbox in
            try await sandbox.admin("faults", ["faults": "503:1.0", "retryAfter": 0])
            let client = HTTPClient(transport: sandbox.transport, retry: RetryPolicy(maxAttempts: 3, baseDelay: .milliseconds(1), maxDelay: .milliseconds(5)))
            do {
                _ = try await client.send(HTTPRequest(url: "\(sandbox.baseURL)/services/data/"))
                Issue.record("expected the retries to run out")
            } catch HTTPError.retriesExhausted(let status, let attempts, _, _) {
                #expect(status == 503)
                #expect(attempts == 3)
            }
        }
    }
}

@Suite("QuickXorHash")
struct QuickXorHashTests {
    @Test("matches published test vectors")
    func vectors() {
        #expect(QuickXorHash.hash(Data()) == "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        #expect(QuickXorHash.hash(Data(base64Encoded: "Sg==")!) == "SgAAAAAAAAAAAAAAAQAAAAAAAAA=")
        #expect(QuickXorHash.hash(Data(base64Encoded: "tbQ=")!) == "taAFAAAAAAAAAAAAAgAAAAAAAAA=")
        #expect(QuickXorHash.hash(Data(base64Encoded: "jRRDVA==")!) == "jaDAEKgAAAAAAAAABAAAAAAAAAA=")
    }

    @Test("equals the published reference algorithm on large and odd-sized inputs")
    func reference() {
        for size in [1, 159, 160, 161, 1000, 100_003] {
            let data = Data((0..<size).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) })
            #expect(QuickXorHash.hash(data) == ReferenceQuickXor.hash(data), "\(size) bytes")
        }
    }

    @Test("hashing in pieces equals hashing at once")
    func incremental() {
        let data = Data((0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 131) })
        var hasher = QuickXorHash()
        var offset = 0
        for size in [1, 159, 160, 161, 4096, 7, 33_333] {
            let end = min(data.count, offset + size)
            hasher.update(data.subdata(in: offset..<end))
            offset = end
        }
        hasher.update(data.subdata(in: offset..<data.count))
        #expect(hasher.finalize() == QuickXorHash.hash(data))
    }
}

/// The reference algorithm as Microsoft publishes it (C#), ported byte for byte: the yardstick for the fast one.
enum ReferenceQuickXor {
    static func hash(_ data: Data) -> String {
        let width = 160, shift = 11, lastCellBits = 32
        var cells: [UInt64] = [0, 0, 0]
        var vectorArrayIndex = 0, vectorOffset = 0
        let bytes = [UInt8](data)
        for i in 0..<min(bytes.count, width) {
            let isLastCell = vectorArrayIndex == cells.count - 1
            let bitsInVectorCell = isLastCell ? lastCellBits : 64
            if vectorOffset <= bitsInVectorCell - 8 {
                var j = i
                while j < bytes.count { cells[vectorArrayIndex] ^= UInt64(bytes[j]) << UInt64(vectorOffset); j += width }
            } else {
                let index2 = isLastCell ? 0 : vectorArrayIndex + 1
                var xored: UInt8 = 0
                var j = i
                while j < bytes.count { xored ^= bytes[j]; j += width }
                cells[vectorArrayIndex] ^= UInt64(xored) << UInt64(vectorOffset)
                cells[index2] ^= UInt64(xored) >> UInt64(bitsInVectorCell - vectorOffset)
            }
            vectorOffset += shift
            while vectorOffset >= bitsInVectorCell {
                vectorArrayIndex = isLastCell ? 0 : vectorArrayIndex + 1
                vectorOffset -= bitsInVectorCell
            }
        }
        var digest = [UInt8](repeating: 0, count: 20)
        for (cellIndex, cell) in cells.enumerated() {
            for byte in 0..<8 where cellIndex * 8 + byte < 20 { digest[cellIndex * 8 + byte] = UInt8(truncatingIfNeeded: cell >> UInt64(byte * 8)) }
        }
        for byte in 0..<8 { digest[12 + byte] ^= UInt8(truncatingIfNeeded: UInt64(bytes.count) >> UInt64(byte * 8)) }
        return Data(digest).base64EncodedString()
    }
}
