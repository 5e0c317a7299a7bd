import CRM
import Config
import Foundation
import Graph
import HTTP
import Logging

/// The live clients a mount uses, built from its config: one transport, one token cache per service.
public struct Connections: Sendable {
    public let http: HTTPClient
    public let graph: GraphClient
    public let salesforce: SalesforceClient
    public let graphToken: TokenCache
    public let salesforceToken: TokenCache

    /// Builds the clients. Secrets are read here, from 0600 files or the environment; nothing is sent yet.
    public init(config: MountConfig, transport: CurlTransport? = nil, retry: RetryPolicy = .default,
                registry: TokenCacheRegistry = .shared, logger: Logger = Logger(label: "crmfs.http")) throws {
        http = HTTPClient(transport: transport ?? CurlTransport(options: Self.transportOptions(config)), retry: retry,
                          tokenHosts: Self.tokenHosts(config), logger: logger)
        let graphSecret = try Self.secret(config.graph.secret, config: config, key: "graph")
        let entra = EntraClientCredentials(authority: config.graph.authority, tenant: config.graph.tenant,
                                           clientID: config.graph.clientID, clientSecret: graphSecret)
        graphToken = entra.provider(using: http, registry: registry)
        graph = GraphClient(endpoint: config.graph.endpoint, http: http, auth: graphToken,
                            pacer: config.graph.resourceUnitsPerMinute > 0 ? ResourcePacer(unitsPerMinute: config.graph.resourceUnitsPerMinute) : nil)

        let grant: SalesforceOAuth.Grant
        switch config.salesforce.auth {
        case .clientCredentials(let source):
            grant = .clientCredentials(clientSecret: try Self.secret(source, config: config, key: "salesforce"))
        case .refreshToken(let file, let source):
            let tokenFile = config.resolve(file)
            do { try Secret.checkPrivate(path: tokenFile) } catch { throw ConfigError(file: config.path, line: nil, key: "salesforce.refresh_token_file", message: "\(error)") }
            grant = .refreshToken(file: tokenFile, clientSecret: try source.map { try Self.secret($0, config: config, key: "salesforce") })
        }
        let oauth = SalesforceOAuth(loginURL: config.salesforce.instanceURL, clientID: config.salesforce.clientID, grant: grant,
                                    sessionTimeout: config.salesforce.sessionTimeout)
        salesforceToken = oauth.provider(using: http, registry: registry)
        salesforce = SalesforceClient(instanceURL: config.salesforce.instanceURL, apiVersion: config.salesforce.apiVersion,
                                      http: http, auth: salesforceToken)
    }

    /// Bearer tokens go only to the hosts of the configured Graph endpoint and Salesforce instance.
    public static func tokenHosts(_ config: MountConfig) -> Set<String> {
        Set([config.graph.endpoint, config.salesforce.instanceURL].compactMap { URLComponents(string: $0)?.host?.lowercased() })
    }

    /// The transport's settings: each service's own certificate authorities, by its hosts.
    public static func transportOptions(_ config: MountConfig) -> TransportOptions {
        var options = TransportOptions()
        let services: [(String?, [String])] = [(config.graph.caFile, [config.graph.authority, config.graph.endpoint]),
                                                (config.salesforce.caFile, [config.salesforce.instanceURL])]
        for (file, urls) in services {
            guard let file else { continue }
            for host in urls.compactMap({ URLComponents(string: $0)?.host?.lowercased() }) {
                options.certificateAuthorities[host] = config.resolve(file)
            }
        }
        return options
    }

    /// Reads a secret, reporting a bad source as a config error that names the key.
    static func secret(_ source: SecretSource, config: MountConfig, key: String) throws -> Secret {
        do {
            switch source {
            case .file(let path): return try Secret.load(file: config.resolve(path))
            case .environment(let name): return try Secret.load(environment: name)
            }
        } catch {
            let field = { if case .file = source { return "client_secret_file" } else { return "client_secret_env" } }()
            throw ConfigError(file: config.path, line: nil, key: "\(key).\(field)", message: "\(error)")
        }
    }
}
