#!/usr/bin/env bash
# Installs the validators of the CI recipes into the project venv (localstack/.venv):
#   - examples/requirements-lint.txt (check-jsonschema, shellcheck), with pip;
#   - the Groovy compiler (groovy-4.0.26.jar, groovy-json), to parse examples/jenkins/Jenkinsfile:
#     taken from the npm package npm-groovy-lint@18.0.0 (which ships it), fetched with `npm pack`
#     and checked against the integrity npm's registry published for that version.
# Needs java (17 here) to run the Groovy jar, and npm and PyPI the first time only: stamps in
# the venv make a second run a no-op that touches no network.
#
#   examples/lint-tools.sh     # then: localstack/.venv/bin/check-jsonschema, …/shellcheck,
#                              # java -cp 'localstack/.venv/share/greenlight-lint/groovy/*'
set -euo pipefail

GROOVY_NPM=npm-groovy-lint@18.0.0
GROOVY_NPM_INTEGRITY=sha512-ymxG13cNrVX4PbWayJ2SIjT8/Zdl8yNC1D0cXrAVW3Y20y1NmGps5cLkQ3LSVsFa7/s0qeqzuDhEiCVRxAOcqw==
GROOVY_JARS=(groovy-4.0.26.jar groovy-json-4.0.26.jar)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
die() { echo "lint-tools.sh: $*" >&2; exit 1; }

bash "$root/localstack/install.sh"
venv="$root/localstack/.venv"
requirements="$here/requirements-lint.txt"
pip_stamp="$venv/.greenlight-lint-requirements.sha256"
groovy_dir="$venv/share/greenlight-lint/groovy"
groovy_stamp="$groovy_dir/.stamp"
groovy_want="$GROOVY_NPM $GROOVY_NPM_INTEGRITY ${GROOVY_JARS[*]}"

pip_want="$(sha256sum "$requirements" | cut -d' ' -f1)"
pip_done() { [[ -f "$pip_stamp" && "$(cat "$pip_stamp")" == "$pip_want" ]]; }
groovy_done() { [[ -f "$groovy_stamp" && "$(cat "$groovy_stamp")" == "$groovy_want" ]]; }
pip_done && groovy_done && exit 0

# Slow path: one installer at a time (tests run in parallel); re-check after the wait.
exec 9>"$venv/.greenlight-lint.lock"
flock 9

if ! pip_done; then
    rm -f "$pip_stamp"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" \
        || die "pip install -r $requirements failed (is PyPI reachable?)"
    echo "$pip_want" >"$pip_stamp"
    echo "lint-tools.sh: $(grep -v '^#' "$requirements" | xargs) installed in $venv" >&2
fi

if ! groovy_done; then
    command -v npm >/dev/null || die "npm not found (it fetches the Groovy compiler once)"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && npm pack --silent "$GROOVY_NPM" >/dev/null) || die "npm pack $GROOVY_NPM failed (is the npm registry reachable?)"
    tgz=("$work"/*.tgz)
    got="sha512-$("$venv/bin/python" -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "${tgz[0]}")"
    [[ "$got" == "$GROOVY_NPM_INTEGRITY" ]] || die "$GROOVY_NPM: integrity $got, expected $GROOVY_NPM_INTEGRITY; not installed"
    members=()
    for jar in "${GROOVY_JARS[@]}"; do members+=("package/lib/java/groovy/lib/$jar"); done
    tar -xzf "${tgz[0]}" -C "$work" "${members[@]}" package/LICENSE
    rm -rf "$groovy_dir"
    mkdir -p "$groovy_dir"
    cp "$work"/package/lib/java/groovy/lib/*.jar "$groovy_dir/"
    cp "$work/package/LICENSE" "$groovy_dir/LICENSE.npm-groovy-lint"
    echo "$groovy_want" >"$groovy_stamp"
    echo "lint-tools.sh: ${GROOVY_JARS[*]} (from $GROOVY_NPM) in $groovy_dir" >&2
fi
command -v java >/dev/null || die "java not found: the Groovy compiler needs a JRE (e.g. apt-get install openjdk-17-jre-headless)"
