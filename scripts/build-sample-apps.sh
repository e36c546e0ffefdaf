#!/usr/bin/env bash
# Builds and packs the sample apps in apps/ into target/sample-apps/*.gpk, which
# `granary serve` installs on first run (SPEC.md, "First run"). The packages are signed with a
# keyring made once in target/sample-keyring (a development key: this machine's samples).
# Usage: scripts/build-sample-apps.sh [release|debug]  (the granary binary of that profile packs)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-release}
target=${CARGO_TARGET_DIR:-target}
flags=()
[[ $profile == release ]] && flags+=(--release)
granary="$target/$profile/granary"
[[ -x $granary ]] || cargo build --locked -p granary "${flags[@]}"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --locked --release \
  --manifest-path apps/echo/Cargo.toml --target x86_64-unknown-linux-gnu --target-dir "$target/apps"
keyring="$target/sample-keyring"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/echo/bin" "$target/sample-apps"
cp apps/echo/granary.toml apps/echo/icon.svg "$work/echo/"
install -m 755 "$target/apps/x86_64-unknown-linux-gnu/release/echo" "$work/echo/bin/echo"
if [[ ! -s $keyring.id ]]; then
  GRANARY_LOG=warn "$granary" keygen --keyring "$keyring" > "$keyring.id" 2>/dev/null
fi
id=$(cat "$keyring.id")
sed -i "s/REPLACE_WITH_APP_ID/$id/" "$work/echo/granary.toml"
GRANARY_LOG=warn "$granary" pack "$work/echo" -o "$target/sample-apps/echo.gpk" --keyring "$keyring" >/dev/null
echo "sample apps: $(ls "$target"/sample-apps/*.gpk)"
