import Config
import Foundation
import Graph

/// Where a config's document library lives: its site and its drive. They do not change between mounts,
/// so a mount keeps them and a remount needs no round trip to learn them again.
public struct LibraryLocation: Sendable, Codable, Equatable {
    /// How Graph is told the site: its id, or its path address (`host:/sites/Sales:`), which Graph takes
    /// wherever a site id goes.
    public var siteID: String
    public var driveID: String

    public init(siteID: String, driveID: String) {
        self.siteID = siteID
        self.driveID = driveID
    }

    /// Looks the library up among the drives of the site, addressed by its host and path: one request.
    public static func find(config: MountConfig, graph: any DriveService) async throws -> LibraryLocation {
        let site = GraphPath.siteAddress(hostname: config.graph.siteHostname, path: config.graph.sitePath)
        let drives = try await graph.drives(siteID: site)
        guard let drive = drives.first(where: { $0.name.caseInsensitiveCompare(config.graph.library) == .orderedSame }) else {
            throw ConfigError(file: config.path, line: nil, key: "graph.library",
                              message: "no library named '\(config.graph.library)' on \(config.graph.siteHostname):\(config.graph.sitePath); it has: \(drives.map(\.name).joined(separator: ", "))")
        }
        return LibraryLocation(siteID: site, driveID: drive.id)
    }

    /// Whether both name the same library: a kept location from before sites were addressed by path
    /// names the site by id, and is the same library all the same.
    public func isSameLibrary(as other: LibraryLocation) -> Bool { driveID == other.driveID }
}
