import Foundation
import HTTP

public struct Site: Decodable, Sendable {
    public var id: String
    public var name: String?
    public var displayName: String?
    public var webUrl: String?
}

public struct Drive: Decodable, Sendable {
    public var id: String
    public var name: String
    public var driveType: String?
    public var webUrl: String?
}

public struct ListInfo: Decodable, Sendable {
    public var id: String
    public var name: String?
    public var displayName: String?
}

public struct ItemReference: Codable, Sendable {
    public var driveId: String?
    public var id: String?
    /// Absent in delta responses.
    public var path: String?
    public var siteId: String?
}

public struct FileSystemInfo: Codable, Sendable {
    public var createdDateTime: String?
    public var lastModifiedDateTime: String?
}

public struct FileFacet: Codable, Sendable {
    public struct Hashes: Codable, Sendable { public var quickXorHash: String? }
    public var mimeType: String?
    /// SharePoint reports only quickXorHash, and may not until the file was downloaded once.
    public var hashes: Hashes?
}

public struct FolderFacet: Codable, Sendable {
    public var childCount: Int?

    enum CodingKeys: String, CodingKey { case childCount }
}

extension FolderFacet {
    /// Leniently, as `DriveItem.size`: a `childCount` of `1e19` must not fail a whole page.
    public init(from decoder: any Decoder) throws {
        childCount = try decoder.container(keyedBy: CodingKeys.self).lenientInt64(forKey: .childCount).map { Int($0) }
    }
}

public struct ListItem: Codable, Sendable {
    public var id: String?
    public var eTag: String?
    public var fields: [String: JSONValue]?

    public init(id: String? = nil, eTag: String? = nil, fields: [String: JSONValue]?) {
        self.id = id
        self.eTag = eTag
        self.fields = fields
    }
}

public struct SharePointIDs: Codable, Sendable {
    public var listId: String?
    public var listItemId: String?
    public var listItemUniqueId: String?
    public var siteId: String?
    public var siteUrl: String?
}

/// A file or folder in a document library. Keyed by `id`, which survives renames and moves.
public struct DriveItem: Codable, Sendable {
    public var id: String
    public var name: String?
    public var eTag: String?
    /// Content-only tag; never sent for SharePoint folders.
    public var cTag: String?
    public var size: Int64?
    public var createdDateTime: String?
    public var lastModifiedDateTime: String?
    public var webUrl: String?
    public var parentReference: ItemReference?
    public var file: FileFacet?
    public var folder: FolderFacet?
    public var root: JSONValue?
    public var deleted: JSONValue?
    public var fileSystemInfo: FileSystemInfo?
    public var listItem: ListItem?
    public var sharepointIds: SharePointIDs?
    public var downloadURL: String?

    public var isFolder: Bool { folder != nil || root != nil }
    public var isDeleted: Bool { deleted != nil }

    /// The largest size crmfs takes a document to have: SharePoint's own limit is 250 GB, and no arithmetic on
    /// a size up to this (blocks, ranges, `st_blocks`) can overflow, nor a block map of it grow past 2^24 entries.
    public static let largestSize: Int64 = 1 << 40

    /// `size` as a file's size: none is 0, and a negative or absurd one (a service's bug, a damaged kept tree)
    /// is clamped into `0...largestSize`. What the tree, a listing and a link record take.
    public var byteSize: Int64 { min(max(size ?? 0, 0), Self.largestSize) }

    /// An item with only its id (its other facts unknown), as a test or a change feed makes one.
    public init(id: String) { self.id = id }

    /// As the synthesized decoder, but `size` leniently: one item's `"size": 1e19` or `1.5` would otherwise fail
    /// its whole listing or delta page, and the drive's feed would retry that page for ever.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        name = try container.decodeIfPresent(String.self, forKey: .name)
        eTag = try container.decodeIfPresent(String.self, forKey: .eTag)
        cTag = try container.decodeIfPresent(String.self, forKey: .cTag)
        size = container.lenientInt64(forKey: .size)
        createdDateTime = try container.decodeIfPresent(String.self, forKey: .createdDateTime)
        lastModifiedDateTime = try container.decodeIfPresent(String.self, forKey: .lastModifiedDateTime)
        webUrl = try container.decodeIfPresent(String.self, forKey: .webUrl)
        parentReference = try container.decodeIfPresent(ItemReference.self, forKey: .parentReference)
        file = try container.decodeIfPresent(FileFacet.self, forKey: .file)
        folder = try container.decodeIfPresent(FolderFacet.self, forKey: .folder)
        root = try container.decodeIfPresent(JSONValue.self, forKey: .root)
        deleted = try container.decodeIfPresent(JSONValue.self, forKey: .deleted)
        fileSystemInfo = try container.decodeIfPresent(FileSystemInfo.self, forKey: .fileSystemInfo)
        listItem = try container.decodeIfPresent(ListItem.self, forKey: .listItem)
        sharepointIds = try container.decodeIfPresent(SharePointIDs.self, forKey: .sharepointIds)
        downloadURL = try container.decodeIfPresent(String.self, forKey: .downloadURL)
    }

    /// An item as a delta page shows one deleted (or no longer the caller's to see).
    public static func deleted(id: String) -> DriveItem {
        var item = DriveItem(id: id)
        item.deleted = .object(["state": .string("deleted")])
        return item
    }

    enum CodingKeys: String, CodingKey {
        case id, name, eTag, cTag, size, createdDateTime, lastModifiedDateTime, webUrl, parentReference, file, folder, root,
             deleted, fileSystemInfo, listItem, sharepointIds
        case downloadURL = "@microsoft.graph.downloadUrl"
    }
}

