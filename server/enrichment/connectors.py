"""What a connector does for one lead, without the database: an HTTP_JSON connector's
request (rendered from its templates), the cache key of that request, the Answer read from
the provider's response, and the checks of a configuration when it is saved; the built-in
connectors answer from the lead alone (builtin.py).

Sending the request is the caller's, through server.outbound.OutboundClient: its guard
checks every address connected to, where check_http_json can only check the template."""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from server.enrichment.builtin import MISS, builtin_answer
from server.enrichment.mapping import (
    check_field_map,
    check_path,
    check_target,
    coerce,
    lookup,
    parse_path,
)
from server.enrichment.model import Answer, ConnectorKind, HttpJson, LeadView, ProviderError
from server.fields import NUL_MESSAGE, has_nul
from server.outbound import AllowList, OutboundRefused, check_url

__all__ = [
    "builtin_answer",
    "check_field_map",
    "check_http_json",
    "check_path",
    "check_target",
    "lookup_key",
    "read_answer",
    "render_request",
]

PLACEHOLDERS = ("email", "domain", "first_name", "last_name", "company", "phone")
METHODS = ("GET", "POST")
DEFAULT_NO_MATCH = (404,)
MAX_HEADERS = 20
MAX_HEADER_VALUE = 4096  # bytes
MAX_BODY_TEMPLATE = 16 * 1024  # characters
# `{name}` only: the braces of a JSON body template's objects are no placeholders.
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110)
# The outbound client sets these itself and refuses them from a caller.
_CLIENT_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
# The lead a template is rendered for when it is checked.
SAMPLE = LeadView(
    id="sample",
    email="jane.doe@example.com",
    first_name="Jane",
    last_name="Doe",
    company="Example Inc",
    phone="+14155550100",
)

Request = tuple[str, str, dict[str, str], bytes | None]  # method, url, headers, body
Problems = list[tuple[str, str]]  # (field, reason)


# -- the request ------------------------------------------------------------------------


def placeholder_values(lead: LeadView) -> dict[str, str]:
    """What each placeholder stands for; `domain` is the email's, whoever owns it."""
    email = lead.email.strip()
    before, at, domain = email.rpartition("@")
    return {
        "email": email,
        "domain": domain.lower() if at and before else "",
        "first_name": lead.first_name.strip(),
        "last_name": lead.last_name.strip(),
        "company": lead.company.strip(),
        "phone": lead.phone.strip(),
    }


def _fill(template: str, values: Mapping[str, str], escape: Callable[[str], str]) -> str:
    """The template with known placeholders replaced in one pass (a value holding `{email}`
    stays as it is); unknown ones are left for check_http_json to refuse."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return escape(values[name]) if name in values else match.group(0)

    return _PLACEHOLDER.sub(replace, template)


def _url_escape(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _json_escape(value: str) -> str:
    return json.dumps(value)[1:-1]  # the inside of a JSON string literal


def method_of(http_json: HttpJson) -> str:
    return (http_json.method or "GET").strip().upper()


def _used(http_json: HttpJson) -> set[str]:
    """The placeholders the request is made of (a GET sends no body)."""
    text = http_json.url_template
    if method_of(http_json) == "POST":
        text += http_json.body_template
    return set(_PLACEHOLDER.findall(text))


def render_request(http_json: HttpJson, lead: LeadView) -> Request:
    """(method, url, headers, body) of the lookup for this lead. Headers are the stored
    ones (secrets) over `accept: application/json` and, for POST, a JSON content-type."""
    values = placeholder_values(lead)
    method = method_of(http_json)
    url = _fill(http_json.url_template, values, _url_escape)
    body = None
    if method == "POST" and http_json.body_template:
        body = _fill(http_json.body_template, values, _json_escape).encode()
    defaults = {"accept": "application/json"}
    if method == "POST":
        defaults["content-type"] = "application/json"
    stored = {name.lower() for name in http_json.headers}
    headers = {k: v for k, v in defaults.items() if k not in stored} | dict(http_json.headers)
    return method, url, headers, body


def lookup_key(kind: ConnectorKind, http_json: HttpJson | None, lead: LeadView) -> str | None:
    """The cache key of the lead's lookup: sha256 (hex) of the rendered method, URL and body,
    never the headers (secrets), so leads making the same request share an answer. None
    when there is nothing to cache: a built-in, or a placeholder the request needs is
    empty (the lead cannot be looked up: a skip, not an error)."""
    if kind != ConnectorKind.HTTP_JSON:
        return None
    if http_json is None:
        raise ValueError("an HTTP_JSON connector needs its http_json")
    values = placeholder_values(lead)
    if any(not values[name] for name in _used(http_json) if name in values):
        return None
    method, url, _, body = render_request(http_json, lead)
    digest = hashlib.sha256(f"{method}\n{url}\n".encode())
    digest.update(body or b"")
    return digest.hexdigest()


# -- the answer -------------------------------------------------------------------------


def read_answer(
    http_json: HttpJson,
    field_map: Mapping[str, str],
    status: int,
    body: bytes,
    *,
    retry_after: str | None = None,
) -> Answer:
    """The provider's response as an Answer, values by target. A no-match status, or an
    empty no_match_path, is a miss; another non-2xx status or a body that is not JSON is a
    ProviderError. A match is found=True even when no path has a value. When several paths
    map to one target the first with a value wins (a fallback); a target check_target
    refuses is skipped. `retry_after` is the response's Retry-After header, if any."""
    if status in (http_json.no_match_statuses or DEFAULT_NO_MATCH):
        return MISS
    if not 200 <= status < 300:
        reason = "RATE_LIMITED" if status == 429 else "PROVIDER_ERROR"
        raise ProviderError(reason, f"HTTP {status}", retry_after=retry_seconds(retry_after))
    document = _document(body)
    if http_json.no_match_path and _is_empty(_at(document, http_json.no_match_path)):
        return MISS
    values: dict[str, Any] = {}
    for path, target in field_map.items():
        if target not in values and check_target(target) is None:
            value = coerce(target, _at(document, path))
            if value is not None:
                values[target] = value
    return Answer(found=True, values=values)


