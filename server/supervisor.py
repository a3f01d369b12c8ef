"""Keep the stack's processes running: `tnx-crm up` starts servers, workers, the scheduler,
the MCP server and the gateway as children and restarts any that exits, with a backoff that
doubles on each quick failure (a child that keeps crashing is retried less and less often,
and one that ran a while starts again at once). PostgreSQL is not a child: it keeps running
while the others come and go."""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("tnx.supervisor")

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
# A child that ran this long before exiting was healthy: its next start is immediate.
STABLE_AFTER_S = 30.0


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    # Where it listens once ready; `up` waits for it on the first start.
    port: tuple[str, int] | None = None
    process: subprocess.Popen[bytes] | None = None
    failures: int = 0  # quick exits in a row
    started_at: float = 0.0
    restart_at: float | None = None  # when a stopped child starts again
    restarts: int = 0


class Supervisor:
    def __init__(
        self,
        children: list[Child],
        *,
        clock: Callable[[], float] = time.monotonic,
        say: Callable[[str], None] = print,
    ) -> None:
        self.children = children
        self.clock = clock
        self.say = say

    def start_all(self, ready_timeout_s: float = 60.0) -> None:
        """Start every child in order, each listening before the next starts."""
        for child in self.children:
            self._start(child)
            if child.port is not None:
                wait_for_port(child, ready_timeout_s)

    def poll(self) -> None:
        """Notice children that exited and start the ones whose backoff has passed."""
        now = self.clock()
        for child in self.children:
            process = child.process
            if process is not None and process.poll() is not None:
                ran_for = now - child.started_at
                child.failures = 0 if ran_for >= STABLE_AFTER_S else child.failures + 1
                delay = backoff(child.failures)
                self.say(
                    f"{child.name} exited with {process.returncode} after {ran_for:.1f}s;"
                    f" restarting in {delay:.1f}s"
                )
                child.process, child.restart_at = None, now + delay
            if child.process is None and child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self._start(child)

    def stop_all(self, grace_s: float = 10.0) -> None:
        """SIGTERM every child (gateway first, servers last), then SIGKILL the slow ones."""
        running = [c.process for c in reversed(self.children) if c.process is not None]
        for process in running:
            if process.poll() is None:
                process.terminate()
        for process in running:
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _start(self, child: Child) -> None:
        child.process = subprocess.Popen(child.argv, env=child.env)
        child.started_at = self.clock()
        child.restart_at = None


def backoff(failures: int) -> float:
    """Seconds before restarting a child that failed `failures` times in a row."""
    if failures <= 0:
        return 0.0
    return float(min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (failures - 1)))


def wait_for_port(child: Child, timeout_s: float) -> None:
    assert child.port is not None and child.process is not None
    host, port = child.port
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise SystemExit(f"{child.name} exited with {child.process.returncode} while starting")
        with socket.socket() as probe:
            if probe.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"{child.name}: nothing listens on {host}:{port} after {timeout_s:.0f}s")
