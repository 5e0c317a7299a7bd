import Foundation

extension SandboxFixture {
    /// The requests the sandbox saw since the last reset, as "METHOD path" with ids and names folded
    /// away, counted.
    public func requestKinds() async throws -> [String: Int] {
        var kinds: [String: Int] = [:]
        for request in try await requests() { kinds[Self.kind(of: request), default: 0] += 1 }
        return kinds
    }

    public static func kind(of request: String) -> String {
        let parts = request.split(separator: " ", maxSplits: 1).map(String.init)
        let method = parts[0], path = parts.count > 1 ? parts[1] : ""
        if path.hasSuffix("/oauth2/v2.0/token") || path == "/services/oauth2/token" { return "\(method) token" }
        if path.hasPrefix("/v1.0/sites/") { return path.hasSuffix(":/drives") ? "\(method) site drives by path" : "\(method) site" }
        if path.hasSuffix("/describe") { return "\(method) describe" }
        if path.hasSuffix("/createUploadSession") { return "\(method) createUploadSession" }
        if path == "/_api/v2.0/uploadSession" { return "\(method) upload fragment" }
        if path.hasPrefix("/_layouts/15/download.aspx") { return "\(method) download" }
        if path.hasSuffix("/$batch") { return "\(method) batch" }
        if path.hasSuffix("/children") { return "\(method) children" }
        if path.hasSuffix("/content") { return "\(method) content" }
        if path.hasSuffix("/root/delta") { return "\(method) delta" }
        if path.contains("/sobjects/") { return "\(method) record" }
        if path.hasSuffix("/query") || path.hasSuffix("/queryAll") || path.hasSuffix("/composite") { return "\(method) soql" }
        if path.contains("/root:/") { return "\(method) item by path" }
        if path.contains("/items/") { return "\(method) item" }
        return "\(method) \(path)"
    }
}
