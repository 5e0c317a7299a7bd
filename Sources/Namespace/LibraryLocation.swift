import Config
import Foundation
import Graph

/// Where a config's document library lives: its site's and drive's ids. They do not change between
/// mounts, so a mount keeps them and a remount needs no round trip to learn them again.
public struct LibraryLocation: Sendable, Codable, Equatable {
    public var siteID: String
    public var driveID: String

    public init(siteID: String, driveID: String) {
        self.siteID = siteID
        self.driveID = driveID
    }

    /// Looks the site up by its host and path, then the library among its drives by name.
    public static func find(config: MountConfig, graph: any DriveService) async throws -> LibraryLocation {
        let site = try await graph.site(hostname: config.graph.siteHostname, path: config.graph.sitePath)
        let drives = try await graph.drives(siteID: site.id)
        guard let drive = drives.first(where: { $0.name.caseInsensitiveCompare(config.graph.library) == .orderedSame }) else {
            throw ConfigError(file: config.path, line: nil, key: "graph.library",
                              message: "no library named '\(config.graph.library)' on \(config.graph.siteHostname):\(config.graph.sitePath); it has: \(drives.map(\.name).joined(separator: ", "))")
        }
        return LibraryLocation(siteID: site.id, driveID: drive.id)
    }
}
