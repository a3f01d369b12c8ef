"""Aggregating the rounds and printing the tables."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.listing import ListingResult
from bench.procs import CpuUse

LABELS = {
    "echo": "Echo (baseline)",
    "get": "GetLead gRPC",
    "create": "CreateLead gRPC",
    "rest": "GetLead REST/Envoy",
}


FOREIGN_LIMIT = 0.10  # a run during which other jobs used more than this is suspect


@dataclass(frozen=True)
class Measurement:
    kind: str  # echo | get | create | rest
    concurrency: int
    calls: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu: CpuUse

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Check:
    name: str
    measured: str
    target: str
    ok: bool
    note: str = ""


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


class Rounds:
    """Every measurement of every round, grouped by (kind, concurrency)."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, int], list[Measurement]] = {}

    def add(self, m: Measurement) -> None:
        self.by_key.setdefault((m.kind, m.concurrency), []).append(m)

    def median(self, kind: str, c: int, value: Callable[[Measurement], float]) -> float:
        return _median([value(m) for m in self.by_key.get((kind, c), [])])

    def rate(self, kind: str, c: int) -> float:
        return self.median(kind, c, lambda m: m.calls_per_s)

    def ratio(self, kind: str, base: str, c: int) -> tuple[float, float, float]:
        """Median of per-round paired ratios, with their min and max."""
        pairs = zip(self.by_key.get((kind, c), []), self.by_key.get((base, c), []), strict=False)
        ratios = [a.calls_per_s / b.calls_per_s for a, b in pairs if b.calls_per_s]
        if not ratios:
            return 0.0, 0.0, 0.0
        return _median(ratios), min(ratios), max(ratios)

    def difference(
        self, kind: str, base: str, c: int, value: Callable[[Measurement], float]
    ) -> tuple[float, float, float]:
        """Median of per-round paired differences (kind - base), with their min and max: runs
        of one round are adjacent in time, so drift in the machine's speed cancels out."""
        pairs = zip(self.by_key.get((kind, c), []), self.by_key.get((base, c), []), strict=False)
        differences = [value(a) - value(b) for a, b in pairs]
        if not differences:
            return 0.0, 0.0, 0.0
        return _median(differences), min(differences), max(differences)

    def cpu_per_call(self, kind: str, c: int) -> float:
        """CPU seconds per call, all parts of ours together (server, PostgreSQL, load side)."""
        runs = self.by_key.get((kind, c), [])
        calls = sum(m.calls for m in runs)
        spent = sum(m.cpu.server + m.cpu.postgres + m.cpu.client for m in runs)
        return spent / calls if calls else 0.0

    def cpu_ratio(self, kind: str, base: str, c: int) -> str:
        """The same ratio estimated from CPU per call: when the cores are the bottleneck,
        calls/s go as 1 / CPU per call, and this barely moves when other jobs share the
        machine, unlike calls/s."""
        subject = self.cpu_per_call(kind, c)
        return f"by CPU/call {self.cpu_per_call(base, c) / subject:.0%}" if subject else ""


def _us_per_call(seconds: float, calls: int) -> str:
    return f"{seconds / calls * 1e6:,.0f}" if calls else "-"


