import Foundation
import HTTP
import SharePointCosts

/// One request inside a `$batch`: a URL relative to the version root (`/drives/…`), JSON in and out.
public struct BatchRequest: Sendable {
    public var id: String
    public var method: String
    public var url: String
    public var headers: [String: String]
    public var body: JSONValue?
    /// Ids of requests in the same batch that must succeed first (Graph then runs them in order).
    public var dependsOn: [String]

    public init(id: String, method: String, url: String, headers: [String: String] = [:], body: JSONValue? = nil, dependsOn: [String] = []) {
        self.id = id
        self.dependsOn = dependsOn
        self.method = method
        self.url = url
        self.headers = body == nil ? headers : headers.merging(["Content-Type": "application/json"]) { first, _ in first }
        self.body = body
    }
}

/// Its answer, matched by id (a batch answers in any order).
public struct BatchResponse: Sendable {
    public var id: String
    public var status: Int
    public var headers: [String: String]
    public var body: JSONValue?
}

/// Column values of one document, for writing many at once.
public struct FieldsUpdate: Sendable {
    public var driveID: String
    public var itemID: String
    public var fields: [String: JSONValue]

    public init(driveID: String, itemID: String, fields: [String: JSONValue]) {
        self.driveID = driveID
        self.itemID = itemID
        self.fields = fields
    }
}

extension GraphClient {
    /// At most this many requests to a batch (docs/wire-facts.md G12).
    public static let batchLimit = 20

    /// Sends the requests in `$batch` calls of at most 20 (each request costed against the budget on its
    /// own). A request answered 429 or 503 goes again in a later batch after its Retry-After, alone with the
    /// others that were throttled, until the retry rules give up; its last answer is then its answer.
    public func batch(_ requests: [BatchRequest]) async throws -> [String: BatchResponse] {
        var answers: [String: BatchResponse] = [:]
        var pending = requests
        var attempt = 0
        while !pending.isEmpty {
            attempt += 1
            var throttled: [BatchRequest] = []
            var wait: Duration = .zero
            for start in stride(from: 0, to: pending.count, by: Self.batchLimit) {
                let chunk = Array(pending[start..<min(start + Self.batchLimit, pending.count)])
                for response in try await sendBatch(chunk) {
                    if (response.status == 429 || response.status == 503) && attempt < http.retry.maxAttempts,
                       let request = chunk.first(where: { $0.id == response.id }) {
                        throttled.append(request)
                        let delay = RetryAfter.delay(from: HTTPHeaders(response.headers)["Retry-After"]) ?? http.retry.backoff(retry: attempt - 1)
                        wait = max(wait, delay)
                        pacer?.observe(HTTPResponse(status: response.status, headers: HTTPHeaders(response.headers)))
                    } else {
                        answers[response.id] = response
                    }
                }
            }
            pending = throttled
            if !pending.isEmpty { try await Task.sleep(for: wait) }
        }
        return answers
    }

    /// Writes column values of many documents and answers each document as it is afterwards (a column
    /// write is a new version: its eTag moves on). Each write goes with a read of its document that
    /// depends on it, in `$batch` calls of up to 10 documents: the new eTags cost no request of their own.
    /// A read that did not get through (its write was retried in a later batch) is made on its own.
    public func stampFields(_ updates: [FieldsUpdate]) async -> [Result<DriveItem, Error>] {
        var requests: [BatchRequest] = []
        for (index, update) in updates.enumerated() {
            requests.append(BatchRequest(id: "w\(index)", method: "PATCH", url: "/drives/\(GraphPath.segment(update.driveID))/items/\(GraphPath.segment(update.itemID))/listItem/fields",
                                         body: .object(update.fields)))
            requests.append(BatchRequest(id: "r\(index)", method: "GET", url: "/drives/\(GraphPath.segment(update.driveID))/items/\(GraphPath.segment(update.itemID))?$select=\(Self.itemSelect)",
                                         dependsOn: ["w\(index)"]))
        }
        let answers: [String: BatchResponse]
        do {
            answers = try await batch(requests)
        } catch {
            return updates.map { _ in .failure(error) }
        }
        var results: [Result<DriveItem, Error>] = []
        for (index, update) in updates.enumerated() {
            let write = requests[2 * index]
            guard let written = answers[write.id] else {
                results.append(.failure(GraphError(status: 0, code: "noAnswer", message: "the batch did not answer this request", request: "PATCH \(write.url)")))
                continue
            }
            guard (200..<300).contains(written.status) else {
                results.append(.failure(failure(written, to: write)))
                continue
            }
            if let read = answers[requests[2 * index + 1].id], read.status == 200, let body = read.body,
               let item = try? JSONDecoder().decode(DriveItem.self, from: JSONEncoder().encode(body)) {
                results.append(.success(item))
            } else {
                results.append(await Result(asyncCatching: { try await self.item(driveID: update.driveID, itemID: update.itemID) }))
            }
        }
        return results
    }

