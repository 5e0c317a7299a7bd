import CLinux
import Logging

/// Process-wide protections of the daemon's secrets.
enum Hardening {
    /// No core dumps and no ptrace by the same user: the daemon holds client secrets and bearer tokens.
    static func noCoreDumps() {
        if crmfs_disable_core_dumps() != 0 {
            Logger(label: "crmfs").warning("could not turn off core dumps for this process")
        }
    }

    /// The soft limit on open files raised to the hard limit: connections others hold to the daemon (its
    /// metrics port) must not leave its own reads and creates failing with EMFILE.
    static func moreOpenFiles() {
        if crmfs_raise_open_file_limit() < 0 {
            Logger(label: "crmfs").warning("could not raise the limit on open files to its hard limit")
        }
    }
}
