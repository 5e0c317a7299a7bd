import Foundation

/// `POST /composite` per docs/wire-facts.md S5: up to 25 subrequests run in order as one API call, each
/// answered in `compositeResponse` (always HTTP 200 on top); `@{ref.field}` reaches into earlier
/// answers; with `allOrNone` a failure rolls every write back and the others report PROCESSING_HALTED.
extension SalesforceService {
    static let maxSubrequests = 25
    /// Of those, at most this many may be queries (query, queryAll) or sObject Collections (docs/wire-facts.md S5).
    static let maxQuerySubrequests = 5

    static func isQueryOrCollection(_ url: String) -> Bool {
        let path = url.split(separator: "?").first.map(String.init) ?? url
        return path.hasSuffix("/query") || path.hasSuffix("/queryAll") || path.contains("/query/") || path.contains("/queryAll/")
            || path.contains("/composite/sobjects")
    }

    func composite(_ request: SandboxRequest, version: String) throws -> SandboxResponse {
        guard let body = (try? JSONSerialization.jsonObject(with: request.body)) as? [String: Any],
              let subrequests = body["compositeRequest"] as? [[String: Any]] else {
            throw failure(400, "JSON_PARSER_ERROR", "The request body must be an object with a compositeRequest array.")
        }
        guard subrequests.count <= Self.maxSubrequests else {
            throw failure(400, "INVALID_INPUT", "Composite requests take at most \(Self.maxSubrequests) subrequests.")
        }
        let queries = subrequests.filter { Self.isQueryOrCollection($0["url"] as? String ?? "") }.count
        guard queries <= Self.maxQuerySubrequests else {
            throw failure(400, "INVALID_INPUT", "Composite requests take at most \(Self.maxQuerySubrequests) query or sObject Collections subrequests; this one has \(queries).")
        }
        for subrequest in subrequests {
            guard let reference = subrequest["referenceId"] as? String, !reference.isEmpty,
                  reference.unicodeScalars.allSatisfy({ CharacterSet.alphanumerics.contains($0) && $0.isASCII || $0 == "_" }) else {
                throw failure(400, "INVALID_INPUT", "referenceId must contain only letters, digits and underscores.")
            }
            let headers = (subrequest["httpHeaders"] as? [String: Any] ?? [:]).keys.map { $0.lowercased() }
            if let forbidden = headers.first(where: { ["accept", "authorization", "content-type"].contains($0) }) {
                throw failure(400, "INVALID_INPUT", "Subrequests must not set the \(forbidden) header; they inherit it.")
            }
        }
        stats.increment("sf.composite")
        let allOrNone = body["allOrNone"] as? Bool ?? false
        let checkpoint = try store.recordCheckpoint()
        var answers: [[String: Any]] = []
        var bodies: [String: Any] = [:]
        var failed = false
        for subrequest in subrequests {
            let reference = subrequest["referenceId"] as! String
            if failed && allOrNone {
                answers.append(Self.halted(reference))
                continue
            }
            guard let method = subrequest["method"] as? String, let url = subrequest["url"] as? String,
                  let resolvedURL = Self.substitute(url, answers: bodies) as? String else {
                failed = true
                answers.append(Self.halted(reference))
                continue
            }
            var payload = Data()
            if let json = subrequest["body"] {
                guard let resolved = Self.substitute(json, answers: bodies) else {
                    failed = true
                    answers.append(Self.halted(reference))
                    continue
                }
                payload = try JSONSerialization.data(withJSONObject: resolved)
            }
            let response = run(request.subrequest(method: method, url: resolvedURL, body: payload), version: version)
            let answer: Any = response.jsonBody ?? NSNull()
            if (200..<300).contains(response.status) { bodies[reference] = answer } else { failed = true }
            answers.append(["body": answer, "httpHeaders": [String: String](), "httpStatusCode": response.status, "referenceId": reference])
        }
        if failed && allOrNone {
            try store.rollBackRecords(to: checkpoint)
            answers = answers.map { answer in
                (answer["httpStatusCode"] as? Int).map { (200..<300).contains($0) } == true ? Self.halted(answer["referenceId"] as! String) : answer
            }
        }
        return .json(200, ["compositeResponse": answers])
    }

