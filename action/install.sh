#!/usr/bin/env bash
# The action's first step: puts a greenlight binary where the next step finds it.
#
# Reads (action.yml's `env:` sets them from the inputs; the test suite sets the same):
#   GREENLIGHT_INPUT_VERSION       a released version ("0.1.0" or "v0.1.0"); empty or "path":
#                                  use the greenlight already on PATH (no download)
#   GREENLIGHT_INPUT_DOWNLOAD_URL  where releases are: <url>/v<version>/<asset>, as on a GitHub
#                                  release page (https://github.com/OWNER/REPO/releases/download);
#                                  file:// works too. Empty: the GitHub repository this action
#                                  was fetched from
#   GREENLIGHT_INPUT_TARGET        the Rust target to install; empty: <runner arch>-unknown-linux-musl
#   GREENLIGHT_ACTION_PATH         where the runner checked the action out (to find its repository)
#   RUNNER_ARCH, RUNNER_OS         X64/ARM64, Linux (else uname)
#   RUNNER_TOOL_CACHE              a version installed there before is reused (self-hosted runners)
#   RUNNER_TEMP                    downloads go here
# Writes `bin=<path of the greenlight binary>` and `version=<its --version>` to $GITHUB_OUTPUT.
#
# The release assets are what scripts/release.sh makes: greenlight-<version>-<target>.tar.gz
# (a folder greenlight-<version>-<target>/ with the binary, README.md and LICENSE) and
# SHA256SUMS; the tarball is installed only if its SHA-256 is the one SHA256SUMS lists.
set -euo pipefail

die() {
    echo "::error title=greenlight install::$*"
    echo "greenlight install: $*" >&2
    exit 1
}
output() { if [[ -n "${GITHUB_OUTPUT:-}" ]]; then echo "$1=$2" >>"$GITHUB_OUTPUT"; fi; }

version="${GREENLIGHT_INPUT_VERSION:-}"
version="${version#v}"

if [[ -z "$version" || "$version" == path ]]; then
    bin="$(command -v greenlight || true)"
    [[ -n "$bin" ]] || die "greenlight is not on PATH; set the action's version input (e.g. version: 0.1.0) to download a release"
    found="$("$bin" --version)" || die "$bin --version failed"
    echo "greenlight install: using $bin ($found)"
    output bin "$bin"
    output version "$found"
    exit 0
fi
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]] \
    || die "version '$GREENLIGHT_INPUT_VERSION' is not a release version (like 0.1.0), nor 'path'"

target="${GREENLIGHT_INPUT_TARGET:-}"
if [[ -z "$target" ]]; then
    os="${RUNNER_OS:-$(uname -s)}"
    [[ "$os" == Linux ]] || die "greenlight releases are built for Linux runners only (this one is $os)"
    case "${RUNNER_ARCH:-$(uname -m)}" in
        X64 | x86_64 | amd64) target=x86_64-unknown-linux-musl ;;
        ARM64 | aarch64 | arm64) target=aarch64-unknown-linux-musl ;;
        *) die "no greenlight release for a ${RUNNER_ARCH:-$(uname -m)} runner (x86_64 and arm64 only)" ;;
    esac
fi

base="${GREENLIGHT_INPUT_DOWNLOAD_URL:-}"
if [[ -z "$base" ]]; then
    # github.action_repository is empty in composite actions; the runner checks an action out
    # at <work>/_actions/<owner>/<repo>/<ref>, so the path names the repository.
    repo="${GITHUB_ACTION_REPOSITORY:-}"
    if [[ -z "$repo" && "${GREENLIGHT_ACTION_PATH:-}" =~ /_actions/([^/]+)/([^/]+)/[^/]+/?$ ]]; then
        repo="${BASH_REMATCH[1]}/${BASH_REMATCH[2]}"
    fi
    [[ -n "$repo" ]] || die "cannot tell which repository this action comes from; set the action's download-url input"
    base="https://github.com/$repo/releases/download"
fi
base="${base%/}/v$version"

name="greenlight-$version-$target"
asset="$name.tar.gz"

# A tool cache entry made by an earlier job on this (self-hosted) runner is reused.
cache_root="${RUNNER_TOOL_CACHE:-${RUNNER_TEMP:-${TMPDIR:-/tmp}}}"
dir="$cache_root/greenlight/$version/$target"
bin="$dir/greenlight"
if [[ -x "$bin" ]] && found="$("$bin" --version 2>/dev/null)" && [[ "$found" == "greenlight $version "* ]]; then
    echo "greenlight install: $found, already in $dir"
    output bin "$bin"
    output version "$found"
    exit 0
fi

work="$(mktemp -d "${RUNNER_TEMP:-${TMPDIR:-/tmp}}/greenlight-install.XXXXXX")"
trap 'rm -rf "$work"' EXIT
fetch() {
    echo "greenlight install: fetching $base/$1"
    curl --fail --silent --show-error --location --retry 3 --retry-delay 2 \
        --output "$work/$1" "$base/$1" || die "could not download $base/$1"
}
fetch SHA256SUMS
fetch "$asset"

# Exactly one line of SHA256SUMS must name the tarball, and its hash must match.
lines="$(awk -v f="$asset" '$2 == f || $2 == "*" f' "$work/SHA256SUMS")"
[[ -n "$lines" ]] || die "SHA256SUMS of v$version lists no $asset"
[[ "$(wc -l <<<"$lines")" -eq 1 ]] || die "SHA256SUMS of v$version lists $asset more than once"
(cd "$work" && sha256sum --check --strict --quiet <<<"$lines") \
    || die "$asset does not match its SHA-256 in SHA256SUMS; not installed"
echo "greenlight install: $asset matches SHA256SUMS ($(cut -d' ' -f1 <<<"$lines"))"

mkdir -p "$work/x"
tar -xzf "$work/$asset" -C "$work/x"
[[ -x "$work/x/$name/greenlight" ]] || die "$asset has no $name/greenlight"
found="$("$work/x/$name/greenlight" --version)" || die "the downloaded greenlight does not run on this runner ($target)"
[[ "$found" == "greenlight $version "* ]] || die "$asset holds '$found', not greenlight $version"

mkdir -p "$dir"
install -m 0755 "$work/x/$name/greenlight" "$bin.tmp.$$"
mv -f "$bin.tmp.$$" "$bin"
echo "greenlight install: $found in $dir"
if [[ -n "${GITHUB_PATH:-}" ]]; then echo "$dir" >>"$GITHUB_PATH"; fi
output bin "$bin"
output version "$found"