public struct ColumnDefinition: Decodable, Sendable {
    public var id: String?
    public var name: String
    public var displayName: String?
    public var readOnly: Bool?
    public var hidden: Bool?
    public var required: Bool?
    public var text: JSONValue?
    public var choice: JSONValue?
    public var number: JSONValue?
    public var currency: JSONValue?
    public var dateTime: JSONValue?
    public var boolean: JSONValue?
    public var lookup: JSONValue?
    public var personOrGroup: JSONValue?
    public var calculated: JSONValue?

    /// The type facet's name; nil for SharePoint types Graph does not model (read-only strings).
    public var type: String? {
        let facets: [(String, JSONValue?)] = [("text", text), ("choice", choice), ("number", number), ("currency", currency),
                                              ("dateTime", dateTime), ("boolean", boolean), ("lookup", lookup),
                                              ("personOrGroup", personOrGroup), ("calculated", calculated)]
        return facets.first { $0.1 != nil }?.0
    }
}

struct Collection<Element: Decodable>: Decodable {
    var value: [Element]
    var nextLink: String?
    var deltaLink: String?

    enum CodingKeys: String, CodingKey {
        case value
        case nextLink = "@odata.nextLink"
        case deltaLink = "@odata.deltaLink"
    }
}

/// One page of a delta enumeration. Exactly one of `nextLink` and `deltaLink` is set.
public struct DeltaPage: Sendable {
    public var items: [DriveItem]
    public var nextLink: String?
    public var deltaLink: String?

    public init(items: [DriveItem], nextLink: String?, deltaLink: String?) {
        self.items = items
        self.nextLink = nextLink
        self.deltaLink = deltaLink
    }
}

/// What a ranged download returned.
public struct Download: Sendable {
    /// The bytes, for a download into memory (empty for one into a file).
    public var data: Data
    /// How many bytes of the window arrived, wherever they went.
    public var byteCount: Int64
    /// The item's eTag as the download endpoint reported it, when it did.
    public var eTag: String?
    /// The whole file's size, when the server said (Content-Range or a full 200).
    public var totalSize: Int64?

    public init(data: Data = Data(), byteCount: Int64, eTag: String? = nil, totalSize: Int64? = nil) {
        self.data = data
        self.byteCount = byteCount
        self.eTag = eTag
        self.totalSize = totalSize
    }
}

/// One version of a document (`GET .../versions`): `"3.0"`, newest first, the current one included.
public struct DriveItemVersion: Decodable, Sendable {
    public var id: String
    public var lastModifiedDateTime: String?
    public var size: Int64?

    enum CodingKeys: String, CodingKey { case id, lastModifiedDateTime, size }
}

extension DriveItemVersion {
    /// `size` leniently, as `DriveItem`'s.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        lastModifiedDateTime = try container.decodeIfPresent(String.self, forKey: .lastModifiedDateTime)
        size = container.lenientInt64(forKey: .size)
    }
}

extension KeyedDecodingContainer {
    /// A whole number the service may write as any JSON number: an integer, else a finite number rounded and
    /// clamped into Int64's range (`1e19`, `1.5`); nil when absent, null or no number (text, `1e400`).
    func lenientInt64(forKey key: Key) -> Int64? {
        if let value = try? decodeIfPresent(Int64.self, forKey: key) { return value }
        return (try? decodeIfPresent(Double.self, forKey: key)).flatMap { WireNumber.int64($0, in: Int64.min...Int64.max) }
    }
}

/// A document as a folder listing names it, with the short-lived URL of its content.
public struct ListedDocument: Sendable, Equatable {
    public var id: String
    public var name: String
    public var size: Int64
    public var eTag: String
    public var location: String

    public init(id: String, name: String, size: Int64, eTag: String, location: String) {
        self.id = id
        self.name = name
        self.size = size
        self.eTag = eTag
        self.location = location
    }

    /// The item as a document with its URL; nil for a folder or an item that came without one.
    public init?(_ item: DriveItem) {
        guard item.file != nil, let name = item.name, item.size != nil, let eTag = item.eTag, let location = item.downloadURL else { return nil }
        self.init(id: item.id, name: name, size: item.byteSize, eTag: eTag, location: location)
    }
}
