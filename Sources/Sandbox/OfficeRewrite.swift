import Foundation

/// What SharePoint does to an Office document on upload (docs/wire-facts.md G13): it writes library metadata
/// into the file (property promotion), so the stored size and quickXorHash differ from the bytes sent,
/// and every upload of the same bytes is rewritten again. The sandbox does the same to `.docx`, `.xlsx`
/// and `.pptx` uploads that are zip files: `docProps/custom.xml` becomes a part naming the library's
/// version of the item (an earlier one leaves the zip's directory; its bytes stay behind, unlisted, as a
/// rewrite that grows the file each time). Anything else, or a zip it cannot read, is kept as sent.
enum OfficeRewrite {
    static let extensions: Set<String> = ["docx", "xlsx", "pptx", "docm", "xlsm", "pptm"]
    static let partName = "docProps/custom.xml"
    /// Larger files are left alone: the sandbox reads the whole file to rewrite it.
    static let largestRewritten = 256 << 20

    static func applies(to name: String) -> Bool {
        extensions.contains((name as NSString).pathExtension.lowercased())
    }

    /// Rewrites the zip at `path` in place with a property part for `version`; false when it left it as it was.
    @discardableResult
    static func promoteProperties(fileAt path: String, version: Int) -> Bool {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
              let size = attributes[.size] as? Int, size <= largestRewritten,
              let original = FileManager.default.contents(atPath: path),
              let rewritten = rewrite(original, part: Data(properties(version: version).utf8)) else { return false }
        return FileManager.default.createFile(atPath: path, contents: rewritten)
    }

    static func properties(version: Int) -> String {
        """
        <?xml version="1.0" encoding="UTF-8" standalone="yes"?>
        <Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/custom-properties" \
        xmlns:vt="http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes">\
        <property fmtid="{D5CDD505-2E9C-101B-9397-08002B2CF9AE}" pid="2" name="ContentTypeId">\
        <vt:lpwstr>0x0101000C5E4A0CE3A3574C8B0B4BBA8E1A2F8B</vt:lpwstr></property>\
        <property fmtid="{D5CDD505-2E9C-101B-9397-08002B2CF9AE}" pid="3" name="_SharePointItemVersion">\
        <vt:lpwstr>\(version).0</vt:lpwstr></property></Properties>
        """
    }

    /// The zip with `part` stored under `partName`: the new local entry goes where the central directory
    /// was, followed by the directory (without an earlier entry of that name) and its end record.
    static func rewrite(_ zip: Data, part: Data) -> Data? {
        let bytes = [UInt8](zip)
        guard let end = endOfCentralDirectory(bytes) else { return nil }
        let entries = Int(le16(bytes, end + 10)), directorySize = Int(le32(bytes, end + 12)), directoryStart = Int(le32(bytes, end + 16))
        // Zip64 markers, or a directory that does not fit: not a zip this can rewrite.
        guard entries != 0xFFFF, directoryStart + directorySize <= end else { return nil }
        var kept: [UInt8] = []
        var keptCount = 0
        var cursor = directoryStart
        for _ in 0..<entries {
            guard cursor + 46 <= end, le32(bytes, cursor) == 0x0201_4B50 else { return nil }
            let length = 46 + Int(le16(bytes, cursor + 28)) + Int(le16(bytes, cursor + 30)) + Int(le16(bytes, cursor + 32))
            guard cursor + length <= end else { return nil }
            let name = String(decoding: bytes[(cursor + 46)..<(cursor + 46 + Int(le16(bytes, cursor + 28)))], as: UTF8.self)
            if name != partName {
                kept += bytes[cursor..<(cursor + length)]
                keptCount += 1
            }
            cursor += length
        }
        let name = Array(partName.utf8)
        let crc = CRC32.checksum(part)
        let time: UInt16 = 0, date: UInt16 = (2026 - 1980) << 9 | 1 << 5 | 1
        var local: [UInt8] = []
        local += le(UInt32(0x0403_4B50)) + le(UInt16(20)) + le(UInt16(0)) + le(UInt16(0)) + le(time) + le(date)
        local += le(crc) + le(UInt32(part.count)) + le(UInt32(part.count)) + le(UInt16(name.count)) + le(UInt16(0)) + name
        var central: [UInt8] = []
        central += le(UInt32(0x0201_4B50)) + le(UInt16(20)) + le(UInt16(20)) + le(UInt16(0)) + le(UInt16(0)) + le(time) + le(date)
        central += le(crc) + le(UInt32(part.count)) + le(UInt32(part.count)) + le(UInt16(name.count))
        central += le(UInt16(0)) + le(UInt16(0)) + le(UInt16(0)) + le(UInt16(0)) + le(UInt32(0)) + le(UInt32(directoryStart)) + name
        let newDirectoryStart = directoryStart + local.count + part.count
        let directory = kept + central
        var endRecord: [UInt8] = []
        endRecord += le(UInt32(0x0605_4B50)) + le(UInt16(0)) + le(UInt16(0)) + le(UInt16(keptCount + 1)) + le(UInt16(keptCount + 1))
        endRecord += le(UInt32(directory.count)) + le(UInt32(newDirectoryStart)) + le(UInt16(0))
        guard newDirectoryStart + directory.count < Int(UInt32.max) else { return nil }
        var result = Data(bytes[0..<directoryStart])
        result += local
        result += part
        result += directory
        result += endRecord
        return result
    }

    /// Where the end-of-central-directory record starts: the last signature within the comment's reach.
    private static func endOfCentralDirectory(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 22 else { return nil }
        let lowest = max(0, bytes.count - 22 - 0xFFFF)
        var position = bytes.count - 22
        while position >= lowest {
            if le32(bytes, position) == 0x0605_4B50 { return position }
            position -= 1
        }
        return nil
    }

    private static func le16(_ bytes: [UInt8], _ at: Int) -> UInt16 { UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8 }
    private static func le32(_ bytes: [UInt8], _ at: Int) -> UInt32 { UInt32(le16(bytes, at)) | UInt32(le16(bytes, at + 2)) << 16 }
    private static func le(_ value: UInt16) -> [UInt8] { [UInt8(value & 0xFF), UInt8(value >> 8)] }
    private static func le(_ value: UInt32) -> [UInt8] { le(UInt16(value & 0xFFFF)) + le(UInt16(value >> 16)) }
}

/// The zip format's CRC-32 (IEEE 802.3, reflected).
enum CRC32 {
    private static let table: [UInt32] = (0..<256).map { index in
        (0..<8).reduce(UInt32(index)) { crc, _ in crc & 1 == 1 ? 0xEDB8_8320 ^ (crc >> 1) : crc >> 1 }
    }

    static func checksum(_ data: Data) -> UInt32 {
        ~data.reduce(UInt32.max) { crc, byte in table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
    }
}
