#!/usr/bin/env bash
# Package pack/unpack throughput: `granary pack`/`granary unpack` (zstd level 9, the default)
# next to `tar | zstd -9` and `tar | xz -6`, all single-threaded, on the same ~200 MB tree of
# real files copied from this machine, measured in the same run. Prints a table with ratios.
#
# Usage: cargo build --release -p granary && scripts/bench-package.sh
# Environment: GRANARY (binary; default $CARGO_TARGET_DIR/release/granary or target/release/granary),
#   RUNS (repetitions of the granary and zstd measurements, median reported; default 3),
#   XZ_RUNS (of the xz ones, which take minutes; default 1), BENCH_DIR (scratch parent; default /tmp).
# Needs: tar, zstd, xz (scripts/deps.sh test installs them).
set -euo pipefail

GRANARY=${GRANARY:-${CARGO_TARGET_DIR:-target}/release/granary}
RUNS=${RUNS:-3}
XZ_RUNS=${XZ_RUNS:-1}
[ -x "$GRANARY" ] || { echo "no granary binary at $GRANARY; run: cargo build --release -p granary (or set GRANARY)" >&2; exit 1; }
for t in tar zstd xz; do
  command -v "$t" >/dev/null || { echo "$t is missing; run scripts/deps.sh test as root" >&2; exit 1; }
done

WORK=$(mktemp -d "${BENCH_DIR:-/tmp}/granary-bench.XXXXXX")
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
SRC=$WORK/app/src

# The tree: many small files (Python and Perl libraries, locale sources, time zones) and a few
# large shared libraries, copied so that every tool reads the very same bytes.
mkdir -p "$SRC/lib"
for d in /usr/lib/python3.11 /usr/share/perl /usr/share/i18n /usr/share/zoneinfo; do
  [ -d "$d" ] && cp -a "$d" "$SRC/$(basename "$d")"
done
for f in libicudata.so.72.1 libz3.so.4 libx265.so.199 libpython3.11.so.1.0 libcrypto.so.3 libperl.so.5.36.0 libicui18n.a libcrypto.a; do
  [ -f "/usr/lib/x86_64-linux-gnu/$f" ] && cp -a "/usr/lib/x86_64-linux-gnu/$f" "$SRC/lib/"
done
printf '\0not ELF, not a script\n' >"$SRC/run" && chmod 755 "$SRC/run"

export GRANARY_KEYRING=$WORK/keyring GRANARY_LOG=warn
APP_ID=$("$GRANARY" keygen 2>/dev/null)
cat >"$WORK/app/granary.toml" <<EOF
[app]
id = "$APP_ID"
title = "Bench"
version = 1
continue_command = ["/app/run"]

[[actions]]
title = "New"
noun = "thing"
command = ["/app/run"]

[files]
map = [{ to = "/app", from = "src" }, { to = "/", from = "/" }]
include = ["/app"]
EOF

# The package also carries what the packer adds: the host libraries the ELF files need, the
# generated /etc files, the empty mount points. Pack once and unpack: that tree (TREE) is what
# the tar baselines archive, so both sides compress exactly the same bytes.
"$GRANARY" pack "$WORK/app" -o "$WORK/first.gpk" >/dev/null
TREE=$WORK/tree
"$GRANARY" unpack "$WORK/first.gpk" "$TREE"
rm "$WORK/first.gpk"
BYTES=$(du -sb --apparent-size "$TREE" | cut -f1)
FILES=$(find "$TREE" -mindepth 1 | wc -l)
MB=$(awk -v b="$BYTES" 'BEGIN { printf "%.1f", b / 1e6 }')

# Warm the page cache so that every tool reads its input from memory.
tar -cf - -C "$TREE" . >/dev/null
tar -cf - -C "$SRC" . >/dev/null

now() { date +%s.%N; }
# median of the arguments
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
# time_it RUNS SETUP COMMAND: median wall time of COMMAND, with SETUP (untimed) before each run
time_it() {
  local runs=$1 setup=$2 cmd=$3 t=() s
  for ((i = 0; i < runs; i++)); do
    eval "$setup"
    s=$(now)
    eval "$cmd" || { echo "failed: $cmd" >&2; exit 1; }
    t+=("$(awk -v a="$s" -v b="$(now)" 'BEGIN { print b - a }')")
  done
  median "${t[@]}"
}
clean_out() { if [ -e "$WORK/out" ]; then chmod -R u+w "$WORK/out"; rm -rf "$WORK/out"; fi; }

