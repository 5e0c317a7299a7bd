#!/usr/bin/env bash
# Latency benchmark (issue 11): everyday operations against the sandbox at zero latency and at a real
# tenant's 100 ms ± 20 ms a request, in one run: each one's time and requests beside the fewest the wire
# facts allow. Round trips are measured as the time the latency added, divided by the latency.
# Writes its section of docs/benchmarks.md. Needs root and python3. Usage: bench/latency.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
start_sandbox --records 40 --docs-per-record 3
STATE=$WORK/tenant/crmfs-state
export BASE MNT CONF WORK GRAPH_TOKEN DRIVE BIN STATE

python3 - <<'PY' | python3 bench/sections.py latency
import datetime, json, os, random, re, shutil, subprocess, sys, time
sys.path.insert(0, "bench")
from benchlib import http, mount, run, unmount

BASE, MNT, CONF, WORK, DRIVE, BIN, STATE = (os.environ[k] for k in ("BASE", "MNT", "CONF", "WORK", "DRIVE", "BIN", "STATE"))
TOKEN = os.environ["GRAPH_TOKEN"]
LATENCY, JITTER = 100, 20  # ms
STREAM_RATE = 40 << 20
FILES = 100
BIG = 50 << 20

def admin(path, body=None):
    return http("POST", f"{BASE}/_sandbox/{path}", json.dumps(body or {}).encode(), {"Content-Type": "application/json"})

def requests():
    """The service requests since the last reset ("METHOD path"), and a fresh start for the next count."""
    log = json.loads(http("GET", f"{BASE}/_sandbox/requests")[1])["requests"]
    admin("stats/reset")
    return log

def timed(action):
    requests()
    started = time.monotonic()
    action()
    return time.monotonic() - started, requests()

def settle():
    """Lets the mount's background work (the first delta walk, the CRM poll) finish, then forgets it."""
    time.sleep(3)
    requests()

random.seed(11)
local = os.path.join(WORK, "small")
os.makedirs(local)
for index in range(FILES):
    with open(os.path.join(local, f"note-{index:03d}.txt"), "wb") as f:
        f.write(random.randbytes(random.randint(4 << 10, 64 << 10)))
big = os.path.join(WORK, "big.bin")
with open(big, "wb") as f:
    f.write(os.urandom(BIG))

def raw_big_upload():
    """The least client: one upload session and one PUT of the same bytes, by curl."""
    folder = json.loads(http("GET", f"{BASE}/v1.0/drives/{DRIVE}/root:/Accounts", headers={"Authorization": f"Bearer {TOKEN}"})[1])["id"]
    name = f"raw-{time.monotonic_ns()}.bin"
    started = time.monotonic()
    session = json.loads(http("POST", f"{BASE}/v1.0/drives/{DRIVE}/items/{folder}:/{name}:/createUploadSession",
                              json.dumps({"item": {"@microsoft.graph.conflictBehavior": "fail"}}).encode(),
                              {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})[1])["uploadUrl"]
    run("curl", "-sf", "-X", "PUT", "-H", f"Content-Range: bytes 0-{BIG - 1}/{BIG}", "--data-binary", f"@{big}", "-o", "/dev/null", session)
    return time.monotonic() - started

def record_path():
    accounts = sorted(os.listdir(os.path.join(MNT, "Accounts")))
    return os.path.join(MNT, "Accounts", next(name for name in accounts if name.startswith("Acme Corp")))

