import Foundation
import HTTP

/// A Graph request that failed, with the service's own error code (branch on `code`, never on `message`).
public struct GraphError: Error, CustomStringConvertible, Sendable {
    public var status: Int
    public var code: String
    /// The most specific nested `innerError.code`, when given (e.g. `throttledRequest`, `fragmentOverlap`).
    public var innerCode: String?
    public var message: String
    public var request: String
    public var requestID: String?
    /// For 410 resync: where to start enumerating again.
    public var location: String?
    /// Set when retries ran out on throttling.
    public var attempts: Int?

    public var description: String {
        var text = "\(request): HTTP \(status) \(code)"
        if let innerCode { text += "/\(innerCode)" }
        if !message.isEmpty { text += ": \(message)" }
        if let attempts { text += " (after \(attempts) attempts)" }
        return text
    }

    /// An error as the service answers it, for stand-ins of the service.
    public init(status: Int, code: String, message: String = "", request: String) {
        self.status = status
        self.code = code
        self.message = message
        self.request = request
    }

    init(response: HTTPResponse, request: HTTPRequest, attempts: Int? = nil) {
        status = response.status
        self.request = request.logDescription
        self.attempts = attempts
        location = response.headers["Location"]
        let json = try? JSONDecoder().decode(JSONValue.self, from: response.body)
        let error = json?["error"]
        code = error?["code"]?.stringValue ?? "http\(response.status)"
        message = error?["message"]?.stringValue ?? ""
        requestID = error?["innerError"]?["request-id"]?.stringValue
        var inner = error?["innerError"] ?? error?["innererror"]
        while let next = inner {
            if let innerCodeValue = next["code"]?.stringValue { innerCode = innerCodeValue }
            inner = next["innerError"] ?? next["innererror"]
        }
    }

    public var isNotFound: Bool { status == 404 }
    /// The signed-in user may not do this (they may only read the item, or not reach it at all).
    public var isAccessDenied: Bool { status == 403 && code == "accessDenied" }
    public var needsResync: Bool { status == 410 }
}
