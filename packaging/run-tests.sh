#!/usr/bin/env bash
# The test suite, as CI runs it: every test (real kernel mounts against sandboxes on loopback), then the
# write path's tests again with ThreadSanitizer, where any data race in the daemon or the tests fails
# the run, then the Debian package (packaging/test-package.sh). Run as root: the tests mount for real.
set -euo pipefail
cd "$(dirname "$0")/.."

# A hung test fails the run with what it was doing, instead of eating CI's time: each test phase has a
# time limit; past it, what every process was waiting for (the kernel stacks of each crmfs thread and of
# every blocked task), each mount's `crmfs status` and its log are written down, every FUSE connection
# is aborted (so no call stays blocked on a daemon), and the phase fails. The findings are printed again
# as the very last thing the run says, where a reader of CI's tail finds them.
findings=/tmp/crmfs-test-findings-$$
rm -f "$findings"

# What each process and thread was doing when a phase outran its time.
hang_findings() {
    df -h / /tmp || true  # a full disk fails writes and SQLite's commits in every mount at once
    ps -eo pid,ppid,stat,etime,wchan:32,args --forest || true
    for task in /proc/[0-9]*/task/[0-9]*; do
        local comm; comm=$(cat "${task%/task/*}/comm" 2>/dev/null) || continue
        local state; state=$(awk '{print $3}' "$task/stat" 2>/dev/null) || continue
        [[ "$state" == D || "$comm" == crmfs* ]] || continue
        echo "--- $task ($comm, $(cat "$task/comm" 2>/dev/null), state $state)"
        cat "$task/stack" 2>/dev/null || true
    done
    for mountpoint in $(awk '$3 == "fuse.crmfs" {print $2}' /proc/mounts); do
        echo "--- crmfs status $mountpoint"
        timeout 10 .build/debug/crmfs status "$mountpoint" 2>&1 || true
    done
    for log in /tmp/crmfs-test-*/*/crmfs.log; do
        [[ -f "$log" && "$(find "$log" -mmin -30 2>/dev/null)" ]] || continue
        echo "--- $log (last lines)"
        tail -n 25 "$log"
    done
}

limited() {
    local limit=$1; shift
    "$@" &
    local phase=$!
    (
        sleep "$limit"
        kill -0 "$phase" 2>/dev/null || exit 0
        { echo "=== test phase outran ${limit}s: $* ==="; hang_findings; } >> "$findings" 2>&1
        cat "$findings" >&2
        mountpoint -q /sys/fs/fuse/connections || mount -t fusectl none /sys/fs/fuse/connections || true
        for abort in /sys/fs/fuse/connections/*/abort; do [[ -e "$abort" ]] && echo 1 > "$abort"; done
        sleep 30
        pkill -KILL -P "$phase" 2>/dev/null || true
        kill -KILL "$phase" 2>/dev/null || true
    ) &
    local watchdog=$!
    local status=0
    wait "$phase" || status=$?
    pkill -P "$watchdog" 2>/dev/null || true  # its sleep, which would hold CI's output open
    kill "$watchdog" 2>/dev/null || true
    wait "$watchdog" 2>/dev/null || true
    return "$status"
}

# PostgreSQL for the fleet's tests: a throwaway cluster in a temporary directory (no system service),
# named to the tests in CRMFS_TEST_POSTGRES and stopped at the end, whatever happens.
postgres_dir=/tmp/crmfs-test-postgres-$$
postgres_port=$((20000 + RANDOM % 12000))  # below the ephemeral ports the sandboxes get
packaging/test-postgres.sh start "$postgres_dir" "$postgres_port"
trap 'packaging/test-postgres.sh stop "$postgres_dir"; rm -rf "$postgres_dir"
      if [[ -s "$findings" ]]; then echo "=== what the hung phase was waiting for (printed above as well) ===" >&2; cat "$findings" >&2; fi' EXIT
export CRMFS_TEST_POSTGRES="$postgres_dir:$postgres_port"

# Each phase says when it starts, so a slow CI run shows where its time went.
phase() { echo "=== $1 (at $((SECONDS / 60))m$((SECONDS % 60))s)"; }

# The suites in three `swift test` processes over one build, one after another: the in-process ones (the
# rest of the arguments), the kernel suites (MountTests, matching KERNEL), then the file system's own suites
# (FileSystemTests, matching FILESYSTEM: a mount's whole library in process with sandbox processes of their
# own). A kernel test blocked in a syscall on a mount holds one of its process's task-pool threads (as many as
# there are cores), so the kernel suites have a process of their own. Run beside them (two processes at once),
# the in-process suites' own sandboxes now and then went unanswered for a minute at the start of the run on
# two cores (stops 35 and 36): alone, they take about a minute.
test_suites() {
    local limit=$1 kernel=$2 filesystem=$3; shift 3
    local status=0
    echo "--- in-process suites"
    limited "$limit" swift test --skip-build "${build_options[@]}" --skip '^(MountTests|FileSystemTests)\.' "$@" || status=$?
    echo "--- kernel suites"
    limited "$limit" swift test --skip-build "${build_options[@]}" --filter "$kernel" || status=$?
    echo "--- the file system's suites"
    limited "$limit" swift test --skip-build "${build_options[@]}" --filter "$filesystem" || status=$?
    return "$status"
}

df -h / /tmp
phase "debug build"
swift build --build-tests
phase "the whole suite"
# With the model-based fault test's first seeds (seeded calls and faults through a real mount, checked
# against a reference model; bench/soak.sh runs seed after seed).
export CRMFS_MODEL_SEEDS=1-3
build_options=()
test_suites 2100 '^MountTests\.' '^FileSystemTests\.'
unset CRMFS_MODEL_SEEDS

# ThreadSanitizer: the Swift code built again, instrumented, over the same build (`-Xswiftc` changes only
# Swift's compile and link commands, so the C code already built, BoringSSL twice over among it, is reused:
# a third of a build's time); the daemon the tests start is the instrumented one. Every report is kept
# under .build/tsan-reports, and any warning (a data race, a lock-order inversion, ...) fails the run.
# (libfuse cancels its worker threads at unmount inside a read(2), which TSan notes as a thread "finished
# with ignores enabled": that note is not a warning.)
reports="$PWD/.build/tsan-reports"
rm -rf "$reports" && mkdir -p "$reports"
export TSAN_OPTIONS="log_path=$reports/tsan second_deadlock_stack=1"
export CRMFS_BINARY="$PWD/.build/debug/crmfs"
phase "ThreadSanitizer build"
build_options=(-Xswiftc -sanitize=thread)
swift build "${build_options[@]}" --build-tests
phase "the write path under ThreadSanitizer"
test_suites 900 '^MountTests\.(KernelWriteTests|WriteRecoveryTests/(fullDisk|conflicts)|StatusReportTests|PermissionTests/refusedBySharePoint)' \
    '^FileSystemTests\.(WriteBehaviourTests|WriteRaceTests)' \
    --filter 'WritesTests|EngineTests|EngineSchedulingTests|UploaderTests|TreeTests|ChangeFeedTests|KeptTreeTests'
if grep -l "WARNING: ThreadSanitizer" "$reports"/tsan* 2>/dev/null; then
    echo "ThreadSanitizer reported:" >&2
    grep -h -A40 "WARNING: ThreadSanitizer" "$reports"/tsan* >&2
    exit 1
fi
echo "ThreadSanitizer: no reports"

# The Debian package: built, installed with dpkg -i, used through fstab and by an ordinary user, removed.
unset CRMFS_BINARY TSAN_OPTIONS
phase "the Debian package"
limited 1800 packaging/test-package.sh
phase "done"
