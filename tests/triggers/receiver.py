"""A real HTTP server standing in for a webhook receiver or Slack: it records every request
and answers from a script (status, headers, delay) that a test sets."""

from __future__ import annotations

import contextlib
import http.server
import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

HOST = "127.0.0.2"  # inside the tests' CRM_OUTBOUND_ALLOW; 127.0.0.1 stays refused


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    at: float  # time.time() when it arrived

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.replies: list[Reply] = []  # consumed in order; then `default`
        self.default = Reply()
        self.lock = threading.Lock()
        self.port = 0
        self.connections = 0  # every connection accepted, whether or not a request followed

    def url(self, path: str = "/hook") -> str:
        return f"http://{HOST}:{self.port}{path}"

    def next_reply(self) -> Reply:
        with self.lock:
            return self.replies.pop(0) if self.replies else self.default

    def record(self, item: Received) -> None:
        with self.lock:
            self.received.append(item)

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def connected(self) -> None:
        with self.lock:
            self.connections += 1


def _handler(receiver: Receiver) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # the http.server API names it so
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            if len(body) < length:  # the sender died mid-request: nothing was delivered
                self.close_connection = True
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            receiver.record(Received(self.path, headers, body, time.time()))
            reply = receiver.next_reply()
            if reply.delay:
                time.sleep(reply.delay)
            payload = b"ok"
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the sender gave up (a timeout test)
                self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


class _Server(http.server.ThreadingHTTPServer):
    # A worker opens up to 64 connections at once; the default backlog of 5 would make
    # some of them wait for a SYN retransmission.
    request_queue_size = 256
    daemon_threads = True

    def __init__(self, address: tuple[str, int], receiver: Receiver) -> None:
        super().__init__(address, _handler(receiver))
        self.receiver = receiver

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.receiver.connected()  # counted before any byte is read: a canary sees all
        return True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A sender that gave up or was killed resets its connections: expected, not news.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def running(host: str = HOST) -> Iterator[Receiver]:
    receiver = Receiver()
    server = _Server((host, 0), receiver)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