def throughput_table(rounds: Rounds) -> list[str]:
    head = (
        f"{'call':<20} {'in-flight':>9} {'calls/s':>8} {'(min-max)':>15} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'server':>7} {'postgres':>8} {'client':>7} {'foreign':>7} {'errors':>6}"
    )
    lines = [head, "-" * len(head)]
    order = list(LABELS)
    for (kind, c), runs in sorted(
        rounds.by_key.items(), key=lambda kv: (kv[0][1], order.index(kv[0][0]))
    ):
        rates = [m.calls_per_s for m in runs]
        calls = sum(m.calls for m in runs)
        foreign = max(m.cpu.foreign_share for m in runs)
        lines.append(
            f"{LABELS[kind]:<20} {c:>9} {_median(rates):>8,.0f} "
            f"{f'({min(rates):,.0f}-{max(rates):,.0f})':>15} "
            f"{rounds.median(kind, c, lambda m: m.p50_ms):>7.2f} "
            f"{rounds.median(kind, c, lambda m: m.p99_ms):>7.2f} "
            f"{_us_per_call(sum(m.cpu.server for m in runs), calls):>7} "
            f"{_us_per_call(sum(m.cpu.postgres for m in runs), calls):>8} "
            f"{_us_per_call(sum(m.cpu.client for m in runs), calls):>7} "
            f"{foreign:>7.0%} {sum(m.errors for m in runs):>6}"
        )
    lines += [
        "server / postgres / client: CPU µs per call in the gRPC server process, in PostgreSQL",
        "and in the load side (Python load generator; for REST: wrk and Envoy). foreign: the",
        "largest share of the machine that other jobs used during one of the runs.",
    ]
    worst = max((m.cpu.foreign_share for runs in rounds.by_key.values() for m in runs), default=0)
    if worst > FOREIGN_LIMIT:
        lines.append(
            f"WARNING: other jobs used up to {worst:.0%} of the machine during a run: "
            "absolute figures are low and ratios noisy; rerun on a quiet machine."
        )
    return lines


def listing_table(result: ListingResult, leads: int) -> list[str]:
    title = f"query ({leads:,} leads, page of 100)"
    head = f"{title:<44} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}"
    lines = [head, "-" * len(head)]
    for t in (result.first, result.deep, result.search):
        lines.append(f"{t.name:<44} {t.p50:>7.2f} {t.p95:>7.2f} {t.p99:>7.2f}")
    return lines


def grpc_checks(rounds: Rounds, concurrencies: Sequence[int]) -> list[Check]:
    checks = []
    for kind, target in (("get", 0.50), ("create", 0.35)):
        for c in concurrencies:
            mid, low, high = rounds.ratio(kind, "echo", c)
            checks.append(
                Check(
                    f"{LABELS[kind]} / echo @{c}",
                    f"{mid:.0%} ({low:.0%}-{high:.0%})",
                    f">= {target:.0%}",
                    mid >= target,
                    rounds.cpu_ratio(kind, "echo", c),
                )
            )
    return checks


def rest_checks(rounds: Rounds, concurrencies: Sequence[int]) -> list[Check]:
    checks = []
    for c in concurrencies:
        if not rounds.by_key.get(("rest", c)):
            continue
        mid, low, high = rounds.ratio("rest", "get", c)
        if c > 1:
            checks.append(
                Check(
                    f"REST / gRPC GetLead calls/s @{c}",
                    f"{mid:.0%} ({low:.0%}-{high:.0%})",
                    ">= 80%",
                    mid >= 0.80,
                    rounds.cpu_ratio("rest", "get", c),
                )
            )
        overhead, least, most = rounds.difference("rest", "get", c, lambda m: m.p50_ms)
        checks.append(
            Check(
                f"REST p50 overhead @{c}",
                f"{overhead:+.2f} ms ({least:+.2f} to {most:+.2f})",
                "<= 1 ms",
                overhead <= 1.0,
            )
        )
    return checks


def listing_checks(result: ListingResult, phrase_matches: int) -> list[Check]:
    ratio = result.deep.p50 / result.first.p50 if result.first.p50 else 0.0
    return [
        Check(
            "ListLeads deep / first page (p50)",
            f"{ratio:.2f}x",
            "<= 1.5x",
            ratio <= 1.5,
            f"{result.deep.p50:.2f} vs {result.first.p50:.2f} ms",
        ),
        Check(
            "SearchLeads title phrase p95",
            f"{result.search.p95:.1f} ms",
            "<= 50 ms",
            result.search.p95 <= 50.0,
            f"{phrase_matches:,} leads match",
        ),
    ]


def checks_table(checks: list[Check]) -> list[str]:
    head = f"{'check':<36} {'measured':>20} {'target':>9}  result"
    lines = [head, "-" * (len(head) + 8)]
    for check in checks:
        note = f"   {check.note}" if check.note else ""
        lines.append(
            f"{check.name:<36} {check.measured:>20} {check.target:>9}  "
            f"{'PASS' if check.ok else 'MISS'}{note}"
        )
    return lines
