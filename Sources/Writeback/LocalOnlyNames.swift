import Foundation

/// Names of the temporary, lock and backup files that editors and copy tools make beside a document.
/// They stay on local disk, never uploaded; renaming one to an ordinary name uploads it under that
/// name, so a LibreOffice or vim save and rsync's temp-then-rename end as one upload of the final name.
public struct LocalOnlyNames: Sendable {
    /// Shell-style patterns (fnmatch), matched against the file name only.
    public static let defaults = [
        ".~lock.*#",        // LibreOffice lock file
        "~$*",              // Microsoft Office owner file
        "~WRL*.tmp",        // Microsoft Office temporary copy
        "lu*.tmp",          // LibreOffice save-in-progress
        "*.swp", "*.swx",   // vim swap files
        "*~",               // editor backups
        "4913",             // vim's can-I-write-here probe
        ".#*",              // emacs lock
        ".goutputstream-*", // GNOME save-in-progress
        ".*.[A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9][A-Za-z0-9]",  // rsync: .NAME.XXXXXX
    ]

    public let patterns: [String]

    public init(patterns: [String] = LocalOnlyNames.defaults) {
        self.patterns = patterns
    }

    /// The pattern that keeps `name` local, or nil when it is an ordinary document name.
    public func match(_ name: String) -> String? {
        patterns.first { fnmatch($0, name, 0) == 0 }
    }

    public func isLocalOnly(_ name: String) -> Bool { match(name) != nil }
}
