#!/usr/bin/env bash
# Makes the seed corpora with the real `granary` CLI, signed with the fuzz targets' fixed key
# (seed 32 × 0x07, `KEY_SEED` in src/lib.rs), so that the archives extracted for
# `signed_archive` claim the app id of the key that target signs with.
# Usage (from grains/fuzz): ./seeds.sh [path/to/granary]   (default: the debug build)
set -euo pipefail
cd "$(dirname "$0")"
GRANARY=${1:-${CARGO_TARGET_DIR:-../../target}/debug/granary}
[ -x "$GRANARY" ] || { echo "no granary binary at $GRANARY; run: cargo build -p granary" >&2; exit 1; }
# granary checks that this app id is the public half of the seed, so a wrong one fails loudly.
APP_ID=x956ssz2mj90pgrpa1xj6cq5z6anfxpfruz7r4k23vp6k526u8q0
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export GRANARY_KEYRING=$WORK/keys/keyring GRANARY_LOG=warn
mkdir -m 700 "$WORK/keys"
(umask 077 && echo "$APP_ID $(printf '07%.0s' {1..32})" >"$GRANARY_KEYRING")
mkdir -p corpus/read_package corpus/signed_archive

# tree NAME: a source directory; $1 says how much goes in it.
tree() {
  local app=$WORK/$1 src=$WORK/$1/src
  mkdir -p "$src"
  printf '\0not ELF, not a script\n' >"$src/run" && chmod 755 "$src/run"
  if [ "$1" != minimal ]; then
    mkdir -p "$src/data/empty" "$src/données/日本語/深い" "$src/a/b/c/d/e/f/g/h"
    echo hello >"$src/data/plain.txt"
    : >"$src/data/empty-file"
    head -c 20000 /usr/share/common-licenses/GPL-3 >"$src/data/text" 2>/dev/null || seq 4000 >"$src/data/text"
    echo 'ça marche ✓' >"$src/données/日本語/深い/ünïcødé ✓ file.txt"
    printf '#!/app/run\n' >"$src/données/tool" && chmod 700 "$src/données/tool"
    echo deep >"$src/a/b/c/d/e/f/g/h/leaf"
    ln -s data/plain.txt "$src/relative-link"
    ln -s /app/données "$src/absolute-link"
    ln -s "../nowhere/at all" "$src/data/dangling"
  fi
  cat >"$app/granary.toml" <<TOML
[app]
id = "$APP_ID"
title = "Seed $1"
version = 3
marketing_version = "3.0"
min_upgradable_version = 1
continue_command = ["/app/run"]

[[actions]]
title = "New thing"
noun = "thing"
command = ["/app/run", "--new"]

[files]
map = [{ to = "/app", from = "src" }]
include = ["/app"]
TOML
}

for name in minimal full; do
  tree $name
  for level in 1 9 19; do
    gpk=corpus/read_package/$name-$level.gpk
    "$GRANARY" pack "$WORK/$name" -o "$gpk" --level $level >/dev/null
    # The archive: the body between the 120-byte header and the 16-byte trailer, decompressed.
    [ $level = 9 ] && tail -c +121 "$gpk" | head -c -16 | zstd -q -d >corpus/signed_archive/$name.capnp
  done
done
ls -l corpus/read_package corpus/signed_archive
