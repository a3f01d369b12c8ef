"""Public form submissions through the Envoy gateway (`python -m bench.forms [--quick]`).

One command, everything local: a fresh migrated database, `tnx-crm serve` with the
submission rate limits off (CRM_FORM_IP_RATE_LIMIT_PER_MINUTE=0, CRM_FORM_RATE_LIMIT_PER_MINUTE=0),
the Envoy gateway, and wrk posting JSON the way the embed snippet does (Origin header,
token, fields). The form targets a static segment and the workspace has a rule segment, so
every submission does the whole job: lead upsert, submission, activity, membership,
counts, events, rule refresh.

Subjects, each at the same concurrency, alternating over rounds:
- baseline: CreateLead through the same gateway (POST /api/v1/crm/leads, a new email each);
- a submission that creates a lead (a new email each);
- a submission from a known email (upsert of an existing lead).
Figures are medians over rounds; ratios are against the baseline of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests

from bench.rest import ensure_wrk
from server.config import REPO_ROOT
from tests.support import db, stack

OUT_DIR = REPO_ROOT / "bench" / "out"
ORIGIN = "https://bench.example"
KNOWN_EMAILS = 2_000

# Each request is built in Lua so every one carries its own email. `done` prints one JSON line.
WRK_SCRIPT = r"""
local counter, thread_id = 0, 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  thread_id = tid
  mode, body_template = args[1], args[2]
  math.randomseed(os.time() * 100 + thread_id)
  run_id = math.random(1, 1000000000)
