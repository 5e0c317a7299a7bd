// Linux calls that Swift's Glibc module does not export (or exports only in a variadic form Swift
// cannot call): the xattr calls (`crmfs sync`, tests), prctl, rlimits, sync_file_range, memfd_create,
// pipe2, posix_spawn's closefrom.
#include <sys/xattr.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/resource.h>

/// The process holds tokens and secrets in memory: it must never write a core dump, and no other
/// process of the same user may attach to it.
static inline int crmfs_disable_core_dumps(void) {
    struct rlimit none = {0, 0};
    int failed = setrlimit(RLIMIT_CORE, &none);
    return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) | failed;
}

/// Raises the soft limit on open files to the hard limit: the daemon's own reads and creates must not
/// fail with EMFILE while others hold connections to it. Returns the soft limit in force afterwards
/// (-1 when it cannot be read or raised).
static inline long long crmfs_raise_open_file_limit(void) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return -1;
    if (limit.rlim_cur < limit.rlim_max) {
        struct rlimit raised = limit;
        raised.rlim_cur = limit.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &raised) != 0) return -1;
        limit = raised;
    }
    return limit.rlim_cur == RLIM_INFINITY ? (long long)0x7fffffffffffffffLL : (long long)limit.rlim_cur;
}

// Starts writing a file's dirty pages to disk without waiting (sync_file_range with
// SYNC_FILE_RANGE_WRITE; glibc declares it only under _GNU_SOURCE, which Swift's Glibc module lacks).
extern int sync_file_range(int fd, long long offset, long long nbytes, unsigned int flags);
static inline int crmfs_start_writeback(int fd) { return sync_file_range(fd, 0, 0, 2); }

// An anonymous file in memory, closed on exec (memfd_create with MFD_CLOEXEC, through syscall: glibc
// declares it only under _GNU_SOURCE): a block read while the cache's disk has no room for it.
static inline int crmfs_memory_file(const char *name) { return (int)syscall(SYS_memfd_create, name, 1u); }

// A child started with posix_spawn keeps only the descriptors its file actions name: every one from
// `lowest` up is closed (glibc 2.34's posix_spawn_file_actions_addclosefrom_np, declared only under
// _GNU_SOURCE). Descriptors opened without O_CLOEXEC (libcurl's and NIO's sockets, a caller's lock
// file) would otherwise stay open in the child for its whole life: a connection the parent closes is
// never closed for its peer, a lock is never released.
extern int posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *actions, int lowest);
static inline int crmfs_spawn_close_from(posix_spawn_file_actions_t *actions, int lowest) {
    return posix_spawn_file_actions_addclosefrom_np(actions, lowest);
}

// A pipe whose ends are closed on exec from the start (pipe2 with O_CLOEXEC; glibc declares pipe2 only
// under _GNU_SOURCE): a child another thread spawns meanwhile must not hold the write end open.
extern int pipe2(int ends[2], int flags);
static inline int crmfs_pipe_closed_on_exec(int ends[2]) { return pipe2(ends, O_CLOEXEC); }
