#!/usr/bin/env bash
# Zero downtime, counted: real HTTP backends (`zd backend`) behind a project-local nginx, a
# keep-alive load (`zd load`, 16 connections, at least 100,000 requests) through it, and a
# release scenario driven while the load runs. Prints the load generator's summary; exits
# non-zero when any request failed or any backend served a request after it was stopped.
#
#   bench/zero-downtime.sh                     # greenlight drives: deploy v2 (bluegreen),
#                                              # deploy v3 (canary), rollback, cleanup
#   bench/zero-downtime.sh --kill-mid-canary   # canary v3, kill -9 one v3 backend at its first
#                                              # step: the deploy must fail (exit 3), traffic
#                                              # back on v2, no failure after the abort
#   bench/zero-downtime.sh --manual            # no greenlight: the script rewrites the include
#                                              # and reloads nginx itself (flip, three canary
#                                              # weights, flip back), to prove the tooling
# Options:
#   --greenlight PATH      greenlight binary (default $CARGO_TARGET_DIR/debug/greenlight, else
#                          target/debug/greenlight)
#   --no-build             do not run `cargo build --bin greenlight --example zd` first
#   --connections N        load connections (16)
#   --min-requests N       the load goes on until at least N requests were sent (100000)
#   --grace DURATION       how long a stopped backend keeps serving (3s)
#   --keep                 keep the temp dir after a passing run (a failing one is always kept)
#
# Everything lives in one temp dir ($TMPDIR/zd.XXXXXX): nginx.conf, greenlight.toml, the include
# greenlight/web.conf, logs/ (nginx's error and access logs, each backend's stderr, greenlight's
# output), reports/ (each backend's JSON report), marks (one "<unix_ms> <label>" line before and
# after each step) and load.json (the load generator's results, with p50/p99 per window between
# marks). nginx comes from Debian (scripts/nginx.sh) and runs under that prefix in the
# foreground of this script, on a free loopback port; nothing listens on port 80.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
greenlight="$target/debug/greenlight"
zd="$target/debug/examples/zd"
mode=greenlight
build=1
connections=16
min_requests=100000
grace=3s
keep=0

die() {
    echo "zero-downtime.sh: $*" >&2
    exit 1
}
while (($#)); do
    case "$1" in
    --manual) mode=manual ;;
    --kill-mid-canary) mode=kill ;;
    --greenlight) greenlight="$2"; shift ;;
    --no-build) build=0 ;;
    --connections) connections="$2"; shift ;;
    --min-requests) min_requests="$2"; shift ;;
    --grace) grace="$2"; shift ;;
    --keep) keep=1 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

if ((build)); then
    if [[ "$mode" == manual ]]; then
        (cd "$root" && cargo build --example zd)
    else
        (cd "$root" && cargo build --bin greenlight --example zd)
    fi
fi
[[ -x "$zd" ]] || die "$zd: not built (cargo build --example zd)"
if [[ "$mode" != manual ]]; then
    [[ -x "$greenlight" ]] || die "$greenlight: not built (or pass --greenlight PATH)"
fi
nginx="$(bash "$root/scripts/nginx.sh")"
command -v python3 >/dev/null || die "python3 is needed for the final checks"

dir="$(mktemp -d "${TMPDIR:-/tmp}/zd.XXXXXX")"
mkdir -p "$dir/greenlight" "$dir/logs" "$dir/reports" "$dir/tmp"
include="$dir/greenlight/web.conf"
marks="$dir/marks"
: >"$marks"
echo "zero-downtime.sh: $mode mode in $dir" >&2

# --- processes: each one we start is remembered by PID and ended by PID -----------------------

declare -A pids=()
nginx_pid=""
load_pid=""
deploy_pid=""
passed=0
finish() {
    local name
    for name in "${!pids[@]}"; do kill -TERM "${pids[$name]}" 2>/dev/null || true; done
    [[ -n "$deploy_pid" ]] && kill -TERM "$deploy_pid" 2>/dev/null || true
    [[ -n "$load_pid" ]] && kill -TERM "$load_pid" 2>/dev/null || true
    [[ -n "$nginx_pid" ]] && kill -QUIT "$nginx_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    if ((passed && !keep)); then
        rm -rf "$dir"
    else
        echo "zero-downtime.sh: files kept in $dir" >&2
    fi
}
trap finish EXIT

