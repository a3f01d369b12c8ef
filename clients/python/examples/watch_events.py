"""Follow the events feed with the asyncio client, resuming from a saved cursor; the watch
reconnects by itself after a dropped connection or a server restart.

    CRM_API_KEY=tnx_… python examples/watch_events.py
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import tnx_crm

CURSOR_FILE = Path("events.cursor")


async def follow(after: str) -> None:
    async with tnx_crm.AsyncClient() as client:
        async for event in client.events.watch(
            after, types=["lead.created", "segment.lead_entered"]
        ):
            if event.type == "lead.created":
                lead = await client.leads.get(event.subject_id)
                print(event.id, event.type, lead.email)
            else:
                print(event.id, event.type, dict(event.payload))
            # Resume here next time (written off the event loop).
            await asyncio.to_thread(CURSOR_FILE.write_text, event.cursor)


if __name__ == "__main__":
    asyncio.run(follow(CURSOR_FILE.read_text() if CURSOR_FILE.exists() else ""))
