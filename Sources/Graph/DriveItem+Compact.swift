import HTTP

/// A drive item in the compact form the kept tree uses (`CompactWriter`): every field but the
/// short-lived download URL, in declaration order.
extension DriveItem {
    public func write(to writer: inout CompactWriter) {
        writer.write(id)
        writer.write(name)
        writer.write(eTag)
        writer.write(cTag)
        writer.write(size)
        writer.write(createdDateTime)
        writer.write(lastModifiedDateTime)
        writer.write(webUrl)
        writer.write(parentReference) { writer, reference in
            writer.write(reference.driveId); writer.write(reference.id); writer.write(reference.path); writer.write(reference.siteId)
        }
        writer.write(file) { writer, file in
            writer.write(file.mimeType)
            writer.write(file.hashes) { $0.write($1.quickXorHash) }
        }
        writer.write(folder) { $0.write($1.childCount) }
        writer.write(root)
        writer.write(deleted)
        writer.write(fileSystemInfo) { writer, info in
            writer.write(info.createdDateTime); writer.write(info.lastModifiedDateTime)
        }
        writer.write(listItem) { writer, item in
            writer.write(item.id); writer.write(item.eTag); writer.write(item.fields)
        }
        writer.write(sharepointIds) { writer, ids in
            for value in [ids.listId, ids.listItemId, ids.listItemUniqueId, ids.siteId, ids.siteUrl] { writer.write(value) }
        }
    }

    public init(from reader: inout CompactReader) throws {
        id = try reader.string()
        name = try reader.optionalString()
        eTag = try reader.optionalString()
        cTag = try reader.optionalString()
        size = try reader.optional { try $0.int64() }
        createdDateTime = try reader.optionalString()
        lastModifiedDateTime = try reader.optionalString()
        webUrl = try reader.optionalString()
        parentReference = try reader.optional {
            ItemReference(driveId: try $0.optionalString(), id: try $0.optionalString(), path: try $0.optionalString(), siteId: try $0.optionalString())
        }
        file = try reader.optional {
            FileFacet(mimeType: try $0.optionalString(), hashes: try $0.optional { FileFacet.Hashes(quickXorHash: try $0.optionalString()) })
        }
        folder = try reader.optional { FolderFacet(childCount: try $0.optional { try $0.int() }) }
        root = try reader.optional { try $0.json() }
        deleted = try reader.optional { try $0.json() }
        fileSystemInfo = try reader.optional {
            FileSystemInfo(createdDateTime: try $0.optionalString(), lastModifiedDateTime: try $0.optionalString())
        }
        listItem = try reader.optional {
            ListItem(id: try $0.optionalString(), eTag: try $0.optionalString(), fields: try $0.optional { try $0.jsonObject() })
        }
        sharepointIds = try reader.optional {
            SharePointIDs(listId: try $0.optionalString(), listItemId: try $0.optionalString(), listItemUniqueId: try $0.optionalString(),
                          siteId: try $0.optionalString(), siteUrl: try $0.optionalString())
        }
        downloadURL = nil
    }
}