now_ms() { date +%s%3N; }
mark() {
    echo "$(now_ms) $1" >>"$marks"
    echo "[$(date +%T.%3N)] $1" >&2
}

# Free loopback ports below the ephemeral range (no clash with outgoing connections), not bound
# by anything now.
used_ports() {
    local _ local_address _rest
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | while read -r _ local_address _rest; do
        [[ "$local_address" == *:* ]] && echo $((16#${local_address##*:}))
    done
}
pick_ports() {
    local n="$1" used port picked=" "
    used=" $(used_ports | sort -u | tr '\n' ' ') "
    while ((n > 0)); do
        port=$((20000 + RANDOM % 12000))
        [[ "$used" == *" $port "* || "$picked" == *" $port "* ]] && continue
        picked+="$port "
        n=$((n - 1))
    done
    echo $picked
}
wait_port() {
    local port="$1" i
    for ((i = 0; i < 200; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    die "nothing listens on 127.0.0.1:$port after 10 s"
}

read -r port p1 p2 p3 p4 <<<"$(pick_ports 5)"
blue=("127.0.0.1:$p1" "127.0.0.1:$p2")
green=("127.0.0.1:$p3" "127.0.0.1:$p4")

start_backend() { # name port
    "$zd" backend --listen "127.0.0.1:$2" --name "$1" --report "$dir/reports/$1.json" \
        --grace "$grace" 2>"$dir/logs/$1.log" &
    pids[$1]=$!
}
start_backends() { # release ports...
    local release="$1" suffix=a port
    shift
    for port in "$@"; do
        start_backend "$release-$suffix" "$port"
        suffix=b
    done
    for port in "$@"; do wait_port "$port"; done
}
# SIGTERM each, then wait until each has drained (--grace) and written its report.
stop_backends() { # names...
    local name
    for name in "$@"; do kill -TERM "${pids[$name]}"; done
    for name in "$@"; do
        wait "${pids[$name]}" || die "backend $name exited with $?"
        unset "pids[$name]"
    done
}

# --- nginx -------------------------------------------------------------------------------------

# The include greenlight writes on every routing change, in the same shape: both slots'
# upstreams, the split of requests between them, and the access log format. $1 is blue's share
# in percent (100: all blue, 0: all green). Written to a temp file and renamed, as greenlight
# does.
write_include() {
    local blue_weight="$1" server
    {
        echo "# bench/zero-downtime.sh: blue ${blue_weight}%, green $((100 - blue_weight))%"
        echo "upstream greenlight_web_blue {"
        for server in "${blue[@]}"; do echo "    server $server;"; done
        echo "    keepalive 32;"
        echo "}"
        echo "upstream greenlight_web_green {"
        for server in "${green[@]}"; do echo "    server $server;"; done
        echo "    keepalive 32;"
        echo "}"
        echo 'split_clients "${request_id}" $greenlight_web {'
        if ((blue_weight >= 100)); then
            echo "    * greenlight_web_blue;"
        elif ((blue_weight <= 0)); then
            echo "    * greenlight_web_green;"
        else
            echo "    ${blue_weight}% greenlight_web_blue;"
            echo "    * greenlight_web_green;"
        fi
        echo "}"
        # shellcheck disable=SC2016 # nginx variables, not shell ones
        echo 'log_format greenlight_web escape=json '\''{"time":"$time_iso8601","msec":"$msec","status":"$status","upstream":"$greenlight_web","upstream_addr":"$upstream_addr","upstream_status":"$upstream_status","request_time":"$request_time","upstream_response_time":"$upstream_response_time"}'\'';'
    } >"$include.tmp"
    mv "$include.tmp" "$include"
}

user_line=""
[[ "$(id -u)" == 0 ]] && user_line="user root;"
cat >"$dir/nginx.conf" <<EOF
# bench/zero-downtime.sh: a private nginx under $dir
$user_line
daemon off;
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/logs/error.log notice;
events {
    worker_connections 1024;
}
http {
    client_body_temp_path $dir/tmp/client_body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    access_log off;
    include $include;
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://\$greenlight_web;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_502;
            access_log $dir/logs/web.access.log greenlight_web;
        }
    }
}
EOF
nginx_cmd=("$nginx" -p "$dir" -c "$dir/nginx.conf")

# nginx's worker processes, one "PID old|new" line each: old for a worker shutting down after
# a reload. Builtins only (no fork per process): this is polled every 20 ms during a reload.
nginx_workers() {
    local children="" proc stat rest ppid title
    if [[ -r "/proc/$nginx_pid/task/$nginx_pid/children" ]]; then
        read -r children <"/proc/$nginx_pid/task/$nginx_pid/children" || true
    else
        for proc in /proc/[0-9]*; do
            read -r stat <"$proc/stat" 2>/dev/null || continue
            rest="${stat##*) }"
            read -r _ ppid _ <<<"$rest"
            [[ "$ppid" == "$nginx_pid" ]] && children+="${proc#/proc/} "
        done
    fi
    for proc in $children; do
        title=""
        IFS= read -r -d '' title <"/proc/$proc/cmdline" 2>/dev/null || true
        case "$title" in
        *"worker process is shutting down"*) echo "$proc old" ;;
        *"worker process"*) echo "$proc new" ;;
        esac
    done
    return 0
}
# Test the config, reload, and wait until only workers started by the reload are left.
reload() {
    local before now pid state i settled
    "${nginx_cmd[@]}" -t -q || die "nginx -t failed"
    before=" $(nginx_workers | cut -d' ' -f1 | tr '\n' ' ') "
    "${nginx_cmd[@]}" -s reload 2>>"$dir/logs/error.log"
    for ((i = 0; i < 300; i++)); do
        now="$(nginx_workers)"
        settled=1
        [[ -n "$now" ]] || settled=0
        while read -r pid state; do
            [[ -z "$pid" ]] && continue
            [[ "$state" == old || "$before" == *" $pid "* ]] && settled=0
        done <<<"$now"
        ((settled)) && return 0
        sleep 0.02
    done
    die "nginx reload did not settle in 6 s"
}


