import Foundation
import Logging
import QuickXor

public struct SandboxOptions: Sendable {
    public var stateDirectory: URL
    public var host = "127.0.0.1"
    public var port = 0
    public var seed = SeedOptions()
    /// Seconds an access token lives, for Entra and Salesforce alike.
    public var tokenLifetime: TimeInterval = 3600
    public var faults = FaultPlan()
    /// Page size of Graph children and delta when the client names no `$top`.
    public var childrenPageSize = 200
    /// Largest Salesforce query batch (the service's is 2,000).
    public var queryBatchSize = 2000
    /// Daily Salesforce API request limit; past it every call answers 403 REQUEST_LIMIT_EXCEEDED.
    public var salesforceDailyLimit = 1_000_000
    /// SharePoint's per-app budget of resource units a minute (1,200 for a small tenant); 0 is none.
    public var resourceUnitsPerMinute = 0
    /// Graph children `$top` ceiling.
    public var maxPageSize = 999
    /// The most items a listing or delta page holds, whatever `$top` asked for (the service may return fewer).
    public var pageCap = 999
    public var maxRequestBodyBytes = 64 << 20
    /// Largest simple upload (PUT content). The v1.0 page says 250 MB; older ones 4 MB.
    public var simpleUploadLimit: Int64 = 250_000_000
    /// How long an upload session lives after its last fragment.
    public var uploadSessionLifetime: TimeInterval = 24 * 3600
    /// Serve HTTPS with a certificate authority of its own (`ca.pem` in the state directory).
    public var tls = false
    /// Rewrite uploaded Office documents as SharePoint does (docs/wire-facts.md G13): their stored size and hash differ.
    public var rewriteOfficeFiles = true
    /// Changes a minute made by other users of the tenant (`Churn`); 0 is a still tenant.
    public var churnPerMinute = 0
    /// Seconds a device sign-in asks its client to wait between polls (the services say 5).
    public var deviceCodeInterval = 5
    /// Approve every device sign-in at once as this demo user (`sam`, `sky`, `morgan`), for tests and demos.
    public var approveDeviceCodesAs: String?
    /// Where the sandbox tells who must approve a device sign-in (its standard output by default).
    public var announce: @Sendable (String) -> Void = { line in print(line); fflush(nil) }

    public init(stateDirectory: URL) { self.stateDirectory = stateDirectory }
}

/// Routes each request to the emulated service it belongs to, after latency and fault injection.
final class SandboxApp: Sendable {
    let store: SandboxStore
    let options: SandboxOptions
    let stats = Stats()
    let tokens: TokenRegistry
    let faults: FaultInjector
    let budget: ResourceBudget
    let churn: Churn
    let credentials: SandboxCredentials
    let logger: Logger
    let signIns: DeviceSignIns
    private let entra: EntraService
    let graph: GraphService
    private let salesforce: SalesforceService

    init(options: SandboxOptions, logger: Logger) throws {
        self.options = options
        self.logger = logger
        store = try SandboxStore(directory: options.stateDirectory)
        if try store.meta("seeded") == nil {
            var seeder = Seeder(options: options.seed, store: store)
            try seeder.run()
        }
        credentials = try SandboxCredentials.load(from: store)
        tokens = TokenRegistry(lifetime: options.tokenLifetime)
        faults = FaultInjector(plan: options.faults)
        budget = ResourceBudget(unitsPerMinute: options.resourceUnitsPerMinute)
        churn = Churn(store: store, stats: stats, logger: logger, seed: options.faults.seed)
        churn.run(perMinute: options.churnPerMinute)
        signIns = DeviceSignIns(users: SandboxUser.demo(domain: credentials.tenantDomain), interval: options.deviceCodeInterval,
                                autoApprove: options.approveDeviceCodesAs, announce: options.announce)
        entra = EntraService(credentials: credentials, tokens: tokens, stats: stats, signIns: signIns)
        graph = GraphService(store: store, tokens: tokens, stats: stats, options: options)
        salesforce = SalesforceService(store: store, tokens: tokens, stats: stats, options: options, credentials: credentials, signIns: signIns)
    }

