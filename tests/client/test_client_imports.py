"""Imports through the client: a streamed upload with a progress hook, watching the job to
its end on a real worker, row errors, and file problems reported as such."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
import tnx_crm
from tnx.crm.v1 import import_pb2

from tests.conftest import Workspace
from tests.support.imports import WorkerProcess, csv_bytes

Job = import_pb2.ImportJob
pytestmark = pytest.mark.usefixtures("worker")


def _leads_csv(path: Path, good: int, bad: int = 0) -> Path:
    rows = [["Work Mail", "First Name", "Plan"]]
    rows += [[f"u{i}@imp.example", f"User{i}", "pro"] for i in range(good)]
    rows += [[f"broken-{i}", "Bad", "pro"] for i in range(bad)]
    path.write_bytes(csv_bytes(rows))
    return path


def test_upload_reports_progress_and_watch_follows_the_job_to_its_end(
    client: tnx_crm.Client, tmp_path: Path
) -> None:
    path = _leads_csv(tmp_path / "leads.csv", good=3000)
    size = path.stat().st_size
    seen: list[tuple[int, int]] = []

    job = client.imports.upload(
        path,
        mapping={"Work Mail": "email"},
        chunk_size=16 * 1024,
        progress=lambda *p: seen.append(p),
    )

    assert job.id.startswith("imp_")
    assert job.size_bytes == size
    assert job.format == Job.CSV  # from the file's suffix
    assert len(seen) == -(-size // (16 * 1024))  # one call per chunk
    assert [sent for sent, _ in seen] == sorted({sent for sent, _ in seen})
    assert seen[-1] == (size, size)

    states = list(client.imports.watch(job.id))
    assert states[-1].status == Job.SUCCEEDED
    assert tnx_crm.enum_name(states[-1], "status") == "SUCCEEDED"
    assert states[-1].rows_created == 3000
    assert client.imports.get(job.id) == states[-1]
    assert job.id in [j.id for j in client.imports.list(page_size=1)]
    leads = list(client.leads.list(filter='email_domain = "imp.example"', page_size=1000))
    assert len(leads) == 3000
    assert dict(leads[0].custom_fields) == {"plan": "pro"}  # unmapped column: custom field


def test_failed_rows_are_listed_and_downloadable(client: tnx_crm.Client, tmp_path: Path) -> None:
    path = _leads_csv(tmp_path / "mixed.csv", good=2, bad=3)
    job = client.imports.wait(client.imports.upload(path, mapping=["Work Mail=email"]).id)
    assert (job.status, job.rows_created, job.rows_failed) == (Job.SUCCEEDED, 2, 3)

    errors = list(client.imports.errors(job.id, page_size=2))
    assert [e.row for e in errors] == [4, 5, 6]  # lines of the file, the header being 1
    assert {e.column for e in errors} == {"Work Mail"}

    out = io.BytesIO()
    written = client.imports.download_errors(job.id, out)
    lines = out.getvalue().decode().splitlines()
    assert written == len(out.getvalue())
    assert lines[0].startswith("Work Mail,First Name,Plan,import_error")
    assert len(lines) == 4


def test_a_file_object_and_an_explicit_format_and_mode(client: tnx_crm.Client) -> None:
    data = b'{"email": "nd1@imp.example"}\n{"email": "nd2@imp.example"}\n'
    job = client.imports.upload(io.BytesIO(data), format="ndjson", mode="create_only")
    assert (job.format, job.mode, job.size_bytes) == (Job.NDJSON, Job.CREATE_ONLY, len(data))
    assert client.imports.wait(job.id).rows_created == 2


def test_a_missing_file_fails_before_anything_is_sent(
    client: tnx_crm.Client, tmp_path: Path
) -> None:
    before = list(client.imports.list())
    with pytest.raises(FileNotFoundError) as caught:
        client.imports.upload(tmp_path / "nope.csv")
    assert caught.value.filename == str(tmp_path / "nope.csv")
    with pytest.raises(IsADirectoryError):
        client.imports.upload(tmp_path)
    assert list(client.imports.list()) == before


def test_a_read_error_mid_upload_is_raised_as_itself(client: tnx_crm.Client) -> None:
    class Failing(io.RawIOBase):
        def __init__(self) -> None:
            self.reads = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            self.reads += 1
            if self.reads > 2:
                raise OSError(5, "Input/output error")
            buffer[:4] = b"a,b\n"
            return 4

    with pytest.raises(OSError, match="Input/output error"):
        client.imports.upload(io.BufferedReader(Failing(), buffer_size=4), chunk_size=4)


def test_cancel_a_job(client: tnx_crm.Client, tmp_path: Path) -> None:
    path = _leads_csv(tmp_path / "big.csv", good=20_000)
    job = client.imports.upload(path, mapping={"Work Mail": "email"})
    cancelled = client.imports.cancel(job.id)
    assert cancelled.cancel_requested or cancelled.status == Job.CANCELLED
    final = client.imports.wait(job.id)
    assert final.status in (Job.CANCELLED, Job.SUCCEEDED)  # it may have finished first


def test_async_upload_and_watch(
    grpc_server: tuple[str, int], workspace: Workspace, tmp_path: Path, worker: WorkerProcess
) -> None:
    path = _leads_csv(tmp_path / "async.csv", good=50)
    seen: list[int] = []

    async def main() -> list[import_pb2.ImportJob]:
        async with tnx_crm.AsyncClient(grpc_server[0], api_key=workspace.key) as client:
            job = await client.imports.upload(
                path,
                mapping={"Work Mail": "email"},
                chunk_size=256,
                progress=lambda sent, _: seen.append(sent),
            )
            return [state async for state in client.imports.watch(job.id)]

    states = asyncio.run(main())
    assert seen[-1] == path.stat().st_size
    assert states[-1].status == Job.SUCCEEDED
    assert states[-1].rows_created == 50
