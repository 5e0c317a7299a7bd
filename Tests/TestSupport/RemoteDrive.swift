import Foundation
import Graph
import Services

/// The library as the service holds it, read with the sandbox's own connections (as another client would).
public struct RemoteDrive: Sendable {
    public let connections: Connections
    public let driveID: String

    public init(_ sandbox: SandboxFixture) async throws {
        connections = try sandbox.connections()
        driveID = try await sandbox.info()["driveId"]!
    }

    public init(_ mount: MountFixture) async throws { try await self.init(mount.sandbox) }

    /// The item at `path` (relative to the library's root), or nil when there is none.
    public func item(_ path: String) async throws -> DriveItem? {
        do {
            return try await connections.graph.item(driveID: driveID, path: path)
        } catch let error as GraphError where error.isNotFound {
            return nil
        }
    }

    public func bytes(_ path: String) async throws -> Data? {
        guard let item = try await item(path) else { return nil }
        return try await bytes(item)
    }

    public func bytes(_ item: DriveItem) async throws -> Data {
        try await connections.graph.download(driveID: driveID, itemID: item.id).data
    }

    /// The names in `folder`.
    public func names(_ folder: String) async throws -> Set<String> {
        guard let item = try await item(folder) else { return [] }
        return Set(try await connections.graph.children(driveID: driveID, itemID: item.id).compactMap(\.name))
    }

    /// Every document below `folder`, by path relative to it.
    public func documents(below folder: String) async throws -> [String: DriveItem] {
        try await walk(folder).documents
    }

    public func folders(below folder: String) async throws -> Set<String> {
        try await walk(folder).folders
    }

    private func walk(_ folder: String) async throws -> (documents: [String: DriveItem], folders: Set<String>) {
        let root = try await connections.graph.item(driveID: driveID, path: folder)
        var documents: [String: DriveItem] = [:]
        var folders: Set<String> = []
        var pending: [(id: String, prefix: String)] = [(root.id, "")]
        while let (id, prefix) = pending.popLast() {
            for child in try await connections.graph.children(driveID: driveID, itemID: id) {
                let name = prefix + (child.name ?? "")
                if child.folder != nil {
                    folders.insert(name)
                    pending.append((child.id, name + "/"))
                } else {
                    documents[name] = child
                }
            }
        }
        return (documents, folders)
    }
}
