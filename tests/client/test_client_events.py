"""The events feed through the client: list across pages, and a watch that resumes after
its server dies, with nothing repeated and nothing skipped."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import tnx_crm
from tnx.crm.v1 import event_service_pb2

from tests.client.conftest import server_on_port
from tests.conftest import Workspace
from tests.support.imports import wait_until
from tests.support.stack import free_port


def test_list_follows_the_cursor_to_the_newest_event(client: tnx_crm.Client) -> None:
    ids = [client.leads.create(email=f"e{i}@events.example").id for i in range(5)]
    created = list(client.events.list(types=["lead.created"], page_size=2))
    assert [e.subject_id for e in created] == ids
    assert len({e.id for e in created}) == 5
    after_third = list(client.events.list(created[2].cursor, types=["lead.created"]))
    assert [e.subject_id for e in after_third] == ids[3:]


def test_watch_resumes_after_the_server_dies_without_repeats_or_gaps(
    client: tnx_crm.Client, database_url: str, workspace: Workspace, work_dir: Path
) -> None:
    """A sync and an async watch run against a server of their own, which is killed and
    started again on the same port; leads are written meanwhile through the session's
    server."""
    before = [client.leads.create(email=f"b{i}@watch.example").id for i in range(2)]
    port, log = free_port(), work_dir / "client-watch-server.log"
    later: list[str] = []
    resumed: list[event_service_pb2.Event] = []
    async_seen: list[event_service_pb2.Event] = []

    async def watch_async(address: str) -> None:
        async with tnx_crm.AsyncClient(address, api_key=workspace.key) as watcher:
            async for event in watcher.events.watch(types=["lead.created"]):
                async_seen.append(event)
                if len(async_seen) == 5:
                    return

    with server_on_port(database_url, port, log) as address:
        watcher = tnx_crm.Client(address, api_key=workspace.key)
        events = watcher.events.watch(types=["lead.created"])
        first = [next(events), next(events)]
        async_reader = threading.Thread(target=asyncio.run, args=(watch_async(address),))
        async_reader.start()
        wait_until(lambda: len(async_seen) == 2, timeout=10)
    # That server is gone (kill -9). Writes go on; the watches reconnect in the background.
    reader = threading.Thread(target=lambda: resumed.extend(next(events) for _ in range(3)))
    reader.start()
    later += [client.leads.create(email=f"d{i}@watch.example").id for i in range(2)]
    with server_on_port(database_url, port, log):
        later.append(client.leads.create(email="after@watch.example").id)
        reader.join(timeout=60)
        async_reader.join(timeout=60)
        events.close()
    watcher.close()

    assert not reader.is_alive() and not async_reader.is_alive()
    assert [e.subject_id for e in first + resumed] == before + later
    assert [e.id for e in async_seen] == [e.id for e in first + resumed]


def test_async_watch_yields_events_as_they_commit(
    grpc_server: tuple[str, int], workspace: Workspace
) -> None:
    async def main() -> list[str]:
        async with tnx_crm.AsyncClient(grpc_server[0], api_key=workspace.key) as client:
            lead = await client.leads.create(email="live@watch.example")
            seen = []
            async for event in client.events.watch(subject_id=lead.id):
                seen.append(event.type)
                if event.type == "lead.created":
                    await client.leads.update(lead.id, title="CTO")
                if event.type == "lead.updated":
                    break
            return seen

    assert asyncio.run(main()) == ["lead.created", "lead.updated"]
