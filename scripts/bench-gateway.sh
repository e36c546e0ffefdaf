#!/usr/bin/env bash
# Benchmarks the grain HTTP path against the same echo binary on loopback (BENCHMARKS.md,
# "Gateway"). Release builds; as root (real sandboxes); needs wrk (apt-get install wrk); with
# nginx installed (apt-get install nginx-light) it adds a two-nginx-proxies reference row.
# Knobs: BENCH_SECONDS (10), BENCH_CONNECTIONS ("8 32", space-separated; a run with 1 always follows), BENCH_LEAN_CONNECTIONS ("8": the cheap /status/200 answer), BENCH_ROUNDS (5: gateway, direct and nginx back to back, median reported; also for the unloaded -c 1 runs), BENCH_THREADS (1), BENCH_HOLD (seconds to keep the servers up for profiling by hand).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
cargo test --locked --release -p granary --test bench_gateway -- --ignored --nocapture --test-threads 1
