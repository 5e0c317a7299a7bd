import CRM
import Config
@testable import FileSystem
import Foundation
@testable import Graph
@testable import HTTP
@testable import Namespace
import Sandbox
import Testing
@testable import Writes

/// Everything that comes off the wire or from the config is parsed without a crash, whatever it is: a
/// crash turns the mount into ENOTCONN for every user. Seeded, so a failure repeats.
@Suite("parsers survive any input")
struct ParserFuzzTests {
    static let rounds = Int(ProcessInfo.processInfo.environment["CRMFS_FUZZ_ROUNDS"] ?? "") ?? 4_000

    @Test("numbers no Int holds (1e19, inf, -0, 1e-400) are no value, not a trap")
    func hugeNumbers() throws {
        for text in ["1e19", "-1e19", "9223372036854775808", "1e308", "-0", "0.5", "1e-400"] {
            // Foundation may refuse some of them (a thrown error is fine); none may trap.
            let json = try? JSONDecoder().decode(JSONValue.self, from: Data("{\"totalSize\": \(text)}".utf8))
            _ = json?["totalSize"]?.intValue
            _ = json?["totalSize"]?.description
        }
        let page = try JSONDecoder().decode(JSONValue.self, from: Data(#"{"totalSize": 1e19, "done": true, "records": []}"#.utf8))
        #expect(page["totalSize"]?.intValue == nil)
        #expect(JSONValue.number(42).intValue == 42)
    }

    @Test("Retry-After: inf, nan, 1e30, negative and text are refused or capped")
    func retryAfterEdges() {
        let now = Date(timeIntervalSince1970: 1_700_000_000)
        #expect(RetryAfter.delay(from: "inf", now: now) == nil)
        #expect(RetryAfter.delay(from: "nan", now: now) == nil)
        #expect(RetryAfter.delay(from: "-5", now: now) == nil)
        #expect(RetryAfter.delay(from: "1e30", now: now) == nil)  // not delta-seconds
        #expect(RetryAfter.delay(from: String(repeating: "9", count: 400), now: now) == RetryAfter.longest)
        #expect(RetryAfter.delay(from: "Fri, 31 Dec 9999 23:59:59 GMT", now: now) == RetryAfter.longest)
        #expect(RetryAfter.delay(from: "1.5", now: now) == .milliseconds(1500))
    }

    @Test("sizes too large for 64 bits are refused: cache_size=9000000TiB in -o and in mount.conf")
    func hugeSizes() throws {
        #expect(ByteSize.parse("9000000TiB") == nil)
        #expect(ByteSize.parse("1e400") == nil)
        #expect(ByteSize.parse("4MiB") == 4 << 20)
        #expect(throws: MountOptionError.self) { try ParsedMountOptions.parse(["cache_size=9000000TiB"]) }
        #expect(throws: MountOptionError.self) { try ParsedMountOptions.parse(["attr_timeout=inf"]) }
        #expect(throws: MountOptionError.self) { try ParsedMountOptions.parse(["entry_timeout=nan"]) }
        // A block map entry per byte of a document: block_size has mount.conf's bounds in -o too.
        #expect(throws: MountOptionError.self) { try ParsedMountOptions.parse(["block_size=1"]) }
        #expect(throws: MountOptionError.self) { try ParsedMountOptions.parse(["block_size=128MiB"]) }
        #expect(try ParsedMountOptions.parse(["block_size=64KiB"]).blockSize == 64 << 10)
        let text = Self.config.replacingOccurrences(of: "[cache]", with: "[cache]\nsize = \"9000000TiB\"")
        do {
            _ = try ConfigLoader.parse(text, path: "/etc/crmfs/sales.conf")
            Issue.record("an impossible cache size was accepted")
        } catch let error as ConfigError {
            #expect(error.key == "cache.size")
        }
    }

    @Test("a table header without a name is a ConfigError naming the line (toml++ would stop the process)")
    func namelessTableHeader() {
        for header in ["[=@9", "[[ =x]]", "[ ]", "[.a]"] {
            do {
                _ = try ConfigLoader.parse(Self.config + "\n" + header + "\n", path: "/etc/crmfs/sales.conf")
                Issue.record("\(header) was accepted")
            } catch let error as ConfigError {
                #expect(error.line == Self.config.split(separator: "\n", omittingEmptySubsequences: false).count + 1)
            } catch {
                Issue.record("not a ConfigError: \(error)")
            }
        }
    }

    @Test("random text into every parser: Retry-After, sizes, times, JSON, -o options, templates, mount.conf")
    func randomInput() {
        var random = SeededRandom(seed: 0xC0FFEE)
        for _ in 0..<Self.rounds {
            let text = random.text()
            _ = RetryAfter.delay(from: text)
            _ = ByteSize.parse(text)
            _ = ServiceTime.parse(text)
            _ = HTTPDate.parse(text)
            _ = try? ParsedMountOptions.parse([text])
            _ = try? ParsedMountOptions.parse(["cache_size=\(text)", "attr_timeout=\(text)", "uid=\(text)", "umask=\(text)"])
            let template = Template(text)
            _ = template.fields
            _ = template.expand { $0 + text }
            _ = EntryNaming.fit(EntryNaming.sanitize(text))
            if let json = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) {
                _ = json.intValue
                _ = json.description
            }
            _ = try? JSONDecoder().decode(DriveItem.self, from: Data(text.utf8))
        }
    }

    @Test("random JSON numbers and dates in Graph and Salesforce answers decode or fail, never trap")
    func randomServiceAnswers() {
        var random = SeededRandom(seed: 7)
        for _ in 0..<Self.rounds {
            let number = random.number()
            let date = random.pick(["2026-01-15T10:20:30Z", "2026-13-45T99:99:99Z", "0000-00-00", "9999-12-31T23:59:59.9999999999+99:99", random.text()])
            let item = #"{"id":"1","name":"a","size":\#(number),"lastModifiedDateTime":"\#(date)","file":{"hashes":{"quickXorHash":"x"}},"fileSystemInfo":{"lastModifiedDateTime":"\#(date)"}}"#
            if let decoded = try? JSONDecoder().decode(DriveItem.self, from: Data(item.utf8)) { Self.document(decoded) }
            let page = #"{"totalSize":\#(number),"done":false,"records":[{"Id":"001","Amount":\#(number),"CloseDate":"\#(date)"}]}"#
            if let json = try? JSONDecoder().decode(JSONValue.self, from: Data(page.utf8)) {
                _ = json["totalSize"]?.intValue
                _ = json["records"]?.arrayValue?.first?["Amount"]?.description
            }
            _ = ServiceTime.parse(date)
        }
    }

    @Test("random mutations of a valid mount.conf give a config or a ConfigError")
    func randomConfigs() {
        var random = SeededRandom(seed: UInt64(ProcessInfo.processInfo.environment["CRMFS_FUZZ_SEED"] ?? "") ?? 11)
        let lines = Self.config.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for _ in 0..<Self.rounds / 4 {
            var mutated = lines
            for _ in 0..<random.int(1...3) {
                let index = random.int(0...(mutated.count - 1))
                switch random.int(0...3) {
                case 0: mutated[index] = random.text()
                case 1: mutated.remove(at: index)
                case 2:
                    if let equals = mutated[index].firstIndex(of: "=") {
                        mutated[index] = String(mutated[index][...equals]) + " " + random.pick(["\"\(random.text())\"", random.number(), "[1, \"a\"]", "{ a = 1 }", "true"])
                    }
                default: mutated.insert(mutated[index], at: index)
                }
            }
            do {
                _ = try ConfigLoader.parse(mutated.joined(separator: "\n"), path: "/etc/crmfs/sales.conf")
            } catch is ConfigError {
            } catch {
                Issue.record("not a ConfigError: \(error)")
            }
        }
    }

    static let config = """
        [salesforce]
        instance_url = "https://contoso.my.salesforce.com"
        client_id = "id"
        client_secret_file = "secrets/sf"

        [graph]
        tenant = "contoso"
        client_id = "id"
        client_secret_file = "secrets/graph"
        site = "contoso.sharepoint.com:/sites/Sales"

        [cache]
        block_size = "4MiB"

        [writeback]
        fragment_size = "10MiB"

        [[objects]]
        object = "Account"
        directory = "Accounts"
        name = "{Name}"
        folder = "Accounts/{Name} ({Id})"
        fields = ["Name", "Industry"]
        """
}

/// The sandbox's seeded generator, with helpers for hostile text and numbers.
struct SeededRandom {
    var generator: SeededGenerator

