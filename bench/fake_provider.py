"""A person-enrichment API fast enough not to be what an enrichment benchmark measures:
HTTP/1.1 keep-alive on raw asyncio, answering `GET /v5/person/enrich?email=…` after a fixed
delay (asyncio.sleep, so any number of requests wait at once) with a People-Data-Labs-like
body derived from the email; every other path is a 404. `GET /calls` answers the number of
lookups so far (not counted itself).

`python -m bench.fake_provider HOST PORT OUT [DELAY_MS]` (delay 50 ms unless given): prints
"ready", serves until SIGTERM, then writes to OUT the number of lookups on the first line and
the unix time of each lookup's arrival on the lines after it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import sys
import time
import urllib.parse
from pathlib import Path

PATH = "/v5/person/enrich"
TITLES = ("Head of Growth", "Software Engineer", "Account Executive", "Data Analyst", "Founder")
SIZES = ("1-10", "11-50", "51-200", "201-500", "501-1000", "1001-5000", "5001-10000", "10001+")


def person(email: str) -> dict[str, object]:
    """`data` for an email like `ada.lovelace.12@acme.example.com`: the names from its local
    part, the company from its domain, a title and a company size picked by its hash."""
    local, _, domain = email.lower().partition("@")
    names = [part for part in local.split(".") if part.isalpha()] or [local]
    pick = hashlib.blake2b(email.encode(), digest_size=2).digest()
    return {
        "full_name": " ".join(names),
        "first_name": names[0].capitalize(),
        "last_name": names[-1].capitalize() if len(names) > 1 else "",
        "job_title": TITLES[pick[0] % len(TITLES)],
        "job_company_name": domain.split(".")[0].capitalize(),
        "job_company_size": SIZES[pick[1] % len(SIZES)],
    }


def reply(status: int, document: object) -> bytes:
    body = json.dumps(document).encode()
    reason = {200: "OK", 404: "Not Found"}[status]
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Provider:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.arrivals: list[float] = []


class Answering(asyncio.Protocol):
    """One connection: requests are answered in the order they came (a pipelining client
    gets its replies in order), each after the delay."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.previous: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            target = head.split(" ", 2)[1] if head.count(" ") >= 2 else "/"
            self.previous = asyncio.ensure_future(self.answer(target, self.previous))

    async def answer(self, target: str, previous: asyncio.Task[None] | None) -> None:
        url = urllib.parse.urlsplit(target)
        if url.path == "/calls":
            message = reply(200, {"calls": len(self.provider.arrivals)})
        elif url.path == PATH:
            self.provider.arrivals.append(time.time())
            email = urllib.parse.parse_qs(url.query).get("email", [""])[0]
            await asyncio.sleep(self.provider.delay)
            if email:
                message = reply(200, {"status": 200, "likelihood": 8, "data": person(email)})
            else:
                message = reply(404, {"status": 404, "error": {"type": "not_found"}})
        else:
            message = reply(404, {"status": 404, "error": {"type": "not_found"}})
        if previous is not None:
            await previous
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(host: str, port: int, provider: Provider) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Answering(provider), host, port, backlog=1024)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()


def main(host: str, port: int, out: Path, delay_ms: float = 50.0) -> None:
    provider = Provider(delay_ms / 1000)
    asyncio.run(serve(host, port, provider))
    times = "".join(f"{t:.6f}\n" for t in provider.arrivals)
    out.write_text(f"{len(provider.arrivals)}\n{times}")


if __name__ == "__main__":
    main(
        sys.argv[1],
        int(sys.argv[2]),
        Path(sys.argv[3]),
        float(sys.argv[4]) if len(sys.argv) > 4 else 50.0,
    )
