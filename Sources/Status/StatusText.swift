import Foundation

/// `crmfs status` for a person: a few lines per mount, a progress bar per upload.
public enum StatusText {
    public static func render(_ status: MountStatus, now: Date = Date()) -> String {
        var lines = ["\(status.mountpoint)  (\(status.config)\(status.readOnly ? ", read-only" : ""))"]
        let signIns = status.signIns.map { signIn in
            let name = signIn.service == "graph" ? "Microsoft 365" : "Salesforce"
            if let problem = signIn.problem { return "\(name): NOT SIGNED IN (\(problem)); run `crmfs login \(status.config)`" }
            return signIn.kind == "app" ? "\(name) as the app (client credentials)" : "\(name) as \(signIn.account ?? "you")"
        }
        lines.append("  signed in: " + signIns.joined(separator: "; "))
        for upload in status.uploads {
            var line = "  uploading \(upload.name)  \(bar(upload.bytesSent, of: upload.bytes))  \(bytes(upload.bytesSent)) of \(bytes(upload.bytes))"
            if let rate = upload.bytesPerSecond { line += "  \(bytes(Int64(rate)))/s" }
            if let left = upload.secondsLeft { line += "  \(duration(left)) left" }
            lines.append(line)
        }
        lines.append("  changes: \(status.waiting) waiting to be sent, \(status.conflicts.count) in conflicts/, \(status.failed.count) failed")
        for problem in status.failed { lines.append("    failed: \(problem.name): \(problem.reason)") }
        for name in status.conflicts { lines.append("    kept in conflicts/: \(name)") }
        lines.append("  caught up: library \(ago(status.libraryCaughtUp, now: now)), CRM \(ago(status.crmCaughtUp, now: now))")
        if let fleet = status.fleet { lines.append("  fleet: \(fleet)") }
        var budgets: [String] = []
        if let spent = status.graphUnitsLastMinute {
            budgets.append("Graph \(spent) resource units in the last minute" + (status.graphUnitsPerMinute.map { " of \($0)" } ?? ""))
        }
        if let calls = status.salesforceCallsToday {
            budgets.append("Salesforce \(calls) calls today" + (status.salesforceDailyLimit.map { " of \($0)" } ?? ""))
        }
        if !budgets.isEmpty { lines.append("  budgets: " + budgets.joined(separator: "; ")) }
        lines.append("  cache: \(bytes(status.cacheBytes)) of \(bytes(status.cacheLimit))")
        return lines.joined(separator: "\n")
    }

    /// `[########------------]`, 20 wide.
    static func bar(_ done: Int64, of total: Int64, width: Int = 20) -> String {
        let filled = total > 0 ? Int((Double(done) / Double(total) * Double(width)).rounded(.down)) : width
        return "[" + String(repeating: "#", count: min(width, filled)) + String(repeating: "-", count: max(0, width - filled)) + "]"
    }

    static func bytes(_ count: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(count)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(count) B" : String(format: "%.1f", value) + " " + units[unit]
    }

    static func duration(_ seconds: Double) -> String {
        let whole = Int(seconds.rounded(.up))
        if whole < 60 { return "\(whole) s" }
        if whole < 3600 { return "\(whole / 60) min \(whole % 60) s" }
        return "\(whole / 3600) h \(whole % 3600 / 60) min"
    }

    static func ago(_ date: Date?, now: Date) -> String {
        guard let date else { return "not yet" }
        return "\(duration(max(0, now.timeIntervalSince(date)))) ago"
    }
}