    init(seed: UInt64) { generator = SeededGenerator(seed: seed) }

    mutating func next() -> UInt64 { generator.next() }

    mutating func int(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(next() % UInt64(range.count)) }

    mutating func pick<T>(_ choices: [T]) -> T { choices[int(0...(choices.count - 1))] }

    static let pieces = ["{", "}", "{Name}", "[", "]", "\"", "\\", ":", "/", ".", "..", "-", "+", "e", "E", "inf", "nan", "1e19", "1e30", "-1",
                         "9999999999999999999999", "0x10", "TiB", "MiB", "=", ",", "T", "Z", "GMT", "Fri, 31 Dec 9999 23:59:59 GMT",
                         "\0", "\u{FFFF}", "é", "🙂", " ", "\n", "true", "null", "{\"a\":1e400}", "[[", "]]", "#", "'", "%", "$", "2026-01-15"]

    mutating func text() -> String {
        var result = ""
        for _ in 0..<int(0...8) {
            result += int(0...2) == 0 ? String(UnicodeScalar(UInt8(int(0...127)))) : pick(Self.pieces)
        }
        return result
    }

    mutating func number() -> String {
        pick(["0", "-1", "1e19", "-1e19", "1e308", "1e400", "-0", "0.000001", "18446744073709551616", "123456789012345678901234567890", "3.5",
              String(next()), "\(Int64(bitPattern: next()))"])
    }
}

/// Every number crmfs reads off the wire (headers, JSON fields), each given to what crmfs then does with it:
/// the pacer that pauses every request, the attributes the kernel gets, a block map, a token's expiry. Swift
/// stops the process on an overflow or on turning inf or nan into an integer, so a trap here fails the whole
/// run, and the parameterized case running last names the field.
extension ParserFuzzTests {
    /// Numbers at the edges of the ranges crmfs computes in, written every way a service could.
    static let edgeNumbers = [
        "0", "-0", "1", "-1", "511", "512", "513", "65536", "4194304", "1099511627776", "1099511627777", "9007199254740993",
        "9223372036854775807", "9223372036854775806", "9223372036854775296", "9223372036854775808", "-9223372036854775808",
        "-9223372036854775809", "18446744073709551615", "18446744073709551616", "9.3e15", "9e15", "1e16", "9.2e18", "1e19", "-1e19",
        "1e308", "-1e308", "1.7976931348623157e308", "1e400", "-1e400", "1e-400", "5e-324", "inf", "-inf", "+inf", "infinity",
        "Infinity", "nan", "NaN", "-nan", "0x1p63", "-0x1p63", "0x1.fffffffffffffp1023", "0x10", "1.5", "0.5", "-0.5", "2.5e2", "1e3",
        " 5 ", "+5", "5.", ".5", "", " ", "abc", "5000/0", "1-2", "--1", "1e", "e5", "1_000", "١٢",
        String(repeating: "9", count: 400), "-" + String(repeating: "9", count: 400), "0." + String(repeating: "0", count: 400) + "1",
    ]

