"""Slack incoming-webhook messages for triggers: a Block Kit message with a plain-text
fallback for one event, or one digest message for a burst of them (Slack takes about one
message a second per webhook). Also the checks of a trigger's message and link templates.
Pure functions: the sender posts what `message` returns."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

PLACEHOLDERS = (
    "name",
    "email",
    "company",
    "score",
    "segment",
    "threshold",
    "direction",
    "event",
    "lead_id",
    "link",
)
LINK_PLACEHOLDERS = ("lead_id", "email")
MAX_BLOCKS = 50  # Slack's limits on one message
MAX_SECTION = 3000
MAX_HEADER = 150
MAX_FALLBACK = 3000  # ours: a notification shows far less anyway
MAX_BUTTON_URL = 3000
MAX_TEMPLATE = 2000
MAX_LINK_TEMPLATE = 2048
MAX_EVENT = 100  # an event type shown in a context line
ELLIPSIS = "…"
BUTTON_LABEL = "Open lead"

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# An entity or a <…> link/mention left open at the end of a cut text.
_OPEN_ENTITY = re.compile(r"&[#A-Za-z0-9]{0,8}\Z")
_OPEN_ANGLE = re.compile(r"<[^\s<>|]*(?:\|[^<>]*)?\Z")
# Placeholders in the fallback text stand in as these private-use characters while the
# template's own markup is stripped, so a value's `*` or `_` is never taken for markup.
_MARK, _END = "\ue000", "\ue001"
_SLOT = re.compile(f"{_MARK}(\\d+){_END}")
# A <target|label> or <target> sequence: a link, or a mention such as <!here> or <@U123>.
_ANGLE = re.compile(r"<([^\s<>|]+)(?:\|([^<>]*))?>")
_EMPHASIS = [
    re.compile(rf"(?<!\w){re.escape(m)}(?=\S)(.+?)(?<=\S){re.escape(m)}(?!\w)") for m in "*_~`"
]


@dataclass(frozen=True)
class SlackItem:
    """One trigger event as a Slack message shows it."""

    event_type: str  # e.g. "lead.threshold_crossed", "segment.lead_entered", "lead.created"
    event_id: str  # evt_…
    occurred_at: datetime
    lead_id: str
    name: str  # the lead's full name, may be ""
    email: str
    company: str  # the company's name, may be ""
    score: int | None
    segment: str  # segment name (or id) for segment events, else ""
    threshold: str  # threshold name for threshold events, else ""
    direction: str  # "up"/"down" for threshold events, else ""


def escape(text: str) -> str:
    """Text as mrkdwn shows it literally: only &, < and > have a meaning to escape."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """Text cut to at most `limit` characters with an ellipsis, never inside an entity such as
    &amp; or a <url|label> sequence, which Slack would show broken."""
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ELLIPSIS)]
    # Entity again after the angle: backing off to a "<" can leave a cut entity before it.
    for pattern in (_OPEN_ENTITY, _OPEN_ANGLE, _OPEN_ENTITY):
        found = pattern.search(cut)
        if found:
            cut = cut[: found.start()]
    return cut + ELLIPSIS


def _values(item: SlackItem, link: str) -> dict[str, str]:
    return {
        "name": item.name,
        "email": item.email,
        "company": item.company,
        "score": "" if item.score is None else str(item.score),
        "segment": item.segment,
        "threshold": item.threshold,
        "direction": item.direction,
        "event": item.event_type,
        "lead_id": item.lead_id,
        "link": link,
    }


def default_template(item: SlackItem) -> str:
    """The template of a trigger without one: a sentence that reads naturally per event."""
    who = "*{name}*" if item.name else "*{email}*"
    about = [
        part for part in ("{email}" if item.name else "", item.company and "{company}") if part
    ]
    lead = f"{who} ({', '.join(about)})" if about else who
    score = "" if item.score is None else " — score {score}"
    if item.event_type == "lead.threshold_crossed":
        return f"{lead} crossed *{{threshold}}* {{direction}}{score}"
    if item.event_type == "segment.lead_entered":
        return f"{lead} entered segment *{{segment}}*"
    if item.event_type == "segment.lead_exited":
        return f"{lead} left segment *{{segment}}*"
    if item.event_type == "lead.score_changed":
        return f"{{event}}: {lead}{score}"
    return f"{{event}}: {lead}"


def _fill(template: str, values: Mapping[str, str], value: Callable[[str], str]) -> str:
    """Known placeholders replaced in one pass (a value's own braces stay as they are);
    an unknown name or a stray brace stays literally."""
    return _FIELD.sub(lambda m: value(values[m[1]]) if m[1] in values else m[0], template)


def render(template: str, item: SlackItem, link: str) -> str:
    """The mrkdwn line of an item: the template (or the default) with escaped values."""
    return _fill(template or default_template(item), _values(item, link), escape)


def _link_text(found: re.Match[str]) -> str:
    """A link as plain text shows it: its label, else its URL. Mentions stay, so that the
    notification still mentions."""
    target, label = found[1], found[2]
    if target.startswith(("!", "@", "#")):
        return found[0]
    return target if label is None else label


def plain(template: str, item: SlackItem, link: str) -> str:
    """The line of `render` without the template's mrkdwn markup, for the fallback text. Its
    values stay escaped: Slack reads the fallback as mrkdwn too, so a name like <!channel>
    must not become a mention."""
    slots: list[str] = []

    def slot(text: str) -> str:
        slots.append(escape(text))
        return f"{_MARK}{len(slots) - 1}{_END}"

    text = (template or default_template(item)).replace(_MARK, "").replace(_END, "")
    text = _fill(text, _values(item, link), slot)
    text = _ANGLE.sub(_link_text, text)
    for pattern in _EMPHASIS:
        text = pattern.sub(r"\1", text)
    return _SLOT.sub(lambda m: slots[int(m[1])], text)


def _unknown_names(template: str, known: Sequence[str]) -> list[str]:
    names = dict.fromkeys(m[1] for m in _FIELD.finditer(template) if m[1] not in known)
    return list(names)


def _stray_brace(template: str) -> bool:
    return any(c in "{}" for c in _FIELD.sub("", template))


def check_template(template: str) -> str | None:
    """None when a trigger's message template is fine, else a short reason."""
    if "\x00" in template:
        return "cannot contain the NUL character"
    if len(template) > MAX_TEMPLATE:
        return f"longer than {MAX_TEMPLATE} characters"
    unknown = _unknown_names(template, PLACEHOLDERS)
    if unknown:
        listed = ", ".join(f"{{{name}}}" for name in unknown)
        return f"unknown placeholders {listed}; known are " + " ".join(
            f"{{{name}}}" for name in PLACEHOLDERS
        )
    if _stray_brace(template):
        return "unbalanced braces: a { or } outside a {placeholder}"
    return None


def _link_values(lead_id: str, email: str) -> dict[str, str]:
    # Quoted so that a value can neither end the URL's path nor add a query parameter.
    return {"lead_id": quote(lead_id, safe=""), "email": quote(email, safe="@")}


def link_for(link_template: str, item: SlackItem) -> str:
    """The link to a lead: the trigger's link template with {lead_id} and {email}; "" when
    the trigger has none."""
    if not link_template:
        return ""
    return _fill(link_template, _link_values(item.lead_id, item.email), str)


def _is_web_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def check_link_template(template: str) -> str | None:
    """None when a trigger's link template is fine (or empty), else a short reason."""
    if not template:
        return None
    if len(template) > MAX_LINK_TEMPLATE:
        return f"longer than {MAX_LINK_TEMPLATE} characters"
    # These would end the URL early in a message, or make it no URL at all.
    if any(c.isspace() or not c.isprintable() or c in '<>|"' for c in template):
        return 'cannot contain spaces, control characters or < > | "'
    unknown = _unknown_names(template, LINK_PLACEHOLDERS)
    if unknown:
        listed = ", ".join(f"{{{name}}}" for name in unknown)
        return f"unknown placeholders {listed}; known are {{lead_id}} {{email}}"
    if _stray_brace(template):
        return "unbalanced braces: a { or } outside a {placeholder}"
    if not _is_web_url(_fill(template, _link_values("lead_1", "jane@example.com"), str)):
        return "must be an absolute http or https URL"
    return None


def _context(item: SlackItem) -> str:
    """The event type and time; Slack shows the time in each reader's own time zone."""
    at = item.occurred_at if item.occurred_at.tzinfo else item.occurred_at.replace(tzinfo=UTC)
    shown = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    when = f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{shown}>"
    return f"`{clip(escape(item.event_type), MAX_EVENT)}` · {when}"


def _section(text: str, link: str) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    # A button's URL is not mrkdwn, so a link needs no escaping there.
    if link and len(link) <= MAX_BUTTON_URL and _is_web_url(link):
        block["accessory"] = {
            "type": "button",
            "text": {"type": "plain_text", "text": BUTTON_LABEL},
            "url": link,
        }
    return block


def _single(item: SlackItem, template: str, link: str) -> dict[str, Any]:
    context = {"type": "context", "elements": [{"type": "mrkdwn", "text": _context(item)}]}
    return {
        "text": clip(plain(template, item, link), MAX_FALLBACK),
        "blocks": [_section(clip(render(template, item, link), MAX_SECTION), link), context],
    }


def summary(item: SlackItem) -> str:
    """A few plain words about an item for a digest's fallback text, e.g. "Jane Doe crossed
    MQL up"; values escaped like every text Slack reads as mrkdwn."""
    who = escape(item.name or item.email)
    if item.event_type == "lead.threshold_crossed":
        return f"{who} crossed {escape(item.threshold)} {escape(item.direction)}"
    if item.event_type == "segment.lead_entered":
        return f"{who} entered {escape(item.segment)}"
    if item.event_type == "segment.lead_exited":
        return f"{who} left {escape(item.segment)}"
    return f"{escape(item.event_type)}: {who}"


def _digest_text(items: Sequence[SlackItem]) -> str:
    text = f"{len(items)} CRM events: "
    for index, item in enumerate(items):
        text += ("" if index == 0 else ", ") + summary(item)
        if len(text) > MAX_FALLBACK:  # enough to clip: the rest would be cut anyway
            break
    return clip(text, MAX_FALLBACK)


def _digest(items: Sequence[SlackItem], template: str, link_template: str) -> dict[str, Any]:
    header = clip(f"{len(items)} CRM events", MAX_HEADER)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}}
    ]
    # The header and every item, or the header, as many items as fit and the "more" line.
    fits = len(items) <= MAX_BLOCKS - 1
    shown = items if fits else items[: MAX_BLOCKS - 2]
    for item in shown:
        link = link_for(link_template, item)
        context = _context(item)
        line = clip(render(template, item, link), MAX_SECTION - len(context) - 1)
        blocks.append(_section(f"{line}\n{context}", link))
    if not fits:
        more = f"{ELLIPSIS}and {len(items) - len(shown)} more"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    return {"text": _digest_text(items), "blocks": blocks}


def message(items: Sequence[SlackItem], *, template: str, link_template: str) -> dict[str, Any]:
    """The incoming-webhook payload for a burst of items: one message for one item, else a
    digest. An empty template means the default sentence per event type."""
    if not items:
        raise ValueError("a message needs at least one item")
    if len(items) == 1:
        return _single(items[0], template, link_for(link_template, items[0]))
    return _digest(items, template, link_template)
