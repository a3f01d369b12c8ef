"""What every resource command shares: the --server/--key/--json options, one client per
command, output as JSON lines or readable lines, and the exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any, TypeAlias, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from tnx_crm._common import enum_name
from tnx_crm.client import Client
from tnx_crm.errors import ApiError

OK, FAILURE, USAGE, API_ERROR, PARTIAL = 0, 1, 2, 3, 4
EXIT_CODES = (
    "exit codes: 0 ok, 1 other failures, 2 usage errors (bad arguments, a missing or "
    "unreadable file, no API key), 3 API errors (the reason and field violations are printed "
    "to stderr), 4 an import that finished with failed rows"
)
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
M = TypeVar("M", bound=Message)
Command = Callable[[Client, argparse.Namespace], int]


class UsageError(Exception):
    """A mistake in the command line found after argparse: exit 2 with the message."""


def common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--server",
        default="",
        help="gRPC address (default $CRM_GRPC_TARGET, else $CRM_GRPC_HOST:$CRM_GRPC_PORT, "
        "127.0.0.1:50051)",
    )
    common.add_argument("--key", default="", help="API key (default $CRM_API_KEY)")
    common.add_argument(
        "--json", action="store_true", help="JSON output: one object per resource and line"
    )
    return common


def group(commands: Subparsers, name: str, help: str) -> Subparsers:
    parser = commands.add_parser(name, help=help, epilog=EXIT_CODES)
    return parser.add_subparsers(dest="action", required=True)


def leaf(
    actions: Subparsers, name: str, help: str, common: argparse.ArgumentParser, run: Command
) -> argparse.ArgumentParser:
    parser = actions.add_parser(name, help=help, parents=[common], epilog=EXIT_CODES)
    parser.set_defaults(run=lambda _settings, args: execute(run, args))
    return parser


def execute(run: Command, args: argparse.Namespace) -> int:
    """Runs one command with a client and turns every failure into its exit code."""
    key = args.key or os.environ.get("CRM_API_KEY", "")
    if not key:
        return _fail("no API key: pass --key or set CRM_API_KEY", USAGE)
    try:
        with Client(args.server or None, api_key=key) as client:
            return run(client, args)
    except ApiError as exc:
        return _fail(str(exc), API_ERROR)
    except OSError as exc:
        if exc.filename is not None:  # a file named on the command line
            return _fail(f"{exc.filename}: {exc.strerror or exc}", USAGE)
        return _fail(str(exc), FAILURE)
    except (UsageError, ValueError, TypeError) as exc:
        return _fail(str(exc), USAGE)
    except KeyboardInterrupt:
        return 130


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


# -- output ------------------------------------------------------------------------------


def as_dict(message: Message) -> dict[str, Any]:
    """The message as the REST API shows it: proto field names, every field, enum names."""
    return json_format.MessageToDict(
        message, always_print_fields_with_no_presence=True, preserving_proto_field_name=True
    )


def show(args: argparse.Namespace, message: Message) -> None:
    """One resource: a JSON object on one line, or `field: value` lines of the set fields."""
    if args.json:
        print(json.dumps(as_dict(message), ensure_ascii=False), flush=True)
        return
    for name, value in json_format.MessageToDict(message, preserving_proto_field_name=True).items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        print(f"{name}: {text}")


Column = tuple[str, int, Callable[[Any], object]]


def show_all(args: argparse.Namespace, items: Iterable[M], columns: Sequence[Column]) -> int:
    """Many resources, printed as they arrive: JSON lines, or a table with a header."""
    shown = 0
    for item in _limited(items, getattr(args, "limit", None)):
        if args.json:
            print(json.dumps(as_dict(item), ensure_ascii=False), flush=True)
        else:
            if not shown:
                print(_row([(title, width) for title, width, _ in columns]))
            print(_row([(str(cell(item)), width) for _, width, cell in columns]))
        shown += 1
    if not shown and not args.json:
        print("(none)")
    return OK


def _limited(items: Iterable[M], limit: int | None) -> Iterator[M]:
    return iter(items) if limit is None else islice(items, limit)


def _row(cells: Sequence[tuple[str, int]]) -> str:
    return "  ".join(text.ljust(width) for text, width in cells).rstrip()


def short_enum(message: Message, field: str) -> str:
    """`LEAD_STATUS_QUALIFIED` -> `QUALIFIED`; unset -> empty."""
    name = enum_name(message, field)
    return "" if name.endswith("UNSPECIFIED") else name.rsplit("STATUS_", 1)[-1]


def parse_value(text: str) -> Any:
    """A custom field value: JSON when it parses (42, true, null, "x", [1]), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def pairs(items: Iterable[str], option: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} takes KEY=VALUE, not {item!r}")
        out.append((key, value))
    return out