    /// Where a number comes from; `deliver` hands one to what crmfs does with it and checks the outcome is in range.
    enum WireField: String, CaseIterable, Sendable {
        case retryAfter = "Retry-After"
        case rateLimit = "RateLimit-Remaining, RateLimit-Reset (an answer's headers, or a $batch answer's)"
        case limitInfo = "Sforce-Limit-Info"
        case contentRange = "Content-Range"
        case driveItemSize = "a drive item's size (listing, delta, upload answer, kept tree)"
        case childCount = "folder childCount, a version's size"
        case nextExpectedRanges = "nextExpectedRanges"
        case expiresIn = "a token's expires_in"
        case issuedAt = "Salesforce's issued_at"
        case deviceCode = "device code interval and expires_in"
        case salesforceNumbers = "Salesforce totalSize, httpStatusCode, number fields; $batch status"
        case dates = "dates: fileSystemInfo, lastModifiedDateTime, SystemModstamp, Retry-After"
        case blockSize = "-o block_size, and the block map of the largest document"
    }

    @Test("every number crmfs reads off the wire takes every edge (inf, nan, 2^63, 1e400, 0x1p63, 400 digits) and stays in range",
          arguments: WireField.allCases)
    func wireNumberEdges(_ field: WireField) {
        for text in Self.edgeNumbers { Self.deliver(field, text) }
    }

    @Test("seeded random numbers and text into every number crmfs reads off the wire", arguments: WireField.allCases)
    func randomWireNumbers(_ field: WireField) {
        var random = SeededRandom(seed: UInt64(ProcessInfo.processInfo.environment["CRMFS_FUZZ_SEED"] ?? "") ?? 0xF1E1D)
        for _ in 0..<Self.rounds / 4 {
            Self.deliver(field, random.int(0...3) == 0 ? random.text() : random.wireNumber())
        }
    }