    /// Several items as they are now, in `$batch` calls of 20: by id, nil for one that is gone or that the
    /// caller may not see (404, 403). Other failures throw.
    public func items(driveID: String, ids: [String]) async throws -> [String: DriveItem?] {
        let results = try await itemResults(driveID: driveID, ids: ids)
        var items: [String: DriveItem?] = [:]
        for id in ids {
            guard let result = results[id] else { continue }
            items[id] = .some(try result.get())
        }
        return items
    }

    /// Several items as they are now, in `$batch` calls of 20, each answered on its own: nil for one that
    /// is gone or that the caller may not see (404, 403), the failure for one answered otherwise (the
    /// others are answered all the same). Only a batch that fails as a whole throws.
    public func itemResults(driveID: String, ids: [String]) async throws -> [String: Result<DriveItem?, Error>] {
        let requests = ids.enumerated().map { index, id in
            BatchRequest(id: "i\(index)", method: "GET", url: "/drives/\(GraphPath.segment(driveID))/items/\(GraphPath.segment(id))?$select=\(Self.itemSelect)")
        }
        let answers = try await batch(requests)
        var results: [String: Result<DriveItem?, Error>] = [:]
        for (index, id) in ids.enumerated() {
            let request = requests[index]
            guard let answer = answers[request.id] else {
                results[id] = .failure(GraphError(status: 0, code: "noAnswer", message: "the batch did not answer this request", request: "GET \(request.url)"))
                continue
            }
            switch answer.status {
            case 200:
                if let body = answer.body, let item = try? JSONDecoder().decode(DriveItem.self, from: JSONEncoder().encode(body)) {
                    results[id] = .success(item)
                } else {
                    results[id] = .failure(GraphError(status: 200, code: "invalidItem", message: "not a drive item", request: "GET \(request.url)"))
                }
            case 403, 404: results[id] = .success(nil)
            default: results[id] = .failure(failure(answer, to: request))
            }
        }
        return results
    }

    private func failure(_ answer: BatchResponse, to request: BatchRequest) -> GraphError {
        let body = answer.body.flatMap { try? JSONEncoder().encode($0) } ?? Data()
        return GraphError(response: HTTPResponse(status: answer.status, headers: HTTPHeaders(answer.headers), body: body),
                          request: HTTPRequest(method: request.method, url: endpoint + request.url))
    }

    /// One `$batch` call, its cost paid for every request in it.
    private func sendBatch(_ requests: [BatchRequest]) async throws -> [BatchResponse] {
        try await pacer?.admit(cost: requests.map { ResourceUnits.cost(method: $0.method, url: endpoint + $0.url) }.reduce(0, +))
        let body: JSONValue = .object(["requests": .array(requests.map { request in
            var entry: [String: JSONValue] = ["id": .string(request.id), "method": .string(request.method), "url": .string(request.url)]
            if !request.headers.isEmpty { entry["headers"] = .object(request.headers.mapValues(JSONValue.string)) }
            if let body = request.body { entry["body"] = body }
            if !request.dependsOn.isEmpty { entry["dependsOn"] = .array(request.dependsOn.map(JSONValue.string)) }
            return .object(entry)
        })])
        let request = HTTPRequest(method: "POST", url: "\(endpoint)/$batch", headers: ["Content-Type": "application/json", "Accept": "application/json"],
                                  body: .bytes(try JSONEncoder().encode(body)), isIdempotent: requests.allSatisfy { $0.method == "GET" })
        let response = try await send(request, auth: auth)
        guard let answers = try JSONDecoder().decode(JSONValue.self, from: response.body)["responses"]?.arrayValue else {
            throw GraphError(status: response.status, code: "invalidBatchResponse", message: "no responses", request: request.logDescription)
        }
        return answers.compactMap { answer in
            guard let id = answer["id"]?.stringValue, let status = answer["status"]?.intValue else { return nil }
            let headers = (answer["headers"]?.objectValue ?? [:]).compactMapValues(\.stringValue)
            return BatchResponse(id: id, status: status, headers: headers, body: answer["body"])
        }
    }
}

extension Result where Failure == Error {
    /// The outcome of an async throwing call.
    init(asyncCatching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
