import Config
import FileSystem
import Foundation
import Graph
import HTTP
import Namespace
import Sandbox
import Testing

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
            _ = try? JSONDecoder().decode(DriveItem.self, from: Data(item.utf8))
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
