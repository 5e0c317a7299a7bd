import Foundation
import HTTP

/// One request inside a `$batch`: a URL relative to the version root (`/drives/…`), JSON in and out.
public struct BatchRequest: Sendable {
    public var id: String
    public var method: String
    public var url: String
    public var headers: [String: String]
    public var body: JSONValue?

    public init(id: String, method: String, url: String, headers: [String: String] = [:], body: JSONValue? = nil) {
        self.id = id
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
    /// At most this many requests to a batch (api-facts §11.2).
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

    /// Writes column values of many documents: one PATCH for one, `$batch` for more.
    public func updateFields(_ updates: [FieldsUpdate]) async -> [Result<[String: JSONValue], Error>] {
        if updates.count == 1 {
            do {
                return [.success(try await updateFields(driveID: updates[0].driveID, itemID: updates[0].itemID, fields: updates[0].fields))]
            } catch {
                return [.failure(error)]
            }
        }
        let requests = updates.enumerated().map { index, update in
            BatchRequest(id: String(index), method: "PATCH", url: "/drives/\(update.driveID)/items/\(update.itemID)/listItem/fields",
                         body: .object(update.fields))
        }
        let answers: [String: BatchResponse]
        do {
            answers = try await batch(requests)
        } catch {
            return updates.map { _ in .failure(error) }
        }
        return requests.map { request in
            guard let answer = answers[request.id] else {
                return .failure(GraphError(status: 0, code: "noAnswer", message: "the batch did not answer this request", request: "PATCH \(request.url)"))
            }
            guard (200..<300).contains(answer.status) else {
                let body = answer.body.flatMap { try? JSONEncoder().encode($0) } ?? Data()
                return .failure(GraphError(response: HTTPResponse(status: answer.status, headers: HTTPHeaders(answer.headers), body: body),
                                           request: HTTPRequest(method: request.method, url: endpoint + request.url)))
            }
            return .success(answer.body?.objectValue ?? [:])
        }
    }

    /// One `$batch` call, its cost paid for every request in it.
    private func sendBatch(_ requests: [BatchRequest]) async throws -> [BatchResponse] {
        try await pacer?.admit(cost: requests.map { ResourceUnits.cost(of: HTTPRequest(method: $0.method, url: endpoint + $0.url)) }.reduce(0, +))
        let body: JSONValue = .object(["requests": .array(requests.map { request in
            var entry: [String: JSONValue] = ["id": .string(request.id), "method": .string(request.method), "url": .string(request.url)]
            if !request.headers.isEmpty { entry["headers"] = .object(request.headers.mapValues(JSONValue.string)) }
            if let body = request.body { entry["body"] = body }
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
