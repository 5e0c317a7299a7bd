import Foundation

/// The document times SharePoint can hold (`fileSystemInfo`), and making any time a caller gives into one.
/// Graph's times are .NET `DateTimeOffset`s written as four-digit years and Windows keeps file times from
/// 1601, so crmfs keeps times within 1601-01-01 00:00:00 and 9999-12-31 23:59:59 UTC: tar, `cp -p` and
/// rsync copy wilder ones from damaged archives (year 10000, `tv_sec` near 2^63).
public enum SharePointTimes {
    /// 1601-01-01 00:00:00 UTC.
    public static let earliest = Date(timeIntervalSince1970: -11_644_473_600)
    /// 9999-12-31 23:59:59 UTC.
    public static let latest = Date(timeIntervalSince1970: 253_402_300_799)

    /// The time as seconds and nanoseconds since 1970 (a `timespec`, any values), or nil when it is outside
    /// what SharePoint can hold.
    public static func date(seconds: Int, nanoseconds: Int) -> Date? {
        // In Double no Int overflows; the range check keeps the result far from where precision matters.
        let date = Date(timeIntervalSince1970: Double(seconds) + Double(nanoseconds) / 1e9)
        return (earliest...latest).contains(date) ? date : nil
    }

    /// The nearest time SharePoint can hold (as ext4 clamps times to what its inodes hold).
    public static func clamped(seconds: Int, nanoseconds: Int) -> Date {
        if let date = date(seconds: seconds, nanoseconds: nanoseconds) { return date }
        return seconds < 0 ? earliest : latest
    }
}
