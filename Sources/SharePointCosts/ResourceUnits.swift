import Foundation

/// SharePoint's price list: what a Graph request costs against the app's per-minute budget, in resource
/// units (docs/wire-facts.md G11). One rule for the client, which paces itself by it, and the sandbox,
/// which charges by it.
public enum ResourceUnits {
    /// Single-item reads, delta with a token and downloads 1; listings, delta without a token and every
    /// write 2; anything touching permissions 5; a `$batch` 0 (its requests are charged, each at its own cost).
    /// `path` is the URL without its query (with or without scheme and host); `query` its parameters, decoded.
    public static func cost(method: String, path: String, query: [String: String]) -> Int {
        if path.hasSuffix("/$batch") || path.lowercased().hasSuffix("/%24batch") { return 0 }
        if path.contains("/permissions") || (query["$expand"] ?? "").contains("permissions") { return 5 }
        if method != "GET" { return 2 }
        if path.hasSuffix("/delta") || path.contains("/delta(") {
            // A round from a position (`token`, or a page's `$skiptoken`/`$deltatoken`) is 1; the first enumeration 2.
            let fromPosition = query.keys.contains { $0.lowercased().hasSuffix("token") } || path.contains("token=")
            return fromPosition ? 1 : 2
        }
        if path.hasSuffix("/children") || path.hasSuffix("/drives") || path.hasSuffix("/columns") || path.hasSuffix("/versions")
            || path.hasSuffix("/items") {
            return 2
        }
        return 1
    }

    /// The cost of a request given as a whole URL (its query parsed here).
    public static func cost(method: String, url: String) -> Int {
        let parts = url.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        var query: [String: String] = [:]
        if parts.count > 1 {
            for pair in parts[1].split(separator: "&") {
                let field = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let name = String(field[0]).removingPercentEncoding ?? String(field[0])
                query[name] = field.count > 1 ? (String(field[1]).removingPercentEncoding ?? String(field[1])) : ""
            }
        }
        return cost(method: method, path: String(parts[0]), query: query)
    }
}
