import Foundation

/// Microsoft's QuickXorHash, the only content hash OneDrive for Business and SharePoint report
/// (`file.hashes.quickXorHash`, base64): byte p of the file is XORed into a 160-bit ring at bit
/// (11 * p) mod 160, and the length is XORed in last.
///
/// Since that position depends only on p mod 160, bytes are first XORed into 160 one-byte lanes (a
/// straight pass of 8-byte words over memory) and the lanes are placed on the ring once, at the end.
/// The result is the published reference algorithm's, bit for bit (tested against it).
public struct QuickXorHash: Sendable {
    private static let widthInBits = 160
    private static let shift = 11
    private static let lanes = 160

    /// lanes[i]: the XOR of every byte whose position is i mod 160, as 20 words.
    private var words = [UInt64](repeating: 0, count: 20)
    private var lengthSoFar: UInt64 = 0

    public init() {}

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        var lane = Int(lengthSoFar % UInt64(Self.lanes))
        var index = 0
        let count = bytes.count
        words.withUnsafeMutableBytes { raw in
            let laneBytes = raw.bindMemory(to: UInt8.self)
            // Up to the next whole turn of the lanes, byte by byte.
            while index < count && lane != 0 {
                laneBytes[lane] ^= base.load(fromByteOffset: index, as: UInt8.self)
                lane = lane + 1 == Self.lanes ? 0 : lane + 1
                index += 1
            }
            // Whole turns: 160 bytes as 20 words.
            let laneWords = raw.bindMemory(to: UInt64.self)
            while count - index >= Self.lanes {
                for word in 0..<20 { laneWords[word] ^= base.loadUnaligned(fromByteOffset: index + word * 8, as: UInt64.self) }
                index += Self.lanes
            }
            let tailBytes = raw.bindMemory(to: UInt8.self)
            while index < count {
                tailBytes[lane] ^= base.load(fromByteOffset: index, as: UInt8.self)
                lane += 1
                index += 1
            }
        }
        lengthSoFar += UInt64(count)
    }

    public mutating func update(_ data: Data) {
        data.withUnsafeBytes { update($0) }
    }

    /// The 20-byte digest, base64-encoded as Graph reports it.
    public func finalize() -> String {
        // Lane i sits at bit (11 * i) mod 160 of the ring: two 64-bit cells and a 32-bit one.
        var cells: [UInt64] = [0, 0, 0]
        words.withUnsafeBytes { raw in
            for lane in 0..<Self.lanes {
                let byte = UInt64(raw[lane])
                let offset = (lane * Self.shift) % Self.widthInBits
                let cell = offset / 64
                let within = offset % 64
                let cellWidth = cell == 2 ? 32 : 64
                cells[cell] ^= byte << UInt64(within)
                if within > cellWidth - 8 {
                    cells[cell == 2 ? 0 : cell + 1] ^= byte >> UInt64(cellWidth - within)
                }
            }
        }
        var digest = [UInt8](repeating: 0, count: Self.widthInBits / 8)
        for (cellIndex, cell) in cells.enumerated() {
            for byte in 0..<8 where cellIndex * 8 + byte < digest.count {
                digest[cellIndex * 8 + byte] = UInt8(truncatingIfNeeded: cell >> UInt64(byte * 8))
            }
        }
        for byte in 0..<8 {
            digest[Self.widthInBits / 8 - 8 + byte] ^= UInt8(truncatingIfNeeded: lengthSoFar >> UInt64(byte * 8))
        }
        return Data(digest).base64EncodedString()
    }

    public static func hash(_ data: Data) -> String {
        var hasher = QuickXorHash()
        hasher.update(data)
        return hasher.finalize()
    }

    /// Hashes a file in 1 MiB pieces.
    public static func hash(fileAt path: String) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw CocoaError(.fileReadNoSuchFile) }
        defer { try? handle.close() }
        var hasher = QuickXorHash()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(chunk) }
        return hasher.finalize()
    }
}
