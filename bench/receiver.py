"""A webhook receiver fast enough not to be what a delivery benchmark measures: HTTP/1.1
keep-alive on raw asyncio, a 204 for every POST, and the arrival time of each webhook-id.

`python -m bench.receiver HOST PORT OUT`: serves until SIGTERM, then writes one line per
request to OUT: `<webhook-id>\t<unix time of arrival>`.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

REPLY = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"


class Receiving(asyncio.Protocol):
    def __init__(self, arrivals: list[tuple[str, float]]) -> None:
        self.arrivals = arrivals
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").lower()
            length, webhook_id = 0, ""
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name == "content-length":
                    length = int(value)
                elif name == "webhook-id":
                    webhook_id = value.strip()
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.arrivals.append((webhook_id, time.time()))
            assert self.transport is not None
            self.transport.write(REPLY)


async def serve(host: str, port: int, arrivals: list[tuple[str, float]]) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Receiving(arrivals), host, port, backlog=1024)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()


def main(host: str, port: int, out: Path) -> None:
    arrivals: list[tuple[str, float]] = []
    asyncio.run(serve(host, port, arrivals))
    out.write_text("".join(f"{i}\t{t:.6f}\n" for i, t in arrivals))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