    @Test("WireNumber: words, hex and non-finite numbers are none; huge ones are the bound they pass")
    func wireNumberRules() throws {
        #expect(WireNumber.double(" 5 ", in: 0...10) == 5)
        #expect(WireNumber.double("-3", in: 0...10) == 0)
        #expect(WireNumber.double("2.5e2", in: 0...1000) == 250)
        for text in ["inf", "-inf", "infinity", "nan", "0x1p63", "", " ", "abc", "1e", "5000/0"] {
            #expect(WireNumber.double(text, in: 0...10) == nil, "\(text)")
        }
        #expect(WireNumber.double(String(repeating: "9", count: 400), in: 0...10) == 10)
        #expect(WireNumber.double(json: .number(.nan), in: 0...10) == nil)
        #expect(WireNumber.double(json: .string("7"), in: 0...10) == 7)
        #expect(WireNumber.int64("9223372036854775808", in: 0...Int64.max) == Int64.max)
        #expect(WireNumber.int64("-" + String(repeating: "9", count: 40), in: -5...5) == -5)
        #expect(WireNumber.int64("1.5", in: 0...10) == nil)
        #expect(WireNumber.int64(9.3e18, in: 0...Int64.max) == Int64.max)
        #expect(WireNumber.int64(0x1p63, in: Int64.min...Int64.max) == Int64.max)
        #expect(WireNumber.int64(-1e300, in: 0...10) == 0)
        #expect(WireNumber.int64(.infinity, in: 0...10) == nil)
        #expect(WireNumber.int(json: .number(9.2e18), in: 1...60) == 60)
        #expect(WireNumber.int(json: .string("4.6"), in: 1...60) == 5)
        #expect(WireNumber.duration(seconds: "9e15", longest: .seconds(300)) == Duration.seconds(300))
        #expect(WireNumber.duration(seconds: "1.5", longest: .seconds(300)) == Duration.milliseconds(1500))

        // A size no Int64 holds is a size, not a failed page; a size in a string is none.
        let huge = try JSONDecoder().decode(DriveItem.self, from: Data(#"{"id":"1","size":1e19,"file":{}}"#.utf8))
        #expect(huge.size == Int64.max && huge.byteSize == DriveItem.largestSize)
        #expect(try JSONDecoder().decode(DriveItem.self, from: Data(#"{"id":"1","size":1.5}"#.utf8)).size == 2)
        #expect(try JSONDecoder().decode(DriveItem.self, from: Data(#"{"id":"1","size":"12"}"#.utf8)).size == nil)
        #expect(try JSONDecoder().decode(DriveItem.self, from: Data(#"{"id":"1","size":-5}"#.utf8)).byteSize == 0)

        // A finite reset far away pauses every request for `longestPause`, not 285 million years.
        let pacer = ResourcePacer(unitsPerMinute: 1200)
        pacer.observe(HTTPResponse(status: 200, headers: ["RateLimit-Remaining": "0", "RateLimit-Reset": "9e15"]))
        #expect(pacer.pause <= ResourcePacer.longestPause && pacer.pause > ResourcePacer.longestPause - Duration.seconds(60))
    }

    /// What crmfs does with a drive item's size: the tree's node takes `byteSize` (`Tree.applyItems`,
    /// `Tree.adopt`), the kernel gets its attributes, a listing names it, and a first write maps its blocks.
    static func document(_ item: DriveItem) {
        let size = item.byteSize
        #expect((0...DriveItem.largestSize).contains(size), "\(item.size.map { String($0) } ?? "no size")")
        let node = Node(ino: 2, key: .item(item.id), parent: 1, name: "a", type: .file)
        node.item = item
        node.size = size
        let snapshot = node.snapshot(driveID: "b!1")
        let attributes = CRMFileSystem.attributes(of: snapshot, options: MountOptions(), writable: true)
        #expect(attributes.st_size == Int(size) && attributes.st_blocks == Int((size + 511) / 512))
        // Whatever size a node holds (a damaged kept tree, a path that missed the clamp), stat does not trap.
        var raw = snapshot
        raw.size = item.size ?? 0
        #expect(CRMFileSystem.attributes(of: raw, options: MountOptions(), writable: false).st_blocks >= 0)
        if let listed = ListedDocument(item) { #expect(listed.size == size) }
        if let content = snapshot.content, content.size > 0 {
            let fill = RemoteFill(content: content, blockSize: 4 << 20)
            // The kernel's readahead asks for whole pages, past the end of the file.
            try? fill.ready(offset: content.size - 1, length: 4096, overwrite: false) { _ in }
            _ = fill.isComplete
        }
    }

    static func deliver(_ field: WireField, _ text: String) {
        switch field {
        case .retryAfter:
            if let delay = RetryAfter.delay(from: text) { #expect(delay >= Duration.zero && delay <= RetryAfter.longest, "\(text)") }

        case .rateLimit:
            let pacer = ResourcePacer(unitsPerMinute: 1200)
            let answers: [HTTPHeaders] = [
                ["RateLimit-Remaining": "0", "RateLimit-Reset": text],
                ["RateLimit-Remaining": text, "RateLimit-Reset": text],
                ["RateLimit-Remaining": text],
                ["RateLimit-Limit": text, "RateLimit-Remaining": text, "RateLimit-Reset": "1"],
            ]
            for headers in answers { pacer.observe(HTTPResponse(status: 200, headers: headers)) }
            for status in [429, 503] {
                pacer.observe(HTTPResponse(status: status, headers: ["Retry-After": text, "RateLimit-Remaining": text, "RateLimit-Reset": text]))
            }
            let pause = pacer.pause
            #expect(pause >= Duration.zero && pause <= ResourcePacer.longestPause, "\(text)")
            _ = ContinuousClock.now + pause  // what `admit` sleeps until

        case .limitInfo:
            for header in ["api-usage=\(text)/5000", "api-usage=18/\(text)", "api-usage=\(text)/\(text)", "api-usage=\(text)"] {
                if let usage = APIUsage(header: header) { #expect(usage.fractionUsed.isFinite, "\(header)") }
            }

        case .contentRange:
            for range in ["bytes 0-99/\(text)", "bytes \(text)-99/100", "bytes 0-\(text)/\(text)", text] {
                let window = RangeWindow(range: 0...99)
                let answer = HTTPResponse(status: 206, headers: ["Content-Range": range])
                _ = try? window.result(response: answer, request: HTTPRequest(url: "https://graph.example/download"))
            }

        case .driveItemSize:
            let bodies = [#"{"id":"1","name":"a","size":\#(text),"eTag":"e","file":{},"@microsoft.graph.downloadUrl":"https://d.example/1"}"#,
                          #"{"id":"1","name":"a","size":"\#(text)","file":{}}"#]
            for body in bodies {
                guard let item = try? JSONDecoder().decode(DriveItem.self, from: Data(body.utf8)) else { continue }
                document(item)
                // The kept tree keeps the item as it came, and gives it back on a remount.
                var writer = CompactWriter()
                item.write(to: &writer)
                if let kept = try? CompactReader.read(Data(writer.bytes), { (reader: inout CompactReader) in try DriveItem(from: &reader) }) {
                    document(kept)
                }
            }
            // One item's size does not fail its page (a delta page would be retried for ever): any JSON number.
            let page = Data(#"[{"id":"1","name":"a","size":\#(text),"file":{}},{"id":"2","name":"b","size":5,"file":{}}]"#.utf8)
            if text.allSatisfy({ "0123456789+-.eE ".contains($0) }),
               case .number? = (try? JSONDecoder().decode(JSONValue.self, from: Data(#"{"n":\#(text)}"#.utf8)))?["n"] {
                #expect((try? JSONDecoder().decode([DriveItem].self, from: page))?.count == 2, "\(text)")
            }

        case .childCount:
            for body in [#"{"id":"1","name":"f","folder":{"childCount":\#(text)}}"#, #"{"id":"1","lastModifiedDateTime":"x","size":\#(text)}"#] {
                if let item = try? JSONDecoder().decode(DriveItem.self, from: Data(body.utf8)) {
                    var writer = CompactWriter()
                    item.write(to: &writer)
                    _ = try? CompactReader.read(Data(writer.bytes), { (reader: inout CompactReader) in try DriveItem(from: &reader) })
                }
                _ = try? JSONDecoder().decode(DriveItemVersion.self, from: Data(body.utf8))
            }

        case .nextExpectedRanges:
            for range in ["\(text)-", "\(text)-\(text)", text, "0-\(text)"] {
                let body = Data(#"{"nextExpectedRanges":["\#(range)"]}"#.utf8)
                if let next = try? GraphClient.nextExpected(in: body, size: 1_000_000) { #expect((0...1_000_000).contains(next), "\(range)") }
            }

        case .expiresIn:
            for body in [#"{"expires_in":\#(text)}"#, #"{"expires_in":"\#(text)"}"#] {
                guard let json = try? JSONDecoder().decode(JSONValue.self, from: Data(body.utf8)) else { continue }
                let lifetime = TokenRequest.lifetime(json)
                if let lifetime { #expect((10...86_400).contains(lifetime), "\(text)") }
                // As the token's: refreshed ahead of its expiry, but not on every request.
                let issued = Date()
                let token = AccessToken(value: Secret("t"), expiresAt: issued.addingTimeInterval(lifetime ?? 3599), issuedAt: issued)
                #expect(!token.needsRefresh(now: issued), "\(text)")
            }

        case .issuedAt:
            let now = Date()
            for json: JSONValue in [["issued_at": .string(text)], ["issued_at": .number(Double(text) ?? 0)]] {
                #expect(abs(TokenRequest.issuedAt(json, now: now).timeIntervalSince(now)) <= 86_400, "\(text)")
            }

        case .deviceCode:
            for body in [#"{"interval":\#(text),"expires_in":\#(text)}"#, #"{"interval":"\#(text)","expires_in":"\#(text)"}"#] {
                guard let json = try? JSONDecoder().decode(JSONValue.self, from: Data(body.utf8)) else { continue }
                let timing = DeviceCodeSignIn.timing(json)
                #expect((1...DeviceCodeSignIn.longestInterval).contains(timing.interval) && (1...3600).contains(timing.lifetime), "\(text)")
                // What the poll loop does with them: a deadline, a sleep's end, slow_down's longer interval.
                _ = Date().addingTimeInterval(timing.lifetime)
                _ = ContinuousClock.now + Duration.seconds(min(timing.interval + 5, DeviceCodeSignIn.longestInterval))
            }

        case .salesforceNumbers:
            let body = #"{"totalSize":\#(text),"done":true,"records":[{"Id":"001","Amount":\#(text)}],"status":\#(text)}"#
            if let json = try? JSONDecoder().decode(JSONValue.self, from: Data(body.utf8)) {
                _ = json["totalSize"]?.intValue
                _ = json["records"]?.arrayValue?.first?["Amount"]?.description
                _ = json["status"]?.intValue  // a $batch answer's
            }
            _ = try? JSONDecoder().decode(CompositeResult.self, from: Data(#"{"referenceId":"q0","httpStatusCode":\#(text)}"#.utf8))

        case .dates:
            for candidate in [text, "\(text)-01-01T00:00:00Z", "2026-01-15T10:20:\(text)Z", "2026-01-15T10:20:30\(text)"] {
                if let date = ServiceTime.parse(candidate) { _ = CRMFileSystem.time(date) }
            }
            for candidate in [text, "Fri, 31 Dec \(text) 23:59:59 GMT"] {
                if let date = HTTPDate.parse(candidate) { _ = CRMFileSystem.time(date) }
            }
            _ = CRMFileSystem.time(Date(timeIntervalSince1970: Double(text) ?? 0))  // any time a node may hold, inf and nan too

        case .blockSize:
            for option in ["block_size=\(text)", "block_size=\(text)KiB", "block_size=\(text)MiB"] {
                guard let block = (try? ParsedMountOptions.parse([option]))?.blockSize else { continue }
                #expect(((64 << 10)...(64 << 20)).contains(block), "\(option)")
                let fill = RemoteFill(content: RemoteContent(driveID: "b!1", itemID: "1", eTag: "e", size: DriveItem.largestSize), blockSize: block)
                _ = fill.isComplete
            }
        }
    }
}

extension SeededRandom {
    /// A number as a service might write one: an edge, a random integer or Double (nan and inf among them), a
    /// power of two or one off it, or a run of digits.
    mutating func wireNumber() -> String {
        switch int(0...5) {
        case 0: return pick(ParserFuzzTests.edgeNumbers)
        case 1: return number()
        case 2: return String(Double(bitPattern: next()))
        case 3:
            let power = UInt64(1) << UInt64(int(0...63))
            return (int(0...1) == 0 ? "-" : "") + String(power &+ UInt64(int(0...2)) &- 1)
        case 4:
            var digits = ""
            for _ in 0..<int(1...40) { digits += String(int(0...9)) }
            return digits
        default:
            return String(Double(Int64(bitPattern: next())) * pow(10, Double(int(-20...20))))
        }
    }
}
