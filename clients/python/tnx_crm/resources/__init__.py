"""The resource objects behind `client.leads`, `client.lists`, …: `X` for `Client` and
`AsyncX` for `AsyncClient`, side by side in one module per area."""

from tnx_crm.resources.automation import AsyncForms, AsyncTriggers, Forms, Triggers
from tnx_crm.resources.events import (
    Activities,
    AsyncActivities,
    AsyncEvents,
    AsyncScoring,
    Events,
    Scoring,
)
from tnx_crm.resources.imports import AsyncImports, Imports
from tnx_crm.resources.leads import AsyncCompanies, AsyncLeads, Companies, Leads
from tnx_crm.resources.lists import AsyncLists, Lists

__all__ = [
    "Activities",
    "AsyncActivities",
    "AsyncCompanies",
    "AsyncEvents",
    "AsyncForms",
    "AsyncImports",
    "AsyncLeads",
    "AsyncLists",
    "AsyncScoring",
    "AsyncTriggers",
    "Companies",
    "Events",
    "Forms",
    "Imports",
    "Leads",
    "Lists",
    "Scoring",
    "Triggers",
]
