"""What leads and companies (and imports of leads) share about their fields: the size
limits, the check of a custom_fields object, and partial updates (an update_mask whose paths
name whole fields or single custom-field keys, and the patch of a JSONB custom_fields column
it makes)."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, cast, literal
from sqlalchemy.dialects.postgresql import JSONB, array

from server.errors import FieldViolation, InvalidArgument
from server.filtering.fields import CUSTOM_KEY

CUSTOM_PATH = "custom_fields."
MAX_TEXT = 500  # characters in any free-text field
MAX_CUSTOM_BYTES = 64 * 1024  # a custom_fields object, as JSON
# PostgreSQL text and jsonb cannot hold U+0000.
NUL_MESSAGE = "cannot contain the NUL character"


def has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(item) for item in value)
    return False


def custom_field_violations(custom: dict[str, Any], prefix: str) -> list[FieldViolation]:
    """What is wrong with a custom_fields object: bad keys, its size, a NUL anywhere."""
    problems = [
        FieldViolation(f"{prefix}custom_fields.{key}", "keys are letters, digits, _ or -, up to 64")
        for key in custom
        if not CUSTOM_KEY.match(key)
    ]
    if len(json.dumps(custom)) > MAX_CUSTOM_BYTES:
        problems.append(
            FieldViolation(f"{prefix}custom_fields", f"larger than {MAX_CUSTOM_BYTES} bytes")
        )
    if has_nul(custom):
        problems.append(FieldViolation(f"{prefix}custom_fields", NUL_MESSAGE))
    return problems


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


@dataclass(frozen=True)
class CustomPatch:
    """How an update changes custom_fields: replace the whole object (when `replace` is not
    None), or merge keys, then remove keys."""

    replace: dict[str, Any] | None = None
    merge: dict[str, Any] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)


def custom_patch(
    custom: dict[str, Any], whole: set[str], custom_keys: list[str], *, merge_custom: bool
) -> CustomPatch:
    """The patch an update makes from the request's custom_fields. `custom_fields` among the
    whole fields replaces the object unless merge_custom is set (an update without a mask
    merges keys); a `custom_fields.<key>` path sets the key, or removes it when the request
    has no such key."""
    merge = {k: custom[k] for k in custom_keys if k in custom}
    remove = [k for k in custom_keys if k not in custom]
    if "custom_fields" in whole and not merge_custom:
        return CustomPatch(replace=custom, merge=merge, remove=remove)
    if "custom_fields" in whole:
        merge.update(custom)
    return CustomPatch(merge=merge, remove=remove)
