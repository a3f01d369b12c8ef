"""`tnx-crm imports …` on the client (it replaced the raw-stub `imports upload`): progress
lines or JSON lines, exit 4 for an import with failed rows, clear errors for bad files."""

from __future__ import annotations

import json

import pytest

from tests.client.conftest import CliRunner
from tests.support.imports import csv_bytes

pytestmark = pytest.mark.usefixtures("worker")


def _write(cli: CliRunner, name: str, good: int, bad: int = 0) -> None:
    rows = [["Work Mail", "First Name"]]
    rows += [[f"c{i}@cli-imp.example", f"N{i}"] for i in range(good)]
    rows += [[f"bad-{i}", "Bad"] for i in range(bad)]
    (cli.cwd / name).write_bytes(csv_bytes(rows))


def test_upload_watch_with_failed_rows_exits_4(cli: CliRunner) -> None:
    _write(cli, "leads.csv", good=3, bad=2)
    done = cli("imports", "upload", "leads.csv", "--map", "Work Mail=email", "--watch")
    assert done.code == 4, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("uploaded ") and " bytes in " in lines[0]
    assert "SUCCEEDED" in lines[-1]
    assert "3 created, 0 updated, 0 skipped, 2 failed" in lines[-1]
    job_id = lines[0].split(": ", 1)[1].split()[0]

    errors = cli("imports", "errors", job_id, "--json")
    assert errors.code == 0
    assert [json.loads(line)["row"] for line in errors.stdout.splitlines()] == ["5", "6"]
    table = cli("imports", "errors", job_id).stdout.splitlines()
    assert table[0].split() == ["ROW", "COLUMN", "VALUE", "REASON"]
    downloaded = cli("imports", "errors", job_id, "--download", "failed.csv")
    assert downloaded.code == 0
    assert (cli.cwd / "failed.csv").read_text().splitlines()[1].startswith("bad-0,Bad,")

    shown = json.loads(cli("imports", "get", job_id, "--json").stdout)
    assert (shown["status"], shown["rows_failed"]) == ("SUCCEEDED", "2")
    listed = cli("imports", "list", "--json").stdout.splitlines()
    assert json.loads(listed[0])["id"] == job_id  # newest first


def test_upload_json_watch_clean_import_exits_0(cli: CliRunner) -> None:
    (cli.cwd / "leads.ndjson").write_text('{"email": "n1@cli-imp.example"}\n')
    done = cli("imports", "upload", "leads.ndjson", "--mode", "CREATE_ONLY", "--watch", "--json")
    assert done.code == 0, done.stderr
    states = [json.loads(line) for line in done.stdout.splitlines()]
    assert states[0]["format"] == "NDJSON" and states[0]["mode"] == "CREATE_ONLY"
    assert states[-1]["status"] == "SUCCEEDED" and states[-1]["rows_created"] == "1"


def test_an_import_that_fails_exits_1(cli: CliRunner) -> None:
    (cli.cwd / "no-email.csv").write_text("Name,City\nJane,Paris\n")
    done = cli("imports", "upload", "no-email.csv", "--watch")
    assert done.code == 1, done.stdout + done.stderr
    assert "FAILED" in done.stdout.splitlines()[-1]


def test_upload_without_watch_returns_at_once_and_cancel(cli: CliRunner) -> None:
    _write(cli, "big.csv", good=20_000)
    done = cli("imports", "upload", "big.csv", "--map", "Work Mail=email", "--json")
    assert done.code == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] in ("QUEUED", "RUNNING")
    cancelled = cli("imports", "cancel", job["id"])
    assert cancelled.code == 0 and cancelled.stdout.startswith(job["id"])


def test_missing_or_unreadable_files_are_usage_errors(cli: CliRunner) -> None:
    missing = cli("imports", "upload", "nope.csv")
    assert missing.code == 2
    assert missing.stderr.strip() == "error: nope.csv: No such file or directory"
    directory = cli("imports", "upload", ".")
    assert directory.code == 2 and "error: .: Is a directory" in directory.stderr


def test_unknown_job_is_an_api_error(cli: CliRunner) -> None:
    done = cli("imports", "get", "imp_01JUNKNOWN")
    assert done.code == 3 and "IMPORT_NOT_FOUND" in done.stderr
