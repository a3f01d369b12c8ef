"""The scoring domain's states and kinds."""

from __future__ import annotations

from enum import StrEnum


class ModelState(StrEnum):
    """As stored in scoring_models.state."""

    BUILDING = "building"  # existing leads are being rescored with the newest version
    READY = "ready"


class ContributionKind(StrEnum):
    """Where points of a score come from (ScoreContribution.Kind)."""

    FIT = "FIT"
    ENGAGEMENT = "ENGAGEMENT"
    ADJUSTMENT = "ADJUSTMENT"
    FIT_CAP = "FIT_CAP"
    ENGAGEMENT_CAP = "ENGAGEMENT_CAP"
    FLOOR = "FLOOR"


class Direction(StrEnum):
    """Which way a lead crossed a threshold."""

    UP = "up"
    DOWN = "down"


# Activity types the product names; any other matching [a-z][a-z0-9_.]{0,63} is custom.
KNOWN_ACTIVITY_TYPES = (
    "page_view",
    "email_open",
    "email_click",
    "form_submitted",
    "meeting_booked",
    "webinar_attended",
)
# A manual change of a computed score: `properties.points`, a whole number, never decays.
SCORE_ADJUSTED = "score_adjusted"
