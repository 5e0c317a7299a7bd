#!/usr/bin/env bash
# Installs the Debian 12 packages crmfs builds, runs and tests with.
# Swift 6.x itself must already be on PATH (swift.org toolchain).
set -euo pipefail
packages=(fuse3 libfuse3-dev libcurl4-openssl-dev pkg-config rsync attr curl procps)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
echo "installed: ${packages[*]}"
