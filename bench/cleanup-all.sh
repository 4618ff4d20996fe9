#!/usr/bin/env bash
# Benchmark of `greenlight cleanup --all --dry-run` over many services (issue 8). Not a test.
#
#   bench/cleanup-all.sh                       # N = 100, 300, 1000; 5 timed runs each
#   bench/cleanup-all.sh --sizes 1000 --runs 7 # other sizes / run counts
#   bench/cleanup-all.sh --binary PATH         # another greenlight binary
#
# For each N it starts greenlight's own emulator (localstack/emulator.py --port 0
# --exit-on-stdin-eof, installed by localstack/install.sh), seeds N services with
# bench/seed_many.py (5% due: an expired warm fleet), runs the binary once to warm up and then
# --runs times with the emulator's environment (AWS_ENDPOINT_URL, dummy credentials,
# AWS_CONFIG_FILE=/dev/null, ...), and counts each run's AWS calls by operation from the
# emulator's request log. It checks the output (N services in `cleanup_done`, `act` decisions
# exactly for the due ones) and that the dry run made no mutating call, then writes
# bench/RESULTS-cleanup.md and bench/results-cleanup.json. Exit 1 if a check failed.
#
# The binary defaults to $CARGO_TARGET_DIR/debug/greenlight (else target/debug/greenlight),
# built with `cargo build --bin greenlight` if missing; it is copied first, so a rebuild
# during the benchmark does not change what is measured. Takes about 5 minutes on 2 cores.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
binary="$target/debug/greenlight"
for arg in "$@"; do
    case "$arg" in --binary|--binary=*) binary="" ;; esac
done

bash "$root/localstack/install.sh"
if [[ -n "$binary" && ! -x "$binary" ]]; then
    (cd "$root" && cargo build --bin greenlight)
fi
exec "$root/localstack/.venv/bin/python" "$root/bench/cleanup_bench.py" \
    ${binary:+--binary "$binary"} "$@"
