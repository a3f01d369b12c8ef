"""The segments domain's kinds and states, as stored (lowercase) in `segments`."""

from __future__ import annotations

from enum import StrEnum


class Membership(StrEnum):
    """How a segment's members are chosen: by hand (and by forms and imports) or by rules."""

    STATIC = "static"
    RULE = "rule"


class State(StrEnum):
    """A rule segment is BUILDING until every lead has been evaluated against its rules."""

    BUILDING = "building"
    READY = "ready"
