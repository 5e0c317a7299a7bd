import Foundation
import HTTP
import Testing
import TestSupport

@Suite("bearer tokens and the origins they may go to")
struct TokenOriginTests {
    @Test("an origin is scheme, host and port, the scheme's default port made explicit")
    func origins() {
        #expect(Origin(url: "https://graph.microsoft.com/v1.0") == Origin(url: "https://GRAPH.microsoft.com:443/"))
        #expect(Origin(url: "http://127.0.0.1/x") == Origin(url: "http://127.0.0.1:80"))
        #expect(Origin(url: "https://graph.microsoft.com")?.port == 443)
        #expect(Origin(url: "https://graph.microsoft.com") != Origin(url: "https://graph.microsoft.com:8443"))
        #expect(Origin(url: "https://graph.microsoft.com:443") != Origin(url: "http://graph.microsoft.com:443"))
        #expect(Origin(url: "https://contoso.my.salesforce.com") != Origin(url: "https://graph.microsoft.com"))
        #expect(Origin(url: "http://[::1]:8080/metrics")?.host == "::1")
        #expect(Origin(url: "http://[::1]:8080/metrics")?.description == "http://[::1]:8080")
        #expect(Origin(url: "ftp://example.com/") == nil)
        #expect(Origin(url: "/v1.0/drives") == nil)
    }

    /// A service's tokens: always `value`, counting how often one is asked for.
    static func tokens(_ value: String, asked: Locked<Int>) -> TokenCache {
        TokenCache {
            asked.withLock { $0 += 1 }
            return AccessToken(value: Secret(value), expiresAt: nil)
        }
    }

    @Test("a Graph token goes only to Graph's origins and a Salesforce token only to Salesforce's; another port or scheme gets neither")
    func perServiceOrigins() async throws {
        try await withSandbox { sandbox in
            let port = try #require(URLComponents(string: sandbox.baseURL)?.port)
            // One server reached as two origins: Graph's as 127.0.0.1, Salesforce's as localhost.
            let graphBase = "http://127.0.0.1:\(port)", salesforceBase = "http://localhost:\(port)"
            let graphAsked = Locked(0), salesforceAsked = Locked(0)
            let graph = OriginBoundTokens(Self.tokens("graph-token", asked: graphAsked), origins: Origin.of([graphBase + "/v1.0", graphBase]))
            let salesforce = OriginBoundTokens(Self.tokens("salesforce-token", asked: salesforceAsked), origins: Origin.of([salesforceBase]))
            #expect(graph.allowedOrigins.isDisjoint(with: salesforce.allowedOrigins))
            let client = HTTPClient(transport: sandbox.transport)
            /// Whether the sandbox saw an Authorization header on a request to `base` with `auth`.
            func authorized(_ base: String, _ auth: (any AccessTokenProvider)?) async throws -> Bool? {
                let response = try await client.send(HTTPRequest(method: "POST", url: base + "/_sandbox/echo", body: .bytes(Data("x".utf8))), auth: auth)
                return try JSONDecoder().decode(JSONValue.self, from: response.body)["authorization"]?.boolValue
            }
            #expect(try await authorized(graphBase, graph) == true)
            #expect(try await authorized(salesforceBase, salesforce) == true)
            #expect(graphAsked.value == 1 && salesforceAsked.value == 1)

            let refused: [(String, any AccessTokenProvider)] = [
                (salesforceBase, graph), (graphBase, salesforce),                                       // the other service
                ("http://127.0.0.1:\(port + 1)", graph), ("http://localhost:\(port + 1)", salesforce),  // another port
                ("https://127.0.0.1:\(port)", graph),                                                   // another scheme
                (graphBase, Self.tokens("unbound", asked: graphAsked)),                                 // bound to no origin
            ]
            for (base, auth) in refused {
                do {
                    _ = try await authorized(base, auth)
                    Issue.record("a token went to \(base)")
                } catch let error as HTTPError {
                    guard case .untrustedHost(let origin, _) = error else { Issue.record("\(base): \(error)"); continue }
                    #expect(origin == Origin(url: base)?.description)
                }
            }
            #expect(graphAsked.value == 1 && salesforceAsked.value == 1, "a refused request does not even fetch a token")

            // Pre-authenticated URLs (uploads, downloads) are sent without a provider: no Authorization at all.
            #expect(try await authorized(graphBase, nil) == false)
        }
    }
}
