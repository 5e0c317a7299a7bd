#!/usr/bin/env bash
# Builds the Debian package: dist/crmfs_VERSION_ARCH.deb, holding
#   /usr/bin/crmfs (Swift's runtime linked in: the machine needs no Swift), /sbin/mount.crmfs,
#   man pages crmfs(1), crmfs.conf(5), mount.crmfs(8), completions for bash, zsh and fish,
#   the user unit crmfs@.service, and /usr/share/doc/crmfs (mount.conf.example, the service-account
#   .mount/.automount examples).
# Depends: is worked out from the libraries the binary links (plus fuse3, for fusermount3).
set -euo pipefail
cd "$(dirname "$0")/.."
version=${CRMFS_VERSION:-0.1.0}
arch=$(dpkg --print-architecture)
out=${1:-dist}

swift build -c release --static-swift-stdlib --product crmfs
swift build --product generate-manual
binary=.build/release/crmfs

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
install -D -m 0755 "$binary" "$root/usr/bin/crmfs"
strip --strip-unneeded "$root/usr/bin/crmfs"
install -d "$root/sbin"
ln -s /usr/bin/crmfs "$root/sbin/mount.crmfs"

man="$root/usr/share/man"
install -d "$man/man1" "$man/man5" "$man/man8"
.build/debug/generate-manual "$binary" --authors "crmfs developers" --output-directory "$man/man1"
packaging/conf-manual.sh mount.conf.example > "$man/man5/crmfs.conf.5"
install -m 0644 packaging/man/mount.crmfs.8 "$man/man8/mount.crmfs.8"
gzip -9n "$man"/man*/*

"$binary" --generate-completion-script bash | install -D -m 0644 /dev/stdin "$root/usr/share/bash-completion/completions/crmfs"
"$binary" --generate-completion-script zsh | install -D -m 0644 /dev/stdin "$root/usr/share/zsh/vendor-completions/_crmfs"
"$binary" --generate-completion-script fish | install -D -m 0644 /dev/stdin "$root/usr/share/fish/vendor_completions.d/crmfs.fish"

install -D -m 0644 packaging/systemd/crmfs@.service "$root/usr/lib/systemd/user/crmfs@.service"
install -D -m 0644 packaging/systemd/crmfs-relay.service "$root/usr/lib/systemd/system/crmfs-relay.service"
doc="$root/usr/share/doc/crmfs"
install -D -m 0644 mount.conf.example "$doc/mount.conf.example"
install -D -m 0644 packaging/systemd/mnt-crm.mount "$doc/examples/mnt-crm.mount"
install -D -m 0644 packaging/systemd/mnt-crm.automount "$doc/examples/mnt-crm.automount"
install -m 0644 README.md "$doc/README.md"
install -m 0644 docs/semantics.md "$doc/semantics.md"
install -m 0644 docs/fleet.md "$doc/fleet.md"
cat > "$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: crmfs
Files: *
Copyright: the crmfs developers
COPYRIGHT

# The packages holding the libraries the binary links directly (NEEDED), found where ldd resolves them,
# by their files (dpkg -S).
depends=(fuse3)
for needed in $(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    library=$(ldd "$binary" | awk -v name="$needed" '$1 == name && $3 ~ /^\// {print $3}')
    [ -n "$library" ] || library=$(ldd "$binary" | awk -v name="$needed" 'index($1, name) {print $1}')
    real=$(readlink -f "$library")
    package=""
    for candidate in "$library" "$real" "/usr$library" "${real#/usr}"; do
        package=$(dpkg -S "$candidate" 2>/dev/null | head -n1 | cut -d: -f1) && [ -n "$package" ] && break
    done
    [ -n "$package" ] || { echo "build-deb: no package holds $library" >&2; exit 1; }
    [[ " ${depends[*]} " == *" $package "* ]] || depends+=("$package")
done

install -d "$root/DEBIAN"
cat > "$root/DEBIAN/control" <<CONTROL
Package: crmfs
Version: $version
Architecture: $arch
Maintainer: crmfs developers <crmfs@example.invalid>
Section: utils
Priority: optional
Depends: $(IFS=,; echo "${depends[*]}" | sed 's/,/, /g'), adduser
Suggests: postgresql
Installed-Size: $(du -sk "$root" | cut -f1)
Homepage: https://example.invalid/crmfs
Description: CRM records and their SharePoint documents as a file system
 crmfs mounts a Salesforce org and the SharePoint document libraries that hold
 the documents about its records as one directory tree (FUSE): directories are
 CRM objects and records, files are the documents, extended attributes carry
 CRM fields and SharePoint columns. Writes are staged durably and uploaded in
 the background. Each user signs in as themselves (crmfs login), and a user
 unit (crmfs@NAME) mounts ~/.config/crmfs/NAME.conf at ~/crm/NAME. A fleet of
 workstations can follow one relay (crmfs-relay.service) through PostgreSQL
 instead of each polling the services.
CONTROL

# The relay's system user (crmfs-relay.service runs as it); the unit stays off until an administrator
# configures /etc/crmfs/relay.conf and enables it.
cat > "$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ] && ! getent passwd crmfs-relay >/dev/null; then
    adduser --system --group --no-create-home --home /nonexistent --quiet crmfs-relay
fi
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
exit 0
POSTINST
chmod 0755 "$root/DEBIAN/postinst"

mkdir -p "$out"
package="$out/crmfs_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$package" >/dev/null
echo "$package"