    func handle(_ request: SandboxRequest) async -> SandboxReply {
        // The sandbox's own admin calls are counted apart: `requests` is what the services saw.
        if request.path.hasPrefix("/_sandbox/") {
            stats.increment("admin.requests")
            return .response(admin(request))
        }
        stats.increment("requests")
        stats.log(method: request.method, path: request.path)
        let reply = await serve(request)
        // `--verbose`: each request, with the path only (upload URLs carry their credential in the query).
        if logger.logLevel <= .debug {
            let status = if case .response(let response) = reply { "\(response.status)" } else { "reset" }
            logger.debug("request", metadata: ["method": "\(request.method)", "path": "\(request.path)", "status": "\(status)"])
        }
        return reply
    }

    private func serve(_ request: SandboxRequest) async -> SandboxReply {
        let service = Service(path: request.path)
        let plan = faults.plan
        let latency = faults.latency()
        if latency > .zero { try? await Task.sleep(for: latency) }
        var budgetHeaders: [(String, String)] = []
        let cost = ResourceCost.of(method: request.method, path: request.path, query: request.query, service: service)
        if cost > 0 { stats.increment("graph.ru", by: Int64(cost)) }
        switch budget.charge(cost) {
        case .allowed(let headers):
            budgetHeaders = headers.map { ($0.name, $0.value) }
        case .throttled(let retryAfter, let headers):
            stats.increment("throttled")
            var response = service.throttled(status: 429, retryAfter: String(retryAfter))
            response.headers += headers.map { ($0.name, $0.value) }
            return .response(response)
        }
        let fault = faults.draw()
        switch fault {
        case .reset:
            stats.increment("faults"); stats.increment("faults.reset")
            return .reset
        case .status(let status):
            stats.increment("faults"); stats.increment("faults.\(status)")
            return .response(service.throttled(status: status, retryAfter: plan.retryAfterText ?? String(plan.retryAfterSeconds)))
        case .ignoreRange, .stall, .pass, .none:
            break
        }
        var reply = await answer(request, service: service, fault: fault)
        if case .response(var response) = reply, !budgetHeaders.isEmpty {
            response.headers += budgetHeaders
            reply = .response(response)
        }
        return reply
    }

    private func answer(_ request: SandboxRequest, service: Service, fault: Fault?) async -> SandboxReply {
        do {
            switch service {
            case .entra: return .response(try entra.handle(request))
            case .graph where request.method == "POST" && Self.isBatch(request.path): return .response(await batch(request))
            case .graph: return .response(try await graph.handle(request))
            case .download: return .response(try await graph.download(request, ignoreRange: fault == .ignoreRange))
            case .upload: return .response(try graph.uploadSession(request, stall: fault == .stall))
            case .salesforceToken: return .response(try salesforce.token(request))
            case .verification: return .response(verificationPage(request))
            case .salesforce: return .response(try await salesforce.handle(request))
            case .unknown: return .response(GraphErrors.response(404, "itemNotFound", "No route for \(request.path)"))
            }
        } catch let failure as ServiceFailure {
            return .response(failure.response)
        } catch {
            logger.error("sandbox handler failed", metadata: ["path": "\(request.path)", "error": "\(error)"])
            return .response(service.internalError())
        }
    }

    // MARK: Verification pages: where a user enters a device sign-in's code and says who they are.

    private func verificationPage(_ request: SandboxRequest) -> SandboxResponse {
        let service = request.path == "/devicelogin" ? "Microsoft" : "Salesforce"
        func page(_ body: String) -> SandboxResponse {
            SandboxResponse(status: 200, headers: [("Content-Type", "text/html; charset=utf-8")],
                            body: .data(Data("<!doctype html><title>\(service) device sign-in (sandbox)</title><h1>\(service) device sign-in</h1>\(body)".utf8)))
        }
        if request.method == "POST" {
            let form = Dictionary(FormDecoding.decode(String(decoding: request.body, as: UTF8.self)), uniquingKeysWith: { $1 })
            let approve = form["decision"] != "decline"
            let user = form["user"].flatMap(signIns.user(named:))
            guard !approve || user != nil, signIns.decide(userCode: form["code"] ?? "", user: user, approve: approve) else {
                return page("<p>That code is not waiting, or no such user.</p>")
            }
            return page(approve ? "<p>Signed in as \(user!.displayName). You may close this window.</p>" : "<p>Sign-in declined.</p>")
        }
        let options = signIns.users.map { "<option value=\"\($0.name)\">\($0.displayName), \($0.title)</option>" }.joined()
        return page("""
            <form method="post"><label>Code <input name="code" autofocus></label>
            <label>Sign in as <select name="user">\(options)</select></label>
            <button name="decision" value="approve">Approve</button> <button name="decision" value="decline">Decline</button></form>
            """)
    }

