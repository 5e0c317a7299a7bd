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
}
