import Foundation
@testable import Namespace
import Testing
@testable import Writes

/// The block-by-block copy of a remote document, without a kernel or a service: fetches are recorded.
@Suite("copying a remote document block by block")
struct RemoteFillTests {
    /// A 1,000-byte document in blocks of 100.
    static func fill(size: Int64 = 1000) -> RemoteFill {
        RemoteFill(content: RemoteContent(driveID: "b!1", itemID: "01A", eTag: "\"{1},1\"", size: size), blockSize: 100)
    }

    @Test("a write fetches only the blocks it covers in part; those it covers whole need nothing")
    func writeFetchesPartialBlocks() throws {
        let fill = Self.fill()
        var fetched: [Int64] = []
        try fill.ready(offset: 150, length: 300, overwrite: true) { fetched.append($0) }
        #expect(fetched == [1, 4])
        // The background copy takes what is left, in order, and never a block a write settled.
        var rest: [Int64] = []
        while let index = fill.claimNext() {
            rest.append(index)
            fill.finished(index, error: nil)
        }
        #expect(rest == [0, 5, 6, 7, 8, 9])
        #expect(fill.isComplete)
    }

    @Test("a read fetches every block it touches, once; a write past the end needs nothing")
    func readsFetchEverything() throws {
        let fill = Self.fill()
        var fetched: [Int64] = []
        try fill.ready(offset: 150, length: 300, overwrite: false) { fetched.append($0) }
        try fill.ready(offset: 100, length: 100, overwrite: false) { fetched.append($0) }
        try fill.ready(offset: 1000, length: 50, overwrite: true) { fetched.append($0) }
        #expect(fetched == [1, 2, 3, 4])
    }

    @Test("a block being fetched is waited for, not fetched twice")
    func concurrentReadersShareAFetch() async throws {
        let fill = Self.fill()
        let count = Counter()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    try await Task.detached {
                        try fill.ready(offset: 320, length: 10, overwrite: false) { _ in
                            count.add()
                            Thread.sleep(forTimeInterval: 0.05)
                        }
                    }.value
                }
            }
            try await group.waitForAll()
        }
        #expect(count.value == 1)
    }

    @Test("complete() waits for the last block; a failure reaches the waiter; cleared, the copy goes on; cancel ends it")
    func completion() async throws {
        let fill = Self.fill(size: 250)
        let first = try #require(fill.claimNext())
        fill.finished(first, error: nil)
        let second = try #require(fill.claimNext())
        fill.finished(second, error: CancellationError())
        await #expect(throws: CancellationError.self) { try await fill.complete() }
        #expect(throws: CancellationError.self) { try fill.waitUntilComplete() }
        fill.clearFailure()
        let waiter = Task { try await fill.complete() }
        while let index = fill.claimNext() { fill.finished(index, error: nil) }
        try await waiter.value
        #expect(fill.isComplete)

        let other = Self.fill()
        _ = other.claimNext().map { other.finished($0, error: nil) }
        other.cancel()
        #expect(other.isComplete)
        try await other.complete()
    }
}

/// Names as the mount shows them, from names the services hold.
@Suite("entry names")
struct EntryNamingTests {
    @Test("unsafe names become safe; names that end up equal all get their Id, before a file's extension")
    func safeAndUnique() {
        let names = EntryNaming.unique([
            (id: "1", base: "a/b.txt", keepsExtension: true), (id: "2", base: "a_b.txt", keepsExtension: true),
            (id: "3", base: "..", keepsExtension: true), (id: "4", base: "Plan", keepsExtension: false),
            (id: "5", base: "x\u{0}y", keepsExtension: true),
        ])
        #expect(names["1"] == "a_b (1).txt")
        #expect(names["2"] == "a_b (2).txt")
        #expect(names["3"] == "_..")
        #expect(names["4"] == "Plan")
        #expect(names["5"] == "x_y")
    }

    @Test("ids the services send go into names cleaned and at most 64 characters: no '/', no control character, within 255 bytes")
    func idsInNamesAreCleaned() {
        let hostile = "../x/\u{1B}[2J" + String(repeating: "Z", count: 400)
        let names = EntryNaming.unique([(id: hostile, base: "Twin", keepsExtension: false), (id: "001A", base: "Twin", keepsExtension: false)])
        let name = names[hostile]!
        #expect(!name.contains("/") && !name.unicodeScalars.contains { $0.value < 0x20 }, "\(name)")
        #expect(name.utf8.count <= 255 && name.hasPrefix("Twin (___x__") && name.count == "Twin ()".count + 64, "\(name)")
        #expect(names["001A"] == "Twin (001A)")
        #expect(EntryNaming.safeID("0018d0000000001AAA") == "0018d0000000001AAA")
        #expect(EntryNaming.safeID("01ABCDEF!xyz-_") == "01ABCDEF!xyz-_")
        #expect(EntryNaming.safeID("") == "_")
    }

    @Test("a name equal to another's name with its Id takes its own Id too; the result is unique and within 255 bytes")
    func uniqueByFinalForm() {
        let long = String(repeating: "é", count: 200) + ".pdf"
        let names = EntryNaming.unique([
            (id: "A1", base: "Acme", keepsExtension: false), (id: "A2", base: "Acme", keepsExtension: false),
            (id: "A3", base: "Acme (A1)", keepsExtension: false), (id: "L", base: long, keepsExtension: true),
        ])
        #expect(names["A1"] == "Acme (A1)")
        #expect(names["A3"] == "Acme (A1) (A3)")
        #expect(Set(names.values).count == names.count)
        #expect(names["L"]!.utf8.count <= 255)
        #expect(names["L"]!.hasSuffix(" (L).pdf"))
        // The same entries name the same way every time.
        #expect(EntryNaming.unique([(id: "A2", base: "Acme", keepsExtension: false), (id: "A1", base: "Acme", keepsExtension: false)])["A1"] == "Acme (A1)")
    }
}

private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}