    // MARK: Admin (`/_sandbox/...`): what tests use to look at and steer the emulator.

    private func admin(_ request: SandboxRequest) -> SandboxResponse {
        let segments = request.segments
        if request.method == "POST", segments.count == 4, segments[1] == "items", segments[3] == "name" {
            // A name another client or a migration gave, past SharePoint's own rules (`a/b`, `..`, 300 bytes).
            do {
                let name = String(decoding: request.body, as: UTF8.self)
                guard let saved = try store.update(itemID: segments[2], { $0.name = name }) else { return .json(404, ["error": "no such item"]) }
                return .json(200, ["id": saved.id, "name": saved.name])
            } catch {
                return .json(500, ["error": "\(error)"])
            }
        }
        if request.method == "POST", segments.count == 4, segments[1] == "items", segments[3] == "content" {
            // An edit made in SharePoint by someone else: what freshness tests need.
            var hasher = QuickXorHash()
            hasher.update(request.body)
            do {
                guard let item = try store.replaceContent(itemID: segments[2], data: request.body, hash: hasher.finalize(), modifiedBy: "Someone Else") else {
                    return .json(404, ["error": "no such file"])
                }
                return .json(200, ["id": item.id, "eTag": item.eTag, "size": item.size])
            } catch {
                return .json(500, ["error": "\(error)"])
            }
        }
        if request.method == "POST", segments.count == 4, segments[1] == "items", segments[3] == "permissions" {
            return grant(itemID: segments[2], request)
        }
        if request.method == "POST", segments.count == 4, segments[1] == "records", segments[3] == "share" {
            return share(recordID: segments[2], request)
        }
        switch (request.method, request.path) {
        case ("GET", "/_sandbox/stats"):
            return .json(200, stats.snapshot())
        case ("POST", "/_sandbox/stats/reset"):
            stats.reset()
            return .empty(204)
        case ("GET", "/_sandbox/requests"):
            // Every service request since the last reset, in arrival order: what tests count round trips by.
            return .json(200, ["requests": stats.requests()])
        case ("POST", "/_sandbox/delta/expire"):
            do { try graph.expireDeltaTokens() } catch { return .json(500, ["error": "\(error)"]) }
            return .empty(204)
        case ("POST", "/_sandbox/tokens/expire"):
            tokens.expireAll()
            return .empty(204)
        case ("POST", "/_sandbox/downloads/expire"):
            // The hour behind every pre-authenticated download URL has passed (as the access tokens' has).
            graph.downloads.expireAll()
            return .empty(204)
        case ("POST", "/_sandbox/uploads/expire"):
            graph.uploads.expireAll()
            return .empty(204)
        case ("POST", "/_sandbox/faults"):
            guard let object = try? JSONSerialization.jsonObject(with: request.body) as? [String: Any] else {
                return .json(400, ["error": "body must be a JSON object"])
            }
            var plan = faults.plan
            do {
                if let spec = object["faults"] as? String { try plan.parse(spec: spec) }
                if let latency = object["latencyMs"] as? Int { plan.latencyMilliseconds = latency }
                if let jitter = object["latencyJitterMs"] as? Int { plan.latencyJitterMilliseconds = jitter }
                if let rate = object["streamBytesPerSecond"] as? Int { plan.streamBytesPerSecond = Int64(rate) }
                if let units = object["ruPerMinute"] as? Int { budget.unitsPerMinute = units }
                if let retryAfter = object["retryAfter"] as? Int { plan.retryAfterSeconds = retryAfter; plan.retryAfterText = nil }
                if let retryAfter = object["retryAfter"] as? String { plan.retryAfterText = retryAfter }
                if let seed = object["seed"] as? Int { plan.seed = UInt64(seed) }
                if ["faults", "latencyMs", "latencyJitterMs", "streamBytesPerSecond", "retryAfter", "seed"].contains(where: { object[$0] != nil }) {
                    faults.replace(plan: plan)
                }
                if let next = object["next"] as? [String] { faults.enqueue(try next.map(Fault.init(kind:))) }
            } catch {
                return .json(400, ["error": "\(error)"])
            }
            return .empty(204)
        case ("GET", "/_sandbox/churn"):
            return .json(200, ["changes": churn.recent.map(\.json)])
        case ("POST", "/_sandbox/churn"):
            // {"perMinute": N} starts, changes or (0) stops the stream; {"once": "KIND"} makes one change now.
            guard let object = try? JSONSerialization.jsonObject(with: request.body) as? [String: Any] else {
                return .json(400, ["error": "body must be a JSON object"])
            }
            if let perMinute = object["perMinute"] as? Int { churn.run(perMinute: perMinute) }
            if let once = object["once"] as? String {
                let kind = Churn.Kind(rawValue: once)
                guard kind != nil || once == "any" else {
                    return .json(400, ["error": "unknown change kind '\(once)'; one of any, \(Churn.Kind.allCases.map(\.rawValue).joined(separator: ", "))"])
                }
                guard let change = churn.makeOne(kind) else { return .json(409, ["error": "nothing in the tenant to change that way"]) }
                return .json(200, change.json)
            }
            return .empty(204)
        case ("POST", "/_sandbox/echo"):
            // Tells a client exactly which bytes arrived: for testing streamed request bodies.
            var hasher = QuickXorHash()
            hasher.update(request.body)
            return .json(200, ["bytes": request.body.count, "quickXorHash": hasher.finalize(),
                               "authorization": request.header("Authorization") != nil])
        case ("GET", "/_sandbox/users"):
            return .json(200, ["users": signIns.users.map { ["name": $0.name, "displayName": $0.displayName, "title": $0.title,
                                                             "userPrincipalName": $0.userPrincipalName, "salesforceUserId": $0.salesforceUserID] }])
        case ("GET", "/_sandbox/device"):
            return .json(200, ["waiting": signIns.waiting().map { ["userCode": $0.userCode, "service": $0.service.rawValue] }])
        case ("POST", "/_sandbox/device"):
            // {"userCode": "...", "user": "sam", "approve": true}: what the user does on the verification page.
            guard let object = try? JSONSerialization.jsonObject(with: request.body) as? [String: Any], let code = object["userCode"] as? String else {
                return .json(400, ["error": "body must be a JSON object with userCode"])
            }
            let approve = object["approve"] as? Bool ?? true
            let user = (object["user"] as? String).flatMap(signIns.user(named:))
            if approve && user == nil { return .json(400, ["error": "user must be one of \(signIns.users.map(\.name).joined(separator: ", "))"]) }
            return signIns.decide(userCode: code, user: user, approve: approve) ? .empty(204) : .json(404, ["error": "no device sign-in waits for \(code)"])
        case ("POST", _) where segments.count == 4 && segments[1] == "users" && segments[3] == "revoke":
            // An administrator revokes a user's sessions: every refresh token of theirs stops working.
            guard let user = signIns.user(named: segments[2]) else { return .json(404, ["error": "no such user"]) }
            return .json(200, ["revoked": signIns.revoke(user: user)])
        case ("GET", "/_sandbox/info"):
            var info: [String: Any] = [
                "tenantId": credentials.tenantID, "tenantDomain": credentials.tenantDomain,
                "siteId": (try? store.meta("salesSiteId")) ?? "", "driveId": (try? store.meta("documentsDriveId")) ?? "",
                "hostname": "contoso.sharepoint.com", "sitePath": "/sites/Sales", "library": "Documents",
            ]
            for key in ["largeFileItemId", "bulkFolderItemId"] {
                if let value = try? store.meta(key) { info[key] = value }
            }
            return .json(200, info)
        default:
            return .json(404, ["error": "unknown sandbox admin route \(request.method) \(request.path)"])
        }
    }
}

