"""Slack messages for triggers: their shape per event type, escaping, links, digests within
Slack's limits, and the checks of templates."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from server.triggers.slack import (
    SlackItem,
    check_link_template,
    check_template,
    clip,
    link_for,
    message,
    render,
)

T = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
LINK = "https://crm.example.com/leads/{lead_id}"
CROSSED = SlackItem(
    event_type="lead.threshold_crossed",
    event_id="evt_1",
    occurred_at=T,
    lead_id="lead_1",
    name="Jane Doe",
    email="jane@acme.com",
    company="Acme",
    score=62,
    segment="",
    threshold="MQL",
    direction="up",
)
ENTERED = replace(
    CROSSED,
    event_type="segment.lead_entered",
    company="",
    score=None,
    segment="Trial users",
    threshold="",
    direction="",
)
CREATED = replace(CROSSED, event_type="lead.created", company="", score=None, threshold="")


def sections(payload: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in payload["blocks"] if b["type"] == "section"]


def within_limits(payload: dict[str, Any]) -> None:
    """Slack's limits on a message, and the JSON it is posted as."""
    json.dumps(payload)
    assert len(payload["blocks"]) <= 50
    assert len(payload["text"]) <= 3000
    for block in payload["blocks"]:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "context":
            assert all(len(e["text"]) <= 3000 for e in block["elements"])


def no_broken_escape(text: str) -> None:
    """Every & starts a whole entity and no <…> sequence is left open."""
    assert re.fullmatch(r"(?:[^&]|&amp;|&lt;|&gt;)*", text), text
    assert text.count("<") == text.count(">"), text


def test_a_crossed_threshold_reads_as_a_sentence() -> None:
    payload = message([CROSSED], template="", link_template="")
    within_limits(payload)
    section, context = payload["blocks"]
    assert section == {
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": "*Jane Doe* (jane@acme.com, Acme) crossed *MQL* up — score 62",
        },
    }
    assert context["type"] == "context"
    assert "`lead.threshold_crossed`" in context["elements"][0]["text"]
    assert "<!date^1741608000^" in context["elements"][0]["text"]
    assert "2025-03-10 12:00 UTC" in context["elements"][0]["text"]
    assert payload["text"] == "Jane Doe (jane@acme.com, Acme) crossed MQL up — score 62"


def test_an_entered_segment_reads_as_a_sentence() -> None:
    payload = message([ENTERED], template="", link_template="")
    within_limits(payload)
    assert sections(payload) == ["*Jane Doe* (jane@acme.com) entered segment *Trial users*"]
    assert payload["text"] == "Jane Doe (jane@acme.com) entered segment Trial users"
    assert "`segment.lead_entered`" in payload["blocks"][1]["elements"][0]["text"]


def test_other_events_name_the_event_type() -> None:
    payload = message([CREATED], template="", link_template="")
    assert sections(payload) == ["lead.created: *Jane Doe* (jane@acme.com)"]
    assert payload["text"] == "lead.created: Jane Doe (jane@acme.com)"


def test_a_lead_without_a_name_is_shown_by_its_email() -> None:
    assert render("", replace(CROSSED, name=""), "") == (
        "*jane@acme.com* (Acme) crossed *MQL* up — score 62"
    )
    assert render("", replace(CREATED, name=""), "") == "lead.created: *jane@acme.com*"
    left = replace(ENTERED, event_type="segment.lead_exited")
    assert render("", left, "") == "*Jane Doe* (jane@acme.com) left segment *Trial users*"


def test_values_are_escaped_for_mrkdwn() -> None:
    item = replace(CROSSED, name="<script>&", company="<!channel>")
    payload = message([item], template="", link_template="")
    assert sections(payload) == [
        "*&lt;script&gt;&amp;* (jane@acme.com, &lt;!channel&gt;) crossed *MQL* up — score 62"
    ]
    # The fallback is read as mrkdwn too: the name must not become a mention there either.
    assert payload["text"] == (
        "&lt;script&gt;&amp; (jane@acme.com, &lt;!channel&gt;) crossed MQL up — score 62"
    )


def test_a_value_is_not_filled_in_again() -> None:
    item = replace(CREATED, name="{email}")
    assert render("{name} {score}", item, "") == "{email} "


def test_unknown_placeholders_and_stray_braces_stay_literally() -> None:
    template = "{name} {foo} {bar {} } {{email}} {0} {name!r}"
    assert render(template, CREATED, "") == (
        "Jane Doe {foo} {bar {} } {jane@acme.com} {0} {name!r}"
    )


def test_every_placeholder_is_filled() -> None:
    template = "{name}|{email}|{company}|{score}|{segment}|{threshold}|{direction}|{event}|"
    template += "{lead_id}|{link}"
    assert render(template, CROSSED, "https://x.test/l?a=1&b=2") == (
        "Jane Doe|jane@acme.com|Acme|62||MQL|up|lead.threshold_crossed|lead_1|"
        "https://x.test/l?a=1&amp;b=2"
    )


def test_a_link_becomes_a_button() -> None:
    payload = message([CROSSED], template="", link_template=LINK)
    within_limits(payload)
    assert payload["blocks"][0]["accessory"] == {
        "type": "button",
        "text": {"type": "plain_text", "text": "Open lead"},
        "url": "https://crm.example.com/leads/lead_1",
    }
    assert "accessory" not in message([CROSSED], template="", link_template="")["blocks"][0]


def test_a_link_in_the_template_is_plain_in_the_fallback() -> None:
    template = "*{name}* is <{link}|hot> <!here>"
    payload = message([CROSSED], template=template, link_template=LINK)
    assert sections(payload) == ["*Jane Doe* is <https://crm.example.com/leads/lead_1|hot> <!here>"]
    assert payload["text"] == "Jane Doe is hot <!here>"


