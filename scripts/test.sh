#!/usr/bin/env bash
# Runs every Granary test. Installs the system packages the tests need first (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
export CARGO_TERM_COLOR=never
cargo test --workspace --locked "$@"
