import Foundation
import Writeback

extension StagingArea {
    /// A sealed staged file holding `data`, as a closed written file leaves it.
    func stage(_ data: Data) throws -> String {
        let (file, descriptor) = try create()
        defer { close(descriptor) }
        _ = data.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        try seal(file, descriptor: descriptor)
        return file
    }
}
