#!/usr/bin/env bash
# Runs every Granary test. Installs the system packages the tests need first (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
export CARGO_TERM_COLOR=never
cargo test --workspace --locked "$@"
# The sample apps and their shared kit are their own workspaces (see apps/echo/README.md), so
# the workspace run above does not build them: test each one.
# One target directory for all of them, so the kit and capnp are built once.
apps_target="${CARGO_TARGET_DIR:-target}/apps-test"
for manifest in apps/*/Cargo.toml; do
  cargo test --locked --manifest-path "$manifest" --target-dir "$apps_target"
done
# The dashboard's page in Chromium (deps.sh test installed it and playwright-core), calling a
# real Notes app.
cargo build --locked --manifest-path apps/dashboard/Cargo.toml --target-dir "$apps_target"
cargo build --locked --manifest-path apps/notes/Cargo.toml --target-dir "$apps_target"
NOTES_BIN="$apps_target/debug/notes" node apps/dashboard/tests/page.mjs "$apps_target/debug/dashboard"
