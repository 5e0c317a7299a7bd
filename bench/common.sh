# Shared by the bench scripts: a release build, a scratch directory cleaned up on exit, a sandbox
# started with the given options, and a Graph token for the raw curl side.
# After `start_sandbox ARGS...`: BIN, WORK, MNT, BASE, CONF, GRAPH_TOKEN, DRIVE are set.
swift build -c release >/dev/null
BIN=$PWD/.build/release/crmfs
WORK=$(mktemp -d /tmp/crmfs-bench.XXXXXX)
MNT=$WORK/mnt
mkdir -p "$MNT"
cleanup() {
  umount "$MNT" 2>/dev/null || true
  [ -n "${SANDBOX_PID:-}" ] && kill "$SANDBOX_PID" 2>/dev/null && wait "$SANDBOX_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

start_sandbox() {
  "$BIN" sandbox --state "$WORK/tenant" "$@" >"$WORK/sandbox.out" 2>"$WORK/sandbox.err" &
  SANDBOX_PID=$!
  until grep -q listening "$WORK/sandbox.out" 2>/dev/null; do sleep 0.2; kill -0 $SANDBOX_PID; done
  BASE=$(sed -n 's/^sandbox listening on //p' "$WORK/sandbox.out")
  CONF=$WORK/tenant/mount.conf
  local tenant client
  tenant=$(sed -n 's/^tenant = "\(.*\)"/\1/p' "$CONF")
  client=$(sed -n '/^\[graph\]/,/^\[/s/^client_id = "\(.*\)"/\1/p' "$CONF")
  GRAPH_TOKEN=$(curl -s "$BASE/$tenant/oauth2/v2.0/token" -d grant_type=client_credentials -d client_id="$client" \
    --data-urlencode client_secret@"$WORK/tenant/secrets/graph-client-secret" --data-urlencode scope=https://graph.microsoft.com/.default \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  DRIVE=$(curl -s "$BASE/_sandbox/info" | python3 -c 'import json,sys; print(json.load(sys.stdin)["driveId"])')
}

now() { python3 -c 'import time; print(time.monotonic())'; }
elapsed() { python3 -c "print(f'{$2 - $1:.3f}')"; }
best() { python3 -c "import sys; print(min(map(float, sys.argv[1:])))" "$@"; }
