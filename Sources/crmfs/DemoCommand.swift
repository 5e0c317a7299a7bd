import ArgumentParser
import Config
import Foundation
import Graph
import Logging
import Sandbox
import Services
import SharePointNaming

/// `crmfs demo`: a sandbox with the demo tenant in a temporary directory, and a look at what it holds.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Start a sandbox with the demo tenant and show its records and documents.",
        discussion: "Stops, and removes the temporary tenant, on Ctrl-C.")

    @Option(help: "Records per object.")
    var records = 40

    @Option(help: "Record directories to show per object.")
    var show = 3

    func run() async throws {
        CRMFS.bootstrapLogging(level: .warning)
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("crmfs-demo-\(getpid())")
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(at: state) }

        var options = SandboxOptions(stateDirectory: state)
        options.seed = SeedOptions(records: records)
        let server = try await SandboxServer.start(options: options)
        let configURL = try server.writeMountConfig()
        let config = try ConfigLoader.load(path: configURL.path)
        let connections = try Connections(config: config)

        print("sandbox listening on \(server.baseURL)  (config: \(configURL.path))\n")
        let site = try await connections.graph.site(hostname: config.graph.siteHostname, path: config.graph.sitePath)
        guard let drive = try await connections.graph.drives(siteID: site.id).first(where: { $0.name == config.graph.library }) else {
            throw ValidationError("library \(config.graph.library) not found")
        }
        for object in config.objects {
            let records = try await connections.salesforce.query("SELECT Id, \(TemplateFields.fields(in: object.nameTemplate).joined(separator: ", ")) FROM \(object.object) ORDER BY Id LIMIT \(show)")
            print("\(object.directory)/")
            for record in records {
                let name = TemplateFields.expand(object.nameTemplate) { record[$0]?.description ?? "" }
                print("  \(name)/")
                guard let folderTemplate = object.folderTemplate else { continue }
                let folder = TemplateFields.expand(folderTemplate) { field in
                    field == "Id" ? record.id ?? "" : SharePointNames.sanitize(record[field]?.description ?? "", maxLength: 100)
                }
                try await printTree(connections.graph, driveID: drive.id, path: folder, indent: "    ")
            }
        }
        print("""

            Try it with curl (the sandbox speaks Graph and Salesforce REST; see README.md):
              curl -s \(server.baseURL)/_sandbox/stats
            Ctrl-C stops the sandbox.
            """)
        fflush(nil)
        await SignalWaiter(signals: [SIGINT, SIGTERM]).wait()
        await server.stop()
    }

    private func printTree(_ graph: GraphClient, driveID: String, path: String, indent: String) async throws {
        let folder = try await graph.item(driveID: driveID, path: path)
        for child in try await graph.children(driveID: driveID, itemID: folder.id) {
            let name = child.name ?? child.id
            if child.isFolder {
                print("\(indent)\(name)/")
                try await printTree(graph, driveID: driveID, path: "\(path)/\(name)", indent: indent + "  ")
            } else {
                print("\(indent)\(name)  (\(ByteSize.format(child.size ?? 0)))")
            }
        }
    }
}

/// `{Field}` templates for names and folder paths.
enum TemplateFields {
    static func fields(in template: String) -> [String] {
        var fields: [String] = []
        var rest = Substring(template)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            fields.append(String(rest[rest.index(after: open)..<close]))
            rest = rest[rest.index(after: close)...]
        }
        return fields.filter { $0 != "Id" }
    }

    static func expand(_ template: String, value: (String) -> String) -> String {
        var result = ""
        var rest = Substring(template)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            result += rest[..<open]
            result += value(String(rest[rest.index(after: open)..<close]))
            rest = rest[rest.index(after: close)...]
        }
        return result + rest
    }
}
