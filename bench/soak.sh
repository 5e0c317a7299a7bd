#!/usr/bin/env bash
# The model-based fault test (Tests/MountTests/ModelFaultTests.swift) for as long as asked: seed after
# seed, each a fresh sandbox and mount driven through the kernel with calls and faults, until MINUTES
# have passed. Reports operations, faults and failing seeds, and writes the "Soak" section of
# docs/benchmarks.md. A failing seed is printed with the shortest operation list that still fails;
# make it a named regression test (see ModelFaultTests.regressions).
#
#   bench/soak.sh [MINUTES] [FIRST_SEED]      (as root: it mounts; default 60 minutes from seed 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-60}
seed=${2:-1000}
batch=${SOAK_BATCH:-5}
operations=${CRMFS_MODEL_OPERATIONS:-60}
tally=$(mktemp /tmp/crmfs-soak-tally.XXXXXX)
log=$(mktemp /tmp/crmfs-soak-log.XXXXXX)
trap 'rm -f "$tally"' EXIT

swift build --build-tests >/dev/null
start=$(date +%s)
failed_seeds=()
# First the regressions too slow for CI (ModelFaultTests.slowRegressions), once.
if ! CRMFS_MODEL_SLOW=1 swift test --skip-build --filter 'ModelFaultTests/regression' >>"$log" 2>&1; then
    failed_seeds+=("slow regressions")
    grep -A40 "failed" "$log" | tail -60 || true
fi
end=$((start + minutes * 60))
first=$seed
while [ "$(date +%s)" -lt "$end" ]; do
    last=$((seed + batch - 1))
    if ! CRMFS_MODEL_SEEDS="$seed-$last" CRMFS_MODEL_OPERATIONS=$operations CRMFS_MODEL_TALLY=$tally \
         swift test --skip-build --filter 'ModelFaultTests/seeded' >>"$log" 2>&1; then
        failed_seeds+=("$seed-$last")
        grep -A40 "failed:" "$log" | tail -60 || true
    fi
    seed=$((last + 1))
done
elapsed=$(( $(date +%s) - start ))

read -r runs ops faults failures < <(awk '{ r++; o += $1; f += $2; x += $3 } END { print r+0, o+0, f+0, x+0 }' "$tally")
python3 bench/sections.py soak <<EOF
## Soak: the model-based fault test

\`bench/soak.sh $minutes\`, seeds $first to $((seed - 1)), $operations operations each (run on $(date -u +%Y-%m-%d)):

| runs | operations | faults | failed runs | minutes |
|---:|---:|---:|---:|---:|
| $runs | $ops | $faults | $failures | $((elapsed / 60)) |

$( [ ${#failed_seeds[@]} -eq 0 ] && echo "No failure." || echo "Failing seed batches: ${failed_seeds[*]} (log: $log)" )
EOF
[ "$failures" -eq 0 ] && [ ${#failed_seeds[@]} -eq 0 ]
