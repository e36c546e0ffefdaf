#!/usr/bin/env bash
# Installs the Debian packages Granary needs, idempotently: packages already installed are not
# touched, and `apt-get update` only runs when something is missing.
# Usage: scripts/deps.sh [serve|test]
set -euo pipefail
want=(capnproto libcapnp-dev libseccomp-dev)
case "${1:-serve}" in
  test) want+=(zstd xz-utils busybox) ;; # busybox: the runtimes test runs its sh and applets in a grain
esac
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "Granary needs these Debian packages: ${missing[*]}. Run this script as root, or install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "Installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
