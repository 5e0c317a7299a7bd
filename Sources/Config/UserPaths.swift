import Foundation

/// Where a user's crmfs files live by default, per the XDG Base Directory specification: configs in
/// `$XDG_CONFIG_HOME/crmfs/` (`~/.config/crmfs/`), each config's state in `$XDG_STATE_HOME/crmfs/NAME`
/// (`~/.local/state/crmfs/NAME`), NAME being the config's file name without `.conf`.
public struct UserPaths: Sendable {
    public var environment: [String: String]

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    var home: String { environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory() }

    /// A base directory variable, when it names an absolute path (the spec says to ignore a relative one).
    private func base(_ variable: String, default relative: String) -> String {
        if let value = environment[variable], value.hasPrefix("/") { return value }
        return (home as NSString).appendingPathComponent(relative)
    }

    public var configDirectory: String { (base("XDG_CONFIG_HOME", default: ".config") as NSString).appendingPathComponent("crmfs") }
    public var stateHome: String { (base("XDG_STATE_HOME", default: ".local/state") as NSString).appendingPathComponent("crmfs") }

    /// The config a command names: a path as given (relative to the working directory), or a bare NAME of
    /// `$XDG_CONFIG_HOME/crmfs/NAME.conf` (`crmfs mount sales ~/crm`) when no such file is here.
    public func config(_ argument: String) -> String {
        let given = URL(fileURLWithPath: argument).standardizedFileURL.path
        guard !argument.contains("/"), !FileManager.default.fileExists(atPath: given) else { return given }
        let name = argument.hasSuffix(".conf") ? argument : argument + ".conf"
        let named = (configDirectory as NSString).appendingPathComponent(name)
        return FileManager.default.fileExists(atPath: named) ? named : given
    }

    /// The state directory of a config that names none: `$XDG_STATE_HOME/crmfs/NAME`.
    public func stateDirectory(forConfig path: String) -> String {
        let file = (path as NSString).lastPathComponent
        let name = file.hasSuffix(".conf") ? String(file.dropLast(".conf".count)) : file
        return (stateHome as NSString).appendingPathComponent(name.isEmpty ? "default" : name)
    }
}
