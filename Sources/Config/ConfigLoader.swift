import Foundation
import HTTP
import TOMLKit

/// Reads mount.conf (TOML), checking every key: unknown keys, missing keys and wrong types
/// are errors that name the file, the line and the key.
public enum ConfigLoader {
    public static func load(path: String) throws -> MountConfig {
        // The config decides where secrets are sent: nobody else may be able to change it.
        var info = stat()
        if stat(path, &info) == 0 {
            if info.st_mode & 0o022 != 0 {
                throw ConfigError(file: path, line: nil, key: nil,
                                  message: "is writable by group or others (mode \(String(info.st_mode & 0o777, radix: 8))); it decides where secrets are sent: chmod go-w \(path)")
            }
            if info.st_uid != geteuid() && info.st_uid != 0 {
                throw ConfigError(file: path, line: nil, key: nil, message: "is owned by uid \(info.st_uid), neither the user running crmfs nor root")
            }
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(file: path, line: nil, key: nil, message: "cannot read the file (missing or not readable)")
        }
        return try parse(String(decoding: data, as: UTF8.self), path: path)
    }

    public static func parse(_ text: String, path: String) throws -> MountConfig {
        try checkTableHeaders(text, path: path)
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigError(file: path, line: error.source.begin.line, key: nil, message: "not valid TOML: \(error.description)")
        }
        let reader = Reader(path: path, lines: LineIndex(text: text))
        return try reader.config(table)
    }

    /// toml++ (under TOMLKit) stops the process on a table header without a name (`[=x]`) instead of
    /// reporting it: such a header is refused here first.
    static func checkTableHeaders(_ text: String, path: String) throws {
        for (offset, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var rest = line.drop { $0 == " " || $0 == "\t" }
            guard rest.first == "[" else { continue }
            rest = rest.dropFirst()
            if rest.first == "[" { rest = rest.dropFirst() }
            rest = rest.drop { $0 == " " || $0 == "\t" }
            guard let first = rest.first, first.isASCII, first.isLetter || first.isNumber || "_-\"'".contains(first) else {
                throw ConfigError(file: path, line: offset + 1, key: nil, message: "not valid TOML: a [table] header needs a name")
            }
        }
    }

    struct Reader {
        let path: String
        let lines: LineIndex

        func config(_ root: TOMLTable) throws -> MountConfig {
            try allowOnly(root, ["salesforce", "graph", "cache", "writeback", "freshness", "metrics", "fleet", "objects"], at: nil)
            let salesforce = try self.salesforce(try table(root, "salesforce", at: nil))
            let graph = try self.graph(try table(root, "graph", at: nil))
            let cache = try self.cache(root["cache"]?.table)
            let writeback = try self.writeback(root["writeback"]?.table)
            let freshness = try self.freshness(root["freshness"]?.table)
            let metrics = try self.metrics(root["metrics"]?.table)
            guard let list = root["objects"]?.array, !list.isEmpty else {
                throw error("objects", "at least one [[objects]] block is required")
            }
            var objects: [ObjectSettings] = []
            for (index, value) in list.enumerated() {
                guard let table = value.table else { throw error("objects[\(index)]", "must be a table ([[objects]])") }
                objects.append(try object(table, index: index))
            }
            var seen: Set<String> = []
            for (index, object) in objects.enumerated() where !seen.insert(object.directory.lowercased()).inserted {
                throw error("objects[\(index)].directory", "'\(object.directory)' is used by two objects")
            }
            var config = MountConfig(path: path, salesforce: salesforce, graph: graph, cache: cache, writeback: writeback, freshness: freshness, objects: objects)
            config.metrics = metrics
            config.fleet = try fleet(root["fleet"]?.table)
            return config
        }

        func salesforce(_ t: TOMLTable) throws -> SalesforceSettings {
            let at = "salesforce"
            try allowOnly(t, ["instance_url", "api_version", "auth", "client_id", "client_secret_file", "client_secret_env",
                              "refresh_token_file", "session_timeout", "ca_file"], at: at)
            let auth: SalesforceSettings.Auth
            switch try string(t, "auth", at: at, default: "client_credentials") {
            case "client_credentials":
                auth = .clientCredentials(secret: try secret(t, at: at, required: true)!)
            case "refresh_token":
                auth = .refreshToken(tokenFile: try string(t, "refresh_token_file", at: at), secret: try secret(t, at: at, required: false))
            case "device-code", "device_code":
                auth = .deviceCode
            case let other:
                throw error("\(at).auth", "'\(other)' is not an auth flow; use client_credentials, refresh_token or device-code")
            }
            var timeout: Double?
            if let text = try optionalString(t, "session_timeout", at: at) {
                guard let seconds = Durations.parse(text) else { throw error("\(at).session_timeout", "'\(text)' is not a duration (e.g. 2h, 90m)") }
                timeout = seconds
            }
            let version = try string(t, "api_version", at: at, default: "62.0")
            guard Double(version) != nil else { throw error("\(at).api_version", "'\(version)' is not an API version like 62.0") }
            return SalesforceSettings(instanceURL: try url(t, "instance_url", at: at), apiVersion: version,
                                      clientID: try string(t, "client_id", at: at), auth: auth, sessionTimeout: timeout,
                                      caFile: try optionalString(t, "ca_file", at: at))
        }

        func graph(_ t: TOMLTable) throws -> GraphSettings {
            let at = "graph"
            try allowOnly(t, ["authority", "endpoint", "tenant", "auth", "client_id", "client_secret_file", "client_secret_env", "site", "library", "ca_file", "ru_per_minute"], at: at)
            let auth: GraphSettings.Auth
            switch try string(t, "auth", at: at, default: "client_credentials") {
            case "client_credentials": auth = .clientCredentials(secret: try secret(t, at: at, required: true)!)
            case "device-code", "device_code": auth = .deviceCode
            case let other: throw error("\(at).auth", "'\(other)' is not an auth flow; use client_credentials or device-code")
            }
            let site = try string(t, "site", at: at)
            guard let colon = site.range(of: ":/"), !site[..<colon.lowerBound].isEmpty else {
                throw error("\(at).site", "'\(site)' is not HOSTNAME:/PATH, e.g. contoso.sharepoint.com:/sites/Sales")
            }
            var budget = 1200
            if let value = t["ru_per_minute"] {
                guard let units = value.int, units >= 0 else {
                    throw error("\(at).ru_per_minute", "must be the app's resource units a minute (1200 for a small tenant), or 0 for no pacing")
                }
                budget = units
            }
            return GraphSettings(
                authority: try url(t, "authority", at: at, default: "https://login.microsoftonline.com"),
                endpoint: try url(t, "endpoint", at: at, default: "https://graph.microsoft.com/v1.0"),
                tenant: try string(t, "tenant", at: at), clientID: try string(t, "client_id", at: at),
                auth: auth,
                siteHostname: String(site[..<colon.lowerBound]), sitePath: String(site[site.index(after: colon.lowerBound)...]),
                library: try string(t, "library", at: at, default: "Documents"), caFile: try optionalString(t, "ca_file", at: at),
                resourceUnitsPerMinute: budget)
        }

        func cache(_ t: TOMLTable?) throws -> CacheSettings {
            let at = "cache"
            // Without a directory, the user's own state home (`$XDG_STATE_HOME/crmfs/NAME`).
            let defaultDirectory = UserPaths().stateDirectory(forConfig: path)
            guard let t else { return CacheSettings(directory: defaultDirectory, size: 1 << 30, blockSize: 4 << 20) }
            try allowOnly(t, ["directory", "size", "block_size"], at: at)
            let size = try bytes(t, "size", at: at, default: 1 << 30)
            let block = try bytes(t, "block_size", at: at, default: 4 << 20)
            guard block >= 64 << 10, block <= 64 << 20 else { throw error("\(at).block_size", "must be between 64KiB and 64MiB") }
            guard size >= block * 4 else { throw error("\(at).size", "must hold at least four blocks (\(block * 4) bytes)") }
            return CacheSettings(directory: try string(t, "directory", at: at, default: defaultDirectory), size: size, blockSize: block)
        }

        func writeback(_ t: TOMLTable?) throws -> WritebackSettings {
            var settings = WritebackSettings()
            guard let t else { return settings }
            let at = "writeback"
            try allowOnly(t, ["fragment_size", "simple_upload_max", "uploads", "local_only"], at: at)
            let unit: Int64 = 320 << 10
            settings.fragmentSize = try bytes(t, "fragment_size", at: at, default: settings.fragmentSize)
            guard settings.fragmentSize % unit == 0, settings.fragmentSize < 60 << 20 else {
                throw error("\(at).fragment_size", "must be a multiple of 320KiB below 60MiB (Graph's upload session rule), e.g. \"10MiB\"")
            }
            settings.simpleUploadMax = try bytes(t, "simple_upload_max", at: at, default: settings.simpleUploadMax)
            guard settings.simpleUploadMax <= 250_000_000 else { throw error("\(at).simple_upload_max", "must be at most 250MB, Graph's limit") }
            if let value = t["uploads"] {
                guard let uploads = value.int, (1...64).contains(uploads) else { throw error("\(at).uploads", "must be a whole number from 1 to 64") }
                settings.uploads = uploads
            }
            if let value = t["local_only"] {
                let patterns = value.array?.compactMap(\.string)
                guard let patterns, patterns.count == value.array?.count else {
                    throw error("\(at).local_only", "must be an array of file name patterns")
                }
                settings.localOnly = patterns
            }
            return settings
        }

        func freshness(_ t: TOMLTable?) throws -> FreshnessSettings {
            var settings = FreshnessSettings()
            guard let t else { return settings }
            let at = "freshness"
            try allowOnly(t, ["drive_poll", "crm_poll"], at: at)
            func interval(_ key: String, default fallback: Double) throws -> Double {
                guard let value = t[key] else { return fallback }
                guard let text = value.string, let seconds = Durations.parse(text) else {
                    throw error("\(at).\(key)", "must be a duration such as \"5s\" or \"2m\" (\"0\" turns the feed off)")
                }
                guard seconds == 0 || seconds >= 1 else { throw error("\(at).\(key)", "must be at least 1s, or 0 to turn the feed off") }
                return seconds
            }
            settings.drivePoll = try interval("drive_poll", default: settings.drivePoll)
            settings.crmPoll = try interval("crm_poll", default: settings.crmPoll)
            return settings
        }

        /// `[metrics] listen`: where Prometheus may scrape, off without it. Only this machine: a Unix socket
        /// (`unix:PATH`, relative to the state directory) or a loopback address and port.
        func metrics(_ t: TOMLTable?) throws -> MetricsListener? {
            guard let t else { return nil }
            let at = "metrics"
            try allowOnly(t, ["listen"], at: at)
            let text = try string(t, "listen", at: at)
            if text.hasPrefix("unix:") {
                let socket = String(text.dropFirst("unix:".count))
                guard !socket.isEmpty else { throw error("\(at).listen", "names no socket after unix:") }
                return .unixSocket(socket)
            }
            guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else {
                throw error("\(at).listen", "'\(text)' is neither unix:PATH nor HOST:PORT, e.g. \"127.0.0.1:9464\"")
            }
            let host = String(text[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            guard Loopback.isLoopback(host: host) else {
                throw error("\(at).listen", "'\(host)' is not a loopback address: metrics are served to this machine only (use 127.0.0.1 or a unix: socket)")
            }
            return .tcp(host: host, port: port)
        }

        func fleet(_ t: TOMLTable?) throws -> FleetSettings? {
            guard let t else { return nil }
            let at = "fleet"
            try allowOnly(t, ["host", "port", "database", "user", "password_file", "password_env", "tls", "ca_file", "retention", "reader_role"], at: at)
            var settings = FleetSettings(host: try string(t, "host", at: at), user: try string(t, "user", at: at))
            if let value = t["port"] {
                guard let port = value.int, (1...65535).contains(port) else { throw error("\(at).port", "must be a port number (5432 is PostgreSQL's)") }
                settings.port = port
            }
            settings.database = try string(t, "database", at: at, default: settings.database)
            switch (try optionalString(t, "password_file", at: at), try optionalString(t, "password_env", at: at)) {
            case (let file?, nil): settings.password = .file(file)
            case (nil, let env?): settings.password = .environment(env)
            case (nil, nil): settings.password = nil
            default: throw error("\(at).password_file", "set either password_file or password_env, not both")
            }
            let tls = try string(t, "tls", at: at, default: settings.tls.rawValue)
            guard let mode = FleetSettings.TLSMode(rawValue: tls) else {
                throw error("\(at).tls", "'\(tls)' is not a TLS mode; use \(FleetSettings.TLSMode.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            // The password crosses the network: in the clear only to this machine. Without `tls`, another
            // host is `require` (FleetSettings.defaultTLS); `prefer` or `disable` with a password is refused.
            settings.tls = mode
            if let problem = settings.cleartextPasswordProblem { throw error("\(at).tls", problem) }
            settings.caFile = try optionalString(t, "ca_file", at: at)
            if let text = try optionalString(t, "retention", at: at) {
                guard let seconds = Durations.parse(text), seconds >= 3600 else { throw error("\(at).retention", "must be a duration of at least 1h, e.g. \"7d\"") }
                settings.retention = seconds
            }
            settings.readerRole = try optionalString(t, "reader_role", at: at)
            return settings
        }

        func object(_ t: TOMLTable, index: Int) throws -> ObjectSettings {
            let at = "objects[\(index)]"
            try allowOnly(t, ["object", "directory", "name", "filter", "fields", "link", "folder", "mappings", "id_field", "conflict_policy", "writable_fields"], at: at)
            let linkText = try string(t, "link", at: at, default: "folder")
            guard let link = LinkModel(rawValue: linkText) else {
                throw error("\(at).link", "'\(linkText)' is not a link model; use \(LinkModel.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            let folder = try optionalString(t, "folder", at: at)
            if link == .folder && folder == nil { throw error("\(at).folder", "is required when link = \"folder\"") }
            let directory = try string(t, "directory", at: at)
            guard !directory.contains("/"), directory != ".", directory != ".." else {
                throw error("\(at).directory", "'\(directory)' must be a single directory name")
            }
            var fields: [String] = []
            if let value = t["fields"] {
                guard let array = value.array else { throw error("\(at).fields", "must be an array of field names") }
                for item in array {
                    guard let name = item.string else { throw error("\(at).fields", "must contain only strings") }
                    fields.append(name)
                }
            }
            var writableFields: [String] = []
            if let value = t["writable_fields"] {
                guard let array = value.array, array.allSatisfy({ $0.string != nil }) else { throw error("\(at).writable_fields", "must be an array of field names") }
                writableFields = array.compactMap(\.string)
                if let stray = writableFields.first(where: { field in !fields.contains { $0.caseInsensitiveCompare(field) == .orderedSame } }) {
                    throw error("\(at).writable_fields", "'\(stray)' is not in this object's `fields`; only shown fields can be written")
                }
            }
            var mappings: [FieldMapping] = []
            if let value = t["mappings"] {
                guard let array = value.array else { throw error("\(at).mappings", "must be a list of [[objects.mappings]] tables") }
                for (mappingIndex, item) in array.enumerated() {
                    let mat = "\(at).mappings[\(mappingIndex)]"
                    guard let m = item.table else { throw error(mat, "must be a table") }
                    try allowOnly(m, ["crm_field", "sp_column", "transform"], at: mat)
                    let transform = try optionalString(m, "transform", at: mat).map { text in
                        guard let transform = FieldTransform(rawValue: text) else {
                            throw error("\(mat).transform", "'\(text)' is not a transform; use \(FieldTransform.allCases.map(\.rawValue).joined(separator: ", "))")
                        }
                        return transform
                    }
                    mappings.append(FieldMapping(crmField: try string(m, "crm_field", at: mat), spColumn: try string(m, "sp_column", at: mat),
                                                 transform: transform))
                }
            }
            let policyText = try string(t, "conflict_policy", at: at, default: ConflictPolicy.keepBoth.rawValue)
            guard let conflictPolicy = ConflictPolicy(rawValue: policyText) else {
                throw error("\(at).conflict_policy", "'\(policyText)' is not a conflict policy; use \(ConflictPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return ObjectSettings(object: try string(t, "object", at: at), directory: directory,
                                  nameTemplate: try string(t, "name", at: at, default: "{Name}"), filter: try optionalString(t, "filter", at: at),
                                  fields: fields, link: link, folderTemplate: folder, mappings: mappings,
                                  idField: try string(t, "id_field", at: at, default: "Id"), conflictPolicy: conflictPolicy,
                                  writableFields: writableFields)
        }

        // MARK: Typed access

        func table(_ t: TOMLTable, _ key: String, at: String?) throws -> TOMLTable {
            let full = at.map { "\($0).\(key)" } ?? key
            guard let value = t[key] else { throw error(full, "missing; add a [\(full)] section") }
            guard let table = value.table else { throw error(full, "must be a table ([\(full)])") }
            return table
        }

        func optionalString(_ t: TOMLTable, _ key: String, at: String) throws -> String? {
            guard let value = t[key] else { return nil }
            guard let string = value.string else { throw error("\(at).\(key)", "must be a string (in quotes)") }
            return string
        }

        func string(_ t: TOMLTable, _ key: String, at: String, default fallback: String? = nil) throws -> String {
            if let value = try optionalString(t, key, at: at) {
                guard !value.trimmingCharacters(in: .whitespaces).isEmpty else { throw error("\(at).\(key)", "must not be empty") }
                return value
            }
            if let fallback { return fallback }
            throw error("\(at).\(key)", "missing (required)")
        }

        func url(_ t: TOMLTable, _ key: String, at: String, default fallback: String? = nil) throws -> String {
            let text = try string(t, key, at: at, default: fallback)
            guard let url = URL(string: text), ["http", "https"].contains(url.scheme?.lowercased() ?? ""), let host = url.host, !host.isEmpty else {
                throw error("\(at).\(key)", "'\(text)' is not an http(s) URL")
            }
            // Secrets and bearer tokens go to this URL: cleartext only where they never leave the machine.
            if url.scheme?.lowercased() == "http", !Loopback.isLoopback(host: host) {
                throw error("\(at).\(key)", "'\(text)' is plain http: it would send secrets and tokens unencrypted; use https (http is allowed for loopback only)")
            }
            return text.hasSuffix("/") ? String(text.dropLast()) : text
        }

        func bytes(_ t: TOMLTable, _ key: String, at: String, default fallback: Int64) throws -> Int64 {
            guard let value = t[key] else { return fallback }
            if let number = value.int, number > 0 { return Int64(number) }
            guard let text = value.string, let size = ByteSize.parse(text), size > 0 else {
                throw error("\(at).\(key)", "must be a size such as \"4MiB\" or \"2GiB\"")
            }
            return size
        }

        func secret(_ t: TOMLTable, at: String, required: Bool) throws -> SecretSource? {
            let file = try optionalString(t, "client_secret_file", at: at)
            let env = try optionalString(t, "client_secret_env", at: at)
            switch (file, env) {
            case (let file?, nil): return .file(file)
            case (nil, let env?): return .environment(env)
            case (nil, nil):
                if required { throw error("\(at).client_secret_file", "missing: set client_secret_file (a 0600 file) or client_secret_env") }
                return nil
            default:
                throw error("\(at).client_secret_file", "set either client_secret_file or client_secret_env, not both")
            }
        }

        func allowOnly(_ t: TOMLTable, _ keys: Set<String>, at: String?) throws {
            for key in t.keys.sorted() where !keys.contains(key) {
                let full = at.map { "\($0).\(key)" } ?? key
                throw error(full, "unknown key; expected one of: \(keys.sorted().joined(separator: ", "))")
            }
        }

        func error(_ key: String, _ message: String) -> ConfigError {
            ConfigError(file: path, line: lines.line(of: key), key: key, message: message)
        }
    }
}

/// Finds the line where a dotted key (`graph.client_id`, `objects[1].link`) is written, for error messages.
struct LineIndex {
    private var entries: [String: Int] = [:]

    init(text: String) {
        var section = ""
        var arrayCounts: [String: Int] = [:]
        var currentElement: [String: String] = [:]  // "objects" -> "objects[2]"
        for (offset, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            let number = offset + 1
            if line.hasPrefix("[[") , let end = line.range(of: "]]") {
                let name = String(line[line.index(line.startIndex, offsetBy: 2)..<end.lowerBound]).trimmingCharacters(in: .whitespaces)
                let parent = name.split(separator: ".").dropLast().joined(separator: ".")
                let leaf = String(name.split(separator: ".").last ?? "")
                let parentPath = parent.isEmpty ? "" : (currentElement[parent] ?? parent)
                let base = parentPath.isEmpty ? leaf : "\(parentPath).\(leaf)"
                let index = arrayCounts[base, default: 0]
                arrayCounts[base] = index + 1
                section = "\(base)[\(index)]"
                currentElement[name] = section
                entries[section] = number
            } else if line.hasPrefix("["), let end = line.firstIndex(of: "]") {
                section = String(line[line.index(after: line.startIndex)..<end]).trimmingCharacters(in: .whitespaces)
                entries[section] = number
            } else if let equals = line.firstIndex(of: "="), !line.hasPrefix("#") {
                let key = line[..<equals].trimmingCharacters(in: .whitespaces)
                entries[section.isEmpty ? key : "\(section).\(key)"] = number
            }
        }
    }

    func line(of key: String) -> Int? {
        if let line = entries[key] { return line }
        // A missing key: point at its section.
        var parts = key.split(separator: ".").map(String.init)
        while !parts.isEmpty {
            parts.removeLast()
            if let line = entries[parts.joined(separator: ".")] { return line }
        }
        return nil
    }
}
