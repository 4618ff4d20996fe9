#!/usr/bin/env bash
# Create localstack/.venv with the emulator's Python dependencies (requirements.txt).
#
# Idempotent and cheap to repeat: a stamp file holds the hash of requirements.txt the venv was
# built from, so a second run is a no-op that returns in a few milliseconds. Safe to run from
# any directory and from several processes at once (the slow path takes a lock).
#
#   localstack/install.sh            # then: localstack/.venv/bin/python localstack/emulator.py
#   PYTHON=python3.11 localstack/install.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
requirements="$here/requirements.txt"
stamp="$venv/.greenlight-requirements.sha256"
python="${PYTHON:-python3}"

die() { echo "install.sh: $*" >&2; exit 1; }

digest() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$requirements" | cut -d' ' -f1
    else
        "$python" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$requirements"
    fi
}

up_to_date() {
    [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]
}

[[ -f "$requirements" ]] || die "missing $requirements"
command -v "$python" >/dev/null 2>&1 || die "$python not found; install Python 3.10+ (e.g. apt-get install python3 python3-venv)"
want="$(digest)"
up_to_date && exit 0

# Slow path: one installer at a time; whoever waited re-checks before doing the work again.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$here/.install.lock"
    flock 9
    up_to_date && exit 0
fi

"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "$python is $("$python" -V 2>&1); the emulator needs Python 3.10+"
"$python" -c 'import venv, ensurepip' >/dev/null 2>&1 \
    || die "$python has no venv/ensurepip module; install it (e.g. apt-get install python3-venv)"

if [[ -e "$venv" ]] && ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
    echo "install.sh: $venv is broken (its Python is gone); recreating it" >&2
    rm -rf "$venv"
fi
if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv" || die "failed to create $venv with '$python -m venv'"
fi

rm -f "$stamp"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" \
    || die "pip install -r $requirements failed (is PyPI reachable?)"
echo "$want" >"$stamp"
echo "install.sh: $venv is ready" >&2
