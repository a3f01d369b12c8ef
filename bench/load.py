"""The gRPC load generator: its own process (`python -m bench.load …`), one grpc.aio
channel, N coroutines each keeping one call in flight. Prints one JSON line.

Requests are pre-serialized and replies are not parsed (identity serializers for every
method), so the client's own CPU cost is the same whatever the method: the difference
between methods is the server's (and PostgreSQL's) work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
from tnx.crm.v1 import lead_pb2, lead_service_pb2

from bench.echo_server import ECHO_METHOD
from bench.procs import CpuUse, Pids, cpu_sample

LEAD_SERVICE = "/tnx.crm.v1.LeadService"
METHODS = {
    "echo": ECHO_METHOD,
    "get": f"{LEAD_SERVICE}/GetLead",
    "create": f"{LEAD_SERVICE}/CreateLead",
}


@dataclass
class Result:
    method: str
    concurrency: int
    calls: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def summary(self) -> dict[str, object]:
        data = asdict(self)
        del data["latencies_ms"]
        data.update(
            calls_per_s=self.calls_per_s, p50_ms=self.percentile(50), p99_ms=self.percentile(99)
        )
        return data


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def request_factory(method: str, ids: list[str], echo_payload: bytes) -> Callable[[], bytes]:
    """A function returning the next serialized request for `method`."""
    if method == "echo":
        return lambda: echo_payload
    if method == "get":
        pool = [lead_service_pb2.GetLeadRequest(id=i).SerializeToString() for i in ids]
        return lambda: random.choice(pool)
    token = uuid.uuid4().hex[:10]
    counter = iter(range(10**12))

    def create() -> bytes:
        n = next(counter)
        lead = lead_pb2.Lead(
            email=f"load-{token}-{n}@bench-{n % 97}.example.com",
            first_name="Load",
            last_name=f"Tester{n}",
            title="Head of Growth" if n % 10 == 0 else "Marketing Manager",
            company=f"Bench Co {n % 97}",
            source="bench",
            score=n % 100,
        )
        lead.custom_fields.update({"industry": "SaaS", "seats": n % 500})
        return lead_service_pb2.CreateLeadRequest(lead=lead).SerializeToString()

    return create


async def run(
    *,
    address: str,
    key: str,
    method: str,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    make_request: Callable[[], bytes],
    pids: Pids,
) -> Result:
    result = Result(method=method, concurrency=concurrency)
    metadata = (("authorization", f"Bearer {key}"),)
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(
            METHODS[method], request_serializer=None, response_deserializer=None
        )
        await channel.channel_ready()
        start_at = time.perf_counter() + warmup_s
        stop_at = start_at + duration_s

        async def worker() -> None:
            while True:
                request = make_request()
                began = time.perf_counter()
                if began >= stop_at:
                    return
                code = "OK"
                try:
                    await call(request, metadata=metadata, timeout=30)
                except grpc.aio.AioRpcError as exc:
                    code = exc.code().name
                ended = time.perf_counter()
                if began >= start_at and ended <= stop_at:
                    if code == "OK":
                        result.calls += 1
                        result.latencies_ms.append((ended - began) * 1000)
                    else:
                        result.errors[code] = result.errors.get(code, 0) + 1

        async def sampler() -> None:
            await asyncio.sleep(max(start_at - time.perf_counter(), 0))
            first = cpu_sample(pids)
            await asyncio.sleep(max(stop_at - time.perf_counter(), 0))
            result.cpu = asdict(CpuUse.between(first, cpu_sample(pids)))

        await asyncio.gather(sampler(), *(worker() for _ in range(concurrency)))
        result.seconds = duration_s
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--method", choices=sorted(METHODS), required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--ids", type=Path, help="file of lead ids, one a line (GetLead)")
    parser.add_argument("--payload", type=Path, help="bytes the echo sends (a serialized Lead)")
    parser.add_argument(
        "--pids",
        nargs=3,
        required=True,
        metavar=("SERVER", "POSTMASTER", "BENCH"),
        help="whose CPU to attribute (0 for an unknown postmaster)",
    )
    args = parser.parse_args(argv)
    ids = args.ids.read_text().split() if args.ids else []
    payload = args.payload.read_bytes() if args.payload else b""
    result = asyncio.run(
        run(
            address=args.address,
            key=args.key,
            method=args.method,
            concurrency=args.concurrency,
            warmup_s=args.warmup,
            duration_s=args.duration,
            make_request=request_factory(args.method, ids, payload),
            pids=Pids.from_args(args.pids),
        )
    )
    json.dump(result.summary(), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
