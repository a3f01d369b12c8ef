"""Validation and normalisation of lead input, and the errors it produces."""

from __future__ import annotations

from dataclasses import replace

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.exc import IntegrityError

from server.errors import AlreadyExists, FieldViolation, InvalidArgument
from server.fields import CUSTOM_PATH, MAX_TEXT, NUL_MESSAGE, custom_field_violations
from server.filtering.fields import LEAD_STATUSES
from server.leads.model import LeadInput


def normalise_email(raw: str, violations: list[FieldViolation], *, field_name: str) -> str:
    email = raw.strip()
    if not email:
        violations.append(FieldViolation(field_name, "is required"))
        return email
    try:
        result = validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        violations.append(FieldViolation(field_name, f"is not a valid email address: {exc}"))
        return email
    return result.normalized.lower()


def validate(data: LeadInput, paths: set[str], prefix: str) -> LeadInput:
    """Check the named fields; returns the input normalised. Raises one error with every
    violation, so a client can fix them all at once."""
    violations: list[FieldViolation] = []
    out = replace(data)
    if "email" in paths:
        out.email = normalise_email(data.email, violations, field_name=f"{prefix}email")
    for name in ("first_name", "last_name", "title", "phone", "company", "source"):
        if name in paths:
            setattr(out, name, getattr(data, name).strip())
            if len(getattr(out, name)) > MAX_TEXT:
                violations.append(
                    FieldViolation(f"{prefix}{name}", f"longer than {MAX_TEXT} characters")
                )
            if "\x00" in getattr(out, name):
                violations.append(FieldViolation(f"{prefix}{name}", NUL_MESSAGE))
    if "score" in paths and data.score < 0:
        violations.append(FieldViolation(f"{prefix}score", "must not be negative"))
    if "status" in paths and data.status and data.status not in LEAD_STATUSES:
        violations.append(FieldViolation(f"{prefix}status", f"unknown status {data.status!r}"))
    if "custom_fields" in paths or any(p.startswith(CUSTOM_PATH) for p in paths):
        violations.extend(custom_field_violations(data.custom_fields, prefix))
    if violations:
        raise InvalidArgument(
            message="; ".join(f"{v.field}: {v.description}" for v in violations),
            reason="LEAD_INVALID",
            violations=violations,
        )
    return out


def duplicate_email(email: str) -> AlreadyExists:
    return AlreadyExists(
        message=f"a lead with email {email!r} already exists in this workspace",
        reason="LEAD_EMAIL_TAKEN",
        violations=[FieldViolation("lead.email", "already used by another lead")],
        metadata={"email": email},
    )


def is_unique_violation(exc: IntegrityError) -> bool:
    return getattr(exc.orig, "sqlstate", None) == "23505"
