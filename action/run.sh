#!/usr/bin/env bash
# The action's second step: runs `greenlight --output json <command> …` with the inputs as
# flags, keeps its JSON event stream (and prints it to the log), sets the step's outputs from
# the events, writes a job summary, and exits with greenlight's exit code.
#
# Reads (action.yml's `env:` sets them from the inputs; the test suite sets the same):
#   GREENLIGHT_BIN                   the binary (the install step's `bin` output); empty: greenlight on PATH
#   GREENLIGHT_INPUT_COMMAND         deploy | promote | abort | rollback | status
#   GREENLIGHT_INPUT_CONFIG          --config (empty: greenlight's default, ./greenlight.toml)
#   GREENLIGHT_INPUT_RELEASE         deploy --release
#   GREENLIGHT_INPUT_IMAGE_ID        deploy --image-id
#   GREENLIGHT_INPUT_LAUNCH_TEMPLATE_VERSION  deploy --launch-template-version
#   GREENLIGHT_INPUT_STRATEGY        deploy --strategy (bluegreen | canary)
#   GREENLIGHT_INPUT_NO_WAIT         deploy --no-wait when "true"
#   GREENLIGHT_INPUT_FULL            promote --full when "true"
#   GREENLIGHT_INPUT_TO              rollback --to
#   GREENLIGHT_INPUT_REGION          --region
#   GREENLIGHT_INPUT_WORKING_DIRECTORY  run from here (the config path is relative to it)
#   GITHUB_OUTPUT, GITHUB_STEP_SUMMARY, RUNNER_TEMP (set by the runner)
#
# Outputs (to $GITHUB_OUTPUT):
#   outcome       released | paused | promoted | failed | aborted | rolled_back |
#                 already_rolled_back | nothing_to_abort (from the last such event); for status:
#                 settled | in_progress | paused; with no such event, from the exit code:
#                 ok (0) | bad_input (2) | failed (3) | busy (4) | needs_attention (5) |
#                 interrupted (130, 143) | error (1, other)
#   release       the release the command was about: the one deployed, promoted, aborted or
#                 that failed; for rollback the one now live; for status the one in progress,
#                 else the live one
#   live-release  the release marked live when the command ended (all traffic on it, unless a
#                 release is still in progress, e.g. paused at a gate)
#   slot          the slot (a or b) of the live release
#   exit-code     greenlight's exit code (also this step's)
#   message       the error event's message, when greenlight failed
#   reason-codes  why, for machines: the failed release's (else the error's) reason codes,
#                 comma-separated (e.g. health_timeout,target_unhealthy)
#   events-file   the JSON event stream (one object per line), to upload as an artifact
set -uo pipefail

fail() {
    echo "::error title=greenlight action::$*"
    echo "greenlight action: $*" >&2
    exit 2
}
# A workflow command's data: %, CR and LF escaped (GitHub's rules).
escape_data() {
    local s="${1//%/%25}"
    s="${s//$'\r'/%0D}"
    printf '%s' "${s//$'\n'/%0A}"
}
output() {
    local value="${2//$'\n'/ }"
    if [[ -n "${GITHUB_OUTPUT:-}" ]]; then
        printf '%s=%s\n' "$1" "${value//$'\r'/}" >>"$GITHUB_OUTPUT"
    fi
}
is_true() {
    case "${1:-false}" in
        true | True | TRUE) return 0 ;;
        false | False | FALSE | "") return 1 ;;
        *) fail "$2 must be true or false, not '$1'" ;;
    esac
}

command="${GREENLIGHT_INPUT_COMMAND:-deploy}"
bin="${GREENLIGHT_BIN:-}"
[[ -n "$bin" ]] || bin="$(command -v greenlight)" || fail "greenlight is not on PATH (set the version input)"

if [[ -n "${GREENLIGHT_INPUT_WORKING_DIRECTORY:-}" ]]; then
    cd "$GREENLIGHT_INPUT_WORKING_DIRECTORY" || fail "no working directory $GREENLIGHT_INPUT_WORKING_DIRECTORY"
fi

