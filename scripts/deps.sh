#!/usr/bin/env bash
# Installs the Debian packages Granary needs, idempotently: packages already installed are not
# touched, and `apt-get update` only runs when something is missing. In test mode it also installs
# the browser suite's node packages (tests/browser) with `npm ci` when node_modules is missing or
# older than package-lock.json.
# Usage: scripts/deps.sh [serve|test]
set -euo pipefail
want=(capnproto libcapnp-dev libseccomp-dev)
case "${1:-serve}" in
  # busybox: the runtimes test runs its sh and applets in a grain; chromium: the browser suite
  test) want+=(zstd xz-utils busybox chromium python3-aiosmtpd) ;;
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

if [ "${1:-serve}" = test ]; then
  browser="$(cd "$(dirname "$0")/../tests/browser" && pwd)"
  stamp="$browser/node_modules/.granary-package-lock.json"
  if ! cmp -s "$browser/package-lock.json" "$stamp"; then
    if ! command -v npm >/dev/null; then
      echo "The browser tests need Node.js 20 and npm (Debian: apt-get install nodejs npm, or NodeSource's nodejs)." >&2
      exit 1
    fi
    echo "Installing the browser tests' node packages (npm ci in tests/browser)" >&2
    # playwright-core never downloads a browser; the tests drive Debian's /usr/bin/chromium.
    (cd "$browser" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    cp "$browser/package-lock.json" "$stamp"
  fi
fi
