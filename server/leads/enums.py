"""The leads domain's statuses, as stored (lowercase) in `leads.status`."""

from __future__ import annotations

from enum import StrEnum


class LeadStatus(StrEnum):
    NEW = "new"
    CONTACTED = "contacted"
    QUALIFIED = "qualified"
    CUSTOMER = "customer"
    DISQUALIFIED = "disqualified"