args=(--output json)
[[ -n "${GREENLIGHT_INPUT_CONFIG:-}" ]] && args+=(--config "$GREENLIGHT_INPUT_CONFIG")
[[ -n "${GREENLIGHT_INPUT_REGION:-}" ]] && args+=(--region "$GREENLIGHT_INPUT_REGION")
args+=("$command")

# Inputs a command does not take are refused: a pipeline that sets image-id on a promote is
# probably not doing what its author thinks.
declare -A takes=(
    [deploy]="release image-id launch-template-version strategy no-wait"
    [promote]="full"
    [abort]=""
    [rollback]="to"
    [status]=""
)
[[ -v "takes[$command]" ]] || fail "command must be deploy, promote, abort, rollback or status, not '$command'"
for input in release image-id launch-template-version strategy no-wait full to; do
    var="GREENLIGHT_INPUT_$(tr 'a-z-' 'A-Z_' <<<"$input")"
    value="${!var:-}"
    if [[ -n "$value" && "$value" != false && " ${takes[$command]} " != *" $input "* ]]; then
        fail "input $input does not apply to $command"
    fi
done

case "$command" in
    deploy)
        [[ -n "${GREENLIGHT_INPUT_RELEASE:-}" ]] || fail "deploy needs the release input"
        args+=(--release "$GREENLIGHT_INPUT_RELEASE")
        [[ -n "${GREENLIGHT_INPUT_IMAGE_ID:-}" ]] && args+=(--image-id "$GREENLIGHT_INPUT_IMAGE_ID")
        [[ -n "${GREENLIGHT_INPUT_LAUNCH_TEMPLATE_VERSION:-}" ]] \
            && args+=(--launch-template-version "$GREENLIGHT_INPUT_LAUNCH_TEMPLATE_VERSION")
        [[ -n "${GREENLIGHT_INPUT_STRATEGY:-}" ]] && args+=(--strategy "$GREENLIGHT_INPUT_STRATEGY")
        is_true "${GREENLIGHT_INPUT_NO_WAIT:-}" no-wait && args+=(--no-wait)
        ;;
    promote) is_true "${GREENLIGHT_INPUT_FULL:-}" full && args+=(--full) ;;
    rollback) [[ -n "${GREENLIGHT_INPUT_TO:-}" ]] && args+=(--to "$GREENLIGHT_INPUT_TO") ;;
esac

events="$(mktemp "${RUNNER_TEMP:-${TMPDIR:-/tmp}}/greenlight-$command.XXXXXX.jsonl")"
echo "greenlight action: $bin ${args[*]}"
started=$(date +%s)
# stdout (the events) goes to the log and the file; stderr (errors, hooks' output) to the log.
"$bin" "${args[@]}" | tee "$events"
code=${PIPESTATUS[0]}
seconds=$(($(date +%s) - started))