echo "tree: $MB MB in $FILES entries; runs: $RUNS (xz: $XZ_RUNS), median; single-threaded codecs" >&2
GPK=$WORK/app.gpk TZS=$WORK/app.tar.zst TXZ=$WORK/app.tar.xz
declare -A PACK UNPACK SIZE
echo "granary pack..." >&2
PACK[granary]=$(time_it "$RUNS" "rm -f $GPK" "'$GRANARY' pack '$WORK/app' -o '$GPK' >/dev/null")
echo "tar | zstd -9..." >&2
PACK[zstd]=$(time_it "$RUNS" "rm -f $TZS" "tar -cf - -C '$TREE' . | zstd -q -9 -T1 -o '$TZS'")
echo "tar | xz -6..." >&2
PACK[xz]=$(time_it "$XZ_RUNS" "rm -f $TXZ" "tar -cf - -C '$TREE' . | xz -6 -T1 -c >'$TXZ'")
SIZE[granary]=$(stat -c %s "$GPK") SIZE[zstd]=$(stat -c %s "$TZS") SIZE[xz]=$(stat -c %s "$TXZ")

echo "granary unpack..." >&2
UNPACK[granary]=$(time_it "$RUNS" clean_out "'$GRANARY' unpack '$GPK' '$WORK/out'")
echo "zstd -d | tar -x..." >&2
UNPACK[zstd]=$(time_it "$RUNS" "clean_out; mkdir '$WORK/out'" "zstd -q -d -c '$TZS' | tar -xf - -C '$WORK/out'")
echo "xz -d | tar -x..." >&2
UNPACK[xz]=$(time_it "$XZ_RUNS" "clean_out; mkdir '$WORK/out'" "xz -d -c '$TXZ' | tar -xf - -C '$WORK/out'")
clean_out

printf '\nTree: %s MB, %s entries. Throughput = tree bytes / wall time (median of runs).\n\n' "$MB" "$FILES"
printf '| %-18s | %9s | %7s | %9s | %10s | %9s | %10s |\n' Tool "Size (MB)" "% tree" "Pack (s)" "Pack MB/s" "Unpack (s)" "Unpack MB/s"
printf '|%s|%s|%s|%s|%s|%s|%s|\n' -------------------- ----------- --------- ----------- ------------ ----------- ------------
for k in granary zstd xz; do
  case $k in granary) name="granary (zstd 9)" ;; zstd) name="tar \\| zstd -9" ;; xz) name="tar \\| xz -6" ;; esac
  N=$name awk -v s="${SIZE[$k]}" -v b="$BYTES" -v p="${PACK[$k]}" -v u="${UNPACK[$k]}" 'BEGIN {
    printf "| %-18s | %9.1f | %6.1f%% | %9.2f | %10.1f | %10.2f | %11.1f |\n", ENVIRON["N"], s / 1e6, 100 * s / b, p, b / 1e6 / p, u, b / 1e6 / u }'
done
printf '\nRatios of granary to each baseline (time: > 1 means granary is slower; size: > 1 means larger):\n\n'
printf '| %-14s | %6s | %6s | %6s |\n' Baseline Size Pack Unpack
printf '|%s|%s|%s|%s|\n' ---------------- -------- -------- --------
for k in zstd xz; do
  case $k in zstd) name="tar \\| zstd -9" ;; xz) name="tar \\| xz -6" ;; esac
  N=$name awk -v s="${SIZE[granary]}" -v s0="${SIZE[$k]}" -v p="${PACK[granary]}" -v p0="${PACK[$k]}" \
    -v u="${UNPACK[granary]}" -v u0="${UNPACK[$k]}" 'BEGIN {
    printf "| %-14s | %5.2fx | %5.2fx | %5.2fx |\n", ENVIRON["N"], s / s0, p / p0, u / u0 }'
done
