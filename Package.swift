// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "crmfs",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "crmfs", targets: ["crmfs"]),
        .library(name: "Sandbox", targets: ["Sandbox"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        // C shim over libcurl: typed wrappers for the variadic setopt/getinfo calls.
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        // Linux calls Glibc does not export to Swift: getxattr(2) and friends (`crmfs sync`, tests), prctl.
        .systemLibrary(name: "CLinux"),
        // libfuse 3 low-level API (FUSE_USE_VERSION 312).
        .systemLibrary(
            name: "CFuse",
            pkgConfig: "fuse3",
            providers: [.apt(["libfuse3-dev"])]
        ),
        // Async HTTP transport on libcurl, OAuth token providers, retry and backoff.
        .target(
            name: "HTTP",
            dependencies: ["CCurl", .product(name: "Logging", package: "swift-log"), .product(name: "CoreMetrics", package: "swift-metrics")]
        ),
        // Microsoft's content hash for SharePoint files; shared by the client and the sandbox.
        .target(name: "QuickXor"),
        // SharePoint's naming rules; shared by the client and the sandbox.
        .target(name: "SharePointNaming"),
        // SharePoint's price list in resource units; the client paces itself by it, the sandbox charges by it.
        .target(name: "SharePointCosts"),
        // Microsoft Graph client (SharePoint document libraries).
        .target(name: "Graph", dependencies: ["HTTP", "SharePointCosts"]),
        // Salesforce REST client.
        .target(name: "CRM", dependencies: ["HTTP"]),
        // mount.conf parsing and validation.
        .target(
            name: "Config",
            dependencies: ["HTTP", .product(name: "TOMLKit", package: "TOMLKit")]
        ),
        // Local emulator of Entra ID, Microsoft Graph and Salesforce REST.
        .target(
            name: "Sandbox",
            dependencies: [
                "QuickXor", "SharePointCosts", "SharePointNaming",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The namespace: inode table, records and documents as directories and files, naming rules, xattrs.
        .target(
            name: "Namespace",
            dependencies: ["Config", "Graph", "CRM", "HTTP", "SharePointNaming", .product(name: "Logging", package: "swift-log")]
        ),
        // The on-disk block cache and the reader that fills it from Graph.
        .target(
            name: "Cache",
            dependencies: ["CLinux", "Graph", "HTTP", "Namespace", .product(name: "Logging", package: "swift-log")]
        ),
        // Durable writes: staged files on local disk and the journal of changes still to send.
        .target(
            name: "Writeback",
            dependencies: ["Graph", "CRM", "Config", "HTTP", "QuickXor", .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Logging", package: "swift-log")]
        ),
        // Documents open for writing (one session each, owning its staged copy and lock), the local
        // overlay of the tree, and the hand-over to the write-back engine. Knows nothing of FUSE.
        .target(
            name: "Writes",
            dependencies: ["CLinux", "Cache", "Graph", "HTTP", "Namespace", "SharePointNaming", "Writeback", .product(name: "Logging", package: "swift-log")]
        ),
        // The file system as a library: each operation takes inode numbers, names and handles and answers
        // a value or an errno, over the namespace, the cache and the write path. Knows nothing of FUSE.
        .target(
            name: "FileSystem",
            dependencies: ["Cache", "Config", "HTTP", "Namespace", "SharePointNaming", "Writeback", "Writes", .product(name: "Logging", package: "swift-log")]
        ),
        // The FUSE adapter: libfuse's low-level session, kernel requests to file system calls, answers to
        // fuse_reply_*, the library's notices to the kernel's caches.
        .target(
            name: "FuseAdapter",
            dependencies: ["CFuse", "Cache", "FileSystem", "Namespace", .product(name: "Logging", package: "swift-log")]
        ),
        // Freshness against others' changes: the services' change feeds applied to the tree, the fleet's
        // change log read with the mount's own token, and the metadata kept between mounts.
        .target(
            name: "Freshness",
            dependencies: ["CRM", "Config", "Graph", "Namespace", .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Logging", package: "swift-log")]
        ),
        // The fleet's change log in PostgreSQL: its schema, the relay that fills it from the services'
        // feeds, and the follower that applies it to a mount.
        .target(
            name: "Fleet",
            dependencies: ["CRM", "Config", "Freshness", "Graph", "HTTP", "Namespace", .product(name: "PostgresNIO", package: "postgres-nio"),
                           .product(name: "NIOSSL", package: "swift-nio-ssl"), .product(name: "Logging", package: "swift-log")]
        ),
        // Builds the live clients of a mount from its config, checks its objects against the CRM, and
        // watches the sign-in.
        .target(
            name: "Services",
            dependencies: ["HTTP", "Graph", "CRM", "Config", "Namespace", "Writeback", .product(name: "Logging", package: "swift-log")]
        ),
        // Builds a mount's file system from its config (clients, kept tree, cache, write path, feeds):
        // one builder for the CLI, the tests and the benchmarks.
        .target(
            name: "MountBuilder",
            dependencies: ["Cache", "Config", "FileSystem", "Fleet", "Freshness", "Graph", "Namespace", "Services", "Writeback", "Writes",
                           .product(name: "Logging", package: "swift-log")]
        ),
        // What a running mount tells `crmfs status`: the facts, and a Unix socket in the state directory.
        .target(
            name: "Status",
            dependencies: [.product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "Prometheus", package: "swift-prometheus")]
        ),
        .executableTarget(
            name: "crmfs",
            dependencies: [
                "CLinux", "CRM", "Cache", "Config", "FileSystem", "Fleet", "Freshness", "FuseAdapter", "Graph", "HTTP", "MountBuilder", "Sandbox",
                "Services", "Status", "Writeback",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Starts sandboxes for tests and reads their stats; builds a mount's file system in process; a tenant in
        // memory for tests of crmfs's own logic.
        .target(
            name: "TestSupport",
            dependencies: ["CLinux", "Cache", "Config", "CRM", "FileSystem", "Graph", "HTTP", "MountBuilder", "Namespace", "QuickXor", "Sandbox", "Services",
                           "Writes", .product(name: "Logging", package: "swift-log")],
            path: "Tests/TestSupport"
        ),
        .testTarget(name: "HTTPTests", dependencies: ["HTTP", "QuickXor", "TestSupport"]),
        .testTarget(name: "ClientTests", dependencies: ["CRM", "Config", "Graph", "HTTP", "QuickXor", "Services", "TestSupport"]),
        .testTarget(name: "SandboxTests", dependencies: ["CRM", "Config", "Graph", "HTTP", "QuickXor", "Sandbox", "Services", "SharePointCosts", "TestSupport"]),
        .testTarget(name: "WritebackTests", dependencies: ["Writeback", "Graph", "CRM", "Config", "HTTP", "QuickXor", "Services", "TestSupport"]),
        .testTarget(name: "WritesTests", dependencies: ["Cache", "Config", "Graph", "Namespace", "TestSupport", "Writeback", "Writes",
                                                     .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "CacheTests", dependencies: ["Cache"]),
        .testTarget(name: "FileSystemTests", dependencies: ["Config", "CRM", "FileSystem", "Graph", "HTTP", "Namespace", "Services", "TestSupport", "Writeback", "Writes"]),
        .testTarget(name: "FreshnessTests", dependencies: ["CRM", "Config", "Freshness", "HTTP", "Namespace", "TestSupport"]),
        .testTarget(name: "TreeTests", dependencies: ["Config", "Graph", "HTTP", "Namespace", "TestSupport"]),
        .testTarget(name: "StatusTests", dependencies: ["Status", .product(name: "Prometheus", package: "swift-prometheus")]),
        .testTarget(name: "ParserTests", dependencies: ["CRM", "Config", "FileSystem", "Graph", "HTTP", "Namespace", "Sandbox", "Writes"]),
        .testTarget(name: "MountTests", dependencies: ["CLinux", "CRM", "Config", "Fleet", "Freshness", "Graph", "HTTP", "Namespace", "QuickXor", "Sandbox", "Services", "TestSupport"]),
    ]
)
