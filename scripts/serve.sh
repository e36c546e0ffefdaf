#!/usr/bin/env bash
# Builds Granary and runs the server on its default data directory. Extra arguments go to
# `granary serve` (see `granary serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh serve
cargo build --release --locked -p granary
scripts/build-bridge.sh release
scripts/build-sample-apps.sh release
exec target/release/granary serve "$@"
