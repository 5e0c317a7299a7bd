#!/usr/bin/env bash
# The package as an administrator installs it and users use it: build the .deb, install it with dpkg -i,
# check its man pages and systemd units, mount the sandbox through mount -t crmfs from an fstab line and,
# as an ordinary user, through the installed binary (its own sign-in, per-user paths, fusermount3), then
# remove the package and check it left nothing of its own behind. Run as root, after the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "test-package: $*" >&2; exit 1; }

package=$(packaging/build-deb.sh dist | tail -n1)
dpkg -i "$package" >/dev/null || fail "dpkg -i $package failed"
files=$(dpkg -L crmfs)
work=$(mktemp -d /tmp/crmfs-package-XXXXXX)
chmod 755 "$work"
sandbox_pid=""
cleanup() {
    for point in "$work/fstab-mnt" "$work/home/crm"; do mountpoint -q "$point" 2>/dev/null && umount -l "$point" || true; done
    [ -n "$sandbox_pid" ] && kill "$sandbox_pid" 2>/dev/null || true
    [ -f "$work/fstab.orig" ] && cp "$work/fstab.orig" /etc/fstab
    rm -rf "$work"
}
trap cleanup EXIT

# Man pages and units.
man -w crmfs mount.crmfs crmfs.conf >/dev/null || fail "man -w does not find every page"
man -w 5 crmfs.conf | grep -q 'man5/crmfs.conf.5' || fail "crmfs.conf is not in section 5"
[ -x /sbin/mount.crmfs ] && [ "$(readlink -f /sbin/mount.crmfs)" = /usr/bin/crmfs ] || fail "/sbin/mount.crmfs is not the installed crmfs"
for completion in /usr/share/bash-completion/completions/crmfs /usr/share/zsh/vendor-completions/_crmfs /usr/share/fish/vendor_completions.d/crmfs.fish; do
    [ -s "$completion" ] || fail "no completion $completion"
done
units="$work/units"
mkdir -p "$units"
cp /usr/lib/systemd/user/crmfs@.service "$units/crmfs@sales.service"   # a template is verified as an instance
cp /usr/share/doc/crmfs/examples/mnt-crm.mount /usr/share/doc/crmfs/examples/mnt-crm.automount "$units/"
SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no "$units/crmfs@sales.service" "$units/mnt-crm.mount" "$units/mnt-crm.automount" \
        /usr/lib/systemd/system/crmfs-relay.service \
    || fail "systemd-analyze verify found problems in the units"
getent passwd crmfs-relay >/dev/null || fail "the package made no crmfs-relay user for crmfs-relay.service"
[ -s /usr/share/doc/crmfs/fleet.md ] || fail "no fleet.md in the package's documentation"

# The sandbox, from the installed binary.
crmfs sandbox --state "$work/sandbox" --records 3 --docs-per-record 1 --approve-device-codes-as sam --device-code-interval 1 \
    > "$work/sandbox.log" 2>&1 &
sandbox_pid=$!
for _ in $(seq 100); do [ -f "$work/sandbox/mount.conf" ] && break; sleep 0.1; done
[ -f "$work/sandbox/mount.conf" ] || fail "the sandbox did not start: $(cat "$work/sandbox.log")"

# An administrator's fstab line, mounted by mount(8) through /sbin/mount.crmfs.
cp /etc/fstab "$work/fstab.orig"
mkdir -p "$work/fstab-mnt"
echo "$work/sandbox/mount.conf $work/fstab-mnt crmfs noauto,_netdev,ro 0 0" >> /etc/fstab
mount "$work/fstab-mnt" || fail "mount from the fstab line failed"
[ "$(ls "$work/fstab-mnt")" = "$(printf 'Accounts\nCases\nOpportunities')" ] || fail "the fstab mount lists $(ls "$work/fstab-mnt")"
umount "$work/fstab-mnt" || fail "umount failed"
cp "$work/fstab.orig" /etc/fstab

# An ordinary user (nobody): their own sign-in, config by NAME, state in ~/.local/state, fusermount3.
chmod 666 /dev/fuse   # as Debian's udev rules have it
home="$work/home"
mkdir -p "$home/.config/crmfs"
sed -e 's/auth = "client_credentials"/auth = "device-code"/' -e '/client_secret_file = "secrets\/salesforce-client-secret"/d' \
    -e 's/client_secret_file = "secrets\/graph-client-secret"/auth = "device-code"/' -e '/^directory = "crmfs-state"/d' \
    "$work/sandbox/mount.conf" > "$home/.config/crmfs/sales.conf"
chmod 600 "$home/.config/crmfs/sales.conf"
chown -R 65534:65534 "$home"
as_user() { setpriv --reuid=65534 --regid=65534 --clear-groups env HOME="$home" PATH=/usr/bin:/bin "$@"; }
as_user crmfs login sales >/dev/null || fail "crmfs login as a user failed"
as_user mkdir "$home/crm"
as_user crmfs mount sales "$home/crm" || fail "crmfs mount as a user failed"
as_user ls "$home/crm/Accounts/Acme Corp/Contracts" | grep -q 'MSA-2026.pdf' || fail "the user's mount does not list Acme Corp's contract"
as_user sh -c "echo 'from the package test' > '$home/crm/Accounts/Acme Corp/package.txt' && crmfs sync '$home/crm'" || fail "a write as the user was not sent"
as_user crmfs status --json "$home/crm" | grep -q '"kind":"user"' || fail "crmfs status does not show the user's sign-in"
[ "$(stat -c %U "$home/.local/state/crmfs/sales")" = nobody ] || fail "the user's state is not in ~/.local/state/crmfs/sales"
as_user fusermount3 -u "$home/crm" || fail "fusermount3 -u failed"

# Removal leaves none of the package's files (configuration is the users' and the administrator's).
dpkg -r crmfs >/dev/null || fail "dpkg -r failed"
leftovers=""
while IFS= read -r file; do
    [ -d "$file" ] && continue   # directories are shared (and /sbin is a link to one on merged-/usr systems)
    [ -f "$file" ] || [ -L "$file" ] || continue
    leftovers="$leftovers $file"
done <<< "$files"
[ -z "$leftovers" ] || fail "left behind:$leftovers"
dpkg-query -W -f='${Status}' crmfs 2>/dev/null | grep -q 'install ok installed' && fail "crmfs is still installed"
echo "package: built, installed, mounted through fstab and as a user, removed cleanly ($package)"