# --- greenlight --------------------------------------------------------------------------------

quote_list() { # JSON-ish TOML array of strings
    local out="" item
    for item in "$@"; do out+="${out:+, }\"$item\""; done
    echo "[$out]"
}
cat >"$dir/greenlight.toml" <<EOF
service = "web"
strategy = "bluegreen"

[router]
kind = "nginx"
include = "$include"
test = $(quote_list "${nginx_cmd[@]}" -t -q)
reload = $(quote_list "${nginx_cmd[@]}" -s reload)
access_log = "$dir/logs/web.access.log"
backends = [$(quote_list "${blue[@]}"), $(quote_list "${green[@]}")]
# Old nginx workers finish the requests they had when a slot's weight went to 0: cleanup waits
# this long after that before it lets the slot's release go (and this script stops it).
drain = "2s"

[router.health_check]
path = "/healthz"
interval = "1s"
timeout = "1s"
healthy_threshold = 2
unhealthy_threshold = 2

# A release that loses a backend holds its weight until it is fully healthy again, at most
# this long, then fails (the kill variant).
[health]
timeout = "8s"
interval = "1s"

[retention]
keep_warm = "4s"
keep_failed = "1s"

[canary]
steps = [ { weight = 10, pause = "3s" }, { weight = 50, pause = "3s" }, { weight = 100 } ]

[analysis]
max_5xx_rate = 0.01
min_requests = 20
EOF

# The first include: the script's own in manual mode; greenlight's (all to slot a, blue)
# otherwise, as a user starts.
if [[ "$mode" == manual ]]; then
    write_include 100
else
    "$greenlight" nginx-include --config "$dir/greenlight.toml" >"$include"
fi
"${nginx_cmd[@]}" -t -q || die "nginx -t failed on the initial config"

