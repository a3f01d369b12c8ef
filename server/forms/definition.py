"""What a form is, and the rules a form definition must follow. Pure: no SQL, no proto."""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from server.errors import FieldViolation, InvalidArgument
from server.filtering.fields import CUSTOM_KEY, CUSTOM_PREFIX
from server.forms import origins

FIELD_TYPES = ("email", "text", "phone", "select", "checkbox", "hidden")
# Lead columns a field may write; everything else goes to custom.<key>.
LEAD_TARGETS = ("email", "first_name", "last_name", "title", "phone", "company")
# Which lead columns each field type may feed (custom.<key> takes any type).
_TYPE_TARGETS = {
    "email": {"email"},
    "text": {"first_name", "last_name", "title", "company"},
    "phone": {"phone"},
    "select": {"first_name", "last_name", "title", "company"},
    "checkbox": set(),
    "hidden": {"first_name", "last_name", "title", "company"},
}
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$")
FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
MAX_FIELDS = 50
MAX_OPTIONS = 100
MAX_SEGMENTS = 20
MAX_ORIGINS = 20
MAX_NAME = 200
MAX_LABEL = 200
MAX_VALUE = 2000
MAX_MESSAGE = 1000
MAX_URL = 2000
MAX_SOURCE = 100
DEFAULT_SOURCE = "form"
DEFAULT_SUCCESS = "Thanks! Your submission was received."
DEFAULT_SUBMIT = "Submit"
UPDATABLE = (
    "name",
    "fields",
    "segment_ids",
    "source",
    "allowed_origins",
    "success_message",
    "redirect_url",
    "submit_label",
)


@dataclass(frozen=True)
class FormField:
    name: str
    type: str  # one of FIELD_TYPES
    label: str = ""
    required: bool = False
    options: tuple[str, ...] = ()
    maps_to: str = ""
    default_value: str = ""
    placeholder: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "label": self.label,
            "required": self.required,
            "options": list(self.options),
            "maps_to": self.maps_to,
            "default_value": self.default_value,
            "placeholder": self.placeholder,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FormField:
        return cls(**{**data, "options": tuple(data.get("options", ()))})


@dataclass(frozen=True)
class Form:
    id: str
    workspace_id: str
    slug: str
    name: str
    fields: tuple[FormField, ...]
    segment_ids: tuple[str, ...]
    source: str
    allowed_origins: tuple[str, ...]
    success_message: str
    redirect_url: str
    submit_label: str
    created_at: datetime
    updated_at: datetime


@dataclass
class FormInput:
    """What a client sends; the defaults stand for "not given"."""

    slug: str = ""
    name: str = ""
    fields: list[FormField] = field(default_factory=list)
    segment_ids: list[str] = field(default_factory=list)
    source: str = ""
    allowed_origins: list[str] = field(default_factory=list)
    success_message: str = ""
    redirect_url: str = ""
    submit_label: str = ""


