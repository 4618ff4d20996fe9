#!/usr/bin/env bash
# greenlight against the AWS CLI script and the boto3 script a user would write, and against the
# floor (a bare Rust process making only the calls), on greenlight's emulator (issue 10). Not a
# test; writes bench/RESULTS.md and bench/results.json.
#
#   bench/run.sh                  # everything, 10 timed runs each (about 25 minutes on 2 cores)
#   bench/run.sh --quick          # 3 runs, slow parts skipped, to /tmp/greenlight-bench (~5 min)
#   bench/run.sh --runs 20 --skip-slow --out /tmp/b
#   bench/run.sh --binary PATH --floor PATH   # other builds (defaults: the release builds in
#                                             # $CARGO_TARGET_DIR, else ./target)
#   bench/run.sh --only rollback,deploy       # some sections (rollback, deploy, canary,
#                                             # health_flip, waiting, latency, cleanup, startup)
#   bench/run.sh --rtt-ms 50                  # the latency section's added round trip (25)
#
# What it installs, each a no-op when already there:
#   - localstack/.venv (moto, boto3: the emulator, the seeding, the boto3 peer), by
#     localstack/install.sh;
#   - bench/.venv with the AWS CLI pinned in bench/requirements.txt (awscli pins its own
#     botocore, so it gets a venv of its own rather than moving moto's);
#   - hyperfine and GNU time (Debian packages), when apt-get is there and we are root: the
#     --help timing (without hyperfine bench.py times it with its own loop) and peak RSS
#     (`/usr/bin/time -f %M`; without it RSS is left out);
#   - the release builds, `cargo build --release --bin greenlight --example floor` (unless
#     --binary/--floor name others): seconds when up to date, about 10 minutes on 2 cores from
#     a cold cache.
# Then it runs bench/bench.py with localstack/.venv's Python (see its docstring).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

bash "$root/localstack/install.sh"

venv="$root/bench/.venv"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$root/bench/requirements.txt" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/aws" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "run.sh: installing the AWS CLI into bench/.venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/bench/requirements.txt"
    echo "$want" > "$stamp"
fi

missing=()
command -v hyperfine >/dev/null 2>&1 || missing+=(hyperfine)
[[ -x /usr/bin/time ]] || missing+=(time)
if (( ${#missing[@]} )) && command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
    echo "run.sh: installing ${missing[*]}" >&2
    apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; } \
        || echo "run.sh: could not install ${missing[*]}: --help is timed by bench.py itself, peak RSS left out" >&2
fi

custom=false
for arg in "$@"; do
    case "$arg" in --binary|--binary=*|--floor|--floor=*) custom=true ;; esac
done
if ! $custom; then
    # A no-op (seconds) when they are up to date with the source.
    (cd "$root" && cargo build --release --bin greenlight --example floor)
fi

exec "$root/localstack/.venv/bin/python" "$root/bench/bench.py" "$@"
