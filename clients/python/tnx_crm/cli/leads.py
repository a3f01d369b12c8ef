"""`tnx-crm leads create|get|list|search|update|archive|unarchive`."""

from __future__ import annotations

import argparse
from typing import Any

from tnx_crm.cli._base import (
    OK,
    Column,
    Subparsers,
    UsageError,
    group,
    leaf,
    pairs,
    parse_value,
    short_enum,
    show,
    show_all,
)
from tnx_crm.client import Client

# (option, Lead field) for the plain fields create and update take.
FIELDS = [
    ("--email", "email"),
    ("--first-name", "first_name"),
    ("--last-name", "last_name"),
    ("--title", "title"),
    ("--phone", "phone"),
    ("--company", "company"),
    ("--company-id", "company_id"),
    ("--source", "source"),
    ("--status", "status"),
]
COLUMNS: list[Column] = [
    ("ID", 30, lambda lead: lead.id),
    ("EMAIL", 30, lambda lead: lead.email),
    ("NAME", 22, lambda lead: f"{lead.first_name} {lead.last_name}".strip()),
    ("COMPANY", 18, lambda lead: lead.company),
    ("SCORE", 5, lambda lead: lead.score),
    ("STATUS", 10, lambda lead: short_enum(lead, "status")),
]


def add_commands(commands: Subparsers, common: argparse.ArgumentParser) -> None:
    leads = group(commands, "leads", "create, read, update, list and search leads")

    create = leaf(leads, "create", "create a lead", common, cmd_create)
    _field_options(create, required_email=True)

    get = leaf(leads, "get", "show one lead", common, cmd_get)
    get.add_argument("id")

    listing = leaf(leads, "list", "list leads, filtered", common, cmd_list)
    listing.add_argument("--filter", default="", help="e.g. 'score >= 50 AND title:\"growth\"'")
    listing.add_argument("--source", default="")
    listing.add_argument("--segment", default="", help="only members of this segment (list)")
    listing.add_argument("--score-min", type=int)
    listing.add_argument("--score-max", type=int)
    listing.add_argument("--created-after", help="RFC 3339 time or YYYY-MM-DD")
    listing.add_argument("--created-before", help="RFC 3339 time or YYYY-MM-DD")
    listing.add_argument("--include-archived", action="store_true")
    _paging(listing)

    search = leaf(leads, "search", "free-text search", common, cmd_search)
    search.add_argument("query")
    search.add_argument("--segment", default="")
    search.add_argument("--filter", default="")
    search.add_argument("--include-archived", action="store_true")
    _paging(search)

    update = leaf(leads, "update", "change the given fields of a lead", common, cmd_update)
    update.add_argument("id")
    _field_options(update, required_email=False)
    update.add_argument(
        "--unset-custom", action="append", default=[], metavar="KEY", help="remove a custom field"
    )

    for name, run in (("archive", cmd_archive), ("unarchive", cmd_unarchive)):
        action = leaf(leads, name, f"{name} a lead", common, run)
        action.add_argument("id")


def _field_options(parser: argparse.ArgumentParser, *, required_email: bool) -> None:
    for option, _ in FIELDS:
        parser.add_argument(option, required=required_email and option == "--email")
    parser.add_argument("--score", type=int)
    parser.add_argument(
        "--custom",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a custom field; VALUE is read as JSON when it parses (42, true), else as text",
    )


def _paging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, help="stop after this many (default: all)")
    parser.add_argument("--page-size", type=int, help="leads fetched per call (server: ≤1000)")


def _page_size(args: argparse.Namespace) -> int | None:
    """--page-size, else no more per page than --limit needs."""
    if args.page_size is not None:
        return int(args.page_size)
    return min(args.limit, 1000) if args.limit else None


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {
        field: getattr(args, field) for _, field in FIELDS if getattr(args, field) is not None
    }
    if args.score is not None:
        fields["score"] = args.score
    custom = {key: parse_value(value) for key, value in pairs(args.custom, "--custom")}
    if custom:
        fields["custom_fields"] = custom
    return fields


def cmd_create(client: Client, args: argparse.Namespace) -> int:
    show(args, client.leads.create(**_fields(args)))
    return OK


def cmd_get(client: Client, args: argparse.Namespace) -> int:
    show(args, client.leads.get(args.id))
    return OK


def cmd_update(client: Client, args: argparse.Namespace) -> int:
    fields = _fields(args)
    paths = [name for name in fields if name != "custom_fields"]
    paths += [f"custom_fields.{key}" for key in fields.get("custom_fields", {})]
    paths += [f"custom_fields.{key}" for key in args.unset_custom]
    if not paths:
        raise UsageError("nothing to update: give at least one field option")
    fields.setdefault("custom_fields", {})
    show(args, client.leads.update(args.id, update_mask=paths, **fields))
    return OK


def cmd_archive(client: Client, args: argparse.Namespace) -> int:
    show(args, client.leads.archive(args.id))
    return OK


def cmd_unarchive(client: Client, args: argparse.Namespace) -> int:
    show(args, client.leads.unarchive(args.id))
    return OK


def cmd_list(client: Client, args: argparse.Namespace) -> int:
    leads = client.leads.list(
        page_size=_page_size(args),
        filter=args.filter,
        source=args.source,
        segment_id=args.segment,
        score_min=args.score_min,
        score_max=args.score_max,
        created_after=args.created_after,
        created_before=args.created_before,
        include_archived=args.include_archived,
    )
    return show_all(args, leads, COLUMNS)


def cmd_search(client: Client, args: argparse.Namespace) -> int:
    leads = client.leads.search(
        args.query,
        page_size=_page_size(args),
        segment_id=args.segment,
        filter=args.filter,
        include_archived=args.include_archived,
    )
    return show_all(args, leads, COLUMNS)
