#!/usr/bin/env python3
"""Benchmark `greenlight cleanup --all --dry-run` over many services (issue 8). Not a test.

    localstack/.venv/bin/python bench/cleanup_bench.py [--sizes 100,300,1000] [--runs 5]
        [--binary target/debug/greenlight] [--out bench]

Usually run through `bench/cleanup-all.sh`. For each size N: starts greenlight's emulator
(localstack/emulator.py --port 0 --exit-on-stdin-eof, as tests/suite/harness.rs does), seeds N
services with bench/seed_many.py (5% of them due: an expired warm fleet), runs the binary once
to warm up and then --runs times, timing each run (wall clock, process start to exit) and
counting the AWS calls it made from the emulator's request log (GET /_greenlight/requests,
only requests whose user agent says app/greenlight). Checks every run: exit 0, the final
`cleanup_done` event lists N services, each due service is `done` with an `act` decision on its
expired warm fleet, every other one `nothing_due`, and no call other than Describe*/Get*/List*.

Writes <out>/results-cleanup.json and <out>/RESULTS-cleanup.md. Exit 1 if a check failed.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / "localstack/.venv/bin/python"
READ_PREFIXES = ("Describe", "Get", "List")
# DescribeAutoScalingGroups MaxRecords greenlight asks for (src/aws/autoscaling.rs).
ASG_PAGE = 100


class Emulator:
    """localstack/emulator.py on a free port; stops when its stdin closes."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [str(VENV_PYTHON), str(ROOT / "localstack/emulator.py"), "--port", "0",
             "--exit-on-stdin-eof"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("GREENLIGHT_EMULATOR_READY "):
                self.endpoint = line.split(" ", 1)[1].strip()
                break
        else:
            raise SystemExit("cleanup_bench.py: the emulator exited before it was ready")
        # Keep draining stdout so the emulator never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def requests_since(self, mark: int) -> tuple[list[dict[str, Any]], int]:
        url = f"{self.endpoint}/_greenlight/requests?since={mark}"
        with urllib.request.urlopen(url, timeout=60) as response:
            log = json.load(response)
        return log["requests"], log["total"]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def aws_env(endpoint: str) -> dict[str, str]:
    """What harness.rs `aws_env()` sets, and nothing from the developer's own AWS setup."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }


def check_output(stdout: str, n: int, due: set[str]) -> list[str]:
    """What is wrong with one run's JSON events (empty: all good)."""
    problems = []
    events = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    if not events or events[-1].get("event") != "cleanup_done":
        return ["the last event is not cleanup_done"]
    done = events[-1]
    services = {s["service"]: s for s in done["services"]}
    if len(done["services"]) != n or len(services) != n:
        problems.append(f"cleanup_done lists {len(done['services'])} services, expected {n}")
    if done.get("dry_run") is not True:
        problems.append("cleanup_done says dry_run is not true")
    for name, s in services.items():
        acts = [i for i in s.get("items", []) if i.get("decision") == "act"]
        if name in due:
            ok = (
                s["outcome"] == "done"
                and any(a.get("action") == "scale_down" and a.get("fleet") == f"{name}-r1"
                        for a in acts)
                and not s.get("applied")
            )
            if not ok:
                problems.append(f"due service {name}: {json.dumps(s)[:300]}")
        elif s["outcome"] != "nothing_due" or acts:
            problems.append(f"service {name} has nothing due: {json.dumps(s)[:300]}")
    missing = due - set(services)
    if missing:
        problems.append(f"due services missing: {sorted(missing)[:5]}")
    streamed = {e["service"] for e in events if e.get("event") == "cleanup_item"
                and e.get("decision") == "act"}
    if streamed != due:
        problems.append(f"act events name {len(streamed)} services, expected the {len(due)} due")
    return problems[:20]


