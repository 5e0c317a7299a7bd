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
        for (index, object) in config.objects.enumerated() {
            let description: SObjectDescription
            do {
                description = try await salesforce.describe(object.object)
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
            try await validateLink(object, key: "objects[\(index)].link", config: config, salesforce: salesforce)
        }
    }

    private static func validateLink(_ object: ObjectSettings, key: String, config: MountConfig, salesforce: SalesforceClient) async throws {
        func problem(_ message: String) -> ConfigError { ConfigError(file: config.path, line: nil, key: key, message: message) }
        switch object.link {
        case .folder:
            return
        case .linkObject:
            let description: SObjectDescription
            do {
                description = try await salesforce.describe(Linker.linkObject)
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
