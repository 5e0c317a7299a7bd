import Foundation
import Graph
import HTTP
import Namespace
import Testing

/// The kept tree's compact form gives back exactly what was kept, refuses damaged bytes, and still reads
/// the JSON an earlier crmfs kept.
@Suite("kept listings")
struct KeptListingTests {
    static let itemJSON = """
        {"id": "01ABC", "name": "Proposal – draft ü.docx", "eTag": "\\"{A},3\\"", "cTag": "\\"c:{A},3\\"", "size": 5000000000,
         "createdDateTime": "2026-01-02T03:04:05Z", "lastModifiedDateTime": "2026-02-03T04:05:06Z", "webUrl": "https://x/y",
         "parentReference": {"driveId": "b!d", "id": "01PARENT"},
         "file": {"mimeType": "application/pdf", "hashes": {"quickXorHash": "AAAA"}},
         "fileSystemInfo": {"createdDateTime": "2026-01-02T03:04:05Z", "lastModifiedDateTime": "2026-02-03T04:05:06Z"},
         "listItem": {"id": "7", "eTag": "\\"7,1\\"", "fields": {"Stage": "Won", "Amount": -12.5, "Flag": true, "None": null,
                      "Tags": ["a", 1, {"b": false}], "Nested": {"deep": {"x": 1e300}}}}}
        """

    static func json<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func sample() throws -> DirectoryListing {
        let file = try JSONDecoder().decode(DriveItem.self, from: Data(itemJSON.utf8))
        let folder = try JSONDecoder().decode(DriveItem.self, from: Data(#"{"id": "01F", "name": "Contracts", "folder": {"childCount": 2}}"#.utf8))
        return DirectoryListing(key: .record("006Q0000001"), records: [["Id": .string("001A"), "Amount": .number(3), "Closed": .bool(false)], [:]],
                                items: [file, folder], folderItemID: "01PARENT", changedUpTo: Date(timeIntervalSinceReferenceDate: 812_345_678.25))
    }

    @Test("the compact form round-trips every field the tree keeps")
    func roundTrip() throws {
        let listing = try Self.sample()
        let encoded = listing.encoded()
        #expect(encoded.first != UInt8(ascii: "{"))
        let decoded = try #require(DirectoryListing(encoded: encoded))
        #expect(try Self.json(decoded) == Self.json(listing))
        #expect(decoded.items?.first?.listItem?.fields?["Nested"]?["deep"]?["x"] == .number(1e300))
        for key: DirectoryListing.Key in [.object(2), .item("01X")] {
            var other = listing
            other.key = key
            other.records = nil
            other.changedUpTo = nil
            #expect(try Self.json(#require(DirectoryListing(encoded: other.encoded()))) == Self.json(other))
        }
    }

    @Test("damaged bytes are no listing (the directory is listed again), never a crash")
    func damaged() throws {
        let encoded = try Self.sample().encoded()
        for length in stride(from: 0, to: encoded.count, by: 7) {
            #expect(DirectoryListing(encoded: encoded.prefix(length)) == nil)
        }
        #expect(DirectoryListing(encoded: encoded + Data([0])) == nil)
        var wrongVersion = encoded
        wrongVersion[0] = 9
        #expect(DirectoryListing(encoded: wrongVersion) == nil)
    }

    @Test("a listing an earlier crmfs kept as JSON is still read")
    func earlierJSON() throws {
        let listing = try Self.sample()
        let decoded = try #require(DirectoryListing(encoded: JSONEncoder().encode(listing)))
        #expect(try Self.json(decoded) == Self.json(listing))
    }
}
