import Foundation

/// Microsoft's QuickXorHash, the only content hash OneDrive for Business and SharePoint report
/// (`file.hashes.quickXorHash`, base64). A port of the published reference algorithm:
/// bytes are XORed into a 160-bit ring, each shifted 11 bits further, and the length is XORed in last.
public struct QuickXorHash: Sendable {
    private static let widthInBits = 160
    private static let shift = 11
    private static let bitsInLastCell = widthInBits % 64  // 32

    private var cells: [UInt64] = [0, 0, 0]
    private var shiftSoFar = 0
    private var lengthSoFar: UInt64 = 0

    public init() {}

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        let count = bytes.count
        guard count > 0 else { return }
        var vectorArrayIndex = shiftSoFar / 64
        var vectorOffset = shiftSoFar % 64
        let iterations = min(count, Self.widthInBits)
        cells.withUnsafeMutableBufferPointer { cells in
            for i in 0..<iterations {
                let isLastCell = vectorArrayIndex == cells.count - 1
                let bitsInVectorCell = isLastCell ? Self.bitsInLastCell : 64
                if vectorOffset <= bitsInVectorCell - 8 {
                    var j = i
                    while j < count {
                        cells[vectorArrayIndex] ^= UInt64(bytes[j]) << UInt64(vectorOffset)
                        j += Self.widthInBits
                    }
                } else {
                    let index1 = vectorArrayIndex
                    let index2 = isLastCell ? 0 : vectorArrayIndex + 1
                    let low = bitsInVectorCell - vectorOffset
                    var xored: UInt8 = 0
                    var j = i
                    while j < count {
                        xored ^= bytes[j]
                        j += Self.widthInBits
                    }
                    cells[index1] ^= UInt64(xored) << UInt64(vectorOffset)
                    cells[index2] ^= UInt64(xored) >> UInt64(low)
                }
                vectorOffset += Self.shift
                while vectorOffset >= bitsInVectorCell {
                    vectorArrayIndex = isLastCell ? 0 : vectorArrayIndex + 1
                    vectorOffset -= bitsInVectorCell
                }
            }
        }
        shiftSoFar = (shiftSoFar + Self.shift * (count % Self.widthInBits)) % Self.widthInBits
        lengthSoFar += UInt64(count)
    }

    public mutating func update(_ data: Data) {
        data.withUnsafeBytes { update($0) }
    }

    /// The 20-byte digest, base64-encoded as Graph reports it.
    public func finalize() -> String {
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