def measure(latency, jitter):
    admin("faults", {"latencyMs": latency, "latencyJitterMs": jitter, "streamBytesPerSecond": 0})
    rows = {}
    unmount(); shutil.rmtree(STATE, ignore_errors=True)
    rows["mount1"] = timed(mount)
    settle(); unmount()
    rows["mount2"] = timed(mount)
    settle()
    record = record_path()
    target = os.path.join(record, f"Notes-{latency}ms")
    rows["rsync_in"] = timed(lambda: (run("rsync", "-a", local + "/", target + "/"), run(BIN, "sync", MNT)))
    # Cold: the block cache emptied, the tree kept. One small document first, then the whole folder.
    unmount(); shutil.rmtree(os.path.join(STATE, "blocks"), ignore_errors=True); mount(); settle()
    document = os.path.join(target, "note-000.txt")
    rows["cat"] = timed(lambda: run("cat", document))
    rows["cat_size"] = os.path.getsize(document)
    out = os.path.join(WORK, f"out-{latency}")
    rows["rsync_out"] = timed(lambda: run("rsync", "-a", target + "/", out + "/"))
    if run("diff", "-r", local, out).returncode != 0: sys.exit("rsync out differs")
    admin("faults", {"streamBytesPerSecond": STREAM_RATE})
    def copy_big():
        destination = os.path.join(record, f"big-{latency}ms.bin")
        with open(big, "rb") as source, open(destination, "wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
            sink.flush(); os.fsync(sink.fileno())
    rows["cp_big"] = timed(copy_big)
    rows["raw_big"] = (raw_big_upload(), [])
    admin("faults", {"streamBytesPerSecond": 0})
    return rows

zero = measure(0, 0)
real = measure(LATENCY, JITTER)
unmount()

def count(log, pattern=None):
    return sum(1 for line in log if pattern is None or re.search(pattern, line))

def rts(key):
    return max(0.0, (real[key][0] - zero[key][0]) / (LATENCY / 1000))

stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
print("## Latency (`bench/latency.sh`)\n")
print(f"Run {stamp} on {os.cpu_count()} cores; release build; the sandbox at 0 ms and at {LATENCY} ms ± {JITTER} ms a request,")
print("one run each, in the same run. Requests are what the sandbox saw; round trips are the time the latency added")
print(f"(time at {LATENCY} ms less time at 0 ms) divided by {LATENCY} ms. \"Least\" is the fewest the wire facts allow.\n")
print(f"| Operation | Time at 0 ms | Time at {LATENCY} ms | Requests | Least requests | Round trips | Least round trips | Target |")
print("|---|---|---|---|---|---|---|---|")
def row(name, key, least_requests, least_rts, target, requests=None):
    spent = requests if requests is not None else len(real[key][1])
    print(f"| {name} | {zero[key][0]:.2f} s | {real[key][0]:.2f} s | {spent} | {least_requests} | {rts(key):.1f} | {least_rts} | {target} |")
row("First mount until usable (sign-ins, the library, the objects' describes)", "mount1", "6", "2", "≤ 2 round trips")
row("Second mount until usable (what the first learned is kept)", "mount2", "0", "0", "≤ 1 round trip")
cat_log = real["cat"][1]
row(f"`cat` of a small document ({real['cat_size'] / 1024:.1f} KiB), cold, known from the kept tree", "cat", "2 (its URL, its bytes)", "2",
    "1 round trip + transfer when a listing brought its URL (RoundTripTests.coldSmallRead); 2 otherwise")
files_in = real["rsync_in"][1]
per_file = len(files_in) / FILES
row(f"`rsync -a` of {FILES} small files (4–64 KiB) into a record, until `crmfs sync` returns", "rsync_in",
    f"{2 * FILES + FILES // 10 + 1} (a session and a fragment each, a batch of column writes per 10, the record once)",
    f"{2 * FILES // 20 + 2}+ (20 at once)", f"< 5 s at {LATENCY} ms; ≤ 2.2 requests a file ({per_file:.2f} here)")
row(f"`rsync -a` of the same {FILES} files out of the record, cold (after the `cat` above)", "rsync_out",
    f"{FILES - 1} (the other downloads; the `cat` listed the URLs)", f"{FILES // 16 + 2}+ (16 at once)", f"< 3 s at {LATENCY} ms")
big_ratio = real["cp_big"][0] / real["raw_big"][0]
row(f"`cp` of one {BIG >> 20} MiB file into a record until `fsync` returns, at {STREAM_RATE >> 20} MiB/s a stream", "cp_big",
    "2 (a session, one fragment)", "2 + transfer",
    f"within 1.2× of curl's session and PUT of the same bytes ({real['raw_big'][0]:.2f} s here): {big_ratio:.2f}×")
print()
print(f"In this run, at {LATENCY} ms: {FILES} files went in with {len(files_in)} requests "
      f"({count(files_in, 'createUploadSession')} sessions, {count(files_in, 'uploadSession$')} fragments, "
      f"{count(files_in, 'batch')} column batches, {count(files_in, '/sobjects/')} record reads); "
      f"the copy out made {count(real['rsync_out'][1], 'download.aspx')} downloads and {count(real['rsync_out'][1], '/children')} listings; "
      f"the cold `cat` made {', '.join(sorted(set(re.sub(r'/drives/[^/]+/items/[^/?]+', '/drives/…/items/…', line) for line in cat_log))) or 'no request'}.")
PY
