#!/usr/bin/env bash
# The test suite, as CI runs it: every test (real kernel mounts against sandboxes on loopback), then the
# write path's tests again with ThreadSanitizer, where any data race in the daemon or the tests fails
# the run, then the Debian package (packaging/test-package.sh). Run as root: the tests mount for real.
set -euo pipefail
cd "$(dirname "$0")/.."

# A hung test fails the run with what it was doing, instead of eating CI's time: each test phase has a
# time limit; past it, the mounts' logs and the stacks of blocked tasks are printed, every FUSE
# connection is aborted (so no call stays blocked on a daemon), and the phase fails.
limited() {
    local limit=$1; shift
    "$@" &
    local phase=$!
    (
        sleep "$limit"
        kill -0 "$phase" 2>/dev/null || exit 0
        echo "=== test phase outran ${limit}s: $* ===" >&2
        ps -eo pid,ppid,stat,etime,wchan:32,args --forest >&2 || true
        for task in /proc/[0-9]*/task/[0-9]*; do
            [[ "$(awk '{print $3}' "$task/stat" 2>/dev/null)" == D ]] || continue
            echo "--- blocked: $task ($(cat "${task%/task/*}/comm" 2>/dev/null))" >&2
            cat "$task/stack" >&2 2>/dev/null || true
        done
        for log in /tmp/crmfs-test-*/crmfs-state/crmfs.log; do
            [[ -f "$log" && "$(find "$log" -mmin -30 2>/dev/null)" ]] || continue
            echo "--- $log (last lines)" >&2
            tail -n 15 "$log" >&2
        done
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

swift build --build-tests
limited 2100 swift test --skip-build

# ThreadSanitizer: a build of its own; the daemon the tests start is the instrumented one. Every report
# is kept under .build-tsan/reports, and any warning (a data race, a lock-order inversion, ...) fails
# the run. (libfuse cancels its worker threads at unmount inside a read(2), which TSan notes as a
# thread "finished with ignores enabled": that note is not a warning.)
reports="$PWD/.build-tsan/reports"
rm -rf "$reports" && mkdir -p "$reports"
export TSAN_OPTIONS="log_path=$reports/tsan second_deadlock_stack=1"
export CRMFS_BINARY="$PWD/.build-tsan/debug/crmfs"
swift build --sanitize=thread --scratch-path .build-tsan --build-tests
limited 900 swift test --sanitize=thread --scratch-path .build-tsan --skip-build \
    --filter 'WriteTests|WritesTests|WriteRecoveryTests/(failedFsyncBlocksNothing|conflicts)|EngineTests|EngineSchedulingTests|UploaderTests|TreeTests|ChangeFeedTests|KeptTreeTests|StatusReportTests|PermissionTests/refusedBySharePoint'
if grep -l "WARNING: ThreadSanitizer" "$reports"/tsan* 2>/dev/null; then
    echo "ThreadSanitizer reported:" >&2
    grep -h -A40 "WARNING: ThreadSanitizer" "$reports"/tsan* >&2
    exit 1
fi
echo "ThreadSanitizer: no reports"

# The Debian package: built, installed with dpkg -i, used through fstab and by an ordinary user, removed.
unset CRMFS_BINARY TSAN_OPTIONS
limited 1800 packaging/test-package.sh
