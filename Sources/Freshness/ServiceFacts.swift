import Config
import Foundation
import Namespace

/// What a mount learns of the services before it can show anything, and what stays true between
/// mounts: where the library is, the Salesforce instance, and that the org has every object and field
/// the config names. A remount takes them from the state directory and confirms them in the background.
public struct ServiceFacts: Sendable, Codable, Equatable {
    /// The config they were learned for (`key(for:)`): a config that asks differently learns them again.
    public var key: String
    public var location: LibraryLocation
    /// Where record links point (the instance the sign-in named).
    public var instanceURL: String

    public init(key: String, location: LibraryLocation, instanceURL: String) {
        self.key = key
        self.location = location
        self.instanceURL = instanceURL
    }

    /// Everything in a config the facts depend on: how the services are reached and signed in to (their
    /// addresses, apps and certificate authorities; never a secret), the library, and every object,
    /// field and link model its validation checked. A config changed in any of these is checked again
    /// before it mounts, so a connection it can no longer make fails the mount.
    public static func key(for config: MountConfig) -> String {
        var parts = [config.graph.authority, config.graph.tenant, config.graph.clientID, "\(config.graph.auth)", config.graph.endpoint, config.graph.caFile ?? "",
                     config.graph.siteHostname, config.graph.sitePath, config.graph.library,
                     config.salesforce.instanceURL, config.salesforce.clientID, config.salesforce.caFile ?? "", "\(config.salesforce.auth)",
                     config.salesforce.apiVersion]
        for object in config.objects {
            parts += [object.object, object.nameTemplate, object.folderTemplate ?? "", object.fields.joined(separator: ","),
                      object.mappings.map(\.crmField).joined(separator: ","), "\(object.link)"]
        }
        return parts.joined(separator: "\u{1F}")
    }
}