def bench_size(binary: Path, n: int, runs: int) -> dict[str, Any]:
    emulator = Emulator()
    try:
        env = aws_env(emulator.endpoint)
        seeded = subprocess.run(
            [str(VENV_PYTHON), str(ROOT / "bench/seed_many.py"), "--services", str(n)],
            env=env, check=True, capture_output=True, text=True,
        )
        seed = json.loads(seeded.stdout)
        due = set(seed["due"])
        print(f"  N={n}: seeded {seed['fleets_total']} fleets, {len(due)} due, "
              f"in {seed['seconds']} s", file=sys.stderr)
        walls, per_run_calls, problems = [], [], []
        for r in range(runs + 1):  # run 0 warms up (page cache, emulator); not timed
            _, mark = emulator.requests_since(0)
            t0 = time.perf_counter()
            out = subprocess.run(
                [str(binary), "cleanup", "--all", "--dry-run", "--output", "json"],
                env=env, capture_output=True, text=True, timeout=600,
            )
            wall = time.perf_counter() - t0
            requests, _ = emulator.requests_since(mark)
            calls = collections.Counter(
                f"{q['service']}:{q['action']}" for q in requests if q.get("app") == "greenlight"
            )
            others = [q for q in requests if q.get("app") != "greenlight"]
            if out.returncode != 0:
                problems.append(f"run {r}: exit {out.returncode}: {out.stderr[-500:]}")
            if others:
                problems.append(f"run {r}: {len(others)} requests not from greenlight")
            problems += [f"run {r}: {p}" for p in check_output(out.stdout, n, due)]
            per_run_calls.append(calls)
            if r > 0:
                walls.append(wall)
            print(f"  N={n} run {r}{' (warm-up)' if r == 0 else ''}: {wall:.2f} s, "
                  f"{sum(calls.values())} calls", file=sys.stderr)
        page_seconds = time_page_walk(emulator.endpoint)
        # Control: nothing due anywhere (the due fleets' warm-until moved an hour ahead, by this
        # script, not greenlight): a run must then make the listing calls and nothing else.
        extend_warm(emulator.endpoint, due)
        _, mark = emulator.requests_since(0)
        out = subprocess.run(
            [str(binary), "cleanup", "--all", "--dry-run", "--output", "json"],
            env=env, capture_output=True, text=True, timeout=600,
        )
        requests, _ = emulator.requests_since(mark)
        control = collections.Counter(
            f"{q['service']}:{q['action']}" for q in requests if q.get("app") == "greenlight"
        )
        if out.returncode != 0:
            problems.append(f"control run: exit {out.returncode}: {out.stderr[-500:]}")
        problems += [f"control run: {p}" for p in check_output(out.stdout, n, set())]
        print(f"  N={n} control run (nothing due): {sum(control.values())} calls",
              file=sys.stderr)
    finally:
        emulator.close()

    calls = per_run_calls[1]
    if any(c != calls for c in per_run_calls):
        problems.append("the calls differ between runs: " +
                        "; ".join(str(sum(c.values())) for c in per_run_calls))
    mutating = {op: k for op, k in calls.items()
                if not op.split(":", 1)[1].startswith(READ_PREFIXES)}
    if mutating:
        problems.append(f"dry run made mutating calls: {mutating}")
    total = sum(calls.values())
    fleets = seed["fleets_total"]
    pages = math.ceil(fleets / ASG_PAGE)
    listing = pages + calls.get("ec2:DescribeLaunchTemplates", 0)
    return {
        "services": n,
        "due_services": len(due),
        "fleets": fleets,
        "fleets_by_kind": seed["fleets"],
        "load_balancers": seed["load_balancers"],
        "target_groups": seed["target_groups"],
        "locks": seed["locks"],
        "seed_seconds": seed["seconds"],
        "runs": runs,
        "wall_seconds": [round(w, 3) for w in walls],
        "wall_median": round(statistics.median(walls), 3),
        "wall_min": round(min(walls), 3),
        "wall_max": round(max(walls), 3),
        "calls_total": total,
        "calls_by_operation": dict(sorted(calls.items())),
        "mutating_calls": sum(mutating.values()),
        "tagged_fleet_pages": pages,
        "listing_calls": listing,
        "calls_per_service": round(total / n, 3),
        "calls_beyond_listing_per_due_service": round((total - listing) / max(len(due), 1), 2),
        "describe_asg_per_due_service": round(
            (calls.get("autoscaling:DescribeAutoScalingGroups", 0) - pages) / max(len(due), 1), 2
        ),
        "emulator_seconds_per_asg_page": round(page_seconds, 4),
        "control_nothing_due_calls": dict(sorted(control.items())),
        "control_nothing_due_total": sum(control.values()),
        "problems": problems,
    }


