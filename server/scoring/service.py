"""Scoring: the workspace's model, each lead's computed score, decay and rebuilds.

The arithmetic is in docs/SCORING.md and server/scoring/engine.py."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from server.db.engine import Database
from server.scoring.model import LeadScore, Rules, ScoringModel

# Schedules the background rescore of a workspace after a model change (the worker's task).
Rebuild = Callable[[str], None]


async def get_model(db: Database, *, workspace_id: str) -> ScoringModel:
    raise NotImplementedError  # being written in this session


async def update_model(
    db: Database, rebuild: Rebuild, *, workspace_id: str, data: Rules, paths: Sequence[str]
) -> ScoringModel:
    """Set the parts of the model named by `paths` (fit_rules, engagement_rules, fit_cap,
    engagement_cap, thresholds); validates the result, publishes version + 1."""
    raise NotImplementedError  # being written in this session


async def lead_score(db: Database, *, workspace_id: str, lead_id: str) -> LeadScore:
    raise NotImplementedError  # being written in this session
