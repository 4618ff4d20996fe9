#!/usr/bin/env bash
# Lint every CloudFormation template in infra/ with cfn-lint (pinned in localstack/requirements.txt,
# installed into localstack/.venv by localstack/install.sh, which this runs: a no-op when done).
#
#   infra/lint.sh                 # all of infra/*.yaml
#   infra/lint.sh infra/x.yaml    # some
#
# Fails (exit non-zero) on any error or warning, in any region (templates must deploy anywhere).
# Informational findings are included and printed, but do not fail the lint.
# No rule is ignored. To ignore one, add it to IGNORE below with the reason next to it, or, for
# one resource, use the template's Metadata: {cfn-lint: {config: {ignore_checks: [...]}}}.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
IGNORE=()

bash "$root/localstack/install.sh"
cfn_lint="$root/localstack/.venv/bin/cfn-lint"

if [[ $# -gt 0 ]]; then
    templates=("$@")
else
    shopt -s nullglob
    templates=("$here"/*.yaml "$here"/*.yml)
fi
[[ ${#templates[@]} -gt 0 ]] || { echo "lint.sh: no templates in $here" >&2; exit 1; }

ignore_args=()
[[ ${#IGNORE[@]} -gt 0 ]] && ignore_args=(--ignore-checks "${IGNORE[@]}")

echo "lint.sh: cfn-lint $("$cfn_lint" --version | awk '{print $2}') on ${#templates[@]} template(s)" >&2
"$cfn_lint" --regions ALL_REGIONS --include-checks I --non-zero-exit-code warning \
    "${ignore_args[@]}" -- "${templates[@]}"
echo "lint.sh: ok" >&2
