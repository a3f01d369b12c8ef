"""Following WatchEvents in tests the way a flow does: over gRPC or over REST through the real
Envoy, on a thread, one item at a time with the time it arrived."""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import requests
from google.protobuf import json_format
from tnx.crm.v1 import event_service_pb2, event_service_pb2_grpc

from server import gateway
from server.config import load_settings
from tests.conftest import Workspace
from tests.support import stack

WATCH_PATH = "/api/v1/crm/events:watch"
HEARTBEAT = "heartbeat"


class Watch:
    """Items of one open watch as dicts (REST JSON or the proto as JSON with proto field
    names), queued by a reader thread; `ended_at`/`error` once the stream is over."""

    def __init__(self) -> None:
        self.items: queue.Queue[tuple[float, dict[str, Any]] | None] = queue.Queue()
        self.ended_at: float | None = None
        self.error: BaseException | None = None
        self.grpc_code: grpc.StatusCode | None = None
        self._thread: threading.Thread | None = None

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self._read():
                self.items.put((time.monotonic(), item))
        except grpc.RpcError as error:
            self.grpc_code = error.code()
            self.error = error
        except Exception as error:  # the reader of a stream we closed ourselves
            self.error = error
        finally:
            self.ended_at = time.monotonic()
            self.items.put(None)

    def _read(self) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def next(self, timeout: float = 10.0) -> tuple[float, dict[str, Any]] | None:
        """The next item with its arrival time; None when the stream has ended."""
        return self.items.get(timeout=timeout)

    def until_heartbeat(self, timeout: float = 10.0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The events before the next heartbeat, and that heartbeat."""
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            item = self.next(timeout=max(0.1, deadline - time.monotonic()))
            assert item is not None, f"the stream ended before a heartbeat ({self.error!r})"
            if item[1]["type"] == HEARTBEAT:
                return found, item[1]
            found.append(item[1])

    def take(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The next `count` events, skipping heartbeats."""
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(found) < count:
            item = self.next(timeout=max(0.1, deadline - time.monotonic()))
            assert item is not None, f"the stream ended early ({self.error!r})"
            if item[1]["type"] != HEARTBEAT:
                found.append(item[1])
        return found

    def wait_ended(self, timeout: float) -> None:
        assert self._thread is not None
        self._thread.join(timeout)

    def close(self) -> None:
        raise NotImplementedError


class GrpcWatch(Watch):
    def __init__(self, channel: grpc.Channel, ws: Workspace, **request: Any) -> None:
        super().__init__()
        stub = event_service_pb2_grpc.EventServiceStub(channel)
        self.call = stub.WatchEvents(
            event_service_pb2.WatchEventsRequest(**request), metadata=ws.metadata
        )
        self._start()

    def _read(self) -> Iterator[dict[str, Any]]:
        for event in self.call:
            item = json_format.MessageToDict(event, preserving_proto_field_name=True)
            item.setdefault("id", "")
            item.setdefault("subject_id", "")
            item["_has_payload"] = event.HasField("payload")
            item["_has_created_at"] = event.HasField("created_at")
            yield item

    def close(self) -> None:
        self.call.cancel()  # type: ignore[attr-defined, no-untyped-call]
        self.wait_ended(5)


class RestWatch(Watch):
    """GET /api/v1/crm/events:watch, read as newline-delimited JSON (one Event a line)."""

    def __init__(self, base: str, ws: Workspace, **params: Any) -> None:
        super().__init__()
        self.response = requests.get(
            base + WATCH_PATH, headers=ws.headers, params=params, stream=True, timeout=(5, 10)
        )
        assert self.response.status_code == 200, self.response.text
        # The socket, to hang up on the stream while the reader is blocked on it.
        connection = self.response.raw.connection
        self._socket: socket.socket | None = connection.sock if connection else None
        self.leftover = b""
        self._start()

    def _read(self) -> Iterator[dict[str, Any]]:
        buffer = b""
        for chunk in self.response.iter_content(chunk_size=None):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                item = json.loads(line)
                assert isinstance(item, dict), line
                yield item
        self.leftover = buffer  # anything after the last newline: never part of the framing

    def close(self) -> None:
        """Hang up as a client does: the reader blocked on the socket wakes at once."""
        if self._socket is not None and self.ended_at is None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
        self.wait_ended(5)
        self.response.close()


@contextmanager
def gateway_with_short_timeouts(grpc_port: int, work_dir: Path, seconds: int) -> Iterator[str]:
    """The real gateway config (gateway/envoy.yaml.tmpl, rendered by server/gateway.py) with
    its 60 s route timeout and 60 s stream idle timeout cut to `seconds`, so that a test can
    outlast them several times over in a few seconds; yields the base URL."""
    http_port = stack.free_port()
    socket = work_dir / f"grpc-{grpc_port}.sock"
    upstream = f"unix:{socket}" if socket.exists() else f"127.0.0.1:{grpc_port}"
    settings = replace(
        load_settings(),
        grpc_port=grpc_port,
        http_port=http_port,
        data_dir=work_dir,
        gateway_upstreams=(upstream,),
    )
    work_dir.mkdir(parents=True, exist_ok=True)
    config = gateway.render(settings, work_dir / "envoy.yaml")
    text = config.read_text()
    assert "stream_idle_timeout: 60s" in text and text.count("timeout: 60s") >= 2, text
    config.write_text(text.replace("timeout: 60s", f"timeout: {seconds}s"))
    with (work_dir / "envoy.log").open("wb") as log:
        process = subprocess.Popen(gateway.command(config), stdout=log, stderr=log)
        try:
            stack.wait_for_port(http_port, process)
            stack.wait_until_ready(f"http://127.0.0.1:{http_port}")
            yield f"http://127.0.0.1:{http_port}"
        finally:
            stack.stop(process)
