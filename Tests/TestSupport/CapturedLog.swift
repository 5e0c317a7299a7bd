import Foundation
import Logging

/// Log lines kept in memory, for tests that check what a component logged (a refusal's reason, say).
public final class CapturedLog: Sendable {
    private let kept = Locked<[String]>([])

    public init() {}

    /// Every line so far, as "LEVEL message key=value ...".
    public var lines: [String] { kept.value }

    public func contains(_ text: String) -> Bool { lines.contains { $0.contains(text) } }

    /// A logger whose lines (at debug and above) are kept here.
    public func logger(label: String) -> Logger {
        var logger = Logger(label: label) { _ in Handler(sink: self) }
        logger.logLevel = .debug
        return logger
    }

    fileprivate func append(_ line: String) { kept.withLock { $0.append(line) } }

    private struct Handler: LogHandler {
        let sink: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let all = metadata.merging(event.metadata ?? [:]) { $1 }
            let fields = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            sink.append("\(event.level) \(event.message) \(fields)")
        }
    }
}
