#!/usr/bin/env bash
# The README's demo: a blue/green release, a rollback, then a canary release of a sample service,
# against the local AWS emulator.
#
#   localstack/demo.sh
#
# From a fresh clone it installs the emulator's venv, starts the emulator on a free port (it
# stops when this script exits, however it exits), seeds a sample service `checkout`, scripts
# the green group's target health (initial for 3 health reads, then healthy, so progress is
# visible), builds greenlight and runs: validate, deploy, status, rollback, status; then switches
# the config to a canary and runs deploy --no-wait (it stops at a manual gate), status, promote;
# then a canary with an after_step hook and a 5xx analysis whose green serves errors during its
# pause (PutMetricData): it is stopped at the gate, traffic back, exit 3 (expected), status.
# Exits non-zero as soon as a step fails (or the verification canary is not stopped).
#
# Environment:
#   GREENLIGHT_BIN   run this greenlight binary instead of building target/debug/greenlight
#   DEMO_DIR         where to write greenlight.toml, seed.json and emulator.log
#                    (default localstack/demo, which git ignores)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
demo_dir="${DEMO_DIR:-$here/demo}"
python="$here/.venv/bin/python"
config="$demo_dir/greenlight.toml"

if [[ -t 1 ]]; then bold=$'\e[1m' red=$'\e[31m' off=$'\e[0m'; else bold='' red='' off=''; fi
current_step="starting"
step() {
    current_step="$*"
    printf '\n%s==> %s%s\n' "$bold" "$*" "$off"
}
show() {  # print a command, then run it
    printf '%s$ %s%s\n' "$bold" "$*" "$off"
    "$@"
}

emulator_pid=""
cleanup() {
    local status=$?
    if [[ -n "$emulator_pid" ]]; then
        kill "$emulator_pid" 2>/dev/null || true
        wait "$emulator_pid" 2>/dev/null || true
    fi
    if ((status != 0)); then
        printf '\n%sdemo failed at: %s (exit status %d)%s\n' "$red$bold" "$current_step" "$status" "$off" >&2
        [[ -s "$demo_dir/emulator.log" ]] && echo "emulator log: $demo_dir/emulator.log" >&2
    fi
    exit "$status"
}
trap cleanup EXIT

step "Install the emulator (localstack/.venv)"
"$here/install.sh"

