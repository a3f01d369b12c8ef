"""What leads and companies share for partial updates: reading an update_mask whose paths
name whole fields or single custom-field keys, and patching a JSONB custom_fields column."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import ColumnElement, cast, literal
from sqlalchemy.dialects.postgresql import JSONB, array

from server.errors import InvalidArgument
from server.filtering.fields import CUSTOM_KEY

CUSTOM_PATH = "custom_fields."


def resolve_mask_paths(paths: list[str], writable: Collection[str]) -> tuple[set[str], list[str]]:
    """Split update_mask paths into whole fields and custom_fields.<key> sub-paths."""
    whole: set[str] = set()
    custom_keys: list[str] = []
    for path in paths:
        if path.startswith(CUSTOM_PATH) and CUSTOM_KEY.match(path[len(CUSTOM_PATH) :]):
            custom_keys.append(path[len(CUSTOM_PATH) :])
        elif path in writable:
            whole.add(path)
        else:
            raise InvalidArgument.on(
                "update_mask",
                f"unknown or read-only field path {path!r}",
                reason="UPDATE_MASK_INVALID",
            )
    return whole, custom_keys


def patched_custom_fields(
    column: ColumnElement[Any], merge: dict[str, Any] | None, remove: list[str] | None
) -> ColumnElement[Any] | None:
    """The column with keys merged, then removed, in SQL; None when nothing changes."""
    if not merge and not remove:
        return None
    document = column
    if merge:
        document = document.op("||")(cast(literal(merge, JSONB), JSONB))
    if remove:
        document = document.op("-")(array(remove))
    return document
