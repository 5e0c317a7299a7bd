// Linux calls that Swift's Glibc module does not export (or exports only in a variadic form Swift
// cannot call): the xattr calls (`crmfs sync`, tests) and prctl.
#include <sys/xattr.h>
#include <sys/prctl.h>
#include <sys/resource.h>

/// The process holds tokens and secrets in memory: it must never write a core dump, and no other
/// process of the same user may attach to it.
static inline int crmfs_disable_core_dumps(void) {
    struct rlimit none = {0, 0};
    int failed = setrlimit(RLIMIT_CORE, &none);
    return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) | failed;
}
