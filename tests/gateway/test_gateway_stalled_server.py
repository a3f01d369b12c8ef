"""A server that stops answering for longer than two health checks (starved of CPU, paused)
and then carries on: the gateway sends it the calls anyway while no server passes, so they
are answered late instead of failing at once with 503 "no healthy upstream" (issue 16,
found by bench/soak.py: one failed check of the only server failed 349 calls in a minute)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil
import requests

from tests.conftest import Workspace
from tests.support import stack


def _listener(port: int) -> int:
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and getattr(conn.laddr, "port", None) == port:
            assert conn.pid is not None
            return conn.pid
    raise AssertionError(f"nothing listens on {port}")


def test_a_call_made_while_the_only_server_stalls_is_answered_when_it_resumes(
    database_url: str, workspace: Workspace, tmp_path: Path
) -> None:
    with (
        stack.grpc_server(database_url, tmp_path / "server.log") as (_, port),
        stack.envoy_gateway(port, tmp_path) as gateway,
    ):
        server = _listener(port)
        replies: list[requests.Response] = []
        os.kill(server, signal.SIGSTOP)
        try:
            started = time.monotonic()
            while requests.get(f"{gateway}/readyz", timeout=5).status_code != 503:
                assert time.monotonic() - started < 10, "the gateway never saw the stall"
                time.sleep(0.1)
            call = threading.Thread(
                target=lambda: replies.append(
                    requests.get(
                        f"{gateway}/api/v1/crm/leads", headers=workspace.headers, timeout=30
                    )
                )
            )
            call.start()
            time.sleep(0.5)
        finally:
            os.kill(server, signal.SIGCONT)
        call.join()
    assert replies[0].status_code == 200, replies[0].text