def _document(body: bytes) -> Any:
    if not body.strip():
        raise ProviderError("BAD_RESPONSE", "the response body is empty")
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError too
        raise ProviderError(
            "BAD_RESPONSE", "the response is not JSON (or was cut off at the size limit)"
        ) from None


def _at(document: Any, path: str) -> Any:
    """The value at a path, None when there is none (or the stored path is unreadable)."""
    try:
        steps = parse_path(path)
    except ValueError:
        return None
    return lookup(document, steps)[1]


def _is_empty(value: Any) -> bool:
    if isinstance(value, str):
        return not value.strip()
    return value is None or (isinstance(value, list | dict) and not value)


def retry_seconds(header: str | None) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from now."""
    if header is None or not header.strip():
        return None
    text = header.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# -- the checks of a configuration ------------------------------------------------------


def check_http_json(http_json: HttpJson, allow: AllowList) -> Problems:
    """What is wrong with an HTTP_JSON configuration, as (field, reason) pairs; reasons
    name headers but never hold their values (secrets)."""
    problems: Problems = []
    if method_of(http_json) not in METHODS:
        problems.append(("method", "must be GET or POST"))
    problems += _check_url(http_json, allow)
    problems += _check_body(http_json)
    problems += _check_headers(http_json.headers)
    problems += [
        ("no_match_statuses", f"{status} is not an HTTP status (100 to 599)")
        for status in http_json.no_match_statuses
        if not 100 <= status <= 599
    ]
    reason = check_path(http_json.no_match_path) if http_json.no_match_path else None
    if reason is not None:
        problems.append(("no_match_path", reason))
    return problems


def _unknown(template: str) -> list[str]:
    return sorted(set(_PLACEHOLDER.findall(template)) - set(PLACEHOLDERS))


def _template_problem(template: str) -> str | None:
    """What any template may not hold: NUL, placeholders we do not know."""
    if has_nul(template):
        return NUL_MESSAGE
    unknown = _unknown(template)
    if unknown:
        known = " ".join(f"{{{name}}}" for name in PLACEHOLDERS)
        return f"unknown placeholder {{{unknown[0]}}}: use {known}"
    return None


def _in_host(template: str) -> bool:
    """Whether a placeholder stands in the scheme or host, where a lead's data could send
    the request (and its API key) to a server of its choosing."""
    scheme, sep, rest = template.partition("://")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    return bool(sep) and bool(_PLACEHOLDER.search(scheme + sep + authority))


def _check_url(http_json: HttpJson, allow: AllowList) -> Problems:
    template = http_json.url_template
    reason = "is required" if not template else _template_problem(template)
    if reason is None and _in_host(template):
        reason = "placeholders may stand in the path and query only, not the host"
    if reason is None and not _used(http_json):
        reason = "uses no placeholder: every lead would get the same answer"
    if reason is None:
        try:
            check_url(_fill(template, placeholder_values(SAMPLE), _url_escape), allow)
        except OutboundRefused as exc:
            reason = exc.reason
    return [] if reason is None else [("url_template", reason)]


def _check_body(http_json: HttpJson) -> Problems:
    template = http_json.body_template
    if not template:
        return []
    reason = _template_problem(template)
    if method_of(http_json) != "POST":
        reason = "only a POST sends a body"
    elif len(template) > MAX_BODY_TEMPLATE:
        reason = f"longer than {MAX_BODY_TEMPLATE} characters"
    elif reason is None:
        try:
            json.loads(_fill(template, placeholder_values(SAMPLE), _json_escape))
        except (ValueError, RecursionError):
            reason = 'is not JSON once filled in (placeholders go inside strings: "{email}")'
    return [] if reason is None else [("body_template", reason)]


def _check_headers(headers: Mapping[str, str]) -> Problems:
    problems: Problems = []
    if len(headers) > MAX_HEADERS:
        problems.append(("headers", f"more than {MAX_HEADERS} headers"))
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            problems.append(("headers", f"{name!r} is not a valid header name"))
        elif name.lower() in _CLIENT_HEADERS:
            problems.append(("headers", f"the {name} header is set by the client"))
        reason = _header_value_problem(value)
        if reason is not None:
            problems.append(("headers", f"the value of {name!r} {reason}"))
    return problems


def _header_value_problem(value: str) -> str | None:
    if has_nul(value) or "\r" in value or "\n" in value:
        return "contains a line break or the NUL character"
    try:
        size = len(value.encode("latin-1"))
    except UnicodeEncodeError:
        return "is not Latin-1 text"
    return f"is longer than {MAX_HEADER_VALUE} bytes" if size > MAX_HEADER_VALUE else None