end
function request()
  counter = counter + 1
  local email
  if mode == "known" then
    email = string.format("known-%d@bench.example", (counter * 7919 + thread_id) % %KNOWN% )
  else
    email = string.format("new-%d-%d-%d@bench.example", run_id, thread_id, counter)
  end
  return wrk.format("POST", nil, nil, (string.gsub(body_template, "EMAIL", email)))
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
""".replace("%KNOWN%", str(KNOWN_EMAILS))


@dataclass(frozen=True)
class Run:
    subject: str
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Target:
    """What wrk posts: to which URL, with which headers, which email mode and body."""

    url: str
    headers: dict[str, str]
    mode: str  # "new": a new email each request; "known": one of KNOWN_EMAILS
    body: str  # JSON with the placeholder EMAIL


@dataclass(frozen=True)
class Load:
    connections: int
    warmup_s: float
    duration_s: float
    script: Path


def wrk_run(wrk: str, target: Target, load: Load, seconds: float) -> dict[str, int]:
    threads = min(2, load.connections)
    argv = [wrk, f"-t{threads}", f"-c{load.connections}", f"-d{max(seconds, 1):.0f}s"]
    argv += ["-s", str(load.script), "-H", "Content-Type: application/json"]
    for name, value in target.headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv += ["--latency", target.url, "--", target.mode, target.body]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    line = [text for text in out.splitlines() if text.startswith("{")][-1]
    result: dict[str, int] = json.loads(line)
    return result


def measure(wrk: str, subject: str, target: Target, load: Load) -> Run:
    if load.warmup_s > 0:
        wrk_run(wrk, target, load, load.warmup_s)
    raw = wrk_run(wrk, target, load, load.duration_s)
    return Run(
        subject=subject,
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        non_2xx=raw["non_2xx"],
        socket_errors=raw["socket_errors"],
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
    )


def _setup(base: str, key: str, *, segments: bool) -> tuple[str, str]:
    """A static and a rule segment, a form targeting the static one (unless not
    `segments`), its embed; returns (submit URL, token)."""
    auth = {"Authorization": f"Bearer {key}"}

    def ok(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        reply = requests.request(method, base + path, headers=auth, timeout=30, **kwargs)
        reply.raise_for_status()
        found: dict[str, Any] = reply.json()
        return found

    targets = []
    if segments:
        static = ok("POST", "/api/v1/crm/lists", json={"name": "Inbound", "membership": "STATIC"})
        targets.append(static["id"])
        rule = {
            "rules": [{"condition": {"field": "custom.team_size", "op": "eq", "value": "11-50"}}]
        }
        ok("POST", "/api/v1/crm/lists", json={"name": "Mid", "membership": "RULE", "rules": rule})
    fields = [
        {"name": "email", "type": "EMAIL", "required": True, "maps_to": "email"},
        {"name": "first_name", "type": "TEXT", "maps_to": "first_name"},
        {"name": "company", "type": "TEXT", "maps_to": "company"},
        {
            "name": "team_size",
            "type": "SELECT",
            "options": ["1-10", "11-50"],
            "maps_to": "custom.team_size",
        },
        {"name": "consent", "type": "CHECKBOX", "required": True, "maps_to": "custom.consent"},
    ]
    form = ok(
        "POST",
        "/api/v1/crm/forms",
        json={
            "name": "Bench",
            "fields": fields,
            "allowed_origins": [ORIGIN],
            "segment_ids": targets,
        },
    )
    embed = ok("GET", f"/api/v1/crm/forms/{form['id']}/embed", params={"origin": ORIGIN})
    return str(embed["submit_url"]), str(embed["token"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.forms",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s (a smoke run)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--no-segments",
        action="store_true",
        help="a form without target segments in a workspace without rule segments",
    )
    args = parser.parse_args(argv)
    rounds, duration, warmup = (
        (1, 3.0, 1.0) if args.quick else (args.rounds, args.duration, args.warmup)
    )
    wrk = ensure_wrk()
    if wrk is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="bench-forms-"))
    script = work / "forms.lua"
    script.write_text(WRK_SCRIPT)
    runs: list[Run] = []
    with db.fresh_database() as url:
        ws = db.create_workspace(url, name="bench")
        with (
            stack.grpc_server(
                url,
                work / "server.log",
                CRM_FORM_IP_RATE_LIMIT_PER_MINUTE="0",
                CRM_FORM_RATE_LIMIT_PER_MINUTE="0",
            ) as (_, port),
            stack.envoy_gateway(port, work) as base,
        ):
            submit_url, token = _setup(base, ws.key, segments=not args.no_segments)
            values = {
                "email": "EMAIL",
                "first_name": "Ada",
                "company": "Bench",
                "team_size": "11-50",
                "consent": True,
            }
            form_body = json.dumps({"token": token, "fields": values})
            public = {"Origin": ORIGIN, "User-Agent": "bench.forms"}
            subjects = [
                (
                    "CreateLead (baseline)",
                    Target(
                        url=f"{base}/api/v1/crm/leads",
                        headers={"Authorization": f"Bearer {ws.key}"},
                        mode="new",
                        body=json.dumps({"email": "EMAIL", "first_name": "Ada", "source": "b"}),
                    ),
                ),
                ("SubmitForm, new lead", Target(submit_url, public, "new", form_body)),
                ("SubmitForm, known lead", Target(submit_url, public, "known", form_body)),
            ]
            load = Load(args.connections, warmup, duration, script)
            for _ in range(rounds):
                runs.extend(measure(wrk, name, target, load) for name, target in subjects)
            stored = db.query(url, "SELECT count(*) FROM form_submissions")[0][0]
    _report(runs, rounds=rounds, duration=duration, connections=args.connections, stored=stored)


def _report(
    runs: list[Run], *, rounds: int, duration: float, connections: int, stored: int
) -> None:
    subjects = list(dict.fromkeys(run.subject for run in runs))
    by = {s: [r for r in runs if r.subject == s] for s in subjects}
    baseline = by[subjects[0]]
    print(
        f"\nbench.forms: POST through Envoy, {connections} connections, {duration:.0f} s per run, "
        f"{rounds} round(s), submission rate limits off"
    )
    print(f"{'subject':<26}{'req/s':>9}{'vs baseline':>13}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}")
    for subject in subjects:
        mine = by[subject]
        ratios = [m.per_s / b.per_s for m, b in zip(mine, baseline, strict=True) if b.per_s]
        ratio = f"{statistics.median(ratios):.2f}x" if ratios else "-"
        print(
            f"{subject:<26}{statistics.median(r.per_s for r in mine):>9.0f}{ratio:>13}"
            f"{statistics.median(r.p50_ms for r in mine):>9.1f}"
            f"{statistics.median(r.p99_ms for r in mine):>9.1f}"
            f"{sum(r.non_2xx + r.socket_errors for r in mine):>9d}"
        )
    print(f"submissions stored: {stored} (warm-up runs included)")
    load1, _, _ = os.getloadavg()
    if load1 > (os.cpu_count() or 1):
        # Other jobs share the cores: absolute figures drop, the ratios hold up better.
        print(f"note: load average {load1:.1f} on {os.cpu_count()} cores: the machine was busy")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"forms-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps([asdict(r) | {"per_s": r.per_s} for r in runs], indent=2))
    print(f"raw results: {out.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
