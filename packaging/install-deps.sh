#!/usr/bin/env bash
# Installs the Debian 12 packages crmfs builds, runs and tests with.
# Swift 6.x itself must already be on PATH (swift.org toolchain).
set -euo pipefail
# man-db, systemd and binutils: the package test checks the man pages (man -w) and the units
# (systemd-analyze); the package build strips the binary and reads what it links (readelf).
# postgresql: the fleet's tests run a throwaway cluster of it (packaging/test-postgres.sh), no service;
# openssl makes that cluster's TLS certificate.
packages=(fuse3 libfuse3-dev libcurl4-openssl-dev pkg-config rsync attr curl procps man-db systemd binutils postgresql adduser openssl)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
echo "installed: ${packages[*]}"