step "Start the AWS emulator"
mkdir -p "$demo_dir"
# A coprocess gives us the emulator's stdin and stdout. We keep its stdin open and it runs with
# --exit-on-stdin-eof, so even if this script is killed outright the emulator goes with it.
coproc EMULATOR { exec "$python" "$here/emulator.py" --port 0 --exit-on-stdin-eof --report-not-in-use 2>"$demo_dir/emulator.log"; }
# shellcheck disable=SC2153 # EMULATOR_PID is set by coproc
emulator_pid=$EMULATOR_PID
ready=""
IFS= read -r -t 60 ready <&"${EMULATOR[0]}" || true
[[ "$ready" == GREENLIGHT_EMULATOR_READY\ http://* ]] || { echo "emulator did not start: '$ready'" >&2; exit 1; }
endpoint="${ready#GREENLIGHT_EMULATOR_READY }"
echo "emulator: $endpoint (pid $emulator_pid)"

# Only the emulator: dummy credentials, never a real profile.
export AWS_ENDPOINT_URL="$endpoint"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN

step "Seed the sample service 'checkout' (ALB, two target groups, blue ASG)"
"$python" "$here/seed.py" --service checkout --config "$config" >"$demo_dir/seed.json"
"$python" - "$demo_dir/seed.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"blue group     {s['blue_asg']} behind {s['target_groups'][0].split(':')[-1]}")
print(f"listener       {s['listener_arn'].split(':')[-1]}")
print(f"images         blue {s['images'][0]}, next release {s['images'][1]}")
EOF
echo "config:        $config"
next_image="$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["images"][1])' "$demo_dir/seed.json")"
third_image="$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["images"][2])' "$demo_dir/seed.json")"

step "Script the new releases' target health: initial for 3 reads, then healthy"
for release in v2 v3 v4; do
"$python" - "$endpoint" "checkout-$release" <<'EOF'
import json, sys, urllib.request
rule = {
    "asg_name": sys.argv[2],
    "sequence": [
        {"state": "initial", "reason": "Elb.RegistrationInProgress",
         "description": "Target registration is in progress", "observations": 3},
        {"state": "healthy"},
    ],
}
req = urllib.request.Request(sys.argv[1] + "/_greenlight/target-health",
                             data=json.dumps(rule).encode(), method="POST",
                             headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req) as resp:
    print(json.load(resp)["status"], f"- rule for asg_name={sys.argv[2]}")
EOF
done

if [[ -n "${GREENLIGHT_BIN:-}" ]]; then
    greenlight="$GREENLIGHT_BIN"
else
    step "Build greenlight (cargo build -q)"
    (cd "$root" && show cargo build -q)
    greenlight="${CARGO_TARGET_DIR:-$root/target}/debug/greenlight"
fi
[[ -x "$greenlight" ]] || { echo "no greenlight binary at $greenlight" >&2; exit 1; }

step "greenlight validate"
show "$greenlight" --config "$config" validate

step "greenlight deploy v2 (image $next_image)"
show "$greenlight" --config "$config" deploy --release v2 --image-id "$next_image"

step "greenlight status (after deploy)"
show "$greenlight" --config "$config" status

step "greenlight rollback"
show "$greenlight" --config "$config" rollback

step "greenlight status (after rollback)"
show "$greenlight" --config "$config" status

step "Switch the config to a canary: 10% for 2s, then 50% until promoted, then 100%"
canary_config="$demo_dir/greenlight-canary.toml"
{
    echo 'strategy = "canary"'
    cat "$config"
    printf '\n[canary]\nsteps = [{ weight = 10, pause = "2s" }, { weight = 50, pause = "manual" }, { weight = 100 }]\n'
} >"$canary_config"
tail -n 2 "$canary_config"

step "greenlight deploy v3 --no-wait (returns at the manual gate)"
show "$greenlight" --config "$canary_config" deploy --release v3 --image-id "$third_image" --no-wait

step "greenlight status (mid-canary)"
show "$greenlight" --config "$canary_config" status

step "greenlight promote (no deploy is running: promote carries the release on itself)"
show "$greenlight" --config "$canary_config" promote

step "greenlight status (after promote)"
show "$greenlight" --config "$canary_config" status

step "Verification: a canary of v4 with an after_step hook and a 5xx analysis"
verify_config="$demo_dir/greenlight-verify.toml"
{
    echo 'strategy = "canary"'
    cat "$config"
    printf '\n[canary]\nsteps = [{ weight = 20, pause = "5s" }, { weight = 100 }]\n'
    printf '\n[hooks]\nafter_step = ["echo checking $GREENLIGHT_RELEASE at $GREENLIGHT_WEIGHT%%"]\n'
    printf '\n[analysis]\nmax_5xx_rate = 0.01\nmax_5xx_ratio_vs_blue = 2.0\nmin_requests = 100\n'
} >"$verify_config"
tail -n 9 "$verify_config"

step "greenlight deploy v4 (green serves 5xx during its pause: stopped at the gate, exit 3)"
printf '%s$ %s%s\n' "$bold" "$greenlight --config $verify_config deploy --release v4 --image-id $next_image" "$off"
"$greenlight" --config "$verify_config" deploy --release v4 --image-id "$next_image" &
deploy_pid=$!
# Once v4 takes its 20%, its target group serves 300 requests with 60 5xx, blue's 900 with 2.
"$python" - "$demo_dir/seed.json" <<'EOF'
import json, sys, time
from datetime import datetime, timezone
import boto3
seed = json.load(open(sys.argv[1]))
asg, cw = boto3.client("autoscaling"), boto3.client("cloudwatch")
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["checkout-v4"])["AutoScalingGroups"]
    tags = {t["Key"]: t["Value"] for g in groups for t in g.get("Tags", [])}
    if tags.get("greenlight:phase") == "releasing" and tags.get("greenlight:step") == "1":
        break
    time.sleep(0.2)
else:
    sys.exit("checkout-v4 never reached step 1")
time.sleep(1)
lb = seed["load_balancer_arn"].split(":loadbalancer/")[1]
green_tg = next(tg for tg in seed["target_groups"] if tg in groups[0]["TargetGroupARNs"])
blue_tg = next(tg for tg in seed["target_groups"] if tg != green_tg)
now = datetime.now(timezone.utc)
for tg, requests, errors in ((green_tg, 300, 60), (blue_tg, 900, 2)):
    dims = [{"Name": "TargetGroup", "Value": "targetgroup/" + tg.split(":targetgroup/")[1]},
            {"Name": "LoadBalancer", "Value": lb}]
    cw.put_metric_data(Namespace="AWS/ApplicationELB", MetricData=[
        {"MetricName": "RequestCount", "Dimensions": dims, "Timestamp": now,
         "Value": requests, "Unit": "Count"},
        {"MetricName": "HTTPCode_Target_5XX_Count", "Dimensions": dims, "Timestamp": now,
         "Value": errors, "Unit": "Count"},
    ])
EOF
deploy_status=0
wait "$deploy_pid" || deploy_status=$?
[[ "$deploy_status" == 3 ]] || { echo "expected exit 3 (release failed), got $deploy_status" >&2; exit 1; }
echo "(exit $deploy_status: the release failed and traffic is back on v3, as expected)"

step "greenlight status (after the failed canary)"
show "$greenlight" --config "$verify_config" status

sleep 2  # v4 failed a moment ago: let it be older than --keep-failed 1s
step "greenlight cleanup --dry-run --keep-failed 1s (what a scheduled cleanup would retire)"
show "$greenlight" --config "$verify_config" cleanup --dry-run --keep-failed 1s

step "greenlight cleanup --keep-failed 1s (the failed v4 fleet goes; live and warm ones stay)"
show "$greenlight" --config "$verify_config" cleanup --keep-failed 1s

current_step="done"
printf '\n%sdemo finished%s\n' "$bold" "$off"
