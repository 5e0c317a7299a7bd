#!/usr/bin/env bash
# Installs the Debian 12 packages crmfs builds, runs and tests with.
# Swift 6.x itself must already be on PATH (swift.org toolchain).
set -euo pipefail
# man-db, systemd and binutils: the package test checks the man pages (man -w) and the units
# (systemd-analyze); the package build strips the binary and reads what it links (readelf).
packages=(fuse3 libfuse3-dev libcurl4-openssl-dev pkg-config rsync attr curl procps man-db systemd binutils)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
echo "installed: ${packages[*]}"
