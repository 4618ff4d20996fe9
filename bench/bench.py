#!/usr/bin/env python3
"""greenlight against the scripts users would write and against the floor (issue 10). Not a test.

    localstack/.venv/bin/python bench/bench.py [--runs 10] [--skip-slow] [--quick]
        [--binary target/release/greenlight] [--floor target/release/examples/floor]
        [--out bench]

Usually run through `bench/run.sh`, which installs what this needs first. Everything runs on one
machine against greenlight's emulator (localstack/emulator.py --report-not-in-use, started here
on a free port), one process at a time, tools interleaved round by round (the order rotates) so
drift in the machine's load falls on all of them alike. Every timed run is a whole process:
started with fork/exec here, reaped with wait4 (wall time, peak RSS and CPU time from its
rusage, descendants included). The emulator's request log (GET /_greenlight/requests) gives each
AWS call's operation, the tool that made it (`app/<name>` in the user agent) and the time it
started being served; "start → flip" is the ModifyListener's time minus the wall-clock time taken
just before the process was started.

Sections (see RESULTS.md for what each measures and how its state is reset between runs):
rollback, deploy, status, canary step latency, last healthy target → flip, calls while waiting
(slow), rollback and deploy again through a proxy adding a round trip to every call (--rtt-ms,
25), cleanup --all --dry-run over 1,000 services (slow), --help / binary size / RSS, CI time.

Writes <out>/results.json and <out>/RESULTS.md. Exit 1 if a run failed its checks.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import http.client
import http.server
import json
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / "localstack/.venv/bin/python"
AWS_BIN = ROOT / "bench/.venv/bin"
PEERS = ROOT / "bench/peers"
sys.path.insert(0, str(ROOT / "localstack"))

TOOLS = ["greenlight", "aws-cli", "boto3", "floor"]
# The app name each tool puts in its user agent (`app/<name>`), which the request log records.
APPS = {"greenlight": "greenlight", "aws-cli": "bench-cli", "boto3": "bench-boto3",
        "floor": "floor"}
READS = ("Describe", "Get", "List")
# Elastic Load Balancing's documented Describe* throttle (per account and region): a bucket of
# 40 that refills at 10 per second.
ELB_DESCRIBE_BURST, ELB_DESCRIBE_REFILL = 40, 10.0
GNU_TIME = "/usr/bin/time"


# --- the emulator -----------------------------------------------------------------------------

class Emulator:
    """localstack/emulator.py --report-not-in-use on a free port; stops when its stdin closes."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [str(PYTHON), str(ROOT / "localstack/emulator.py"), "--port", "0",
             "--exit-on-stdin-eof", "--report-not-in-use"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("GREENLIGHT_EMULATOR_READY "):
                self.endpoint = line.split(" ", 1)[1].strip()
                break
        else:
            raise SystemExit("bench.py: the emulator exited before it was ready")
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.endpoint}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as response:
            text = response.read()
        return json.loads(text) if text else None

    def requests_since(self, mark: int) -> list[dict[str, Any]]:
        return self.call("GET", f"/_greenlight/requests?since={mark}")["requests"]

    def mark(self) -> int:
        return self.call("GET", "/_greenlight/requests?since=999999999")["total"]

    def reset(self) -> None:
        self.call("POST", "/moto-api/reset")

    def script_health(self, selector: dict[str, Any], sequence: list[dict[str, Any]]) -> int:
        return self.call("POST", "/_greenlight/target-health",
                         {**selector, "sequence": sequence})["rule"]["id"]

    def health_state(self) -> dict[str, Any]:
        return self.call("GET", "/_greenlight/target-health")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def aws_env(endpoint: str) -> dict[str, str]:
    """What tests/suite/harness.rs sets, and nothing from the developer's own AWS setup."""
    return {
        "PATH": f"{AWS_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/tmp"),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",  # botocore (the CLI, boto3) reads this one
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }


# --- one whole-process run --------------------------------------------------------------------

class Run:
    """One process: its exit code, output, wall time, rusage and the AWS calls it made."""

    def __init__(self, tool: str, cmd: list[str], env: dict[str, str], emulator: Emulator,
                 timeout: float = 600, measure_rss: bool = False) -> None:
        self.tool, self.cmd = tool, cmd
        mark = emulator.mark()
        # wait4's ru_maxrss cannot be used: a child starts with its parent's high-water mark
        # (Linux keeps it across fork and exec), so it would report this Python process's RSS.
        # GNU time's own is ~2 MiB, so `time -f %M` gives the tool's. Such a run is only for
        # its RSS: the wrapper adds an exec to the wall time.
        rss_file = None
        if measure_rss and Path(GNU_TIME).exists():
            rss_file = tempfile.NamedTemporaryFile(prefix="rss-", delete=False)
            rss_file.close()
            cmd = [GNU_TIME, "-f", "%M", "-o", rss_file.name, *cmd]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            self.start_wall = time.time()
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err)
            timer = threading.Timer(timeout, proc.kill)
            timer.start()
            _, status, usage = os.wait4(proc.pid, 0)
            self.wall = time.perf_counter() - t0
            timer.cancel()
            proc.returncode = self.code = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            self.stdout = out.read().decode(errors="replace")
            self.stderr = err.read().decode(errors="replace")
        self.max_rss_kb = None
        if rss_file is not None:
            text = Path(rss_file.name).read_text().strip().splitlines()
            os.unlink(rss_file.name)
            self.max_rss_kb = int(text[-1]) if text and text[-1].isdigit() else None
        self.cpu = usage.ru_utime + usage.ru_stime
        app = APPS.get(tool, tool)
        self.requests = [q for q in emulator.requests_since(mark) if q.get("app") == app]
        self.calls = collections.Counter(f"{q['service']}:{q['action']}" for q in self.requests)
        flips = [q["time"] for q in self.requests if q["action"] in ("ModifyListener",
                                                                   "ModifyRule")]
        self.flip_times = flips
        self.flip = flips[0] - self.start_wall if flips else None
        self.first_call = (self.requests[0]["time"] - self.start_wall) if self.requests else None

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.stdout.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def problem(self) -> str | None:
        if self.code != 0:
            return (f"{self.tool} `{' '.join(self.cmd[-4:])}` exited {self.code}: "
                    f"{(self.stderr or self.stdout)[-400:].strip()}")
        return None

    def summary(self) -> dict[str, Any]:
        return {
            "wall": round(self.wall, 4),
            "flip": None if self.flip is None else round(self.flip, 4),
            "first_call": None if self.first_call is None else round(self.first_call, 4),
            "calls": sum(self.calls.values()),
            "max_rss_kb": self.max_rss_kb,
            "cpu": round(self.cpu, 4),
        }


def stats(values: list[float]) -> dict[str, Any]:
    values = [v for v in values if v is not None]
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    if len(ordered) >= 2:
        deciles = statistics.quantiles(ordered, n=10, method="inclusive")
        p10, p90 = deciles[0], deciles[-1]
    else:
        p10 = p90 = ordered[0]
    return {"n": len(ordered), "median": statistics.median(ordered), "min": ordered[0],
            "max": ordered[-1], "p10": p10, "p90": p90, "mean": statistics.fmean(ordered)}


# --- seeding ----------------------------------------------------------------------------------

