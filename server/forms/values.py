"""Checking a submission's values against its form: required fields, field types, lengths.
Pure: what comes out is what gets stored and what fills the lead."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from email_validator import EmailNotValidError, validate_email

from server.errors import FieldViolation, InvalidArgument
from server.fields import MAX_TEXT
from server.filtering.fields import CUSTOM_PREFIX
from server.forms.definition import MAX_VALUE, Form, FormField

PHONE = re.compile(r"^\+?[0-9 ()\-./]{5,40}$")
MIN_PHONE_DIGITS = 5
# What one submission may store (the gateway refuses bodies past 64 KiB with 413 before).
MAX_PAYLOAD_BYTES = 32 * 1024


@dataclass
class Mapped:
    """A checked submission split by destination."""

    payload: dict[str, Any]  # every field by name, as stored with the submission
    email: str = ""
    lead: dict[str, str] = field(default_factory=dict)  # lead column -> value
    custom: dict[str, Any] = field(default_factory=dict)  # custom key -> value


def _text(item: FormField, raw: Any, path: str, problems: list[FieldViolation]) -> str:
    if raw is None:
        return ""
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        problems.append(FieldViolation(path, "must be text"))
        return ""
    value = (str(int(raw)) if isinstance(raw, float) and raw.is_integer() else str(raw)).strip()
    if "\x00" in value:  # PostgreSQL stores no NUL in text or jsonb
        problems.append(FieldViolation(path, "contains a NUL character"))
        return ""
    limit = MAX_TEXT if item.maps_to and not item.maps_to.startswith(CUSTOM_PREFIX) else 0
    limit = limit or MAX_VALUE
    if len(value) > limit:
        problems.append(FieldViolation(path, f"longer than {limit} characters"))
    return value


def _typed(item: FormField, value: str, path: str, problems: list[FieldViolation]) -> str:
    if item.type == "email":
        try:
            return validate_email(value, check_deliverability=False).normalized.lower()
        except EmailNotValidError as exc:
            problems.append(FieldViolation(path, f"is not a valid email address: {exc}"))
    elif item.type == "phone":
        if not PHONE.match(value) or sum(c.isdigit() for c in value) < MIN_PHONE_DIGITS:
            problems.append(FieldViolation(path, "is not a phone number"))
    elif item.type == "select" and value not in item.options:
        problems.append(FieldViolation(path, "must be one of the options"))
    return value


def _checkbox(item: FormField, raw: Any, path: str, problems: list[FieldViolation]) -> bool:
    ticked = False if raw is None or raw == "" else raw
    if not isinstance(ticked, bool):
        problems.append(FieldViolation(path, "must be true or false"))
        return False
    if item.required and not ticked:
        problems.append(FieldViolation(path, "must be checked"))
    return ticked


def check(form: Form, raw: dict[str, Any]) -> Mapped:
    """The submission checked against the form; raises one InvalidArgument naming every
    bad field (`fields.<name>`)."""
    problems: list[FieldViolation] = []
    known = {item.name for item in form.fields}
    problems.extend(
        FieldViolation(f"fields.{name}", "is not a field of this form")
        for name in raw
        if name not in known
    )
    out = Mapped(payload={})
    for item in form.fields:
        path = f"fields.{item.name}"
        value: Any
        if item.type == "checkbox":
            value = _checkbox(item, raw.get(item.name), path, problems)
        else:
            given = raw.get(item.name, item.default_value if item.type == "hidden" else None)
            text = _text(item, given, path, problems)
            if not text:
                if item.required:
                    problems.append(FieldViolation(path, "is required"))
                continue  # empty: never stored, never wipes a lead's value
            value = _typed(item, text, path, problems)
        out.payload[item.name] = value
        if item.maps_to.startswith(CUSTOM_PREFIX):
            out.custom[item.maps_to[len(CUSTOM_PREFIX) :]] = value
        elif item.maps_to == "email":
            out.email = value
        elif item.maps_to:
            out.lead[item.maps_to] = value
    if len(json.dumps(out.payload)) > MAX_PAYLOAD_BYTES:
        problems.append(FieldViolation("fields", f"larger than {MAX_PAYLOAD_BYTES} bytes"))
    if problems:
        raise InvalidArgument(
            message="; ".join(f"{p.field}: {p.description}" for p in problems),
            reason="FORM_SUBMISSION_INVALID",
            violations=problems,
        )
    return out
