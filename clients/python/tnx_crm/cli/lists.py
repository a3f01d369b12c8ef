"""`tnx-crm lists create|get|list|members|add|remove|export` (segments)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tnx_crm.cli._base import (
    OK,
    Column,
    Subparsers,
    UsageError,
    group,
    leaf,
    short_enum,
    show,
    show_all,
)
from tnx_crm.cli.leads import COLUMNS as LEAD_COLUMNS
from tnx_crm.client import Client

COLUMNS: list[Column] = [
    ("ID", 30, lambda s: s.id),
    ("NAME", 30, lambda s: s.name),
    ("MEMBERSHIP", 10, lambda s: short_enum(s, "membership")),
    ("STATE", 8, lambda s: short_enum(s, "state")),
    ("MEMBERS", 8, lambda s: s.member_count),
]


def add_commands(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    lists = group(commands, "lists", "segments: static or rule-based lists of leads")

    create = leaf(lists, "create", "create a list", common, cmd_create)
    create.add_argument("name")
    create.add_argument("--description", default="")
    create.add_argument(
        "--membership", choices=["STATIC", "RULE"], help="default: RULE with --rules, else STATIC"
    )
    rules = create.add_mutually_exclusive_group()
    rules.add_argument("--rules", help='the rule tree as JSON: {"combinator": "AND", "rules": […]}')
    rules.add_argument("--rules-file", type=Path, help="the rule tree in a JSON file")

    get = leaf(lists, "get", "show one list", common, cmd_get)
    get.add_argument("id")

    listing = leaf(lists, "list", "list the workspace's lists", common, cmd_list)
    listing.add_argument("--limit", type=int, help="stop after this many (default: all)")

    members = leaf(lists, "members", "the leads in a list", common, cmd_members)
    members.add_argument("id")
    members.add_argument("--limit", type=int, help="stop after this many (default: all)")

    for name, run in (("add", cmd_add), ("remove", cmd_remove)):
        change = leaf(lists, name, f"{name} leads of a static list", common, run)
        change.add_argument("id")
        change.add_argument("lead_ids", nargs="+", metavar="LEAD_ID")

    export = leaf(lists, "export", "export a list's leads as CSV", common, cmd_export)
    export.add_argument("id")
    export.add_argument(
        "--format", default="CSV", help="CSV (default), GOOGLE_ADS, META or LINKEDIN"
    )
    export.add_argument("--fields", default="", help="CSV columns, comma-separated")
    export.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")


def _rules(args: argparse.Namespace) -> dict[str, Any] | None:
    text = args.rules
    if args.rules_file is not None:
        text = args.rules_file.read_text(encoding="utf-8")  # OSError names the path: exit 2
    if text is None:
        return None
    try:
        rules = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"the rules are not valid JSON: {exc}") from None
    if not isinstance(rules, dict):
        raise UsageError("the rules must be a JSON object (a rule group)")
    return rules


def cmd_create(client: Client, args: argparse.Namespace) -> int:
    rules = _rules(args)
    membership = args.membership or ("RULE" if rules is not None else "STATIC")
    segment = client.lists.create(
        name=args.name, description=args.description, membership=membership, rules=rules
    )
    show(args, segment)
    return OK


def cmd_get(client: Client, args: argparse.Namespace) -> int:
    show(args, client.lists.get(args.id))
    return OK


def cmd_list(client: Client, args: argparse.Namespace) -> int:
    return show_all(args, client.lists.list(), COLUMNS)


def cmd_members(client: Client, args: argparse.Namespace) -> int:
    page_size = min(args.limit, 1000) if args.limit else None
    return show_all(args, client.lists.members(args.id, page_size=page_size), LEAD_COLUMNS)


def cmd_add(client: Client, args: argparse.Namespace) -> int:
    show(args, client.lists.add(args.id, args.lead_ids))
    return OK


def cmd_remove(client: Client, args: argparse.Namespace) -> int:
    show(args, client.lists.remove(args.id, args.lead_ids))
    return OK


def cmd_export(client: Client, args: argparse.Namespace) -> int:
    fields = [f.strip() for f in args.fields.split(",") if f.strip()]
    target = args.output if args.output is not None else sys.stdout.buffer
    written = client.lists.export(args.id, target, format=args.format, fields=fields)
    if args.output is not None:
        print(f"wrote {written} bytes to {args.output}", file=sys.stderr)
    return OK
