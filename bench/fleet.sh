#!/usr/bin/env bash
# Fleet benchmark (issue 12): 1, 10 and 50 mounts (each with its own state directory and mount point) on
# one machine, against the sandbox at 100 ms ± 20 ms with other users' churn on, following one relay
# through PostgreSQL; beside the same mounts polling on their own. For each: the Graph resource units
# and Salesforce calls an hour of the whole fleet (relay included), idle and under churn, and the time
# from a change to its showing on each mount (p50, p95 over all mounts).
# Writes its section of docs/benchmarks.md. Needs root, python3 and PostgreSQL's server
# (packaging/install-deps.sh). Usage: bench/fleet.sh [SECONDS_UNDER_CHURN (300)] [COUNTS ("1 10 50")]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
CHURN_SECONDS=${1:-300}
COUNTS=${2:-"1 10 50"}
start_sandbox --records 30 --docs-per-record 2 --latency 100ms --latency-jitter 20ms
PG_DIR=/tmp/crmfs-bench-postgres-$$
PG_PORT=$((20000 + RANDOM % 12000))
packaging/test-postgres.sh start "$PG_DIR" "$PG_PORT"
trap 'for m in "$WORK"/fleet-mnt-* "$WORK"/own-mnt-*; do umount "$m" 2>/dev/null || true; done; pkill -f "crmfs relay $WORK" || true; packaging/test-postgres.sh stop "$PG_DIR"; rm -rf "$PG_DIR"; cleanup' EXIT
export BASE MNT CONF WORK GRAPH_TOKEN DRIVE BIN PG_DIR PG_PORT CHURN_SECONDS COUNTS

python3 - <<'PY' | python3 bench/sections.py fleet
import json, os, statistics, subprocess, sys, threading, time, uuid
sys.path.insert(0, "bench")
from benchlib import http, run

BASE, WORK, CONF, BIN, DRIVE, TOKEN = (os.environ[k] for k in ("BASE", "WORK", "CONF", "BIN", "DRIVE", "GRAPH_TOKEN"))
PG_DIR, PG_PORT = os.environ["PG_DIR"], int(os.environ["PG_PORT"])
CHURN_SECONDS = int(os.environ["CHURN_SECONDS"])
COUNTS = [int(n) for n in os.environ["COUNTS"].split()]
IDLE_SECONDS, OWN_SECONDS = int(os.environ.get("IDLE_SECONDS", 60)), int(os.environ.get("OWN_SECONDS", 90))
PROBE_EVERY, CHURN_PER_MINUTE = 10, 30
TENANT = os.path.dirname(CONF)

def admin(path, body=None):
    return json.loads(http("POST", f"{BASE}/_sandbox/{path}", json.dumps(body or {}).encode(), {"Content-Type": "application/json"})[1] or b"{}")

def stats():
    return json.loads(http("GET", f"{BASE}/_sandbox/stats")[1])

