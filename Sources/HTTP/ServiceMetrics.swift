import CoreMetrics
import Foundation

/// The counters a mount keeps for an administrator's monitoring (swift-metrics; served in Prometheus's
/// format only when `[metrics]` is configured, otherwise they cost next to nothing).
public enum ServiceMetrics {
    /// A request answered (or failed without an answer: status `error`), by service.
    public static func request(service: String, status: Int?) {
        Counter(label: "crmfs_requests_total", dimensions: [("service", service), ("status", status.map(String.init) ?? "error")]).increment()
    }

    /// Time spent waiting because of a service's budget: the pacer's own, or a Retry-After the service gave.
    public static func waited(_ duration: Duration, reason: String) {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        FloatingPointCounter(label: "crmfs_throttle_wait_seconds_total", dimensions: [("reason", reason)]).increment(by: seconds)
    }

    public static func uploaded(bytes: Int64) {
        Counter(label: "crmfs_upload_bytes_total").increment(by: bytes)
    }

    /// A block read from the on-disk cache, or fetched from the service.
    public static func cacheLookup(hit: Bool) {
        Counter(label: hit ? "crmfs_cache_hits_total" : "crmfs_cache_misses_total").increment()
    }
}
