import CRM
import Config
import Foundation
import Namespace
import Writeback

/// Checks a config's objects against the org: each object exists, every field its templates, xattrs
/// and mappings name is one of its fields, and what its link model writes to is there. Problems are
/// config errors naming the key, so a mount fails at once rather than every upload failing later.
public enum ObjectValidation {
    public static func validate(_ config: MountConfig, salesforce: SalesforceClient) async throws {
        let descriptions = await describeAll(config, salesforce: salesforce)
        for (index, object) in config.objects.enumerated() {
            let description: SObjectDescription
            do {
                description = try descriptions[object.object]!.get()
            } catch let error as SalesforceError where error.status == 404 {
                throw ConfigError(file: config.path, line: nil, key: "objects[\(index)].object",
                                  message: "Salesforce has no object '\(object.object)' (custom objects end in __c)")
            }
            let named: [(key: String, fields: [String])] = [
                ("name", Template(object.nameTemplate).fields),
                ("folder", Template(object.folderTemplate ?? "").fields),
                ("fields", object.fields),
                ("mappings", object.mappings.map(\.crmField)),
            ]
            for (key, fields) in named {
                for field in fields where description.field(field) == nil {
                    throw ConfigError(file: config.path, line: nil, key: "objects[\(index)].\(key)",
                                      message: "\(object.object) has no field '\(field)'")
                }
            }
            try await validateLink(object, key: "objects[\(index)].link", config: config, salesforce: salesforce, descriptions: descriptions)
        }
    }

    /// Every object the config names (and the link object, when one is used) described side by side:
    /// one round trip's wait rather than one per object.
    private static func describeAll(_ config: MountConfig, salesforce: SalesforceClient) async -> [String: Result<SObjectDescription, Error>] {
        var names = Set(config.objects.map(\.object))
        if config.objects.contains(where: { if case .linkObject = $0.link { true } else { false } }) { names.insert(Linker.linkObject) }
        let described = await withTaskGroup(of: Described.self, returning: [Described].self) { group in
            for name in names {
                group.addTask {
                    do { return Described(name: name, result: .success(try await salesforce.describe(name))) } catch {
                        return Described(name: name, result: .failure(error))
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        return Dictionary(described.map { ($0.name, $0.result) }, uniquingKeysWith: { first, _ in first })
    }

    private struct Described: Sendable {
        let name: String
        let result: Result<SObjectDescription, Error>
    }

    private static func validateLink(_ object: ObjectSettings, key: String, config: MountConfig, salesforce: SalesforceClient,
                                     descriptions: [String: Result<SObjectDescription, Error>]) async throws {
        func problem(_ message: String) -> ConfigError { ConfigError(file: config.path, line: nil, key: key, message: message) }
        switch object.link {
        case .folder:
            return
        case .linkObject:
            let description: SObjectDescription
            do {
                description = try descriptions[Linker.linkObject]!.get()
            } catch let error as SalesforceError where error.status == 404 {
                throw problem("link = \"link-object\" needs the custom object \(Linker.linkObject) in Salesforce, with fields \(Linker.linkObjectFields.joined(separator: ", ")); the org has no such object")
            }
            let missing = Linker.linkObjectFields.filter { description.field($0) == nil }
            if !missing.isEmpty { throw problem("\(Linker.linkObject) lacks the field(s) \(missing.joined(separator: ", "))") }
        case .filesConnect:
            if try await salesforce.query("SELECT Id FROM ExternalDataSource LIMIT 1").isEmpty {
                throw problem("link = \"files-connect\" needs an ExternalDataSource for the SharePoint site in Salesforce (Files Connect setup); the org has none")
            }
        }
    }
}
