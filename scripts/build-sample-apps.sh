#!/usr/bin/env bash
# Builds and packs the sample apps in apps/ into target/sample-apps/*.gpk, which
# `granary serve` installs on first run (SPEC.md, "First run"). The packages are signed with
# keys made once in target/sample-keyring (development keys: this machine's samples; the app
# ids are kept in target/sample-keyring.id for echo and target/sample-keyring.<app>.id).
# Usage: scripts/build-sample-apps.sh [release|debug]  (the granary binary of that profile packs)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-release}
target=${CARGO_TARGET_DIR:-target}
flags=()
[[ $profile == release ]] && flags+=(--release)
granary="$target/$profile/granary"
[[ -x $granary ]] || cargo build --locked -p granary "${flags[@]}"
# Each app: its own workspace under apps/, one static binary named like the app, mapped by its
# granary.toml from bin/<app>. Each gets its own app id (a key in the keyring, made once).
apps=(echo notes dashboard counter)
keyring="$target/sample-keyring"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$target/sample-apps"
for app in "${apps[@]}"; do
  RUSTFLAGS="-C target-feature=+crt-static" cargo build --locked --release \
    --manifest-path "apps/$app/Cargo.toml" --target x86_64-unknown-linux-gnu --target-dir "$target/apps"
  # echo's id file keeps its historical name, so existing installs keep their app id.
  idfile=$keyring.id
  [[ $app == echo ]] || idfile=$keyring.$app.id
  if [[ ! -s $idfile ]]; then
    GRANARY_LOG=warn "$granary" keygen --keyring "$keyring" > "$idfile" 2>/dev/null
  fi
  mkdir -p "$work/$app/bin"
  cp "apps/$app/granary.toml" "apps/$app/icon.svg" "$work/$app/"
  install -m 755 "$target/apps/x86_64-unknown-linux-gnu/release/$app" "$work/$app/bin/$app"
  sed -i "s/REPLACE_WITH_APP_ID/$(cat "$idfile")/" "$work/$app/granary.toml"
  GRANARY_LOG=warn "$granary" pack "$work/$app" -o "$target/sample-apps/$app.gpk" --keyring "$keyring" >/dev/null
done
echo "sample apps: $(ls "$target"/sample-apps/*.gpk)"