def test_the_link_quotes_its_values() -> None:
    item = replace(CROSSED, lead_id="lead/1?x=2&y", email="jane+crm@acme.com")
    assert link_for("https://crm.test/l/{lead_id}?e={email}", item) == (
        "https://crm.test/l/lead%2F1%3Fx%3D2%26y?e=jane%2Bcrm@acme.com"
    )
    assert link_for("", item) == ""
    assert link_for("https://crm.test/{other}", item) == "https://crm.test/{other}"


def test_a_digest_of_three_items() -> None:
    payload = message([CROSSED, ENTERED, CREATED], template="", link_template=LINK)
    within_limits(payload)
    header, *rest = payload["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "3 CRM events", "emoji": True},
    }
    assert [b["type"] for b in rest] == ["section", "section", "section"]
    texts = sections(payload)
    assert texts[0].startswith("*Jane Doe* (jane@acme.com, Acme) crossed *MQL* up — score 62\n")
    assert "`lead.threshold_crossed`" in texts[0]
    assert texts[1].startswith("*Jane Doe* (jane@acme.com) entered segment *Trial users*\n")
    assert texts[2].startswith("lead.created: *Jane Doe* (jane@acme.com)\n")
    assert all(b["accessory"]["url"].endswith("/lead_1") for b in rest)
    assert payload["text"] == (
        "3 CRM events: Jane Doe crossed MQL up, Jane Doe entered Trial users, "
        "lead.created: Jane Doe"
    )


def test_a_digest_of_500_items_says_how_many_are_left_out() -> None:
    items = [replace(CROSSED, lead_id=f"lead_{n}", name=f"Lead {n}") for n in range(500)]
    payload = message(items, template="", link_template=LINK)
    within_limits(payload)
    blocks = payload["blocks"]
    assert len(blocks) == 50
    assert blocks[0]["text"]["text"] == "500 CRM events"
    shown = len(sections(payload))
    assert shown == 48
    assert blocks[-1] == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": f"…and {500 - shown} more"}],
    }
    assert payload["text"].startswith("500 CRM events: Lead 0 crossed MQL up, Lead 1 crossed")
    assert payload["text"].endswith("…")


def test_a_digest_of_49_items_fits_without_a_more_line() -> None:
    payload = message([CROSSED] * 49, template="", link_template="")
    within_limits(payload)
    assert len(payload["blocks"]) == 50
    assert len(sections(payload)) == 49


@pytest.mark.parametrize("count", [1, 2, 60])
@pytest.mark.parametrize("name", ["x" * 10_000, "&" * 10_000, "<>" * 5_000, "é&" * 5_000])
def test_a_huge_name_stays_within_the_limits(count: int, name: str) -> None:
    item = replace(CROSSED, name=name)
    template = "*{name}* {name} {email}"
    payload = message([item] * count, template=template, link_template=LINK)
    within_limits(payload)
    for text in sections(payload):
        assert text.split("\n")[0].endswith("…")
    single = message([item], template=template, link_template="")
    no_broken_escape(sections(single)[0])
    no_broken_escape(single["text"])


def test_clipping_never_cuts_an_entity_or_a_link_in_half() -> None:
    for cut in range(1, 12):
        no_broken_escape(clip("ab&amp;&lt;&gt;cd", cut))
        assert len(clip("ab&amp;&lt;&gt;cd", cut)) <= cut
    assert clip("see <https://x.test/a|the lead> now", 20) == "see …"
    assert clip("short", 5) == "short"


def test_check_template() -> None:
    assert check_template("") is None
    assert check_template("*{name}* ({email}) crossed {threshold} {direction}: {link}") is None
    reason = check_template("{name} {foo} {bar} {foo}")
    assert reason is not None and "{foo}, {bar}" in reason and "unknown" in reason
    assert "unbalanced braces" in (check_template("{name") or "")
    assert "unbalanced braces" in (check_template("score }") or "")
    assert "2000" in (check_template("x" * 2001) or "")
    assert check_template("x" * 2000) is None
    assert "NUL" in (check_template("a\x00b") or "")


def test_check_link_template() -> None:
    assert check_link_template("") is None
    assert check_link_template(LINK) is None
    assert check_link_template("http://crm.test/l/{lead_id}?e={email}") is None
    assert "unknown" in (check_link_template("https://crm.test/{name}") or "")
    assert "braces" in (check_link_template("https://crm.test/{lead_id") or "")
    assert "http" in (check_link_template("javascript:alert(1)") or "")
    assert "http" in (check_link_template("ftp://crm.test/{lead_id}") or "")
    assert "http" in (check_link_template("/leads/{lead_id}") or "")
    assert "http" in (check_link_template("https:///{lead_id}") or "")
    assert "2048" in (check_link_template("https://crm.test/" + "a" * 2048) or "")
    assert "spaces" in (check_link_template("https://crm.test/a b") or "")
    assert "spaces" in (check_link_template("https://crm.test/a|b") or "")
    assert "spaces" in (check_link_template("https://crm.test/\x00") or "")


def test_a_naive_time_is_taken_as_utc() -> None:
    payload = message(
        [replace(CREATED, occurred_at=T.replace(tzinfo=None))], template="", link_template=""
    )
    assert "<!date^1741608000^" in payload["blocks"][1]["elements"][0]["text"]


def test_a_message_needs_an_item() -> None:
    with pytest.raises(ValueError):
        message([], template="", link_template="")