gl_n=0
# Runs one greenlight command (with --config), its output to the terminal and a log; returns its
# exit code.
gl() {
    local statuses
    gl_n=$((gl_n + 1))
    echo "+ greenlight $*" >&2
    set +e
    "$greenlight" "$@" --config "$dir/greenlight.toml" 2>&1 |
        tee "$dir/logs/greenlight-$gl_n-$1.log" | sed 's/^/    /' >&2
    statuses=("${PIPESTATUS[@]}")
    set -e
    return "${statuses[0]}"
}
gl_ok() {
    gl "$@" || die "greenlight $* exited with $?"
}
# Runs cleanup until the fleet of release $1 is gone: only then may its backends stop (cleanup
# lets a release go once it is past keep_warm or keep_failed and nginx's drain).
cleanup_until_gone() {
    local fleet="web-$1" i
    for ((i = 0; i < 60; i++)); do
        gl_ok cleanup
        "$greenlight" status --config "$dir/greenlight.toml" --output json |
            grep -q "\"$fleet\"" || return 0
        sleep 1
    done
    die "cleanup never removed $fleet"
}

# 2. v2 on green, a blue/green deploy; once cleanup has let v1 go, v1 stops and v3 starts on
# blue's ports. The first half of both greenlight scenarios.
v2_live_then_v3_up() {
    start_backends v2 "$p3" "$p4"
    mark deploy-v2
    gl_ok deploy --release v2 --strategy bluegreen
    mark deploy-v2-done
    cleanup_until_gone initial-a
    mark stop-v1
    stop_backends v1-a v1-b
    start_backends v3 "$p1" "$p2"
}

# --- the scenario ------------------------------------------------------------------------------

started="$(date +%s)"
# 1. v1 on blue, nginx, the load.
start_backends v1 "$p1" "$p2"
"${nginx_cmd[@]}" 2>>"$dir/logs/error.log" &
nginx_pid=$!
wait_port "$port"
abort_args=()
[[ "$mode" == kill ]] && abort_args=(--abort-mark abort)
"$zd" load --url "http://127.0.0.1:$port/" --connections "$connections" \
    --stop-file "$dir/stop" --min-requests "$min_requests" --out "$dir/load.json" \
    --marks "$marks" "${abort_args[@]}" >"$dir/load.out" 2>"$dir/logs/load.log" &
load_pid=$!
mark load-start
sleep 2

deploy_rc=""
case "$mode" in
manual)
    # The flip, three canary weights and the flip back, by hand, 2.5 s apart.
    start_backends v2 "$p3" "$p4"
    mark flip-to-green
    write_include 0
    reload
    mark flipped
    sleep 2.5
    mark stop-v1
    stop_backends v1-a v1-b
    start_backends v3 "$p1" "$p2"
    mark v3-up
    sleep 1
    for weight in 10 50 100; do
        mark "blue-$weight"
        write_include "$weight"
        reload
        mark "blue-$weight-live"
        sleep 2.5
    done
    mark flip-back-to-green
    write_include 0
    reload
    mark flipped-back
    sleep 2.5
    mark stop-v3
    stop_backends v3-a v3-b
    ;;
greenlight)
    v2_live_then_v3_up
    # 3. v3 as a canary (3 steps).
    mark canary-v3
    gl_ok deploy --release v3 --strategy canary
    mark canary-v3-done
    # 4. Back to v2.
    mark rollback
    gl_ok rollback
    mark rollback-done
    # 5. Cleanup, then v3 stops.
    mark cleanup
    cleanup_until_gone v3
    mark cleanup-done
    mark stop-v3
    stop_backends v3-a v3-b
    ;;