def psql(sql):
    password = open(f"{PG_DIR}/password").read().strip()
    run("env", f"PGPASSWORD={password}", "psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(PG_PORT), "-U", "postgres", "-c", sql)

for role in ("crmfs_relay", "crmfs_mount"):
    psql(f"CREATE ROLE {role} LOGIN PASSWORD '{role}-pw'")
    with open(f"{TENANT}/{role}-password", "w") as f: f.write(f"{role}-pw\n")
    os.chmod(f"{TENANT}/{role}-password", 0o600)
psql("CREATE DATABASE crmfs OWNER crmfs_relay")

base = open(CONF).read()
def fleet_section(user, extra=""):
    return f'\n[fleet]\nhost = "127.0.0.1"\nport = {PG_PORT}\nuser = "{user}"\npassword_file = "{user}-password"\n{extra}'

def write_config(name, text):
    path = f"{TENANT}/{name}.conf"
    with open(path, "w") as f: f.write(text.replace('directory = "crmfs-state"', f'directory = "state-{name}"'))
    os.chmod(path, 0o600)
    return path

relay_conf = write_config("relay", base + '\n[freshness]\ndrive_poll = "5s"\ncrm_poll = "5s"\n' + fleet_section("crmfs_relay", 'reader_role = "crmfs_mount"\n'))
relay = subprocess.Popen([BIN, "relay", relay_conf], stdout=subprocess.DEVNULL, stderr=open(f"{WORK}/relay.log", "w"))
time.sleep(3)

def mount_all(kind, count):
    mounts = []
    for index in range(count):
        text = base + (fleet_section("crmfs_mount") if kind == "fleet" else "")
        config = write_config(f"{kind}-{index}", text)
        point = f"{WORK}/{kind}-mnt-{index}"
        os.makedirs(point, exist_ok=True)
        run(BIN, "mount", config, point)
        mounts.append(point)
    # Every mount opens what the probes change: Acme Corp's folder and the Accounts directory.
    for point in mounts:
        os.listdir(f"{point}/Accounts")
        os.listdir(f"{point}/Accounts/Acme Corp")
    return mounts

def unmount_all(mounts):
    for point in mounts: subprocess.run(["umount", point], check=False)
    time.sleep(2)

def probed(mounts, seconds):
    """Probes for `seconds`: the change-to-visible delays, and the Graph RU and Salesforce calls an hour the
    mounts (and relay) spent meanwhile, less the probes' own."""
    before = stats(); started = time.monotonic()
    delays, probe_ru = probes(mounts, seconds)
    after = stats(); elapsed = time.monotonic() - started
    return delays, ((after["graph.ru"] - before["graph.ru"] - probe_ru) * 3600 / elapsed, (after["sf.calls"] - before["sf.calls"]) * 3600 / elapsed)

def cost(seconds):
    """Graph RU and Salesforce calls an hour over `seconds` from now, less what the bench itself spent."""
    before = stats(); started = time.monotonic()
    time.sleep(seconds)
    after = stats(); elapsed = time.monotonic() - started
    ru = after.get("graph.ru", 0) - before.get("graph.ru", 0)
    calls = after.get("sf.calls", 0) - before.get("sf.calls", 0)
    return ru * 3600 / elapsed, calls * 3600 / elapsed

def probes(mounts, seconds):
    """Every PROBE_EVERY s, another user adds a document to Acme Corp's folder or an account; how long each
    took to show on each mount. Returns the delays (seconds) and the bench's own requests' RU and calls."""
    delays, own_ru, own_calls = [], 0, 0
    end = time.monotonic() + seconds
    number = 0
    while time.monotonic() < end:
        number += 1
        if number % 2:
            name = f"probe-{uuid.uuid4().hex[:8]}.txt"
            before = stats()
            run("curl", "-sf", "-X", "PUT", "-H", f"Authorization: Bearer {TOKEN}", "--data-binary", "probe",
                f"{BASE}/v1.0/drives/{DRIVE}/root:/Accounts/Acme Corp ({acme_id})/{name}:/content".replace(" ", "%20"), "-o", "/dev/null")
            own_ru += stats().get("graph.ru", 0) - before.get("graph.ru", 0)
            relative = f"Accounts/Acme Corp/{name}"
        else:
            made = admin("churn", {"once": "createRecord"})
            relative = "Accounts/" + made["detail"].split("Account ", 1)[1].rsplit(" created", 1)[0]
        made_at = time.monotonic()
        waiting = set(mounts)
        while waiting and time.monotonic() - made_at < 60:
            for point in list(waiting):
                if os.path.exists(f"{point}/{relative}"):
                    delays.append(time.monotonic() - made_at); waiting.discard(point)
            time.sleep(0.05)
        delays += [60.0] * len(waiting)  # not seen within a minute: counted as a minute
        time.sleep(max(0, PROBE_EVERY - (time.monotonic() - made_at)))
    return delays, own_ru

acme_id = json.loads(http("GET", f"{BASE}/v1.0/drives/{DRIVE}/root:/Accounts:/children?$top=999", headers={"Authorization": f"Bearer {TOKEN}"})[1])
acme_id = next(item["name"] for item in acme_id["value"] if item["name"].startswith("Acme Corp ("))[len("Acme Corp ("):-1]

def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else float("nan")

relay_alone = cost(IDLE_SECONDS)
rows = []
for count in COUNTS:
    fleet = mount_all("fleet", count)
    time.sleep(10)  # first mounts settle (their own enumeration)
    idle = cost(IDLE_SECONDS)
    admin("churn", {"perMinute": CHURN_PER_MINUTE})
    delays, churn_cost = probed(fleet, CHURN_SECONDS)
    admin("churn", {"perMinute": 0})
    unmount_all(fleet)
    relay.send_signal(19)  # SIGSTOP: the mounts below poll on their own, and the relay's polls would count
    own = mount_all("own", count)
    time.sleep(10)
    admin("churn", {"perMinute": CHURN_PER_MINUTE})
    own_delays, own_cost = probed(own, OWN_SECONDS)
    admin("churn", {"perMinute": 0})
    unmount_all(own)
    relay.send_signal(18)  # SIGCONT
    time.sleep(3)
    rows.append((count, idle, churn_cost, own_cost, delays, own_delays))
relay.terminate(); relay.wait()

lines = ["## Fleet", "",
         f"`bench/fleet.sh`, {time.strftime('%Y-%m-%d')}: mounts on one machine (each its own state directory and mount point) against the",
         f"sandbox at 100 ms ± 20 ms a request, other users' churn at {CHURN_PER_MINUTE} changes a minute. The fleet follows one relay",
         "(drive and CRM polls every 5 s) through PostgreSQL; \"on their own\" is the same mounts without `[fleet]`, polling at the",
         "defaults (delta every 5 s, CRM every 60 s). Costs are an hour's worth of the whole fleet's requests (the relay's included),",
         f"measured over {IDLE_SECONDS} s idle and {CHURN_SECONDS} s under churn (on their own: {OWN_SECONDS} s under churn). Under churn,",
         f"every {PROBE_EVERY} s another user also adds a document to Acme Corp's folder or creates an account (both of which every mount",
         "holds), and each mount is watched until it shows it: the change-to-visible times. The probes' own requests are not counted;",
         "what the mounts spend reading them is (a fleet mount reads each change it holds, with its own sign-in).", "",
         f"Relay alone, idle: {relay_alone[0]:.0f} Graph RU and {relay_alone[1]:.0f} Salesforce calls an hour.", "",
         "| mounts | fleet idle RU/h (× relay alone) | fleet idle SF calls/h (× relay alone) | under churn: fleet RU/h, SF calls/h | on their own RU/h, SF calls/h | RU: on their own ÷ fleet | change to visible p50 / p95, fleet | on their own |",
         "|---|---|---|---|---|---|---|---|"]
def times(delays):
    return f"{percentile(delays, 50):.2f} s / {percentile(delays, 95):.2f} s ({len(delays)})"
for count, idle, churn_cost, own_cost, delays, own_delays in rows:
    saved = own_cost[0] / churn_cost[0] if churn_cost[0] else float("inf")
    lines.append(f"| {count} | {idle[0]:.0f} ({idle[0] / relay_alone[0]:.2f}×) | {idle[1]:.0f} ({idle[1] / max(relay_alone[1], 1):.2f}×) | "
                 f"{churn_cost[0]:.0f}, {churn_cost[1]:.0f} | {own_cost[0]:.0f}, {own_cost[1]:.0f} | {saved:.1f}× | {times(delays)} | {times(own_delays)} |")
lines += ["", "Targets: the fleet's idle cost within 1.2× of the relay alone's at any number of mounts; p95 change to visible under 10 s",
          "at 50 mounts."]
print("\n".join(lines))
PY