/// Which emulated service a path belongs to; each answers faults in its own error shape.
enum Service {
    case entra, graph, download, upload, salesforceToken, salesforce, verification, unknown

    init(path: String) {
        if path.hasPrefix("/v1.0/") { self = .graph }
        else if path.hasPrefix("/_layouts/15/download.aspx") { self = .download }
        else if path == UploadSessions.path { self = .upload }
        else if path == "/services/oauth2/token" { self = .salesforceToken }
        else if path.hasPrefix("/services/data") { self = .salesforce }
        else if path.hasSuffix("/oauth2/v2.0/token") || path.hasSuffix("/oauth2/v2.0/devicecode") { self = .entra }
        else if path == "/devicelogin" || path == "/setup/connect" { self = .verification }
        else { self = .unknown }
    }

    func throttled(status: Int, retryAfter: String) -> SandboxResponse {
        let headers = [("Retry-After", retryAfter)]
        switch self {
        case .salesforce, .salesforceToken:
            let code = status == 429 ? "REQUEST_LIMIT_EXCEEDED" : "SERVER_UNAVAILABLE"
            return .json(status, [["message": "The server is temporarily unable to service your request.", "errorCode": code]], headers: headers)
        case .entra:
            return .json(status, ["error": "temporarily_unavailable", "error_description": "AADSTS50196: The server terminated an operation because it encountered a client request loop.",
                                  "error_codes": [50196]], headers: headers)
        default:
            return status == 429
                ? GraphErrors.response(429, "activityLimitReached", "The request has been throttled", inner: "throttledRequest", headers: headers)
                : GraphErrors.response(503, "serviceNotAvailable", "The service is temporarily unavailable.", headers: headers)
        }
    }

