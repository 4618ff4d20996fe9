#!/usr/bin/env bash
# Makes sure an nginx binary is there and prints its path (one line on stdout). For
# bench/zero-downtime.sh, which runs nginx under a private prefix: no system nginx is wanted.
#
#   scripts/nginx.sh            # /usr/sbin/nginx
#
# When `nginx` is neither on PATH nor in /usr/sbin, installs Debian's `nginx` package (bookworm:
# the core server; `nginx-light` there is the same binary plus the echo module) with
# --no-install-recommends, as root. The package's postinst would start a system nginx on port
# 80: a policy-rc.d that denies service starts is put in place for the install (unless one is
# there already), and a system nginx that got started all the same is stopped. Idempotent; prints
# nothing else when nginx is already installed.
set -euo pipefail

find_nginx() {
    local bin
    bin="$(command -v nginx 2>/dev/null || true)"
    if [[ -z "$bin" && -x /usr/sbin/nginx ]]; then
        bin=/usr/sbin/nginx
    fi
    [[ -n "$bin" ]] && echo "$bin"
}

if bin="$(find_nginx)"; then
    echo "$bin"
    exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
    echo "nginx.sh: nginx is not installed and we are not root: apt-get install nginx" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null; then
    echo "nginx.sh: nginx is not installed and there is no apt-get" >&2
    exit 1
fi

echo "nginx.sh: installing nginx (Debian package)" >&2
policy=/usr/sbin/policy-rc.d
ours=""
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\n# scripts/nginx.sh: no service starts during its install\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    ours=1
fi
cleanup() { if [[ -n "$ours" ]]; then rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -qq --no-install-recommends nginx >&2; }
if ! install; then
    # A stale package list (a fresh machine has none): update once, then try again.
    apt-get update -qq >&2
    install
fi

bin="$(find_nginx)" || {
    echo "nginx.sh: nginx installed but no binary found" >&2
    exit 1
}

# Should the service have started anyway (no policy-rc.d honoured, systemd), stop it: nothing
# of ours listens on port 80.
if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    systemctl disable --now nginx >/dev/null 2>&1 || true
fi
if [[ -s /run/nginx.pid ]] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
    "$bin" -s quit >/dev/null 2>&1 || true
fi

echo "$bin"
