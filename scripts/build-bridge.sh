#!/usr/bin/env bash
# Builds the static bridge every grain runs at /.granary/bridge (SPEC.md, "The bridge process").
# Usage: scripts/build-bridge.sh [release|debug]. The server finds the result next to its own
# target directory (target/x86_64-unknown-linux-gnu/<profile>/granary-bridge).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-release}
flags=()
[[ $profile == release ]] && flags+=(--release)
RUSTFLAGS="-C target-feature=+crt-static" cargo build --locked -p granary-bridge \
  --target x86_64-unknown-linux-gnu "${flags[@]}"
