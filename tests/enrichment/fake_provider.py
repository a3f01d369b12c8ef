"""A real HTTP server standing in for a People-Data-Labs-style person enrichment API:
`GET /v5/person/enrich?email=…` (or a POST with a JSON body holding `email`) with an
`X-Api-Key` header answers the person of a known email, 404 otherwise. A test adds people,
sets faults (a delay, a status, malformed JSON, a huge body) and reads the calls made."""

from __future__ import annotations

import contextlib
import http.server
import json
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

HOST = "127.0.0.2"  # inside the tests' CRM_OUTBOUND_ALLOW; 127.0.0.1 stays refused
API_KEY = "pdl-test-key"
PATH = "/v5/person/enrich"
HUGE_BYTES = 10 * 1024 * 1024


@dataclass
class Fault:
    """How the provider misbehaves: each field on its own or together."""

    delay: float = 0.0  # seconds before answering
    status: int | None = None  # answer this status (with a small JSON error body)
    retry_after: str | None = None  # a Retry-After header with it (429, 503)
    malformed: bool = False  # a 200 whose body is not JSON
    huge: bool = False  # a 200 whose (valid) JSON body is HUGE_BYTES long


@dataclass(frozen=True)
class Call:
    method: str
    email: str
    headers: dict[str, str]  # names lower-cased
    at: float


def person(
    first: str,
    last: str,
    *,
    title: str = "Head of Growth",
    company: str = "Acme",
    industry: str = "computer software",
    email: str = "",
) -> dict[str, Any]:
    """The `data` of a found person, shaped like People Data Labs' answer (whose text is
    lower case; here it is as given, which keeps the tests' expectations readable)."""
    return {
        "full_name": f"{first} {last}",
        "first_name": first,
        "last_name": last,
        "job_title": title,
        "job_company_name": company,
        "job_company_size": "51-200",
        "job_company_industry": industry,
        "location_country": "united states",
        "emails": [{"address": email, "type": "professional"}] if email else [],
    }


class Provider:
    def __init__(self) -> None:
        self.people: dict[str, dict[str, Any]] = {}  # email (lower case) → data
        self.fault = Fault()  # for every request
        self.faults: dict[str, Fault] = {}  # for one email, over `fault`
        self.api_key = API_KEY
        self.port = 0
        self.lock = threading.Lock()
        self._calls: list[Call] = []

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def url_template(self) -> str:
        """An HTTP_JSON url_template for this provider."""
        return f"{self.base}{PATH}?email={{email}}"

    def add(self, email: str, data: dict[str, Any]) -> None:
        with self.lock:
            self.people[email.lower()] = data

    def record(self, call: Call) -> None:
        with self.lock:
            self._calls.append(call)

    def calls(self) -> list[Call]:
        with self.lock:
            return list(self._calls)

    def count(self) -> Counter[str]:
        """Calls by email, lower case (every request to the path, whatever its answer)."""
        return Counter(call.email.lower() for call in self.calls())

    def fault_for(self, email: str) -> Fault:
        with self.lock:
            return self.faults.get(email.lower(), self.fault)

    def found(self, email: str) -> dict[str, Any] | None:
        with self.lock:
            return self.people.get(email.lower())


def _handler(provider: Provider) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # the http.server API names it so
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            self.answer(url.path, query.get("email", [""])[0])

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            try:
                email = str(json.loads(body).get("email", ""))
            except (ValueError, AttributeError):
                email = ""
            self.answer(urllib.parse.urlsplit(self.path).path, email)

        def answer(self, path: str, email: str) -> None:
            if path != PATH:
                self.send_json(404, {"status": 404, "error": {"type": "not_found"}})
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            provider.record(Call(self.command, email, headers, time.time()))
            if headers.get("x-api-key") != provider.api_key:
                self.send_json(401, {"status": 401, "error": {"type": "invalid_auth"}})
                return
            fault = provider.fault_for(email)
            if fault.delay:
                time.sleep(fault.delay)
            self.send_answer(email, fault)

        def send_answer(self, email: str, fault: Fault) -> None:
            extra = {"retry-after": fault.retry_after} if fault.retry_after else {}
            data = provider.found(email)
            if fault.status is not None:
                self.send_json(fault.status, {"status": fault.status, "error": "fault"}, extra)
            elif fault.malformed:
                self.send_bytes(200, b'{"status": 200, "data": {"first_name": "ja', extra)
            elif fault.huge:
                self.send_huge()
            elif data is None:
                self.send_json(404, {"status": 404, "error": {"type": "not_found"}})
            else:
                self.send_json(200, {"status": 200, "likelihood": 8, "data": data})

        def send_json(
            self, status: int, document: Any, extra: dict[str, str] | None = None
        ) -> None:
            self.send_bytes(status, json.dumps(document).encode(), extra or {})

        def send_bytes(self, status: int, payload: bytes, extra: dict[str, str]) -> None:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the client gave up (a timeout test)
                self.wfile.write(payload)

        def send_huge(self) -> None:
            """Valid JSON of HUGE_BYTES, sent in chunks: a capped reader stops early."""
            head, tail = b'{"status": 200, "data": {"pad": "', b'"}}'
            chunk = b"x" * 65536
            pad = HUGE_BYTES - len(head) - len(tail)
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(HUGE_BYTES))
            self.end_headers()
            with contextlib.suppress(OSError):  # the client stopped reading at its cap
                self.wfile.write(head)
                for start in range(0, pad, len(chunk)):
                    self.wfile.write(chunk[: pad - start])
                self.wfile.write(tail)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


class _Server(http.server.ThreadingHTTPServer):
    request_queue_size = 256  # a batch run opens many connections at once
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out or stopped at its size cap resets the connection.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def running(host: str = HOST) -> Iterator[Provider]:
    provider = Provider()
    server = _Server((host, 0), _handler(provider))
    provider.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
