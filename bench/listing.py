"""ListLeads deep in a large workspace, and SearchLeads for a title phrase, timed call by
call over gRPC (one call in flight) from this process against the server process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from tnx.crm.v1 import lead_service_pb2, lead_service_pb2_grpc

from bench.load import percentile
from server.db.engine import Database, make_engine
from server.db.secrets import shared_secret
from server.leads.service import LeadFilters
from server.pagination import CursorCodec, fingerprint

PAGE = 100


def deep_cursor(url: str, *, workspace_id: str, after_id: str) -> str:
    """The cursor ListLeads would hand out for the page after `after_id`, for a request with
    no filters: signed with the deployment's shared secret and the service's query
    fingerprint (server/leads/service.py `list_leads`)."""

    async def secret() -> bytes:
        db = Database(make_engine(url, pool_size=1))
        try:
            return await shared_secret(db, "cursor")
        finally:
            await db.close()

    codec = CursorCodec(asyncio.run(secret()))
    query = fingerprint("list", LeadFilters())
    return codec.encode(workspace_id=workspace_id, query=query, position=[after_id])


@dataclass(frozen=True)
class Timing:
    name: str
    samples: list[float]  # ms

    @property
    def p50(self) -> float:
        return percentile(self.samples, 50)

    @property
    def p95(self) -> float:
        return percentile(self.samples, 95)

    @property
    def p99(self) -> float:
        return percentile(self.samples, 99)


@dataclass(frozen=True)
class ListingResult:
    first: Timing
    deep: Timing
    search: Timing
    search_matches_page: int
    checks: list[str]  # problems found while checking the replies; empty when all is well


def time_listing(
    address: str,
    key: str,
    *,
    cursor: str,
    first_id: str,
    deep_first_id: str,
    phrase: str,
    iterations: int,
    depth: int,
) -> ListingResult:
    metadata = (("authorization", f"Bearer {key}"),)
    first_req = lead_service_pb2.ListLeadsRequest(limit=PAGE)
    deep_req = lead_service_pb2.ListLeadsRequest(limit=PAGE, cursor=cursor)
    search_req = lead_service_pb2.SearchLeadsRequest(query=phrase, limit=PAGE)
    checks: list[str] = []
    with grpc.insecure_channel(address) as channel:
        stub = lead_service_pb2_grpc.LeadServiceStub(channel)
        first = stub.ListLeads(first_req, metadata=metadata)
        deep = stub.ListLeads(deep_req, metadata=metadata)
        found = stub.SearchLeads(search_req, metadata=metadata)
        if len(first.leads) != PAGE or first.leads[0].id != first_id:
            checks.append(f"first page starts at {first.leads[0].id}, expected {first_id}")
        if len(deep.leads) != PAGE or deep.leads[0].id != deep_first_id:
            checks.append(f"deep page starts at {deep.leads[0].id}, expected {deep_first_id}")
        if not found.leads or phrase.lower() not in found.leads[0].title.lower():
            checks.append(f"search for {phrase!r} found no lead with that title first")

        samples: dict[str, list[float]] = {"first": [], "deep": [], "search": []}
        calls: dict[str, Callable[[], object]] = {
            "first": lambda: stub.ListLeads(first_req, metadata=metadata),
            "deep": lambda: stub.ListLeads(deep_req, metadata=metadata),
            "search": lambda: stub.SearchLeads(search_req, metadata=metadata),
        }
        for i in range(iterations + 5):  # 5 unrecorded rounds warm the caches
            for name, call in calls.items():
                began = time.perf_counter()
                call()
                if i >= 5:
                    samples[name].append((time.perf_counter() - began) * 1000)
    return ListingResult(
        first=Timing("ListLeads first page", samples["first"]),
        deep=Timing(f"ListLeads after lead {depth:,}", samples["deep"]),
        search=Timing(f"SearchLeads {phrase!r}", samples["search"]),
        search_matches_page=len(found.leads),
        checks=checks,
    )