def time_page_walk(endpoint: str) -> float:
    """Emulator seconds per page of an unfiltered DescribeAutoScalingGroups walk (median of 3)."""
    import boto3

    asg = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    ).client("autoscaling", endpoint_url=endpoint)
    per_page = []
    for _ in range(3):
        t0, pages, token = time.perf_counter(), 0, None
        while True:
            page = asg.describe_auto_scaling_groups(
                MaxRecords=ASG_PAGE, **({"NextToken": token} if token else {})
            )
            pages += 1
            token = page.get("NextToken")
            if not token:
                break
        per_page.append((time.perf_counter() - t0) / pages)
    return statistics.median(per_page)


def extend_warm(endpoint: str, due: set[str]) -> None:
    """Moves the due fleets' warm-until an hour ahead, so nothing is due."""
    import boto3

    future = datetime.fromtimestamp(time.time() + 3600, timezone.utc)
    asg = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    ).client("autoscaling", endpoint_url=endpoint)
    for svc in sorted(due):
        asg.create_or_update_tags(Tags=[{
            "ResourceId": f"{svc}-r1", "ResourceType": "auto-scaling-group",
            "Key": "greenlight:warm-until", "Value": future.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "PropagateAtLaunch": False,
        }])


def machine(binary: Path, original: Path) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
                           capture_output=True, text=True).stdout.strip()
    moto = subprocess.run([str(VENV_PYTHON), "-c", "import moto; print(moto.__version__)"],
                          capture_output=True, text=True).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "loadavg_at_start": os.getloadavg(),
        "binary": str(original),
        "binary_build": "debug (cargo build --bin greenlight, unoptimized)"
        if "/debug/" in str(original) else "see path",
        "binary_sha256": hashlib.sha256(binary.read_bytes()).hexdigest()[:16],
        "binary_mtime": datetime.fromtimestamp(original.stat().st_mtime, timezone.utc)
        .strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_head": rev,
        "src_dirty": bool(dirty),
        "emulator": f"localstack/emulator.py (moto {moto}), one process on loopback, "
                    "serialises requests",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def markdown(result: dict[str, Any]) -> str:
    m, sizes = result["machine"], result["sizes"]
    ops = sorted({op for s in sizes for op in s["calls_by_operation"]})
    head = "| | " + " | ".join(f"N = {s['services']}" for s in sizes) + " |"
    sep = "|---|" + "---:|" * len(sizes)

    def row(label: str, f: Any) -> str:
        return f"| {label} | " + " | ".join(str(f(s)) for s in sizes) + " |"

    lines = [
        "# `greenlight cleanup --all --dry-run` over many services",
        "",
        "Generated by `bench/cleanup-all.sh` (bench/cleanup_bench.py, bench/seed_many.py); "
        "do not edit by hand. Raw numbers: `bench/results-cleanup.json`.",
        "",
        "## Machine",
        "",
        f"- {m['nproc']} cores ({m['cpu']}), Linux {m['kernel']}, load average at start "
        f"{', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])} (a machine shared with other "
        "work: wall times are noisy)",
        f"- binary: `{m['binary']}`, {m['binary_build']}, sha256 {m['binary_sha256']}…, "
        f"built {m['binary_mtime']}, git HEAD {m['git_head']}"
        + (" (src/ had uncommitted changes)" if m["src_dirty"] else ""),
        f"- AWS: {m['emulator']}; run {m['date']}",
        "",
        "## What was seeded",
        "",
        "Per service: two target groups (slots a/b), a host-header rule on a shared ALB listener "
        "(50 services per ALB) forwarding to slot a, a live fleet on slot a (desired 0); every "
        "3rd service also a warm fleet on slot b kept warm for another hour (desired 0); every "
        "20th service (5%) instead a warm fleet whose `greenlight:warm-until` passed an hour "
        "ago (desired 1): those are **due**. Fleets carry the tags greenlight writes "
        "(`greenlight:schema=2`, service, release, phase, created-at, live-at, warm-until, "
        "unrouted-at, router, slot-a, slot-b). Three locks (two held, one stale) on services "
        "with nothing due.",
        "",
        head, sep,
        row("services (N)", lambda s: s["services"]),
        row("due services", lambda s: s["due_services"]),
        row("fleets (tagged Auto Scaling groups)", lambda s: s["fleets"]),
        row("pages of tagged fleets (100 each)", lambda s: s["tagged_fleet_pages"]),
        row("load balancers / target groups",
            lambda s: f"{s['load_balancers']} / {s['target_groups']}"),
        row("seeding time (s)", lambda s: s["seed_seconds"]),
        "",
        "## Results",
        "",
        f"Each size: one warm-up run (not timed), then {sizes[0]['runs']} timed runs of "
        "`greenlight cleanup --all --dry-run --output json` (wall clock, process start to "
        "exit). Calls are the requests the emulator served with `app/greenlight` in their user "
        "agent; they were identical in every run.",
        "",
        head, sep,
        row("wall time, median (s)", lambda s: f"{s['wall_median']:.2f}"),
        row("wall time, min – max (s)", lambda s: f"{s['wall_min']:.2f} – {s['wall_max']:.2f}"),
        row("AWS calls per run", lambda s: s["calls_total"]),
        row("calls per service", lambda s: f"{s['calls_per_service']:.2f}"),
        row("listing calls (tagged fleets + locks)", lambda s: s["listing_calls"]),
        row("other calls per due service", lambda s: s["calls_beyond_listing_per_due_service"]),
        row("… of which DescribeAutoScalingGroups", lambda s: s["describe_asg_per_due_service"]),
        row("mutating calls (not Describe/Get/List)", lambda s: s["mutating_calls"]),
        row("output checks", lambda s: "ok" if not s["problems"] else
            f"{len(s['problems'])} problems"),
        "",
        "Calls by operation (one run):",
        "",
        head, sep,
        *[row(f"`{op}`", lambda s, op=op: s["calls_by_operation"].get(op, 0)) for op in ops],
        "",
    ]
    lines += result["findings"]
    return "\n".join(lines) + "\n"