kill)
    v2_live_then_v3_up
    # A canary deploy in the background; at its first live step, kill -9 one v3 backend.
    events="$dir/logs/canary-v3.jsonl"
    mark canary-v3
    "$greenlight" deploy --release v3 --strategy canary --output json \
        --config "$dir/greenlight.toml" >"$events" 2>"$dir/logs/canary-v3.log" &
    deploy_pid=$!
    for ((i = 0; ; i++)); do
        grep -qE '"event": *"(pause|gate|analysis)"' "$events" && break
        kill -0 "$deploy_pid" 2>/dev/null || die "the canary deploy ended before its first step"
        ((i < 1200)) || die "no canary step live after 2 minutes"
        sleep 0.1
    done
    mark first-step-live
    kill -KILL "${pids[v3-b]}"
    wait "${pids[v3-b]}" 2>/dev/null || true
    unset "pids[v3-b]"
    mark killed-v3-b
    deploy_rc=0
    wait "$deploy_pid" || deploy_rc=$?
    deploy_pid=""
    mark canary-v3-done
    sed 's/^/    /' "$events" >&2
    # The abort point: the time of the first event saying traffic is back on the live release
    # (release_failed, after the route back; or aborted), else the deploy's end.
    aborted_at="$(grep -m1 -E '"event": *"(release_failed|aborted)"' "$events" |
        sed -n 's/.*"time": *"\([^"]*\)".*/\1/p')"
    abort_ms=""
    [[ -n "$aborted_at" ]] && abort_ms="$(date -d "$aborted_at" +%s%3N 2>/dev/null || true)"
    [[ -n "$abort_ms" ]] || abort_ms="$(now_ms)"
    echo "$abort_ms abort" >>"$marks"
    # Traffic must be all on v2 from a second after the abort (old nginx workers finish theirs).
    echo "$((abort_ms + 1000)) abort+1s" >>"$marks"
    cleanup_until_gone v3
    mark stop-v3
    stop_backends v3-a
    ;;
esac

# 6. A few more seconds of load, then the stop (the load goes on to --min-requests).
sleep 3
mark stop
touch "$dir/stop"
load_rc=0
wait "$load_pid" || load_rc=$?
load_pid=""
kill -QUIT "$nginx_pid" 2>/dev/null || true
wait "$nginx_pid" 2>/dev/null || true
nginx_pid=""
# The backends still up (v2) stop too, for their reports.
((${#pids[@]} == 0)) || stop_backends "${!pids[@]}"
elapsed=$(($(date +%s) - started))

cat "$dir/load.out"
echo "scenario: $mode, ${elapsed} s; load exit $load_rc${deploy_rc:+; canary deploy exit $deploy_rc}"

# --- the verdict -------------------------------------------------------------------------------

verdict=0
python3 - "$dir" "$mode" "${deploy_rc:-}" <<'EOF' || verdict=$?
import json, pathlib, sys

dir, mode, deploy_rc = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
load = json.loads((dir / "load.json").read_text())
bad = []
print("backend  served  (load saw)  after its stop  health checks after its stop")
for path in sorted((dir / "reports").glob("*.json")):
    r = json.loads(path.read_text())
    seen = load["backends"].get(r["name"], 0)
    print(f"  {r['name']:<6} {r['served']:>7}  ({seen:>7})  {r['served_after_stop']:>14}"
          f"  {r['healthz_after_stop']:>28}")
    if r["served_after_stop"]:
        bad.append(f"{r['name']} served {r['served_after_stop']} requests after its stop")
if mode == "kill":
    if deploy_rc != "3":
        bad.append(f"the canary deploy exited {deploy_rc}, not 3 (release failed)")
    failed_after = load.get("failed_after_abort")
    print(f"failed before the abort: {load['failed'] - (failed_after or 0)} (not counted); "
          f"after: {failed_after}")
    if failed_after != 0:
        bad.append(f"{failed_after} requests failed after the abort")
    settled = next(m["from_ms"] for m in load["windows"] if m["mark"] == "abort+1s")
    late = {}
    for w in load["windows"]:
        if w["from_ms"] >= settled:
            for name, n in w["backends"].items():
                if not name.startswith("v2-"):
                    late[name] = late.get(name, 0) + n
    if late:
        bad.append(f"traffic not back on v2 a second after the abort: {late}")
elif load["failed"]:
    bad.append(f"{load['failed']} requests failed: {load['failed_by_cause']}")
if load["total"] < 100000 and mode != "kill":
    print(f"note: only {load['total']} requests (under 100,000)")
for b in bad:
    print("FAIL:", b)
print("PASS" if not bad else "FAIL")
sys.exit(1 if bad else 0)
EOF
((load_rc == 0)) || verdict=1
((verdict == 0)) && passed=1
# The last line, for a pipeline to read: the load generator's `N requests, F failed`.
tail -n 1 "$dir/load.out"
exit "$verdict"
