import CRM
import Config
import Foundation
import Namespace

/// Checks a config's objects against the org: each object exists, and every field its templates,
/// xattrs and mappings name is one of its fields. Problems are config errors naming the key.
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
        }
    }
}