class Service:
    """A service seeded by localstack/seed.py (in this process), its listener forwarding to
    slot a at 100 and slot b at 0, so both target groups are health-checked from the start and
    no tool has to join the idle one first (greenlight's `join_router` step; AWS reports the
    targets of a target group no listener uses as `unused`)."""

    def __init__(self, name: str, workdir: Path, clients: dict[str, Any]) -> None:
        import seed as seedmod

        args = seedmod.parse_args(["--service", name])
        self.info = seedmod.seed(args)
        self.name = name
        self.listener = self.info["listener_arn"]
        self.slot_a, self.slot_b = self.info["target_groups"]
        self.images = self.info["images"]
        self.blue = self.info["blue_asg"]
        self.elb = clients["elbv2"]
        self.route(self.slot_a, self.slot_b)
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)

    def route(self, live: str, idle: str) -> None:
        self.elb.modify_listener(ListenerArn=self.listener, DefaultActions=[{
            "Type": "forward", "ForwardConfig": {"TargetGroups": [
                {"TargetGroupArn": live, "Weight": 100},
                {"TargetGroupArn": idle, "Weight": 0}]}}])

    def live(self) -> str:
        action = self.elb.describe_listeners(ListenerArns=[self.listener])["Listeners"][0][
            "DefaultActions"][0]
        groups = action.get("ForwardConfig", {}).get("TargetGroups") or [
            {"TargetGroupArn": action.get("TargetGroupArn"), "Weight": 1}]
        return max(groups, key=lambda g: g.get("Weight", 1))["TargetGroupArn"]

    def config(self, interval: str | None = "1s", canary: list[str] | None = None) -> Path:
        """A greenlight.toml as seed.py writes it (health interval 1s, timeout 2m, keep_warm
        1h); `interval=None` leaves greenlight's default (5s, backing off to 30s)."""
        lines = [f'service = "{self.name}"', 'region = "us-east-1"']
        if canary:
            lines.append('strategy = "canary"')
        lines += ["", "[router]", f'listener_arn = "{self.listener}"',
                  f'target_groups = ["{self.slot_a}", "{self.slot_b}"]', "",
                  "[health]", 'timeout = "2m"']
        if interval:
            lines.append(f'interval = "{interval}"')
        lines += ["", "[retention]", 'keep_warm = "1h"', ""]
        if canary:
            lines += ["[canary]", "steps = [" + ", ".join(canary) + "]", ""]
        path = self.dir / f"greenlight-{interval or 'default'}{'-canary' if canary else ''}.toml"
        path.write_text("\n".join(lines))
        return path


def boto_clients(region: str = "us-east-1") -> dict[str, Any]:
    import boto3

    session = boto3.session.Session(region_name=region)
    return {name: session.client(name) for name in ("elbv2", "autoscaling", "ec2")}


