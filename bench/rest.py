"""REST load through the Envoy gateway with wrk (Debian package `wrk`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.procs import CpuUse, Pids, cpu_sample

# Each request GETs a random lead from the ids file; `done` prints one JSON line.
WRK_SCRIPT = r"""
local ids = {}
function init(args)
  for line in io.lines(args[1]) do ids[#ids + 1] = line end
  math.randomseed(os.time())
end
function request()
  return wrk.format("GET", "/api/v1/crm/leads/" .. ids[math.random(#ids)])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class WrkResult:
    connections: int
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    cpu: CpuUse

    @property
    def calls_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def ensure_wrk() -> str | None:
    """The wrk binary; installs the Debian package when possible (root with apt-get)."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: apt-get install -y wrk …", flush=True)
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        subprocess.run(["apt-get", "update", "-qq"], check=False, **quiet)  # type: ignore[call-overload]
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, **quiet)  # type: ignore[call-overload]
    return shutil.which("wrk")


def run_wrk(
    wrk: str,
    *,
    base_url: str,
    key: str,
    ids_file: Path,
    connections: int,
    warmup_s: float,
    duration_s: float,
    pids: Pids,
    work_dir: Path,
) -> WrkResult:
    script = work_dir / "getlead.lua"
    script.write_text(WRK_SCRIPT)

    def wrk_run(seconds: float) -> dict[str, int]:
        argv = [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{max(seconds, 1):.0f}s",
            "--timeout",
            "10s",
            "-H",
            f"Authorization: Bearer {key}",
            "-s",
            str(script),
            base_url,
            "--",
            str(ids_file),
        ]
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
        line = [x for x in out.splitlines() if x.startswith("{")][-1]
        data: dict[str, int] = json.loads(line)
        return data

    if warmup_s > 0:
        wrk_run(warmup_s)
    before = cpu_sample(pids)
    data = wrk_run(duration_s)
    cpu = CpuUse.between(before, cpu_sample(pids))
    return WrkResult(
        connections=connections,
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        non_2xx=data["non_2xx"],
        socket_errors=data["socket_errors"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        cpu=cpu,
    )
