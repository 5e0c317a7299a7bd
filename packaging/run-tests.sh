#!/usr/bin/env bash
# The test suite, as CI runs it: every test (real kernel mounts against sandboxes on loopback), then the
# write path's tests again with ThreadSanitizer, where any data race in the daemon or the tests fails
# the run. Run as root: the tests mount for real.
set -euo pipefail
cd "$(dirname "$0")/.."

swift test

# ThreadSanitizer: a build of its own; the daemon the tests start is the instrumented one. Every report
# is kept under .build-tsan/reports, and any warning (a data race, a lock-order inversion, ...) fails
# the run. (libfuse cancels its worker threads at unmount inside a read(2), which TSan notes as a
# thread "finished with ignores enabled": that note is not a warning.)
reports="$PWD/.build-tsan/reports"
rm -rf "$reports" && mkdir -p "$reports"
export TSAN_OPTIONS="log_path=$reports/tsan second_deadlock_stack=1"
export CRMFS_BINARY="$PWD/.build-tsan/debug/crmfs"
swift build --sanitize=thread --scratch-path .build-tsan --build-tests
swift test --sanitize=thread --scratch-path .build-tsan --skip-build \
    --filter 'WriteTests|WritesTests|WriteRecoveryTests/(failedFsyncBlocksNothing|conflicts)|EngineTests|UploaderTests'
if grep -l "WARNING: ThreadSanitizer" "$reports"/tsan* 2>/dev/null; then
    echo "ThreadSanitizer reported:" >&2
    grep -h -A40 "WARNING: ThreadSanitizer" "$reports"/tsan* >&2
    exit 1
fi
echo "ThreadSanitizer: no reports"
