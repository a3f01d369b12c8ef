"""`tnx-crm up`'s supervision, on real child processes: a child that exits is started again,
sooner when it had run a while, later and later when it keeps failing at once."""

from __future__ import annotations

import os
import signal
import sys
import time

from server import supervisor
from server.supervisor import Child, Supervisor


def _sleeper(name: str) -> Child:
    return Child(name, [sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ))


def test_backoff_doubles_from_half_a_second_up_to_thirty() -> None:
    assert [supervisor.backoff(n) for n in range(0, 9)] == [0, 0.5, 1, 2, 4, 8, 16, 30, 30]


def test_a_killed_child_is_restarted_and_the_others_keep_running() -> None:
    said: list[str] = []
    stack = Supervisor([_sleeper("server-1"), _sleeper("worker-1")], say=said.append)
    stack.start_all()
    try:
        server, worker = stack.children
        assert server.process is not None and worker.process is not None
        first_pid, worker_pid = server.process.pid, worker.process.pid
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        deadline = time.monotonic() + 5
        while server.process is None or server.process.pid == first_pid:
            assert time.monotonic() < deadline, said
            stack.poll()
            time.sleep(0.05)
        assert server.restarts == 1
        assert server.process.poll() is None
        assert worker.process.pid == worker_pid and worker.process.poll() is None
        assert any("server-1 exited with -9" in line for line in said), said
    finally:
        stack.stop_all()
    assert all(c.process is not None and c.process.poll() is not None for c in stack.children)


def test_a_child_that_keeps_failing_at_once_waits_longer_each_time() -> None:
    now = [100.0]
    crasher = Child("gateway", [sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ))
    stack = Supervisor([crasher], clock=lambda: now[0], say=lambda _: None)
    stack.start_all()
    delays = []
    try:
        for _ in range(4):
            assert crasher.process is not None
            crasher.process.wait()
            stack.poll()  # notices the exit and schedules the restart
            assert crasher.restart_at is not None
            delays.append(crasher.restart_at - now[0])
            now[0] = crasher.restart_at
            stack.poll()  # starts it again
    finally:
        stack.stop_all()
    assert delays == [0.5, 1.0, 2.0, 4.0]
