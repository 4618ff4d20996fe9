#!/usr/bin/env bash
# Release artifacts: static (musl) greenlight binaries for x86_64 and aarch64 Linux, the cleanup
# Lambda's bootstrap for both, and a checksum file, in the layout the GitHub Action downloads
# (action/install.sh) and the CodeBuild/Jenkins examples fetch:
#
#   <out>/greenlight-<version>-<target>.tar.gz         greenlight-<version>-<target>/{greenlight,README.md,LICENSE}
#   <out>/greenlight-lambda-<version>-<target>.zip     bootstrap (for infra/cleanup-lambda.yaml)
#   <out>/SHA256SUMS                                    sha256sum format, one line per file above
#
# Upload everything in <out> to the release tagged v<version> (the action fetches
# <download-url>/v<version>/<asset>; .github/workflows/release.yml does it on a tag push).
#
#   scripts/release.sh                      # both musl targets (cargo-zigbuild; see below)
#   scripts/release.sh --targets x86_64-unknown-linux-musl
#   scripts/release.sh --targets host       # this machine's target, plain cargo (e.g. gnu: not static)
#   scripts/release.sh --targets host --binary target/debug/greenlight --out /tmp/r
#                                           # package an existing binary, no build (tests do this)
#
# Options: --out DIR (default dist/), --version V (default Cargo.toml's), --no-lambda.
# Needs: the Rust targets (`rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl`)
# and, for musl, zig as the C compiler and linker: ziglang and cargo-zigbuild from PyPI, pinned
# below, installed into target/release-tools/venv on first use (a no-op later, offline).
# The build uses Cargo.toml's `dist` profile (release with fat LTO, one codegen unit, no
# symbols; bench/profile.md): about 15 minutes per binary on 2 cores.
set -euo pipefail

ZIGLANG=ziglang==0.17.0
CARGO_ZIGBUILD=cargo-zigbuild==0.24.0

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
die() { echo "release.sh: $*" >&2; exit 1; }

out="$root/dist"
version=""
targets=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
binary=""
lambda=true
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        --version) version="$2"; shift 2 ;;
        --targets) read -r -a targets <<<"$2"; shift 2 ;;
        --binary) binary="$2"; shift 2 ;;
        --no-lambda) lambda=false; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done

command -v cargo >/dev/null || die "cargo not found"
host="$(rustc -vV | sed -n 's/^host: //p')"
for i in "${!targets[@]}"; do
    [[ "${targets[$i]}" == host ]] && targets[i]="$host"
done
cargo_version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n1)"
[[ -n "$cargo_version" ]] || die "no version in Cargo.toml"
version="${version:-$cargo_version}"
if [[ -n "$binary" ]]; then
    [[ ${#targets[@]} -eq 1 ]] || die "--binary packages one binary: give exactly one target"
    [[ -x "$binary" ]] || die "--binary $binary is not an executable"
    lambda=false
elif [[ "$version" != "$cargo_version" ]]; then
    die "asked for version $version but Cargo.toml says $cargo_version (the binary reports Cargo.toml's)"
fi

# Every target must be installed before anything is built: say which is missing and how to add it.
installed="$(rustc --print sysroot)/lib/rustlib"
for target in "${targets[@]}"; do
    [[ -n "$binary" || -d "$installed/$target/lib" ]] \
        || die "Rust target $target is not installed; add it with: rustup target add $target"
done

zigbuild() {
    local tools="$root/target/release-tools/venv"
    local want="$ZIGLANG $CARGO_ZIGBUILD"
    if [[ ! -x "$tools/bin/cargo-zigbuild" || "$(cat "$tools/.pins" 2>/dev/null)" != "$want" ]]; then
        echo "release.sh: installing $want into $tools" >&2
        python3 -m venv "$tools" || die "python3 -m venv failed"
        # shellcheck disable=SC2086 # two requirement specifiers
        "$tools/bin/pip" install --quiet --disable-pip-version-check $want \
            || die "pip install $want failed (is PyPI reachable?)"
        echo "$want" >"$tools/.pins"
    fi
    # cargo-zigbuild finds zig as `python -m ziglang` from the venv's python.
    PATH="$tools/bin:$PATH" cargo-zigbuild "$@"
}

build() {  # build <target> <cargo args...>: the release binary, with the tool the target needs
    local target="$1"
    shift
    if [[ "$target" == *-musl ]]; then
        zigbuild build --locked --profile dist --target "$target" "$@"
    else
        cargo build --locked --profile dist --target "$target" "$@"
    fi
}

target_dir="${CARGO_TARGET_DIR:-$root/target}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
files=()

for target in "${targets[@]}"; do
    name="greenlight-$version-$target"
    if [[ -n "$binary" ]]; then
        bin="$binary"
    else
        echo "release.sh: building greenlight $version for $target" >&2
        (cd "$root" && build "$target" --bin greenlight)
        bin="$target_dir/$target/dist/greenlight"
    fi
    # A musl build must be static: no dynamic section at all.
    if [[ "$target" == *-musl ]] && command -v readelf >/dev/null && readelf -d "$bin" 2>/dev/null | grep -q NEEDED; then
        die "$bin is dynamically linked; a musl release must be static"
    fi
    # Run it when this machine can (natively, or with qemu-user for another arch): it must say
    # the version it is released as.
    runner=()
    if [[ "$target" != "$host" && "$target" != "${host%%-*}"-unknown-linux-musl ]]; then
        runner=("qemu-${target%%-*}-static")
        command -v "${runner[0]}" >/dev/null || runner=()
    fi
    if [[ "$target" == "$host" || "$target" == "${host%%-*}"-unknown-linux-musl || ${#runner[@]} -gt 0 ]]; then
        said="$("${runner[@]}" "$bin" --version)"
        [[ "$said" == "greenlight $version "* ]] || die "$bin says '$said', not greenlight $version"
    else
        echo "release.sh: cannot run a $target binary here (no qemu-${target%%-*}-static); not checked" >&2
    fi
    mkdir -p "$stage/$name"
    cp "$bin" "$stage/$name/greenlight"
    chmod 0755 "$stage/$name/greenlight"
    cp "$root/README.md" "$root/LICENSE" "$stage/$name/"
    # Reproducible enough: sorted names, fixed owner and mtime.
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2000-01-01 00:00:00Z' \
        -C "$stage" -czf "$out/$name.tar.gz" "$name"
    files+=("$name.tar.gz")

    if $lambda; then
        echo "release.sh: building the cleanup Lambda's bootstrap for $target" >&2
        (cd "$root" && build "$target" --features lambda --bin bootstrap)
        mkdir -p "$stage/lambda-$target"
        cp "$target_dir/$target/dist/bootstrap" "$stage/lambda-$target/bootstrap"
        chmod 0755 "$stage/lambda-$target/bootstrap"
        zip_name="greenlight-lambda-$version-$target.zip"
        rm -f "$out/$zip_name"
        (cd "$stage/lambda-$target" && TZ=UTC touch -t 200001010000 bootstrap && zip -q -X "$out/$zip_name" bootstrap)
        files+=("$zip_name")
    fi
done

# SHA256SUMS covers this run's files plus any other release files already in <out> (so the
# targets can be built in separate runs into one folder).
shopt -s nullglob
all=()
for f in "$out"/greenlight-"$version"-*.tar.gz "$out"/greenlight-lambda-"$version"-*.zip; do
    all+=("$(basename "$f")")
done
(cd "$out" && sha256sum -- "${all[@]}" >SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
echo "release.sh: greenlight $version in $out:" >&2
(cd "$out" && ls -l -- "${files[@]}" SHA256SUMS >&2)