    /// One subrequest, through the same routes as a top-level request, its failure as a response.
    private func run(_ request: SandboxRequest, version: String) -> SandboxResponse {
        let segments = request.segments
        guard segments.count >= 3, segments[0] == "services", segments[1] == "data", segments[2] == version else {
            return failure(400, "INVALID_INPUT", "Subrequest URLs must start with /services/data/\(version)/").response
        }
        let rest = Array(segments.dropFirst(3))
        do {
            return request.method == "GET" ? try route(rest, request: request, version: version) : try write(rest, request: request)
        } catch let failure as ServiceFailure {
            return failure.response
        } catch {
            return self.failure(500, "UNKNOWN_EXCEPTION", "\(error)").response
        }
    }

    private static func halted(_ reference: String) -> [String: Any] {
        ["body": [["errorCode": "PROCESSING_HALTED", "message": "The transaction was rolled back since another operation in the same transaction failed."]],
         "httpHeaders": [String: String](), "httpStatusCode": 400, "referenceId": reference]
    }

    /// Replaces `@{ref.path}` in strings (recursively in bodies) with values from earlier answers; nil when
    /// a reference names an answer that does not exist (its subrequest failed or has not run).
    static func substitute(_ value: Any, answers: [String: Any]) -> Any? {
        switch value {
        case let text as String:
            var result = ""
            var rest = Substring(text)
            while let start = rest.range(of: "@{") {
                guard let end = rest[start.upperBound...].firstIndex(of: "}") else { break }
                result += rest[..<start.lowerBound]
                guard let resolved = lookup(String(rest[start.upperBound..<end]), in: answers) else { return nil }
                result += resolved
                rest = rest[rest.index(after: end)...]
            }
            return result + rest
        case let array as [Any]:
            let mapped = array.map { substitute($0, answers: answers) }
            return mapped.contains { $0 == nil } ? nil : mapped.map { $0! }
        case let object as [String: Any]:
            var mapped: [String: Any] = [:]
            for (key, item) in object {
                guard let resolved = substitute(item, answers: answers) else { return nil }
                mapped[key] = resolved
            }
            return mapped
        default:
            return value
        }
    }

    /// `refAccount.id`, `refQuery.records[0].Id`.
    private static func lookup(_ path: String, in answers: [String: Any]) -> String? {
        var parts = path.split(separator: ".").map(String.init)
        guard !parts.isEmpty, var current = answers[parts.removeFirst()] else { return nil }
        for part in parts {
            var name = Substring(part)
            var indexes: [Int] = []
            while let open = name.lastIndex(of: "["), name.hasSuffix("]"), let index = Int(name[name.index(after: open)..<name.index(before: name.endIndex)]) {
                indexes.insert(index, at: 0)
                name = name[..<open]
            }
            guard let next = (current as? [String: Any])?[String(name)] else { return nil }
            current = next
            for index in indexes {
                guard let array = current as? [Any], index < array.count else { return nil }
                current = array[index]
            }
        }
        switch current {
        case let text as String: return text
        case let number as NSNumber: return number.stringValue
        default: return nil
        }
    }
}

extension SandboxRequest {
    /// A subrequest of a composite request: the parent's headers and origin, its own method, URL and body.
    func subrequest(method: String, url: String, body: Data) -> SandboxRequest {
        var copy = self
        copy.method = method
        let parts = url.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        copy.path = String(parts.first ?? "")
        copy.query = parts.count > 1 ? Dictionary(FormDecoding.decode(String(parts[1])), uniquingKeysWith: { $1 }) : [:]
        copy.body = body
        return copy
    }
}

extension SandboxResponse {
    /// The body as JSON, when it is JSON.
    var jsonBody: Any? {
        guard case .data(let data) = body else { return nil }
        return try? JSONSerialization.jsonObject(with: data)
    }
}
