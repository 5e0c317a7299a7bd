import Foundation

/// Uploads under way, with how far each has got: what `crmfs status` shows as progress bars. The
/// uploader reports each fragment the service accepted; the rate is over the upload so far.
public final class UploadProgress: @unchecked Sendable {
    public struct Upload: Sendable {
        public var name: String
        public var bytes: Int64
        public var sent: Int64
        public var started: ContinuousClock.Instant
        /// Bytes the session already held when this attempt started (a resumed upload): not counted in the rate.
        public var resumedAt: Int64?

        /// Bytes a second over this attempt so far; nil until something was sent.
        public var bytesPerSecond: Double? {
            let elapsed = ContinuousClock.now - started
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            let moved = sent - (resumedAt ?? 0)
            return seconds > 0 && moved > 0 ? Double(moved) / seconds : nil
        }

        public var secondsLeft: Double? { bytesPerSecond.map { Double(bytes - sent) / $0 } }
    }

    private let lock = NSLock()
    private var uploads: [Int64: Upload] = [:]

    public init() {}

    func begin(_ id: Int64, name: String, bytes: Int64) {
        lock.withLock { uploads[id] = Upload(name: name, bytes: bytes, sent: 0, started: .now) }
    }

    /// The service holds the first `sent` bytes (first reported as the attempt starts).
    func advance(_ id: Int64, to sent: Int64) {
        lock.withLock {
            guard var upload = uploads[id] else { return }
            if upload.resumedAt == nil { upload.resumedAt = sent }  // the first report: where this attempt starts
            upload.sent = max(upload.sent, min(sent, upload.bytes))
            uploads[id] = upload
        }
    }

    func end(_ id: Int64) { lock.withLock { _ = uploads.removeValue(forKey: id) } }

    /// How many uploads are sending their bytes now.
    public var count: Int { lock.withLock { uploads.count } }

    /// The uploads under way, oldest first.
    public var current: [Upload] { lock.withLock { uploads.values.sorted { $0.started < $1.started } } }
}