# --- the benchmark ----------------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace, binary: Path, floor: Path, work: Path) -> None:
        self.args, self.binary, self.floor, self.work = args, binary, floor, work
        self.problems: list[str] = []
        self.emulator = Emulator()
        self.env = aws_env(self.emulator.endpoint)
        os.environ.update({k: v for k, v in self.env.items() if k != "PATH"})
        self.clients = boto_clients()
        # Where the tools under test send their calls (the latency section puts a proxy here).
        self.tool_endpoint = self.emulator.endpoint

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def check(self, run: Run, extra: str | None = None) -> None:
        for p in (run.problem(), extra):
            if p:
                self.problems.append(p)
                self.log(f"PROBLEM: {p}")

    def tool_env(self, tool: str) -> dict[str, str]:
        env = dict(self.env)
        env["AWS_ENDPOINT_URL"] = self.tool_endpoint
        if tool == "aws-cli":
            env["AWS_SDK_UA_APP_ID"] = APPS[tool]
        return env

    def greenlight(self, config: Path, *args: str) -> list[str]:
        return [str(self.binary), "--config", str(config), "--output", "json", *args]

    def service(self, name: str) -> Service:
        return Service(name, self.work, self.clients)

    def rounds(self) -> int:
        return self.args.runs

    @staticmethod
    def order(r: int) -> list[str]:
        k = r % len(TOOLS)
        return TOOLS[k:] + TOOLS[:k]

    # -- 1. rollback ---------------------------------------------------------------------------
    def rollback(self) -> dict[str, Any]:
        """Each tool has its own service, seeded and then deployed once by greenlight (release
        r1 on slot b, the seeded blue fleet warm on slot a): a state where a rollback is
        possible. Every run rolls back to the other slot, so consecutive runs alternate between
        the two warm releases (greenlight: `rollback --to <the non-live release>`; the peers
        swap the listener's weights; the floor is told which way)."""
        self.emulator.reset()
        names = {"greenlight": "rb-gl", "aws-cli": "rb-cli", "boto3": "rb-py", "floor": "rb-fl"}
        svcs = {t: self.service(n) for t, n in names.items()}
        for tool, svc in svcs.items():
            cfg = svc.config()
            setup = Run("greenlight", self.greenlight(cfg, "deploy", "--release", "r1",
                                                      "--image-id", svc.images[1]),
                        self.env, self.emulator)
            self.check(setup)
        runs: dict[str, list[Run]] = {t: [] for t in TOOLS}
        rss: dict[str, list[Run]] = {t: [] for t in TOOLS}
        status_runs: list[Run] = []
        # Round 0 warms up (page cache, emulator), untimed; the last one measures peak RSS.
        for r in range(self.rounds() + 2):
            rss_round = r == self.rounds() + 1
            for tool in self.order(r):
                svc = svcs[tool]
                live = svc.live()
                target = svc.slot_a if live == svc.slot_b else svc.slot_b
                if tool == "greenlight":
                    release = f"{svc.name}-blue" if target == svc.slot_a else "r1"
                    cmd = self.greenlight(svc.config(), "rollback", "--to", release)
                elif tool == "aws-cli":
                    cmd = [str(PEERS / "rollback.sh"), svc.listener]
                elif tool == "boto3":
                    cmd = [str(PYTHON), str(PEERS / "rollback.py"), svc.listener]
                else:
                    cmd = [str(self.floor), "rollback", svc.listener, target, live]
                run = Run(tool, cmd, self.tool_env(tool), self.emulator, measure_rss=rss_round)
                now = svc.live()
                self.check(run, None if now == target else
                           f"{tool} rollback left traffic on {now}, expected {target}")
                if run.flip is None:
                    self.check(run, f"{tool} rollback made no ModifyListener")
                if rss_round:
                    rss[tool].append(run)
                elif r > 0:
                    runs[tool].append(run)
            if rss_round:
                continue
            # greenlight status on the rolled-back service: a pure read, for its calls and time.
            st = Run("greenlight", self.greenlight(svcs["greenlight"].config(), "status"),
                     self.tool_env("greenlight"), self.emulator)
            self.check(st)
            if r > 0:
                status_runs.append(st)
            self.log(f"rollback round {r}: " + ", ".join(
                f"{t} {runs[t][-1].wall * 1000:.0f} ms" for t in TOOLS if r > 0 and runs[t]))
        out = self.section(runs, rss)
        out["status"] = self.section({"greenlight": status_runs}, {})["tools"]["greenlight"]
        out["sequence"] = sequence(runs["greenlight"][len(runs["greenlight"]) // 2])
        return out

    def section(self, runs: dict[str, list[Run]], rss: dict[str, list[Run]]) -> dict[str, Any]:
        tools = {}
        for tool, rs in runs.items():
            calls = [r.calls for r in rs]
            tools[tool] = {
                "runs": [r.summary() for r in rs],
                "wall": stats([r.wall for r in rs]),
                "flip": stats([r.flip for r in rs]),
                "first_call": stats([r.first_call for r in rs]),
                "max_rss_kb": stats([r.max_rss_kb for r in rss.get(tool, [])]),
                "cpu": stats([r.cpu for r in rs]),
                "calls": stats([sum(c.values()) for c in calls]),
                "calls_by_operation": dict(sorted(calls[len(calls) // 2].items())) if calls
                else {},
                "calls_identical_every_run": all(c == calls[0] for c in calls),
                "calls_before_flip": stats([
                    sum(1 for q in r.requests if r.flip_times and q["time"] < r.flip_times[0])
                    for r in rs]),
            }
        ratios = {}
        if "floor" in tools and tools["floor"]["wall"]["n"]:
            for tool in tools:
                if tool == "floor":
                    continue
                ratios[tool] = {
                    key: round(tools[tool][key]["median"] / tools["floor"][key]["median"], 2)
                    for key in ("wall", "flip")
                    if tools[tool][key]["n"] and tools["floor"][key]["n"]
                }
        return {"tools": tools, "ratios_to_floor": ratios}

    # -- 2. deploy -------------------------------------------------------------------------------
    def deploy(self) -> dict[str, Any]:
        """Every round starts from a reset emulator with one freshly seeded service per tool
        (blue on slot a at capacity 2, slot b empty and joined at weight 0), and deploys
        release r<round> onto it. Targets are healthy at once (no health script: the
        emulator reports a registered running instance of a used target group healthy)."""
        runs: dict[str, list[Run]] = {t: [] for t in TOOLS}
        rss: dict[str, list[Run]] = {t: [] for t in TOOLS}
        names = {"greenlight": "dp-gl", "aws-cli": "dp-cli", "boto3": "dp-py", "floor": "dp-fl"}
        for r in range(self.rounds() + 2):  # as in rollback: a warm-up, then timed, then RSS
            rss_round = r == self.rounds() + 1
            self.emulator.reset()
            svcs = {t: self.service(n) for t, n in names.items()}
            release = f"r{r + 1}"
            for tool in self.order(r):
                svc = svcs[tool]
                run = Run(tool, self.deploy_cmd(tool, svc, release, svc.config()),
                          self.tool_env(tool), self.emulator, measure_rss=rss_round)
                now = svc.live()
                self.check(run, None if now == svc.slot_b else
                           f"{tool} deploy left traffic on {now}, expected slot b")
                if rss_round:
                    rss[tool].append(run)
                elif r > 0:
                    runs[tool].append(run)
            if rss_round:
                continue
            self.log(f"deploy round {r}: " + ", ".join(
                f"{t} {runs[t][-1].wall * 1000:.0f} ms" for t in TOOLS if r > 0 and runs[t]))
        out = self.section(runs, rss)
        out["sequence"] = sequence(runs["greenlight"][len(runs["greenlight"]) // 2])
        return out

    def deploy_cmd(self, tool: str, svc: Service, release: str, config: Path) -> list[str]:
        image = svc.images[1]
        if tool == "greenlight":
            return self.greenlight(config, "deploy", "--release", release, "--image-id", image)
        if tool == "aws-cli":
            return [str(PEERS / "deploy.sh"), svc.listener, svc.name, release, image]
        if tool == "boto3":
            return [str(PYTHON), str(PEERS / "deploy.py"), svc.listener, svc.name, release,
                    image]
        return [str(self.floor), "deploy", svc.listener, svc.blue, f"{svc.name}-{release}",
                image]

    # -- 3a. canary step latency -----------------------------------------------------------------
    def canary(self) -> dict[str, Any]:
        """Canary deploys whose plan is 10, 20, ... 90% with a 1 s pause each, then 100%: nine
        pause ends per deploy. Latency = the ModifyListener that set the next weight (request
        log) minus the pause's end (`until` of greenlight's `pause` event)."""
        steps = [f'{{ weight = {w}, pause = "1s" }}' for w in range(10, 100, 10)]
        steps.append("{ weight = 100 }")
        latencies, per_deploy = [], []
        deploys = 0
        while len(latencies) < self.args.runs:
            self.emulator.reset()
            svc = self.service("cn-gl")
            deploys += 1
            run = Run("greenlight", self.greenlight(
                svc.config(canary=steps), "deploy", "--release", f"c{deploys}", "--image-id",
                svc.images[1]), self.env, self.emulator)
            self.check(run)
            pauses = [parse_time(e["until"]) for e in run.events() if e.get("event") == "pause"]
            mine = []
            for until in pauses:
                after = [t for t in run.flip_times if t >= until]
                if after:
                    mine.append(after[0] - until)
            if len(mine) != len(pauses) or len(pauses) != 9:
                self.check(run, f"canary: {len(pauses)} pauses, {len(mine)} matched shifts")
            latencies += mine
            per_deploy.append({"wall": round(run.wall, 3), "pauses": len(pauses),
                               "shifts": len(run.flip_times),
                               "latencies": [round(x, 4) for x in mine],
                               "calls": sum(run.calls.values()),
                               "calls_by_operation": dict(sorted(run.calls.items()))})
            self.log(f"canary deploy {deploys}: {len(mine)} pause ends, median "
                     f"{statistics.median(mine) * 1000 if mine else float('nan'):.0f} ms")
        return {"latency": stats(latencies), "latencies": [round(x, 4) for x in latencies],
                "deploys": per_deploy, "plan": "10,20,...,90% with pause 1s each, then 100%",
                "health_interval": "1s"}

    # -- 3b. last healthy target -> flip --------------------------------------------------------
    def health_flip(self) -> dict[str, Any]:
        """Each round: a reset emulator, one fresh service per variant, and a health script on
        the new group's targets: `initial` for S seconds from the first DescribeTargetHealth
        that reports them, then `healthy` (S drawn from 2-6 s, seeded, the same for every
        variant in a round). A watcher reads the emulator's bindings (GET
        /_greenlight/target-health) every 20 ms to place the moment the last target turned
        healthy; latency = the flip's ModifyListener minus that moment."""
        variants = {
            "greenlight (interval 1s)": ("greenlight", "1s"),
            "greenlight (default interval 5s)": ("greenlight", None),
            "boto3 (polls every 2s)": ("boto3", None),
            "floor (polls every 1s)": ("floor", None),
        }
        rng = random.Random(10)
        result: dict[str, list[float]] = {v: [] for v in variants}
        seconds: list[float] = []
        for r in range(self.rounds()):
            self.emulator.reset()
            s = round(rng.uniform(2, 6), 2)
            seconds.append(s)
            svcs = {v: self.service(f"hf{i}") for i, v in enumerate(variants)}
            release = f"h{r + 1}"
            names = list(variants)
            k = r % len(names)
            for variant in names[k:] + names[:k]:
                tool, interval = variants[variant]
                svc = svcs[variant]
                green = f"{svc.name}-{release}"
                rule = self.emulator.script_health(
                    {"asg_name": green},
                    [{"state": "initial", "seconds": s}, {"state": "healthy"}])
                watcher = Watcher(self.emulator, rule)
                watcher.start()
                run = Run(tool, self.deploy_cmd(tool, svc, release, svc.config(interval)),
                          self.tool_env(tool), self.emulator)
                healthy_at = watcher.stop(s)
                self.check(run)
                if healthy_at is None or run.flip is None:
                    self.check(run, f"health→flip {variant}: no binding or no flip")
                    continue
                result[variant].append(run.flip_times[0] - healthy_at)
            self.log(f"health→flip round {r} (S={s}s): " + ", ".join(
                f"{v.split(' ')[0]} {result[v][-1] * 1000:.0f} ms" for v in names if result[v]))
        return {"variants": {v: {"latency": stats(x), "latencies": [round(y, 4) for y in x]}
                             for v, x in result.items()},
                "initial_seconds": seconds}

    # -- 4. calls while waiting -----------------------------------------------------------------
    def waiting(self) -> dict[str, Any]:
        """A greenlight deploy held on health: the new group's targets report `unhealthy` for
        60 s from their first report, then `healthy`. Counts greenlight's calls by operation
        from that first report to the end of the 60 s (default health interval, and 1s)."""
        out = {}
        for interval in (None, "1s"):
            self.emulator.reset()
            svc = self.service("wt-gl")
            release = "w1"
            rule = self.emulator.script_health(
                {"asg_name": f"{svc.name}-{release}"},
                [{"state": "unhealthy", "seconds": 60}, {"state": "healthy"}])
            watcher = Watcher(self.emulator, rule)
            watcher.start()
            run = Run("greenlight", self.deploy_cmd("greenlight", svc, release,
                                                    svc.config(interval)),
                      self.env, self.emulator)
            end = watcher.stop(60)
            self.check(run)
            if end is None:
                self.check(run, "waiting: the health script never bound")
                continue
            start = end - 60
            window = [q for q in run.requests if start <= q["time"] < end]
            by_op = collections.Counter(f"{q['service']}:{q['action']}" for q in window)
            elb_reads = sum(n for op, n in by_op.items()
                            if op.startswith("elasticloadbalancing:")
                            and op.split(":")[1].startswith(READS))
            all_reads = sum(n for op, n in by_op.items() if op.split(":")[1].startswith(READS))
            key = f"interval {interval or 'default (5s, x1.5 up to 30s)'}"
            out[key] = {
                "window_seconds": 60,
                "calls_by_operation": dict(sorted(by_op.items())),
                "calls_per_minute": sum(by_op.values()),
                "reads_per_minute": all_reads,
                "elb_describe_per_minute": elb_reads,
                "elb_describe_per_second_for_50_services": round(50 * elb_reads / 60, 2),
                "polls": by_op.get("elasticloadbalancing:DescribeListeners", 0),
                "wall": round(run.wall, 2),
            }
            self.log(f"waiting ({key}): {sum(by_op.values())} calls in 60 s, "
                     f"{elb_reads} ELB Describe*")
        return out

    # -- 1-2 again, with a network round trip per call ------------------------------------------
    def latency(self) -> dict[str, Any]:
        """Rollback and deploy again, every tool's calls through a proxy that holds each request
        rtt/2 before forwarding it and its answer rtt/2 before returning it, each request on its
        own thread (so concurrent calls overlap, as on a network); the emulator itself serves
        one request at a time and answers in a few ms, which hides round trips."""
        proxy = DelayProxy(self.emulator.endpoint, self.args.rtt_ms / 1000)
        self.tool_endpoint = proxy.endpoint
        try:
            return {"rtt_ms": self.args.rtt_ms, "rollback": self.rollback(),
                    "deploy": self.deploy()}
        finally:
            self.tool_endpoint = self.emulator.endpoint
            proxy.close()

    def close(self) -> None:
        self.emulator.close()


class DelayProxy:
    """An HTTP proxy on loopback adding `rtt` seconds to every request (half before forwarding,
    half before answering), one thread per connection."""

    def __init__(self, upstream: str, rtt: float) -> None:
        up = urllib.parse.urlparse(upstream)
        host, port, half = up.hostname, up.port, rtt / 2
        hop = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
               "upgrade", "content-length"}

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: without this, Nagle's algorithm and the
                # client's delayed ACK add ~40 ms to every answer.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
                time.sleep(half)
                conn = http.client.HTTPConnection(host, port, timeout=120)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                time.sleep(half)
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in hop:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Watcher(threading.Thread):
    """Polls the emulator's health bindings of one rule; estimates when each bound target's
    script reached its last step (`healthy`): the binding's start plus S, or, once the step
    advanced, the step's own start."""

    def __init__(self, emulator: Emulator, rule: int) -> None:
        super().__init__(daemon=True)
        self.emulator, self.rule = emulator, rule
        self.samples: dict[str, list[tuple[int, float]]] = collections.defaultdict(list)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            before = time.time()
            try:
                state = self.emulator.health_state()
            except OSError:
                continue
            mid = (before + time.time()) / 2
            for b in state.get("bindings", []):
                if b["rule"] == self.rule:
                    self.samples[b["instance_id"]].append(
                        (b["step"], mid - b["seconds_in_step"]))
            self.done.wait(0.02)

    def stop(self, seconds: float) -> float | None:
        """When the last target turned healthy (wall clock), or None if none bound."""
        self.done.set()
        self.join()
        if not self.samples:
            return None
        ends = []
        for samples in self.samples.values():
            estimates = [t + (seconds if step == 0 else 0) for step, t in samples]
            ends.append(statistics.median(estimates))
        return max(ends)


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def sequence(run: Run) -> list[list[Any]]:
    """One run's calls: [ms since process start, operation], the first flip marked."""
    out = []
    for q in run.requests:
        op = f"{q['service']}:{q['action']}"
        out.append([round((q["time"] - run.start_wall) * 1000, 1), op])
    return out


# --- 5. cleanup, 6. start-up and size, 7. CI -------------------------------------------------

def cleanup(binary: Path, runs: int, sizes: str, work: Path) -> dict[str, Any]:
    """bench/cleanup_bench.py (issue 8's benchmark) run with this binary, into a scratch dir."""
    out = work / "cleanup"
    proc = subprocess.run(
        [str(PYTHON), str(ROOT / "bench/cleanup_bench.py"), "--sizes", sizes, "--runs",
         str(runs), "--binary", str(binary), "--out", str(out)],
        capture_output=True, text=True, timeout=3600)
    if not (out / "results-cleanup.json").exists():
        return {"error": f"cleanup_bench.py exited {proc.returncode}: {proc.stderr[-600:]}"}
    data = json.loads((out / "results-cleanup.json").read_text())
    keep = ("services", "due_services", "fleets", "tagged_fleet_pages", "runs", "wall_seconds",
            "wall_median", "wall_min", "wall_max", "calls_total", "calls_by_operation",
            "listing_calls", "calls_beyond_listing_per_due_service", "mutating_calls",
            "control_nothing_due_total", "problems", "seed_seconds")
    return {"exit": proc.returncode,
            "sizes": [{k: s.get(k) for k in keep} for s in data["sizes"]],
            "findings": data.get("findings", [])}


def startup(binary: Path, floor: Path, work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, cmd in (("greenlight --help", [str(binary), "--help"]),
                       ("greenlight --version", [str(binary), "--version"])):
        out[label] = time_command(cmd, work)
    for label, path in (("greenlight", binary), ("floor", floor)):
        stripped = work / f"{label}.stripped"
        subprocess.run(["strip", "-o", str(stripped), str(path)], check=True)
        out[f"{label} size"] = {"bytes": path.stat().st_size,
                                "stripped_bytes": stripped.stat().st_size}
    return out


def time_command(cmd: list[str], work: Path) -> dict[str, Any]:
    """hyperfine (-N, 5 warm-ups, 50 runs) when installed, else the same loop here."""
    if shutil.which("hyperfine"):
        export = work / "hyperfine.json"
        subprocess.run(["hyperfine", "-N", "--warmup", "5", "--runs", "50", "--export-json",
                        str(export), "--", " ".join(cmd)],
                       check=True, capture_output=True, text=True)
        r = json.loads(export.read_text())["results"][0]
        times = r["times"]
        return {"tool": "hyperfine", **stats(times)}
    times = []
    for i in range(55):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
        if i >= 5:
            times.append(time.perf_counter() - t0)
    return {"tool": "subprocess loop", **stats(times)}


def ci_time() -> dict[str, Any]:
    path = ROOT / "bench/ci-time.txt"
    if path.exists():
        return {"measured": True, "text": path.read_text().strip(), "source": "bench/ci-time.txt"}
    return {"measured": False,
            "text": "not measured in this run: time `.ci/run` in a clean clone "
                    "(`git clone . /tmp/ci && cd /tmp/ci && time bash .ci/run`) and write the "
                    "result to bench/ci-time.txt"}


# --- the machine ------------------------------------------------------------------------------

def command_output(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def machine(binary: Path, original: Path, floor: Path) -> dict[str, Any]:
    cpu = "unknown"
    mem_kb = 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    os_name = "unknown"
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    venv = command_output([str(PYTHON), "-c",
                           "import moto, boto3, botocore, sys; print(moto.__version__, "
                           "boto3.__version__, botocore.__version__, sys.version.split()[0])"])
    moto_v, boto3_v, botocore_v, py_v = (venv.split() + ["?"] * 4)[:4]
    aws = command_output([str(AWS_BIN / "aws"), "--version"])
    status = command_output(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src",
                             "Cargo.toml", "Cargo.lock"])
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "os": os_name,
        "kernel": platform.release(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "nice": os.nice(0),
        "rustc": command_output(["rustc", "--version"]),
        "git_commit": command_output(["git", "-C", str(ROOT), "rev-parse", "HEAD"]),
        "source_dirty": bool(status),
        "binary": str(original),
        "binary_version": command_output([str(binary), "--version"]),
        "binary_sha256": hashlib.sha256(binary.read_bytes()).hexdigest()[:16],
        "binary_mtime": datetime.fromtimestamp(original.stat().st_mtime, timezone.utc)
        .strftime("%Y-%m-%dT%H:%M:%SZ"),
        "floor": str(floor),
        "release_profile": release_profile(),
        "moto": moto_v,
        "boto3": boto3_v,
        "botocore (boto3 peer)": botocore_v,
        "python": py_v,
        "awscli": aws,
        "hyperfine": command_output(["hyperfine", "--version"]) if shutil.which("hyperfine")
        else "not installed",
        "emulator": "localstack/emulator.py --report-not-in-use: moto in-process, one request "
                    "at a time (a global lock), on loopback",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def release_profile() -> str:
    text = (ROOT / "Cargo.toml").read_text()
    m = re.search(r"^\[profile\.release\]\n((?:[^\[\n].*\n?)*)", text, re.M)
    return m.group(1).strip().replace("\n", "; ") if m else "cargo defaults (no [profile.release])"


# --- the report -------------------------------------------------------------------------------

def ms(x: float | None) -> str:
    return "–" if x is None else f"{x * 1000:.0f}" if x >= 0.0995 else f"{x * 1000:.1f}"


def rss_mib(s: dict[str, Any]) -> str:
    return f"{s['median'] / 1024:.1f}" if s.get("n") else "–"


def spread(s: dict[str, Any]) -> str:
    if not s.get("n"):
        return "–"
    return f"{ms(s['p10'])}–{ms(s['p90'])} ({ms(s['min'])}–{ms(s['max'])})"


def ratio(a: dict[str, Any], b: dict[str, Any]) -> str:
    if not a.get("n") or not b.get("n") or not b["median"]:
        return "–"
    return f"{a['median'] / b['median']:.1f}×"


def tool_table(section: dict[str, Any], with_flip: bool = True) -> list[str]:
    tools = section["tools"]
    floor = tools.get("floor", {})
    head = ("| | whole, median ms | p10–p90 (min–max) | start → flip, median ms | p10–p90 "
            "(min–max) | start → 1st call ms | calls | peak RSS MiB | CPU ms | whole ÷ floor "
            "| flip ÷ floor |")
    lines = [head, "|---|" + "---:|" * 10]
    for tool, t in tools.items():
        lines.append(
            f"| {tool} | {ms(t['wall'].get('median'))} | {spread(t['wall'])} | "
            f"{ms(t['flip'].get('median'))} | {spread(t['flip'])} | "
            f"{ms(t['first_call'].get('median'))} | {t['calls'].get('median', 0):.0f} | "
            f"{rss_mib(t['max_rss_kb'])} | {ms(t['cpu'].get('median'))} | "
            f"{ratio(t['wall'], floor.get('wall', {}))} | {ratio(t['flip'], floor.get('flip', {}))} |")
    return lines


def ops_table(sections: dict[str, dict[str, int]]) -> list[str]:
    ops = sorted({op for s in sections.values() for op in s})
    lines = ["| operation | " + " | ".join(sections) + " |",
             "|---|" + "---:|" * len(sections)]
    for op in ops:
        lines.append(f"| `{op}` | " + " | ".join(str(s.get(op, "")) for s in sections.values())
                     + " |")
    lines.append("| **total** | " + " | ".join(str(sum(s.values())) for s in sections.values())
                 + " |")
    return lines


def sequence_lines(seq: list[list[Any]]) -> list[str]:
    out, flipped = [], False
    for t, op in seq:
        mark = ""
        if not flipped and op.endswith(("ModifyListener", "ModifyRule")):
            mark, flipped = "  ← flip", True
        out.append(f"{t:7.1f}  {op}{mark}")
    return ["```", "  ms     call", *out, "```"]


def verdict(value: float | None, target: float) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}× (target ≤ {target}×: {'met' if value <= target else 'NOT met'})"


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    L: list[str] = [
        "# greenlight against its peers and the floor",
        "",
        "Generated by `bench/run.sh` (bench/bench.py); do not edit by hand. Raw numbers: "
        "`bench/results.json`." + (" **Quick mode: too few runs to trust.**"
                                   if res["options"]["quick"] else ""),
        "",
        "## Machine and versions",
        "",
        f"- {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, {m['os']}, Linux "
        f"{m['kernel']}; load average {', '.join(map(str, m['loadavg_at_start']))} at the start, "
        f"{', '.join(map(str, res['loadavg_at_end']))} at the end (a machine shared with other "
        "work: wall times are noisy)" + (f"; the harness, the emulator and the tools ran at "
                                          f"nice {m['nice']}" if m.get("nice") else ""),
        f"- {m['rustc']}; greenlight `{m['binary_version']}` (release build "
        f"`{m['binary']}`, sha256 {m['binary_sha256']}…, built {m['binary_mtime']}), "
        f"harness run from git {m['git_commit'][:12]}" + (
            " (its src/ or Cargo.* had uncommitted changes; the binary's own commit is the one "
            "in its version)" if m["source_dirty"] else ""),
        *([f"- {m['note']}"] if m.get("note") else []),
        f"- release profile: {m['release_profile']}",
        f"- emulator: {m['emulator']}; moto {m['moto']}, Python {m['python']}",
        f"- boto3 peer: boto3 {m['boto3']} / botocore {m['botocore (boto3 peer)']}; AWS CLI peer: "
        f"`{m['awscli']}` (bench/.venv); {m['hyperfine']}",
        f"- run {m['date']}, {res['options']['runs']} timed runs per measurement after one "
        f"untimed warm-up, took {res['seconds'] / 60:.1f} min",
        "",
        "## The tools",
        "",
        "- **greenlight**: the release binary, `--output json`, config as localstack/seed.py "
        "writes it (health interval 1s).",
        "- **aws-cli**: `bench/peers/rollback.sh` / `deploy.sh`, bash and one `aws` process per "
        "call.",
        "- **boto3**: `bench/peers/rollback.py` / `deploy.py`, one Python process.",
        "- **floor**: `bench/floor/main.rs` (`cargo build --release --example floor`): the SDK "
        "config loaded as greenlight loads it, then only the calls (rollback: one "
        "ModifyListener; deploy: the seven).",
        "",
        "Rollback peers make 3 calls (read the listener, check the previous target group is all "
        "healthy, ModifyListener); deploy peers and the deploy floor make the same 7 "
        "(DescribeListeners, DescribeAutoScalingGroups, CreateLaunchTemplateVersion, "
        "CreateAutoScalingGroup, DescribeTargetHealth until healthy, ModifyListener, "
        "DescribeListeners); the peers poll health every 2 s, the floor every 1 s.",
        "",
        "Columns: *whole* is process start → exit; *start → flip* is process start → the moment "
        "the emulator began serving the ModifyListener (its request log); *start → 1st call* "
        "likewise for the first AWS call (process start-up and config loading); *calls* from "
        "the request log; CPU (user + system, descendants included) from wait4; peak RSS from one more run "
        "of each under `/usr/bin/time -f %M` (descendants included: for aws-cli the largest "
        "`aws` process). "
        "Spreads are p10–p90 with min–max in brackets.",
        "",
    ]
    rb = res.get("rollback")
    if rb:
        L += ["## 1. Rollback", "",
              "Each tool has its own service: seeded, then deployed once by greenlight (release "
              "r1 on slot b, the seeded blue fleet kept warm on slot a). Every run rolls back to "
              "the other slot, so runs alternate between the two warm releases (greenlight "
              "`rollback --to <the other release>`, the peers swap the weights, the floor is "
              "told which way); after each run the harness checks where the listener points.",
              "", *tool_table(rb), "",
              f"`greenlight status` on the same service (a pure read): median "
              f"{ms(rb['status']['wall']['median'])} ms, {spread(rb['status']['wall'])}, "
              f"{rb['status']['calls']['median']:.0f} calls.", ""]
    dp = res.get("deploy")
    if dp:
        L += ["## 2. Blue/green deploy, targets healthy at once", "",
              "Each round resets the emulator and seeds one service per tool (blue fleet of 2 on "
              "slot a, slot b joined at weight 0); each tool deploys a fresh release `r<round>` "
              "with a new AMI. The emulator reports the new instances healthy on the first "
              "DescribeTargetHealth (nothing scripted), so no tool waits.", "",
              *tool_table(dp), ""]
    L += targets_section(res)
    lat = res.get("latency")
    if lat:
        L += [f"## 1–2 again, with a {lat['rtt_ms']:g} ms round trip per call", "",
              "The same two measurements, set up and checked the same way, with every tool's "
              f"calls going through a proxy on loopback that adds {lat['rtt_ms']:g} ms to each "
              "(half on the way in, half on the way out), one thread per connection, so calls "
              "a tool makes concurrently overlap as they would over a network. Without it the "
              "emulator answers in a few ms and serves one request at a time, so a tool's "
              "wall time mostly counts the emulator's work, not round trips. Start → flip "
              "includes half a round trip (the request reaching the emulator).", "",
              "Rollback:", "", *tool_table(lat["rollback"]), "",
              "Deploy, targets healthy at once:", "", *tool_table(lat["deploy"]), ""]
        r = lat["rollback"]["ratios_to_floor"].get("greenlight", {})
        d = lat["deploy"]["ratios_to_floor"].get("greenlight", {})
        L += [f"- rollback, whole process: greenlight ÷ floor = {verdict(r.get('wall'), 2)}",
              f"- rollback, start → flip: greenlight ÷ floor = {verdict(r.get('flip'), 1.5)}",
              f"- deploy, whole process: greenlight ÷ floor = {verdict(d.get('wall'), 2)}", ""]
    cn = res.get("canary")
    if cn:
        c = cn["latency"]
        L += ["## 3. Canary step latency and last healthy target → flip", "",
              f"**Pause end → weight changed** ({cn['plan']}, health interval "
              f"{cn['health_interval']}; {c['n']} pause ends over {len(cn['deploys'])} "
              f"deploys): median {ms(c['median'])} ms, p10–p90 {ms(c['p10'])}–{ms(c['p90'])}, "
              f"min–max {ms(c['min'])}–{ms(c['max'])}. Measured from the pause's `until` (the "
              "`pause` event) to the ModifyListener of the next step.", ""]
    hf = res.get("health_flip")
    if hf:
        L += ["**Last target healthy → flip**: the new group's targets report `initial` for S "
              "seconds (2–6 s, seeded per round: " + ", ".join(
                  f"{s:g}" for s in hf["initial_seconds"]) + ") from their first report, then "
              "`healthy`; latency from the moment the last one turned healthy (the emulator's "
              "health bindings) to the flip.", "",
              "| | median ms | p10–p90 (min–max) |", "|---|---:|---:|"]
        for v, d in hf["variants"].items():
            L.append(f"| {v} | {ms(d['latency'].get('median'))} | {spread(d['latency'])} |")
        L.append("")
    L += ["## 4. API calls", ""]
    sections = {}
    if rb:
        sections["rollback"] = rb["tools"]["greenlight"]["calls_by_operation"]
        sections["status"] = rb["status"]["calls_by_operation"]
    if dp:
        sections["deploy"] = dp["tools"]["greenlight"]["calls_by_operation"]
    if cn and cn["deploys"]:
        sections["canary deploy (10 steps)"] = cn["deploys"][0]["calls_by_operation"]
    if sections:
        L += ["greenlight's calls per command, by operation (one run; "
              + ", ".join(f"{k}: identical in every run"
                          if (res.get(k) or {}).get("tools", {}).get("greenlight", {}).get(
                              "calls_identical_every_run") else f"{k}: varied between runs"
                          for k in ("rollback", "deploy") if res.get(k))
              + "):", "", *ops_table(sections), ""]
    if rb:
        g = rb["tools"]["greenlight"]
        L += [f"Rollback: {g['calls_before_flip']['median']:.0f} calls before the flip, "
              f"{g['calls']['median'] - g['calls_before_flip']['median'] - 1:.0f} after it. "
              "One run's calls in order (ms since process start):", "",
              *sequence_lines(rb["sequence"]), ""]
    if dp:
        g = dp["tools"]["greenlight"]
        L += [f"Deploy: {g['calls_before_flip']['median']:.0f} calls before the flip, "
              f"{g['calls']['median'] - g['calls_before_flip']['median'] - 1:.0f} after it. "
              "One run's calls in order:", "", *sequence_lines(dp["sequence"]), ""]
    wt = res.get("waiting")
    if wt:
        L += ["**Calls while waiting on health**: a deploy whose new targets report `unhealthy` "
              "for 60 s (from their first report), greenlight's calls in those 60 s:", "",
              "| | calls/min | reads/min | ELB Describe*/min | ELB Describe*/s for 50 services "
              "| polls (DescribeListeners) |", "|---|---:|---:|---:|---:|---:|"]
        for k, w in wt.items():
            L.append(f"| {k} | {w['calls_per_minute']} | {w['reads_per_minute']} | "
                     f"{w['elb_describe_per_minute']} | "
                     f"{w['elb_describe_per_second_for_50_services']} | {w['polls']} |")
        L += ["", f"ELB's Describe* budget is {ELB_DESCRIBE_BURST} burst, "
              f"{ELB_DESCRIBE_REFILL:g}/s refill, per account and region: one service waiting "
              "uses " + ", ".join(
                  f"{w['elb_describe_per_minute'] / 60 / ELB_DESCRIBE_REFILL * 100:.1f}% "
                  f"({k})" for k, w in wt.items())
              + " of the refill; 50 services waiting at once would use "
              + ", ".join(f"{w['elb_describe_per_second_for_50_services'] / ELB_DESCRIBE_REFILL * 100:.0f}%"
                          f" ({k})" for k, w in wt.items())
              + ". Calls by operation in the window: " + "; ".join(
                  f"{k}: " + ", ".join(f"`{op}` {n}" for op, n in w["calls_by_operation"].items())
                  for k, w in wt.items())
              + ". The peers poll one DescribeTargetHealth every 2 s: 30 ELB Describe per "
              "minute by construction.", ""]
    cl = res.get("cleanup")
    if cl:
        L += ["## 5. `cleanup --all --dry-run` over many services", ""]
        if "error" in cl:
            L += [f"FAILED: {cl['error']}", ""]
        else:
            L += ["bench/cleanup_bench.py (see bench/RESULTS-cleanup.md for the setup) run with "
                  "the release binary:", "",
                  "| services | due | fleets (pages) | wall median s | min–max s | calls | "
                  "listing calls | calls per due service | mutating | problems |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for s in cl["sizes"]:
                L.append(f"| {s['services']} | {s['due_services']} | {s['fleets']} "
                         f"({s['tagged_fleet_pages']}) | {s['wall_median']:.2f} | "
                         f"{s['wall_min']:.2f}–{s['wall_max']:.2f} | {s['calls_total']} | "
                         f"{s['listing_calls']} | {s['calls_beyond_listing_per_due_service']} | "
                         f"{s['mutating_calls']} | {len(s['problems'])} |")
            L.append("")
    su = res.get("startup")
    if su:
        L += ["## 6. Start-up, size, memory", ""]
        for label in ("greenlight --help", "greenlight --version"):
            s = su[label]
            L.append(f"- `{label}`: median {ms(s['median'])} ms, p10–p90 {ms(s['p10'])}–"
                     f"{ms(s['p90'])} ({s['n']} runs, {s['tool']})")
        for label in ("greenlight", "floor"):
            s = su[f"{label} size"]
            L.append(f"- {label} binary: {s['bytes'] / 2**20:.1f} MiB as built, "
                     f"{s['stripped_bytes'] / 2**20:.1f} MiB stripped")
        if dp:
            L.append("- peak RSS during a deploy (one run each under `/usr/bin/time -f %M`, "
                     "descendants included): " + ", ".join(
                         f"{tool} {rss_mib(t['max_rss_kb'])} MiB"
                         for tool, t in dp["tools"].items()))
        L.append("")
    ci = res["ci"]
    L += ["## 7. Clean CI time", "", f"- {ci['text']}", ""]
    L += findings(res)
    L += ["## Problems", ""] + ([f"- {p}" for p in res["problems"]] or ["- none"]) + [""]
    return "\n".join(L) + "\n"


def findings(res: dict[str, Any]) -> list[str]:
    """What the numbers say, computed from them (so the text cannot drift from the tables)."""
    out = ["## What the numbers say", ""]
    rb, dp, hf, wt = (res.get(k) for k in ("rollback", "deploy", "health_flip", "waiting"))
    for name, sec in (("rollback", rb), ("deploy", dp)):
        if not sec:
            continue
        g, f = sec["tools"]["greenlight"], sec["tools"].get("floor")
        if not f or not f["wall"].get("n"):
            continue
        ops = g["calls_by_operation"]
        before = g["calls_before_flip"]["median"]
        out.append(
            f"- **{name}**: greenlight starts as fast as the floor (first AWS call after "
            f"{ms(g['first_call']['median'])} ms vs {ms(f['first_call']['median'])} ms); the "
            f"difference is calls: {before:.0f} before the flip and "
            f"{g['calls']['median'] - before - 1:.0f} after it, against the floor's "
            f"{f['calls_before_flip']['median']:.0f} before and "
            f"{f['calls']['median'] - f['calls_before_flip']['median'] - 1:.0f} after (the "
            "reads of one observe pass are issued together, src/engine/observe.rs, and the "
            "emulator serves them one at a time). It reads the "
            f"listener {ops.get('elasticloadbalancing:DescribeListeners', 0)} times, target "
            f"health {ops.get('elasticloadbalancing:DescribeTargetHealth', 0)} times (two target "
            f"groups) and the Auto Scaling groups "
            f"{ops.get('autoscaling:DescribeAutoScalingGroups', 0)} times per run.")
    out.append(
        "- **The emulator serialises requests** (one global lock), so reads made concurrently "
        "gain little here beyond overlapping client-side work; against AWS each sequential call "
        "is a network round trip, so the count of sequential calls is what the fast path has to "
        "cut, and the request log's call counts carry over where wall times do not.")
    lat = res.get("latency")
    if lat:
        rtt = lat["rtt_ms"] / 1000
        for name in ("rollback", "deploy"):
            direct, slow = res.get(name), lat.get(name)
            if not direct or not slow:
                continue
            parts = []
            for tool in ("greenlight", "floor"):  # the peers' run-to-run noise exceeds an RTT
                t0, t1 = direct["tools"].get(tool, {}), slow["tools"].get(tool, {})
                if not (t0.get("wall", {}).get("n") and t1.get("wall", {}).get("n")):
                    continue
                whole = (t1["wall"]["median"] - t0["wall"]["median"]) / rtt
                flip = (t1["flip"]["median"] - t0["flip"]["median"]) / rtt - 0.5
                parts.append(f"{tool} {whole:.0f} in all ({t1['calls']['median']:.0f} calls), "
                             f"{flip:.0f} before the flip")
            out.append(
                f"- **Round trips, {name}**: with {lat['rtt_ms']:g} ms added per call, the "
                "medians grow by this many round trips, an estimate of the calls made one "
                "after another: " + "; ".join(parts) + ". On AWS each is a real round trip "
                "(and Describe* calls count against ELB's and Auto Scaling's rate limits).")
    if hf:
        v = hf["variants"]
        g1 = v.get("greenlight (interval 1s)", {}).get("latency", {})
        g5 = v.get("greenlight (default interval 5s)", {}).get("latency", {})
        fl = v.get("floor (polls every 1s)", {}).get("latency", {})
        if g1.get("n") and g5.get("n") and fl.get("n"):
            out.append(
                "- **Healthy → flip follows the health poll's back-off**: greenlight waits the "
                "configured interval, then ×1.5 each poll up to 30 s (src/engine/backoff.rs), "
                "counted from the start of the wait, so the later green turns healthy the longer "
                f"the flip lags: p90 {ms(g1['p90'])} ms (interval 1s) and {ms(g5['p90'])} ms "
                f"(default 5s) after only 2–6 s of waiting, against {ms(fl['p90'])} ms for the "
                "floor's fixed 1 s poll. Real instances take minutes to pass health checks; by "
                "then the poll is at its 30 s cap, so the flip comes up to 30 s (on average "
                "~15 s) after the last target turned healthy.")
    if wt:
        for key, w in wt.items():
            if not w["polls"]:
                continue
            per_poll = w["elb_describe_per_minute"] / w["polls"]
            capped = per_poll * 2  # one poll every 30 s at the cap
            out.append(
                f"- **Waiting ({key})**: each poll costs {per_poll:.0f} ELB Describe* calls "
                f"(DescribeListeners + DescribeTargetHealth per target group) plus "
                f"{(w['reads_per_minute'] - w['elb_describe_per_minute']) / w['polls']:.0f} other "
                f"reads. The first minute polls {w['polls']} times: "
                f"{w['elb_describe_per_minute']} ELB Describe*/min for one service, "
                f"{w['elb_describe_per_second_for_50_services']}/s for 50 services waiting at "
                f"once ({w['elb_describe_per_second_for_50_services'] / ELB_DESCRIBE_REFILL * 100:.0f}% "
                f"of the {ELB_DESCRIBE_REFILL:g}/s refill, shared with everything else in the "
                f"account and region). At the 30 s cap: {capped:.0f}/min per service, "
                f"{50 * capped / 60:.1f}/s for 50 "
                f"({50 * capped / 60 / ELB_DESCRIBE_REFILL * 100:.0f}%).")
    return out + [""]


def targets_section(res: dict[str, Any]) -> list[str]:
    rb, dp = res.get("rollback"), res.get("deploy")
    if not rb and not dp:
        return []
    out = ["### Against issue 10's targets", ""]
    if rb:
        r = rb["ratios_to_floor"].get("greenlight", {})
        out.append(f"- rollback, whole process: greenlight ÷ floor = {verdict(r.get('wall'), 2)}")
        out.append(f"- rollback, start → flip: greenlight ÷ floor = {verdict(r.get('flip'), 1.5)}")
    if dp:
        r = dp["ratios_to_floor"].get("greenlight", {})
        out.append(f"- deploy, whole process: greenlight ÷ floor = {verdict(r.get('wall'), 2)}")
    for name, sec in (("rollback", rb), ("deploy", dp)):
        if not sec:
            continue
        t = sec["tools"]
        g = t["greenlight"]["wall"]
        out.append(f"- {name}, whole process: " + ", ".join(
            f"{p} takes {t[p]['wall']['median'] / g['median']:.2f}× greenlight's time"
            for p in ("aws-cli", "boto3") if p in t and t[p]["wall"].get("n")))
    return out + [""]


# --- main -------------------------------------------------------------------------------------

def main() -> int:
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=10, help="timed runs per measurement (10)")
    p.add_argument("--skip-slow", action="store_true",
                   help="skip the 60 s waiting measurement and cleanup over 1,000 services")
    p.add_argument("--quick", action="store_true",
                   help="--runs 3 --skip-slow, results to /tmp/greenlight-bench unless --out")
    p.add_argument("--binary", type=Path, default=target / "release/greenlight")
    p.add_argument("--floor", type=Path, default=target / "release/examples/floor")
    p.add_argument("--out", type=Path)
    p.add_argument("--only", help="comma-separated sections (rollback,deploy,canary,"
                   "health_flip,waiting,latency,cleanup,startup)")
    p.add_argument("--rtt-ms", type=float, default=25,
                   help="the latency section's round trip added to each call (25 ms)")
    p.add_argument("--note", help="a line about the binaries for the report (how they were "
                   "built, from what)")
    p.add_argument("--render", type=Path, metavar="RESULTS_JSON",
                   help="only write RESULTS.md again from a results.json (to --out, else "
                   "beside it)")
    args = p.parse_args()
    if args.render:
        res = json.loads(args.render.read_text())
        if args.note:
            res["machine"]["note"] = args.note
            args.render.write_text(json.dumps(res, indent=1) + "\n")
        target_dir = args.out or args.render.parent
        (target_dir / "RESULTS.md").write_text(markdown(res))
        print(f"wrote {target_dir / 'RESULTS.md'}")
        return 0
    if args.quick:
        args.runs, args.skip_slow = min(args.runs, 3), True
    out_dir = args.out or (Path("/tmp/greenlight-bench") if args.quick else ROOT / "bench")
    for path, what in ((args.binary, "greenlight"), (args.floor, "floor")):
        if not path.is_file():
            sys.exit(f"bench.py: no {what} binary at {path}; cargo build --release --bin "
                     "greenlight --example floor (bench/run.sh does)")
    only = set(args.only.split(",")) if args.only else None

    def wanted(name: str, slow: bool = False) -> bool:
        return (only is None or name in only) and not (slow and args.skip_slow and only is None)

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="greenlight-bench-") as tmp:
        work = Path(tmp)
        # Private copies: a rebuild of the shared target dir mid-run cannot change them.
        binary, floor = work / "greenlight", work / "floor"
        shutil.copy2(args.binary, binary)
        shutil.copy2(args.floor, floor)
        res: dict[str, Any] = {"machine": {**machine(binary, args.binary.resolve(), floor),
                                           **({"note": args.note} if args.note else {})},
                               "options": {"runs": args.runs, "skip_slow": args.skip_slow,
                                           "quick": args.quick}}
        bench = Bench(args, binary, floor, work)
        steps: list[tuple[str, Callable[[], Any], bool]] = [
            ("rollback", bench.rollback, False),
            ("deploy", bench.deploy, False),
            ("canary", bench.canary, False),
            ("health_flip", bench.health_flip, False),
            ("waiting", bench.waiting, True),
            ("latency", bench.latency, False),
        ]
        try:
            for name, fn, slow in steps:
                if wanted(name, slow):
                    bench.log(f"== {name}")
                    res[name] = fn()
        finally:
            bench.close()
        problems = bench.problems
        if wanted("cleanup", slow=True):
            bench.log("== cleanup (bench/cleanup_bench.py, 1,000 services)")
            res["cleanup"] = cleanup(binary, args.runs, "1000", work)
            if "error" in res["cleanup"]:
                problems.append(res["cleanup"]["error"])
            else:
                problems += [p for s in res["cleanup"]["sizes"] for p in s["problems"]]
        if wanted("startup"):
            bench.log("== start-up and size")
            res["startup"] = startup(binary, floor, work)
    res["ci"] = ci_time()
    res["problems"] = problems
    res["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    res["seconds"] = round(time.monotonic() - started, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    (out_dir / "RESULTS.md").write_text(markdown(res))
    print(f"wrote {out_dir / 'RESULTS.md'} and {out_dir / 'results.json'} "
          f"({len(problems)} problems, {res['seconds'] / 60:.1f} min)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