# Everything below reads the events with jq; a line that is not JSON (there should be none) is
# skipped rather than failing the step.
summary="$(jq -R -s --arg command "$command" --argjson code "$code" \
    --arg asked "${GREENLIGHT_INPUT_RELEASE:-}" '
    [split("\n")[] | fromjson? // empty]
    | def by_code:
        if $code == 0 then "ok" elif $code == 2 then "bad_input" elif $code == 3 then "failed"
        elif $code == 4 then "busy" elif $code == 5 then "needs_attention"
        elif $code == 130 or $code == 143 then "interrupted" else "error" end;
    (map(select(.event == "deploy_started")) | last) as $started
    | (map(select(.event == "error")) | last) as $error
    | (map(select(.event | IN("released", "paused", "promoted", "release_failed", "aborted",
            "rolled_back", "already_rolled_back", "nothing_to_abort"))) | last) as $result
    | (map(select(.event == null and has("live_release"))) | last) as $status
    | (map(select(.event == "release_failed")) | last) as $failed
    | { command: $command, exit_code: $code,
        service: ($started.service // $status.service // ""),
        outcome: (
            if $result then ({release_failed: "failed"}[$result.event] // $result.event)
            elif $status and $code == 0 then
                (if $status.release == null then "settled"
                 elif $status.release.waiting_for_promote then "paused" else "in_progress" end)
            else by_code end),
        release: (
            if $result and ($result.release // null) then $result.release
            elif $started then $started.release
            elif $command == "deploy" then $asked
            elif $status then ($status.release.release // $status.live_release // "")
            else "" end),
        live_release: (
            if $result == null then ($status.live_release // $started.live_release // "")
            elif $result.event == "released" or ($result.event | IN("rolled_back", "already_rolled_back"))
                then $result.release
            elif $result.live_release then $result.live_release
            else ($started.live_release // "") end),
        slot: (
            if $result == null then ($status.live_slot // $started.live_slot // "")
            elif $result.slot then $result.slot
            else ($started.live_slot // "") end),
        message: ($error.message // ""),
        # Each reason: {code, description, target} (older greenlights: a string).
        reasons: (($failed.reasons // []) | map(if type == "object" then . else {description: .} end)),
        reason_codes: ([($failed.reasons // $error.reasons // [])[] | objects | .code // empty] | unique | join(",")),
        warnings: (map(select(.event == "warning") | .message)),
        plan: ($started.plan // ""),
        paused_at: (map(select(.event == "paused")) | last
            | if . then "step \(.step)/\(.of) (\(.weight)%)" else "" end),
        steps: (map(select(.event == "step") | .action + (if .weight then " \(.weight)%" else "" end)))
      }' "$events")" || summary=""
if [[ -z "$summary" ]]; then
    summary="$(jq -n --arg command "$command" --argjson code "$code" \
        '{command: $command, exit_code: $code, outcome: "error", release: "", live_release: "",
          slot: "", message: "the event stream could not be read", reasons: [], reason_codes: "", warnings: [],
          service: "", plan: "", paused_at: "", steps: []}')"
fi
# One jq for all the values (@sh quotes them for the shell).
outcome="" release="" live_release="" slot="" message="" reason_codes=""
eval "$(jq -r '@sh "outcome=\(.outcome) release=\(.release) live_release=\(.live_release) slot=\(.slot) message=\(.message) reason_codes=\(.reason_codes)"' <<<"$summary")"
output outcome "$outcome"
output release "$release"
output live-release "$live_release"
output slot "$slot"
output exit-code "$code"
output message "$message"
output reason-codes "$reason_codes"
output events-file "$events"

if [[ "$code" -ne 0 ]]; then
    echo "::error title=greenlight $command $outcome (exit $code)::$(escape_data "${message:-greenlight exited $code}")"
fi

if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
    jq -r --arg seconds "$seconds" --arg cmdline "greenlight ${args[*]}" '
        def cell: tostring | gsub("\\|"; "\\|") | gsub("\n"; " ");
        def icon: {released: "✅", paused: "⏸️", promoted: "⏩", settled: "✅", in_progress: "🔄",
            ok: "✅", rolled_back: "↩️", already_rolled_back: "↩️", aborted: "⛔",
            nothing_to_abort: "✅"}[.] // "❌";
        "### greenlight \(.command): \(.outcome | icon) \(.outcome)",
        "",
        "| | |",
        "|---|---|",
        (if .service != "" then "| service | \(.service | cell) |" else empty end),
        "| command | `\($cmdline | cell)` |",
        "| outcome | \(.outcome) |",
        "| release | \(.release | cell) |",
        "| live release | \(.live_release | cell)\(if .slot != "" then " (slot \(.slot))" else "" end) |",
        (if .plan != "" then "| plan | \(.plan | cell) |" else empty end),
        (if .paused_at != "" then "| paused at | \(.paused_at) — run `greenlight promote` (or abort) |" else empty end),
        "| exit code | \(.exit_code) |",
        "| duration | \($seconds) s |",
        (if .message != "" then "| error | \(.message | cell) |" else empty end),
        (if (.reasons | length) > 0 then "", "**Why the release failed** (traffic stayed on, or went back to, \(.live_release)):", "", (.reasons[] | "- \(.description | cell)\(if .code then " (`\(.code)`)" else "" end)") else empty end),
        (if (.warnings | length) > 0 then "", "**Warnings**", "", (.warnings[] | "- \(. | cell)") else empty end),
        (if (.steps | length) > 0 then "", "<details><summary>\(.steps | length) steps</summary>", "", (.steps | join(" → ")), "", "</details>" else empty end),
        ""' <<<"$summary" >>"$GITHUB_STEP_SUMMARY"
fi

exit "$code"
