import Foundation

/// `POST /v1.0/$batch` per docs/wire-facts.md G12: up to 20 requests with unique ids and URLs relative to the
/// version root, each costed against the budget on its own (so one can get 429 while the others go) and
/// answered in `responses`, in no particular order (this one answers last first, so clients match by id);
/// a request whose `dependsOn` failed gets 424. The batch is 200 whenever it parses. Injected faults
/// (`/_sandbox/faults`) reach the requests inside a batch too, each drawing its own.
extension SandboxApp {
    static let maxBatchRequests = 20

    static func isBatch(_ path: String) -> Bool { path == "/v1.0/$batch" || path.lowercased() == "/v1.0/%24batch" }

    func batch(_ request: SandboxRequest) async -> SandboxResponse {
        guard let body = (try? JSONSerialization.jsonObject(with: request.body)) as? [String: Any],
              let requests = body["requests"] as? [[String: Any]] else {
            return GraphErrors.response(400, "BadRequest", "Invalid batch payload format.")
        }
        guard requests.count <= Self.maxBatchRequests else {
            return GraphErrors.response(400, "BadRequest", "Number of batch request steps exceeds the maximum of \(Self.maxBatchRequests).")
        }
        let ids = requests.compactMap { $0["id"] as? String }
        guard ids.count == requests.count, Set(ids).count == ids.count else {
            return GraphErrors.response(400, "BadRequest", "Batch request ids must be present and unique.")
        }
        stats.increment("graph.batch")
        var statuses: [String: Int] = [:]
        var answers: [[String: Any]] = []
        for entry in requests {
            let id = entry["id"] as! String
            let answer = await step(entry, statuses: statuses, parent: request)
            statuses[id] = answer.status
            var json: [String: Any] = ["id": id, "status": answer.status,
                                       "headers": Dictionary(answer.headers.map { ($0.0, $0.1) }, uniquingKeysWith: { $1 })]
            if let payload = answer.jsonBody { json["body"] = payload }
            answers.append(json)
        }
        return .json(200, ["responses": Array(answers.reversed())])
    }

    /// One request of a batch: its dependencies, its own charge against the budget, then the Graph routes.
    private func step(_ entry: [String: Any], statuses: [String: Int], parent: SandboxRequest) async -> SandboxResponse {
        guard let method = entry["method"] as? String, let url = entry["url"] as? String, !url.hasPrefix("http") else {
            return GraphErrors.response(400, "BadRequest", "A batch request needs a method and a URL relative to the version root.")
        }
        let dependencies = entry["dependsOn"] as? [String] ?? []
        if dependencies.contains(where: { (statuses[$0] ?? 424) >= 400 }) {
            return GraphErrors.response(424, "FailedDependency", "A request this one depends on failed.")
        }
        var body = Data()
        if let payload = entry["body"] {
            guard let headers = entry["headers"] as? [String: String], headers.keys.contains(where: { $0.lowercased() == "content-type" }) else {
                return GraphErrors.response(400, "BadRequest", "A batch request with a body needs a Content-Type header.")
            }
            body = (try? JSONSerialization.data(withJSONObject: payload)) ?? Data()
        }
        var sub = parent.subrequest(method: method, url: "/v1.0" + (url.hasPrefix("/") ? url : "/" + url), body: body)
        for (name, value) in entry["headers"] as? [String: String] ?? [:] { sub.headers.replaceOrAdd(name: name, value: value) }
        let cost = ResourceCost.of(method: sub.method, path: sub.path, query: sub.query, service: .graph)
        stats.increment("graph.ru", by: Int64(cost))
        switch budget.charge(cost) {
        case .throttled(let retryAfter, let headers):
            stats.increment("throttled")
            var response = Service.graph.throttled(status: 429, retryAfter: String(retryAfter))
            response.headers += headers.map { ($0.name, $0.value) }
            return response
        case .allowed:
            break
        }
        // Injected faults reach a batch's requests one by one, as the service's own throttling does.
        if case .status(let status) = faults.draw() {
            stats.increment("faults"); stats.increment("faults.\(status)")
            return Service.graph.throttled(status: status, retryAfter: faults.plan.retryAfterText ?? String(faults.plan.retryAfterSeconds))
        }
        do {
            return try await graph.handle(sub)
        } catch let failure as ServiceFailure {
            return failure.response
        } catch {
            return Service.graph.internalError()
        }
    }
}