def new_slug(name: str) -> str:
    """A readable, unguessable slug: the name's words plus a random suffix."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    words = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:40].strip("-")
    suffix = secrets.token_hex(4)
    return f"{words}-{suffix}" if words else f"form-{suffix}"


class _Checker:
    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def add(self, path: str, description: str) -> None:
        self.violations.append(FieldViolation(path, description))

    def text(self, path: str, value: str, limit: int, *, required: bool = False) -> str:
        clean = value.strip()
        if "\x00" in clean:  # PostgreSQL stores no NUL in text or jsonb
            self.add(path, "contains a NUL character")
        if required and not clean:
            self.add(path, "is required")
        if len(clean) > limit:
            self.add(path, f"longer than {limit} characters")
        return clean


def _check_field(check: _Checker, path: str, item: FormField) -> FormField:
    name = item.name.strip()
    if not FIELD_NAME.match(name):
        check.add(f"{path}.name", "letters, digits and _, starting with a letter, up to 64")
    if item.type not in FIELD_TYPES:
        check.add(f"{path}.type", "is required: EMAIL, TEXT, PHONE, SELECT, CHECKBOX or HIDDEN")
    label = check.text(f"{path}.label", item.label, MAX_LABEL) or name
    options = tuple(option.strip() for option in item.options)
    if item.type == "select":
        if not options or len(options) > MAX_OPTIONS:
            check.add(f"{path}.options", f"a SELECT field needs 1 to {MAX_OPTIONS} options")
        bad = any(not o or len(o) > MAX_LABEL or "\x00" in o for o in options)
        if bad or len(set(options)) < len(options):
            check.add(f"{path}.options", f"options are distinct, 1 to {MAX_LABEL} characters")
    elif options:
        check.add(f"{path}.options", "only SELECT fields have options")
    maps_to = item.maps_to.strip()
    if maps_to.startswith(CUSTOM_PREFIX):
        if not CUSTOM_KEY.match(maps_to[len(CUSTOM_PREFIX) :]):
            check.add(f"{path}.maps_to", "custom keys are letters, digits, _ or -, up to 64")
    elif maps_to and maps_to not in LEAD_TARGETS:
        check.add(f"{path}.maps_to", f"a lead field ({', '.join(LEAD_TARGETS)}) or custom.<key>")
    elif maps_to and item.type in FIELD_TYPES and maps_to not in _TYPE_TARGETS[item.type]:
        check.add(f"{path}.maps_to", f"a {item.type.upper()} field cannot fill lead.{maps_to}")
    default = check.text(f"{path}.default_value", item.default_value, MAX_VALUE)
    if item.type == "select" and default and default not in options:
        check.add(f"{path}.default_value", "must be one of the options")
    if item.type == "checkbox" and default not in ("", "true", "false"):
        check.add(f"{path}.default_value", 'a CHECKBOX default is "true" or "false"')
    return replace(
        item,
        name=name,
        label=label,
        options=options,
        maps_to=maps_to,
        default_value=default,
        placeholder=check.text(f"{path}.placeholder", item.placeholder, MAX_LABEL),
    )


def _check_fields(check: _Checker, items: list[FormField]) -> tuple[FormField, ...]:
    if not items or len(items) > MAX_FIELDS:
        check.add("form.fields", f"a form has 1 to {MAX_FIELDS} fields")
    clean = tuple(_check_field(check, f"form.fields[{i}]", item) for i, item in enumerate(items))
    names: set[str] = set()
    targets: set[str] = set()
    for i, item in enumerate(clean):
        if item.name.lower() in names:
            check.add(f"form.fields[{i}].name", f"{item.name!r} is used twice")
        names.add(item.name.lower())
        if item.maps_to and item.maps_to in targets:
            check.add(f"form.fields[{i}].maps_to", f"two fields fill {item.maps_to}")
        targets.add(item.maps_to)
    email = [item for item in clean if item.maps_to == "email"]
    if items and not email:
        check.add("form.fields", "one field must map to the lead's email")
    elif email and not email[0].required:
        check.add("form.fields", "the field mapped to email must be required")
    return clean


def _check_url(check: _Checker, path: str, value: str) -> str:
    url = check.text(path, value, MAX_URL)
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            check.add(path, "an absolute http(s) URL")
    return url


def _check_origins(check: _Checker, values: list[str]) -> tuple[str, ...]:
    if len(values) > MAX_ORIGINS:
        check.add("form.allowed_origins", f"at most {MAX_ORIGINS}")
    clean: list[str] = []
    for i, value in enumerate(values):
        origin = origins.normalise(value)
        if origin is None:
            check.add(
                f"form.allowed_origins[{i}]",
                "an origin: http(s)://host[:port], without a path (e.g. https://example.com)",
            )
        elif origin not in clean:
            clean.append(origin)
    return tuple(clean)


def _check_segments(check: _Checker, values: list[str]) -> tuple[str, ...]:
    clean = tuple(dict.fromkeys(v.strip() for v in values if v.strip()))
    if len(clean) > MAX_SEGMENTS:
        check.add("form.segment_ids", f"at most {MAX_SEGMENTS}")
    return clean


def validate(data: FormInput, paths: set[str], *, creating: bool) -> dict[str, Any]:
    """The column values for the named paths, checked and normalised; raises one
    InvalidArgument naming every violation."""
    check = _Checker()
    values: dict[str, Any] = {}
    if creating:
        slug = data.slug.strip().lower()
        if slug and not SLUG.match(slug):
            check.add("form.slug", "3 to 64 lowercase letters, digits and -, not at either end")
        values["slug"] = slug or new_slug(data.name)
    if "name" in paths:
        values["name"] = check.text("form.name", data.name, MAX_NAME, required=True)
    if "fields" in paths:
        values["fields"] = _check_fields(check, data.fields)
    if "segment_ids" in paths:
        values["segment_ids"] = _check_segments(check, data.segment_ids)
    if "source" in paths:
        values["source"] = check.text("form.source", data.source, MAX_SOURCE) or DEFAULT_SOURCE
    if "allowed_origins" in paths:
        values["allowed_origins"] = _check_origins(check, data.allowed_origins)
    if "success_message" in paths:
        message = check.text("form.success_message", data.success_message, MAX_MESSAGE)
        values["success_message"] = message or DEFAULT_SUCCESS
    if "redirect_url" in paths:
        values["redirect_url"] = _check_url(check, "form.redirect_url", data.redirect_url)
    if "submit_label" in paths:
        label = check.text("form.submit_label", data.submit_label, MAX_LABEL)
        values["submit_label"] = label or DEFAULT_SUBMIT
    if check.violations:
        raise InvalidArgument(
            message="; ".join(f"{v.field}: {v.description}" for v in check.violations),
            reason="FORM_INVALID",
            violations=check.violations,
        )
    return values
