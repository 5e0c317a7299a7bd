"""Shared by the Python parts of the bench scripts (run from the repository root): HTTP to the sandbox,
and mounting and unmounting crmfs as a user does."""
import os, subprocess, time, urllib.request

BIN, CONF, MNT = (os.environ[k] for k in ("BIN", "CONF", "MNT"))


def http(method, url, body=None, headers=None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(request) as response:
        return response.status, response.read()


def run(*command, **options):
    return subprocess.run(command, check=True, capture_output=True, **options)


def mount():
    run(BIN, "mount", CONF, MNT)


def unmount():
    subprocess.run(["umount", MNT], check=False)
    for _ in range(100):  # the daemon keeps the tree on its way out
        if subprocess.run(["pgrep", "-f", f"crmfs mount {CONF}"], capture_output=True).returncode != 0: break
        time.sleep(0.1)
