import Config
import Foundation
import HTTP
import Namespace

/// A tenant in memory for tests of the tree and the write path with no sandbox and no kernel: a library
/// with an `Accounts` folder, a CRM with the accounts a test adds, and a config mounting accounts by
/// name with their documents in `Accounts/{Name} ({Id})`.
public struct MemoryTenant: Sendable {
    public let drive: InMemoryDrive
    public let records = InMemoryRecords()
    /// The `Accounts` folder's item id.
    public let accounts: String

    static let config = """
        [salesforce]
        instance_url = "https://contoso.my.salesforce.com"
        client_id = "3MVG9abc"
        client_secret_env = "SF_SECRET"

        [graph]
        tenant = "contoso.onmicrosoft.com"
        client_id = "00000000-0000-0000-0000-000000000001"
        client_secret_env = "GRAPH_SECRET"
        site = "memory.sharepoint.com:/sites/Sales"
        library = "LIBRARY"

        [[objects]]
        object = "Account"
        directory = "Accounts"
        name = "{Name}"
        folder = "Accounts/{Name} ({Id})"
        """

    public init(beforeWrite: @escaping @Sendable (InMemoryDrive.Call) async throws -> Void = { _ in }) {
        drive = InMemoryDrive(beforeWrite: beforeWrite)
        accounts = drive.addFolder("Accounts")
    }

    /// The mount's config, for the library named `library`.
    public func config(library: String = "Documents") throws -> MountConfig {
        try ConfigLoader.parse(Self.config.replacingOccurrences(of: "LIBRARY", with: library), path: "/etc/crmfs/memory.conf")
    }

    /// A tree over this tenant, as a new mount would open it.
    public func open(library: String = "Documents", attributeTimeout: TimeInterval = 60) async throws -> Tree {
        let config = try config(library: library)
        return Tree(config: config, location: try await LibraryLocation.find(config: config, graph: drive), graph: drive, salesforce: records,
                    recordURLBase: "https://contoso.my.salesforce.com", options: TreeOptions(attributeTimeout: attributeTimeout))
    }

    /// Adds an account and, when it has documents, its folder holding them (whose id it returns).
    @discardableResult
    public func account(_ id: String, _ name: String, documents: [String: String] = [:]) -> String? {
        records.add("Account", ["Id": .string(id), "Name": .string(name)])
        guard !documents.isEmpty else { return nil }
        let folder = drive.addFolder("\(name) (\(id))", in: accounts)
        for (name, text) in documents { drive.addDocument(name, in: folder, content: Data(text.utf8)) }
        return folder
    }

    /// The directory of account `name`, looked up as the kernel would.
    public static func record(_ tree: Tree, _ name: String) async throws -> UInt64 {
        let accounts = try await tree.lookup(parent: Tree.rootIno, name: "Accounts")
        return try await tree.lookup(parent: accounts.ino, name: name).ino
    }
}
