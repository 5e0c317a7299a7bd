import CRM
import Config
import Foundation
import Graph
import HTTP
import Logging

/// The live clients a mount uses, built from its config: one transport, one token cache per service,
/// each service's tokens bound to the origins the config names for that service.
public struct Connections: Sendable {
    public let http: HTTPClient
    public let graph: GraphClient
    public let salesforce: SalesforceClient
    public let graphToken: OriginBoundTokens
    public let salesforceToken: OriginBoundTokens
    /// Whether each service's sign-in works, as the last token request found.
    public let graphSignIn: SignInWatch
    public let salesforceSignIn: SignInWatch

    /// Builds the clients. Secrets are read here, from 0600 files or the environment; nothing is sent yet.
    public init(config: MountConfig, transport: CurlTransport? = nil, retry: RetryPolicy = .default,
                registry: TokenCacheRegistry = .shared, logger: Logger = Logger(label: "crmfs.http")) throws {
        http = HTTPClient(transport: transport ?? CurlTransport(options: Self.transportOptions(config)), retry: retry, logger: logger)
        let graphTokens: TokenCache
        switch config.graph.auth {
        case .clientCredentials(let source):
            let entra = EntraClientCredentials(authority: config.graph.authority, tenant: config.graph.tenant, clientID: config.graph.clientID,
                                               clientSecret: try Self.secret(source, config: config, key: "graph"))
            graphTokens = entra.provider(using: http, registry: registry)
        case .deviceCode:
            let file = try Self.signIn(.graph, config: config)
            graphTokens = EntraRefreshToken(authority: config.graph.authority, tenant: config.graph.tenant, clientID: config.graph.clientID, file: file)
                .provider(using: http, registry: registry)
        }
        graphToken = OriginBoundTokens(graphTokens, origins: Self.graphOrigins(config))
        graphSignIn = SignInWatch(graphToken, config: config, logger: logger)
        graph = GraphClient(endpoint: config.graph.endpoint, http: http, auth: graphSignIn,
                            pacer: config.graph.resourceUnitsPerMinute > 0 ? ResourcePacer(unitsPerMinute: config.graph.resourceUnitsPerMinute) : nil)

        let grant: SalesforceOAuth.Grant
        switch config.salesforce.auth {
        case .clientCredentials(let source):
            grant = .clientCredentials(clientSecret: try Self.secret(source, config: config, key: "salesforce"))
        case .refreshToken(let file, let source):
            let tokenFile = config.resolve(file)
            do { try Secret.checkPrivate(path: tokenFile) } catch { throw ConfigError(file: config.path, line: nil, key: "salesforce.refresh_token_file", message: "\(error)") }
            grant = .refreshToken(file: tokenFile, clientSecret: try source.map { try Self.secret($0, config: config, key: "salesforce") })
        case .deviceCode:
            grant = .refreshToken(file: try Self.signIn(.salesforce, config: config), clientSecret: nil)
        }
        let oauth = SalesforceOAuth(loginURL: config.salesforce.instanceURL, clientID: config.salesforce.clientID, grant: grant,
                                    sessionTimeout: config.salesforce.sessionTimeout)
        salesforceToken = OriginBoundTokens(oauth.provider(using: http, registry: registry), origins: Self.salesforceOrigins(config))
        salesforceSignIn = SignInWatch(salesforceToken, config: config, logger: logger)
        salesforce = SalesforceClient(instanceURL: config.salesforce.instanceURL, apiVersion: config.salesforce.apiVersion,
                                      http: http, auth: salesforceSignIn)
    }

    /// Where a Graph token may go: the origins (scheme, host, port) of the configured Graph endpoint and
    /// Entra authority, never Salesforce's.
    public static func graphOrigins(_ config: MountConfig) -> Set<Origin> {
        Origin.of([config.graph.endpoint, config.graph.authority])
    }

    /// Where a Salesforce token may go: the origin of the configured instance (and login) URL, never Graph's.
    public static func salesforceOrigins(_ config: MountConfig) -> Set<Origin> {
        Origin.of([config.salesforce.instanceURL])
    }

    /// The transport's settings: each service's own certificate authorities, by its hosts.
    public static func transportOptions(_ config: MountConfig) -> TransportOptions {
        var options = TransportOptions()
        // Every upload in flight holds a connection; reads and listings keep room of their own beside them.
        options.maxConnectionsPerHost = config.writeback.uploads + 8
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

    /// The kept sign-in of the user to `service`: its file, checked to be private. None kept is a config
    /// error that says what to run.
    static func signIn(_ service: SignInService, config: MountConfig) throws -> String {
        let file = config.refreshTokenFile(service)
        guard FileManager.default.fileExists(atPath: file) else {
            throw ConfigError(file: config.path, line: nil, key: "\(service.rawValue).auth",
                              message: "is device-code, and no sign-in to \(service.displayName) is kept: run `crmfs login \(config.path)` first")
        }
        do { try Secret.checkPrivate(path: file) } catch {
            throw ConfigError(file: config.path, line: nil, key: "\(service.rawValue).auth", message: "the kept sign-in is not private: \(error)")
        }
        return file
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