def growing(sizes: list[dict[str, Any]]) -> str:
    """The operations whose calls per due service (listing pages aside) change with N."""
    parts = []
    ops = sorted({op for s in sizes for op in s["calls_by_operation"]})
    for op in ops:
        per = []
        for s in sizes:
            count = s["calls_by_operation"].get(op, 0)
            count -= s["control_nothing_due_calls"].get(op, 0)  # the listing's share
            per.append(round(count / max(s["due_services"], 1), 2))
        if max(per) - min(per) > 0.25:
            parts.append(f"`{op}` {' → '.join(map(str, per))}")
    return "; ".join(parts) or "none changes"


def findings(sizes: list[dict[str, Any]]) -> list[str]:
    """What the numbers say, computed from them (so the text cannot drift from the table)."""
    out = ["## What the numbers say", ""]
    clean = all(not s["problems"] for s in sizes)
    out.append(
        "- **Output**: " + ("in every run the final `cleanup_done` event listed all N services, "
                            "each due service `done` with an `act` (scale_down) decision on its "
                            "expired warm fleet and nothing applied, every other one "
                            "`nothing_due`; exit 0." if clean else
                            "PROBLEMS: " + "; ".join(p for s in sizes for p in s["problems"][:5]))
    )
    muts = sum(s["mutating_calls"] for s in sizes)
    out.append(f"- **Dry run changes nothing**: {muts} calls other than Describe*/Get*/List* "
               "across all runs of all sizes (the stale lock is reported, not removed).")
    listing = ", ".join(f"{s['listing_calls']} for N = {s['services']} "
                        f"({s['tagged_fleet_pages']} page(s) of {s['fleets']} fleets + 1 of locks)"
                        for s in sizes)
    control = ", ".join(f"{s['control_nothing_due_total']} for N = {s['services']} "
                        f"({', '.join(f'{k} {v}' for k, v in s['control_nothing_due_calls'].items())})"
                        for s in sizes)
    exact = all(s["control_nothing_due_total"] == s["listing_calls"] for s in sizes)
    out.append(f"- **Listing grows with pages**: {listing}.")
    out.append(
        "- **Services with nothing due cost no call of their own**: a control run after moving "
        "the due fleets' `warm-until` an hour ahead (so no service is due) made "
        f"{control} calls" + (": exactly the listing pages." if exact else
                              ": MORE than the listing pages.")
    )
    per_due = [s["calls_beyond_listing_per_due_service"] for s in sizes]
    asg = [s["describe_asg_per_due_service"] for s in sizes]
    if max(asg) - min(asg) > 0.5:
        out.append(
            "- **But the closer look at each due service grows with N**: calls per due service "
            f"beyond the listing are {' → '.join(map(str, per_due))}. By operation, per due "
            f"service: {growing(sizes)}. "
            "`observe()` (src/engine/cleanup.rs) calls `cloud.fleets(&slots)` for every due "
            "service, and `AutoScaling::fleets` (src/aws/autoscaling.rs) pages through *every* "
            "Auto Scaling group in the region (Auto Scaling cannot filter by target group): "
            "ceil(all groups / 100) calls per due service, on top of 1 for the service's tagged "
            "fleets and 1 per fleet for its config. With a fixed share of services due this is "
            "due × pages ≈ N²/2000 calls: "
            + ", ".join(f"{s['due_services']} × {s['tagged_fleet_pages']} = "
                        f"{s['due_services'] * s['tagged_fleet_pages']} for N = {s['services']}"
                        for s in sizes)
            + ". In the emulator one such page (100 groups) takes "
            + ", ".join(f"{s['emulator_seconds_per_asg_page'] * 1000:.0f} ms" for s in sizes)
            + " (by N; timed from a boto3 client, so an upper bound), so these walks alone "
              "account for up to "
            + ", ".join(f"{s['due_services'] * s['tagged_fleet_pages'] * s['emulator_seconds_per_asg_page']:.0f} s"
                        f" of the {s['wall_median']:.0f} s median for N = {s['services']}"
                        for s in sizes)
            + " (the emulator serves one request at a time; on AWS, Auto Scaling's Describe "
              "rate limit would bite instead). A fix: with `--all`, sift the one listing already read (all groups, or the "
              "tagged ones plus one unfiltered pass shared by all services) for groups attached "
              "to each service's slots instead of re-reading every page per service."
        )
    else:
        out.append(f"- **Per due service**: {' → '.join(map(str, per_due))} calls beyond the "
                   "listing: constant in N.")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="100,300,1000")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--binary", type=Path, default=Path(
        os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug/greenlight")
    p.add_argument("--out", type=Path, default=ROOT / "bench")
    args = p.parse_args()
    original = args.binary.resolve()
    if not original.is_file():
        sys.exit(f"cleanup_bench.py: no binary at {original}; cargo build --bin greenlight")
    with tempfile.TemporaryDirectory(prefix="greenlight-bench-") as tmp:
        # A private copy: a rebuild of the shared target dir mid-benchmark cannot change it.
        binary = Path(tmp) / "greenlight"
        shutil.copy2(original, binary)
        result: dict[str, Any] = {"machine": machine(binary, original), "sizes": []}
        for n in (int(x) for x in args.sizes.split(",")):
            result["sizes"].append(bench_size(binary, n, args.runs))
    result["findings"] = findings(result["sizes"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results-cleanup.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "RESULTS-cleanup.md").write_text(markdown(result))
    for s in result["sizes"]:
        print(f"N={s['services']}: median {s['wall_median']:.2f} s "
              f"({s['wall_min']:.2f}–{s['wall_max']:.2f}), {s['calls_total']} calls, "
              f"{s['mutating_calls']} mutating, problems: {len(s['problems'])}")
    print(f"wrote {args.out / 'RESULTS-cleanup.md'} and {args.out / 'results-cleanup.json'}")
    return 1 if any(s["problems"] for s in result["sizes"]) else 0


if __name__ == "__main__":
    sys.exit(main())