    func internalError() -> SandboxResponse {
        switch self {
        case .salesforce, .salesforceToken:
            return .json(500, [["message": "An unexpected error occurred.", "errorCode": "UNKNOWN_EXCEPTION"]])
        default:
            return GraphErrors.response(500, "generalException", "An unspecified error has occurred.")
        }
    }
}

/// Counters of what crossed the wire, read by tests through `GET /_sandbox/stats`.
final class Stats: @unchecked Sendable {
    private let lock = NSLock()
    private var counters: [String: Int64] = [:]
    /// "METHOD path" of each service request since the last reset (the most recent 100,000).
    private var requestLog: [String] = []

    func log(method: String, path: String) {
        lock.withLock {
            if requestLog.count >= 100_000 { requestLog.removeFirst(requestLog.count / 2) }
            requestLog.append("\(method) \(path)")
        }
    }

    func requests() -> [String] { lock.withLock { requestLog } }

    func increment(_ key: String, by amount: Int64 = 1) {
        lock.withLock { counters[key, default: 0] += amount }
    }

    func snapshot() -> [String: Int64] {
        lock.withLock {
            var all = counters
            for key in ["token", "graph.children", "graph.item", "graph.content", "graph.download", "graph.download.bytes", "graph.fields",
                        "graph.delta", "sf.query", "sf.record", "faults"] where all[key] == nil {
                all[key] = 0
            }
            return all
        }
    }

    func reset() { lock.withLock { counters.removeAll(); requestLog.removeAll() } }
}

/// Access tokens the sandbox has issued, with their expiry.
final class TokenRegistry: @unchecked Sendable {
    enum Audience: Sendable { case graph, salesforce }
    private let lock = NSLock()
    private var issued: [String: (audience: Audience, expires: Date, user: SandboxUser?)] = [:]
    let lifetime: TimeInterval

    init(lifetime: TimeInterval) { self.lifetime = lifetime }

    /// Records an access token; `user` for a delegated one (a device sign-in), nil for the app's own.
    func issue(_ audience: Audience, token: String, user: SandboxUser? = nil) -> String {
        lock.withLock { issued[token] = (audience, Date().addingTimeInterval(lifetime), user) }
        return token
    }

    /// Whom a delegated token acts for.
    func user(of token: String?) -> SandboxUser? {
        guard let token else { return nil }
        return lock.withLock { issued[token]?.user }
    }

    func isValid(_ token: String?, for audience: Audience) -> Bool {
        guard let token else { return false }
        return lock.withLock {
            guard let entry = issued[token], entry.audience == audience else { return false }
            return entry.expires > Date()
        }
    }

    func expireAll() {
        lock.withLock { for key in issued.keys { issued[key]?.expires = .distantPast } }
    }
}

enum GraphErrors {
    static func response(_ status: Int, _ code: String, _ message: String, inner: String? = nil, headers: [(String, String)] = []) -> SandboxResponse {
        var innerError: [String: Any] = ["request-id": UUID().uuidString.lowercased(), "date": GraphTime.format(Date()),
                                         "client-request-id": UUID().uuidString.lowercased()]
        if let inner { innerError["code"] = inner }
        return .json(status, ["error": ["code": code, "message": message, "innerError": innerError]], headers: headers)
    }

    static func failure(_ status: Int, _ code: String, _ message: String, inner: String? = nil, headers: [(String, String)] = []) -> ServiceFailure {
        ServiceFailure(response: response(status, code, message, inner: inner, headers: headers))
    }
}
