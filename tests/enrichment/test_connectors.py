"""What a connector does for one lead, without the database: the rendered request, its cache
key, the answer read from a response (JSONPath-lite, coercions), the checks of a
configuration, the built-in connectors; and the fake provider the integration tests use."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from server.enrichment.connectors import (
    builtin_answer,
    check_field_map,
    check_http_json,
    check_path,
    check_target,
    lookup_key,
    read_answer,
    render_request,
)
from server.enrichment.mapping import lookup, parse_path
from server.enrichment.model import Answer, ConnectorKind, HttpJson, LeadView, ProviderError
from server.outbound import AllowList, OutboundClient
from tests.enrichment import fake_provider

LOCAL = AllowList.parse("127.0.0.2/32")
HTTP = ConnectorKind.HTTP_JSON
BY_EMAIL = HttpJson(url_template="https://api.example.com/v5/person/enrich?email={email}")
POST = HttpJson(
    method="post",
    url_template="https://api.example.com/match",
    headers={"Authorization": "Bearer s3cret"},
    body_template='{"name": "{first_name} {last_name}", "domain": "{domain}"}',
)


def lead(email: str = "jane.doe@acme.com", **fields: Any) -> LeadView:
    return LeadView(id="lead_1", email=email, **fields)


# -- the request ------------------------------------------------------------------------


def test_url_placeholders_are_url_encoded_whole() -> None:
    method, url, headers, body = render_request(BY_EMAIL, lead("zoë+news@Müller.de"))
    assert (method, body) == ("GET", None)
    assert url.endswith("?email=zo%C3%AB%2Bnews%40M%C3%BCller.de")
    domain = HttpJson(url_template="https://api.example.com/company?domain={domain}")
    assert render_request(domain, lead("zoë@Müller.de"))[1].endswith("?domain=m%C3%BCller.de")
    assert headers == {"accept": "application/json"}


def test_body_placeholders_are_json_escaped() -> None:
    tricky = 'Jane "JJ" \\ </script>\n'
    method, url, headers, body = render_request(POST, lead(first_name=tricky, last_name="Doe"))
    assert (method, url) == ("POST", "https://api.example.com/match")
    assert body is not None
    assert json.loads(body) == {"name": f"{tricky.strip()} Doe", "domain": "acme.com"}
    assert headers == {
        "accept": "application/json",
        "content-type": "application/json",
        "Authorization": "Bearer s3cret",
    }


def test_stored_headers_win_and_values_are_not_rendered_twice() -> None:
    config = HttpJson(url_template=BY_EMAIL.url_template, headers={"Accept": "text/json"})
    assert render_request(config, lead())[2] == {"Accept": "text/json"}
    by_company = HttpJson(url_template="https://a.example/?c={company}")
    assert render_request(by_company, lead(company="{email}"))[1].endswith("?c=%7Bemail%7D")


def test_a_get_sends_no_body() -> None:
    config = HttpJson(url_template=BY_EMAIL.url_template, body_template='{"e": "{email}"}')
    assert render_request(config, lead())[3] is None


def test_cache_keys_are_shared_by_equal_requests_only() -> None:
    key = lookup_key(HTTP, BY_EMAIL, lead())
    assert key is not None and len(key) == 64 and int(key, 16) >= 0
    assert lookup_key(HTTP, BY_EMAIL, LeadView(id="other", email="jane.doe@acme.com")) == key
    assert lookup_key(HTTP, BY_EMAIL, lead("john.doe@acme.com")) != key
    names = [lookup_key(HTTP, POST, lead(first_name=f, last_name="Doe")) for f in ("A", "B")]
    assert names[0] != names[1]


def test_cache_keys_never_hold_header_secrets() -> None:
    keys = {
        lookup_key(HTTP, HttpJson(url_template=BY_EMAIL.url_template, headers=h), lead())
        for h in ({}, {"X-Api-Key": "s3cret"}, {"X-Api-Key": "another"})
    }
    assert len(keys) == 1 and "s3cret" not in str(keys)


def test_no_cache_key_without_a_needed_value() -> None:
    assert lookup_key(HTTP, POST, lead(first_name="", last_name="Doe")) is None
    assert lookup_key(HTTP, HttpJson(url_template="https://a.example/?p={phone}"), lead()) is None
    assert lookup_key(HTTP, BY_EMAIL, lead(phone="", company="")) is not None
    for kind in set(ConnectorKind) - {HTTP}:
        assert lookup_key(kind, None, lead()) is None
    with pytest.raises(ValueError):
        lookup_key(HTTP, None, lead())


# -- the answer -------------------------------------------------------------------------

PDL = {
    "status": 200,
    "likelihood": 8,
    "data": {
        "first_name": " Jane ",
        "job_title": "Head of Growth",
        "job_company_size": "51-200",
        "location_country": "united states",
        "emails": [{"address": "jane@acme.com", "type": "professional"}],
        "skills": ["sql", "seo"],
        "weird key": {"n": 7},
        "empty": "   ",
    },
}


def answer(document: Any, field_map: dict[str, str], config: HttpJson = BY_EMAIL) -> Answer:
    return read_answer(config, field_map, 200, json.dumps(document).encode())


def test_a_response_maps_by_path_to_targets() -> None:
    got = answer(
        PDL,
        {
            "$.data.first_name": "first_name",
            "data.job_title": "title",
            "data.emails[0].address": "custom.work_email",
            "$.data.skills": "custom.skills",
            "$.data['weird key']": "custom.weird",
            "data.location_country": "company.country",
            "data.job_company_size": "company.employee_count",
            "data.missing": "last_name",
            "data.empty": "phone",
            "data.emails[3].address": "company.name",
        },
    )
    assert got == Answer(
        found=True,
        values={
            "first_name": "Jane",
            "title": "Head of Growth",
            "custom.work_email": "jane@acme.com",
            "custom.skills": ["sql", "seo"],
            "custom.weird": {"n": 7},
            "company.country": "US",
        },
    )


def test_the_first_path_with_a_value_wins() -> None:
    field_map = {"data.work_email": "custom.email", "data.emails[0].address": "custom.email"}
    assert answer(PDL, field_map).values == {"custom.email": "jane@acme.com"}


def test_unusable_stored_entries_are_skipped() -> None:
    field_map = {"data.job_title": "email", "a..b": "title", "data.first_name": "first_name"}
    assert answer(PDL, field_map) == Answer(True, {"first_name": "Jane"})
    assert answer(PDL, {"data.nothing": "title"}) == Answer(True, {})


@pytest.mark.parametrize(("status", "statuses"), [(404, ()), (404, (404,)), (422, (404, 422))])
def test_no_match_statuses_are_a_miss(status: int, statuses: tuple[int, ...]) -> None:
    config = HttpJson(url_template=BY_EMAIL.url_template, no_match_statuses=statuses)
    assert read_answer(config, {"a": "title"}, status, b"not json") == Answer(found=False)


@pytest.mark.parametrize("data", [None, {}, [], "", "  ", "absent"])
def test_an_empty_no_match_path_is_a_miss(data: Any) -> None:
    config = HttpJson(url_template=BY_EMAIL.url_template, no_match_path="$.data")
    document = {"status": 200} if data == "absent" else {"data": data}
    assert answer(document, {"data.title": "title"}, config) == Answer(found=False)
    assert answer({"data": {"title": "CTO"}}, {"data.title": "title"}, config).values == {
        "title": "CTO"
    }


@pytest.mark.parametrize(
    ("status", "body", "reason", "message"),
    [
        (500, b"{}", "PROVIDER_ERROR", "HTTP 500"),
        (503, b"", "PROVIDER_ERROR", "HTTP 503"),
        (301, b"", "PROVIDER_ERROR", "HTTP 301"),
        (404, b"", "PROVIDER_ERROR", "HTTP 404"),  # not a no-match status of this config
        (429, b"{}", "RATE_LIMITED", "HTTP 429"),
        (200, b"<html>oops</html>", "BAD_RESPONSE", "not JSON"),
        (200, b'{"data": {"title": "CT', "BAD_RESPONSE", "cut off"),  # truncated at a cap
        (200, b"", "BAD_RESPONSE", "empty"),
        (200, b"\xff\xfe\xfa", "BAD_RESPONSE", "not JSON"),
        (200, b"[" * 100_000, "BAD_RESPONSE", "not JSON"),  # nested past the recursion limit
    ],
)
def test_failed_responses_are_provider_errors(
    status: int, body: bytes, reason: str, message: str
) -> None:
    config = HttpJson(url_template=BY_EMAIL.url_template, no_match_statuses=(422,))
    with pytest.raises(ProviderError) as caught:
        read_answer(config, {"data.title": "title"}, status, body)
    assert caught.value.reason == reason and message in caught.value.message


def test_rate_limits_carry_retry_after() -> None:
    with pytest.raises(ProviderError) as caught:
        read_answer(BY_EMAIL, {}, 429, b"", retry_after="7")
    assert caught.value.retry_after == 7.0
    with pytest.raises(ProviderError) as caught:
        read_answer(BY_EMAIL, {}, 429, b"", retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    assert caught.value.retry_after == 0.0  # a date in the past: retry now


# -- JSONPath-lite and coercions --------------------------------------------------------

DOC = {"a": {"b": 1, "list": [{"b": "x"}, None]}, "weird key": 2, "x.y": 3, "$": 4}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("$.a.b", 1),
        ("a.b", 1),
        ("a.list[0].b", "x"),
        ("$.a.list[0].b", "x"),
        ("$['weird key']", 2),
        ('$["x.y"]', 3),
        ("$['$']", 4),
        ("$.a['list'][1]", None),
        ("$", DOC),
    ],
)
def test_paths_read_values(path: str, value: Any) -> None:
    assert lookup(DOC, parse_path(path)) == (True, value)


@pytest.mark.parametrize("path", ["a.c", "a.list[2]", "a.b.c", "a[0]", "a.list.b", "$[0]"])
def test_paths_to_nothing_are_missing(path: str) -> None:
    assert lookup(DOC, parse_path(path)) == (False, None)


def test_a_root_array_is_read_by_index() -> None:
    assert lookup([{"t": "CTO"}], parse_path("[0].t")) == (True, "CTO")
    assert lookup([{"t": "CTO"}], parse_path("$[0].t")) == (True, "CTO")


@pytest.mark.parametrize(
    "path",
    ["", "a..b", "$.", ".a", "a[", "a[-1]", "a[x]", "$[weird]", "a b", "$.a.", "a\x00", "a" * 501],
)
def test_unreadable_paths_are_refused(path: str) -> None:
    assert check_path(path) is not None


def test_readable_paths_pass() -> None:
    for path in ("$", "$.data.emails[0]['address']", 'data["a b"][12].c-d', "[0]"):
        assert check_path(path) is None


@pytest.mark.parametrize(
    ("target", "value", "expected"),
    [
        ("title", "  CTO ", "CTO"),
        ("title", "   ", None),
        ("title", {"name": "CTO"}, None),
        ("title", ["CTO"], None),
        ("title", True, None),
        ("title", "x" * 501, None),
        ("title", "a\x00b", None),
        ("phone", 14155550100, "14155550100"),
        ("phone", 14155550100.0, "14155550100"),
        ("company", 3.5, "3.5"),
        ("company.name", 42, "42"),
        ("company.employee_count", 120, 120),
        ("company.employee_count", 120.0, 120),
        ("company.employee_count", "1,200", 1200),
        ("company.employee_count", "51-200", None),
        ("company.employee_count", 1.5, None),
        ("company.employee_count", -1, None),
        ("company.employee_count", False, None),
        ("company.employee_count", 2**31, None),
        ("company.annual_revenue", 1.5e6, 1_500_000),
        ("company.annual_revenue", "2500000.4", 2_500_000),
        ("company.annual_revenue", "n/a", None),
        ("company.annual_revenue", float("inf"), None),
        ("company.country", "united states", "US"),
        ("company.country", "de", "DE"),
        ("company.country", "Atlantis", None),
        ("company.domain", "https://www.Acme.com/about", "acme.com"),
        ("company.domain", "not a domain", None),
        ("custom.tags", ["a", {"b": 1}], ["a", {"b": 1}]),
        ("custom.count", 0, 0),
        ("custom.flag", False, False),
        ("custom.note", " hi ", "hi"),
        ("custom.note", "", None),
        ("custom.tags", [], None),
        ("custom.big", "x" * 70_000, None),
    ],
)
def test_values_are_coerced_to_their_targets(target: str, value: Any, expected: Any) -> None:
    got = answer({"v": value}, {"v": target}).values
    assert got == ({} if expected is None else {target: expected})


@pytest.mark.parametrize(
    "target",
    ["first_name", "phone", "company", "custom.industry", "custom._x1", "company.employee_count"],
)
def test_writable_targets(target: str) -> None:
    assert check_target(target) is None


@pytest.mark.parametrize(
    "target",
    ["email", "status", "custom.", "custom.1abc", "custom.a-b", "custom." + "k" * 65,
     "company.website", "company.", "Title", "custom_fields.x"],
)  # fmt: skip
def test_unwritable_targets_are_refused(target: str) -> None:
    assert check_target(target) is not None


def test_field_maps_are_checked_entry_by_entry() -> None:
    assert check_field_map({"data.title": "title", "data.x": "custom.x"}) == []
    assert [f for f, _ in check_field_map({})] == ["field_map"]
    problems = check_field_map({"a..b": "title", "data.x": "email"})
    assert len(problems) == 2 and "'a..b'" in problems[0][1] and "'email'" in problems[1][1]
    assert check_field_map({f"d.k{i}": "title" for i in range(101)})[0][1].startswith("more")


# -- the checks of a configuration ------------------------------------------------------


def problems(config: HttpJson, allow: AllowList = LOCAL) -> dict[str, str]:
    return dict(check_http_json(config, allow))


def test_good_configurations_pass() -> None:
    assert problems(BY_EMAIL) == {}
    assert problems(POST) == {}
    local = HttpJson(url_template="http://127.0.0.2:8080/enrich?e={email}", headers={"K": "v"})
    assert problems(local) == {}
    assert problems(HttpJson(method="", url_template=BY_EMAIL.url_template)) == {}


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("https://169.254.169.254/?e={email}", "link-local"),
        ("https://127.0.0.1/enrich?e={email}", "loopback"),
        ("https://10.0.0.8/enrich?e={email}", "private"),
        ("https://[::ffff:169.254.169.254]/?e={email}", "link-local"),
        ("http://api.example.com/enrich?e={email}", "https"),
        ("ftp://api.example.com/?e={email}", "absolute http(s)"),
        ("https://{domain}/enrich?e={email}", "not the host"),
        ("https://api.{domain}/enrich", "not the host"),
        ("https://api.example.com/?e={emial}", "unknown placeholder {emial}"),
        ("https://api.example.com/enrich", "no placeholder"),
        ("https://api.example.com/?e={email}\x00", "NUL"),
        ("", "required"),
    ],
)
def test_url_templates_are_refused(template: str, words: str) -> None:
    assert words in problems(HttpJson(url_template=template))["url_template"]


def test_methods_other_than_get_and_post_are_refused() -> None:
    for method in ("PUT", "DELETE", "GET\x00"):
        config = HttpJson(method=method, url_template=BY_EMAIL.url_template)
        assert "GET or POST" in problems(config)["method"]


@pytest.mark.parametrize(
    ("method", "body", "words"),
    [
        ("GET", '{"e": "{email}"}', "only a POST"),
        ("POST", '{"e": {email}}', "not JSON once filled in"),
        ("POST", '{"e": "{email}"', "not JSON once filled in"),
        ("POST", '{"e": "{mail}"}', "unknown placeholder {mail}"),
        ("POST", '{"e": "{email}\x00"}', "NUL"),
        ("POST", '{"e": "' + "x" * 17_000 + '"}', "longer than"),
    ],
)
def test_body_templates_are_refused(method: str, body: str, words: str) -> None:
    config = HttpJson(method=method, url_template=BY_EMAIL.url_template, body_template=body)
    assert words in problems(config)["body_template"]


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({"X Api Key": "s3cret"}, "not a valid header name"),
        ({"X-Api-Key\x00": "s3cret"}, "not a valid header name"),
        ({"Host": "api.example.com"}, "set by the client"),
        ({"Content-Length": "3"}, "set by the client"),
        ({"X-Api-Key": "s3cret\r\nX-Evil: 1"}, "line break"),
        ({"X-Api-Key": "s3cret\x00"}, "NUL"),
        ({"X-Api-Key": "s3cret€"}, "Latin-1"),
        ({"X-Api-Key": "s3cret" + "x" * 4096}, "longer than 4096"),
        ({f"X-H{i}": "s3cret" for i in range(21)}, "more than 20"),
    ],
)
def test_headers_are_refused_without_showing_values(headers: dict[str, str], words: str) -> None:
    config = HttpJson(url_template=BY_EMAIL.url_template, headers=headers)
    found = check_http_json(config, LOCAL)
    assert any(field == "headers" and words in reason for field, reason in found)
    assert "s3cret" not in str(found)


def test_no_match_settings_are_checked() -> None:
    config = HttpJson(
        url_template=BY_EMAIL.url_template, no_match_statuses=(99, 404, 600), no_match_path="a..b"
    )
    found = check_http_json(config, LOCAL)
    assert [f for f, _ in found] == ["no_match_statuses", "no_match_statuses", "no_match_path"]
    assert "99 is not an HTTP status" in found[0][1] and "600" in found[1][1]


def test_every_problem_is_reported_at_once() -> None:
    config = HttpJson(
        method="PUT", url_template="https://127.0.0.1/?e={email}", headers={"Host": "x"}
    )
    assert set(problems(config)) == {"method", "url_template", "headers"}


# -- the built-ins ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "names"),
    [
        ("jane.doe@acme.com", ("Jane", "Doe")),
        ("jane_doe@acme.com", ("Jane", "Doe")),
        ("jane-doe@acme.com", ("Jane", "Doe")),
        ("JANE.DOE@acme.com", ("Jane", "Doe")),
        ("jane.doe+news@acme.com", ("Jane", "Doe")),
        ("jane.doe85@acme.com", ("Jane", "Doe")),
        ("zoë.müller@acme.de", ("Zoë", "Müller")),
        ("janedoe@acme.com", None),
        ("info@acme.com", None),
        ("sales2@acme.com", None),
        ("no-reply@acme.com", None),
        ("sales.team@acme.com", None),
        ("j.doe@acme.com", None),
        ("jane.mary.doe@acme.com", None),
        ("j0hn.doe@acme.com", None),
        ("jane.o'neil@acme.com", None),
        ("123.456@acme.com", None),
        ("not-an-email", None),
    ],
)
def test_names_from_email(email: str, names: tuple[str, str] | None) -> None:
    got = builtin_answer(ConnectorKind.NAME_FROM_EMAIL, lead(email))
    expected = {"first_name": names[0], "last_name": names[1]} if names else None
    assert got == (Answer(True, expected) if expected else Answer(False))


def test_names_from_email_only_when_both_are_empty() -> None:
    for known in ({"first_name": "J"}, {"last_name": "Doe"}):
        assert not builtin_answer(ConnectorKind.NAME_FROM_EMAIL, lead(**known)).found


@pytest.mark.parametrize(
    ("email", "role", "free", "disposable"),
    [
        ("jane.doe@acme.com", False, False, False),
        ("info@acme.com", True, False, False),
        ("Sales2@acme.com", True, False, False),
        ("no-reply@acme.com", True, False, False),
        ("noreply@acme.com", True, False, False),
        ("careers+x@acme.com", True, False, False),
        ("jane@gmail.com", False, True, False),
        ("jane@GMAIL.COM", False, True, False),
        ("support@outlook.com", True, True, False),
        ("jane@mailinator.com", False, True, True),
    ],
)
def test_email_flags(email: str, role: bool, free: bool, disposable: bool) -> None:
    assert builtin_answer(ConnectorKind.EMAIL_FLAGS, lead(email)) == Answer(
        True,
        {
            "custom.email_is_role": role,
            "custom.email_is_free_mail": free,
            "custom.email_is_disposable": disposable,
        },
    )
    assert not builtin_answer(ConnectorKind.EMAIL_FLAGS, lead("no at sign")).found


@pytest.mark.parametrize(
    ("phone", "country", "expected"),
    [
        ("+1 415-555-0100", None, {"phone": "+14155550100", "custom.country": "US"}),
        ("+44 20 7946 0958", None, {"phone": "+442079460958", "custom.country": "GB"}),
        ("020 7946 0958", "gb", {"phone": "+442079460958", "custom.country": "GB"}),
        ("(415) 555-0100", "US", {"phone": "+14155550100", "custom.country": "US"}),
        ("+1 415 555 0100", "GB", {"phone": "+14155550100", "custom.country": "US"}),
        ("+800 1234 5678", None, {"phone": "+80012345678"}),  # non-geographic: no country
        ("(415) 555-0100", None, None),  # no + and no country: not guessed
        ("(415) 555-0100", "Germany", None),  # no usable hint
        ("+1 12", None, None),
        ("call me", "US", None),
        ("", "US", None),
    ],
)
def test_phone_normalize(phone: str, country: str | None, expected: dict[str, str] | None) -> None:
    custom = {} if country is None else {"country": country}
    got = builtin_answer(ConnectorKind.PHONE_NORMALIZE, lead(phone=phone, custom_fields=custom))
    assert got == (Answer(True, expected) if expected else Answer(False))


@pytest.mark.parametrize(
    ("email", "domain"),
    [
        ("jane@acme.com", "acme.com"),
        ("jane@Acme.COM", "acme.com"),
        ("jane@gmail.com", None),
        ("jane@mailinator.com", None),
        ("not-an-email", None),
    ],
)
def test_company_from_domain(email: str, domain: str | None) -> None:
    got = builtin_answer(ConnectorKind.COMPANY_FROM_DOMAIN, lead(email))
    assert got == (Answer(True, {"company.domain": domain}) if domain else Answer(False))


def test_http_json_is_no_built_in() -> None:
    with pytest.raises(ValueError):
        builtin_answer(HTTP, lead())


# -- the fake provider ------------------------------------------------------------------


def fetch(
    url: str, key: str | None = fake_provider.API_KEY, timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"X-Api-Key": key} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _lower(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return error.code, _lower(error.headers.items()), error.read()


def _lower(headers: list[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


def test_the_fake_provider_answers_like_a_person_api() -> None:
    with fake_provider.running() as provider:
        provider.add("Jane@acme.com", fake_provider.person("Jane", "Doe", email="jane@acme.com"))
        url = provider.url_template()
        found = fetch(url.format(email="jane%40acme.com"))
        assert found[0] == 200 and json.loads(found[2])["data"]["first_name"] == "Jane"
        assert fetch(url.format(email="who%40acme.com"))[0] == 404
        assert fetch(url.format(email="jane%40acme.com"), key=None)[0] == 401
        assert provider.count() == {"jane@acme.com": 2, "who@acme.com": 1}
        provider.faults["jane@acme.com"] = fake_provider.Fault(status=429, retry_after="3")
        status, headers, _ = fetch(url.format(email="jane%40acme.com"))
        assert (status, headers["retry-after"]) == (429, "3")
        provider.fault = fake_provider.Fault(malformed=True)
        status, _, body = fetch(url.format(email="who%40acme.com"))
        assert status == 200 and not body.endswith(b"}")


def test_the_fake_provider_takes_posts_and_delays() -> None:
    with fake_provider.running() as provider:
        provider.add("jane@acme.com", fake_provider.person("Jane", "Doe"))
        request = urllib.request.Request(
            provider.base + fake_provider.PATH,
            data=b'{"email": "jane@acme.com"}',
            headers={"X-Api-Key": fake_provider.API_KEY, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read())["data"]["last_name"] == "Doe"
        provider.fault = fake_provider.Fault(delay=0.5)
        with pytest.raises(TimeoutError):
            fetch(provider.url_template().format(email="jane%40acme.com"), timeout=0.1)
        provider.fault = fake_provider.Fault()
        assert fetch(provider.url_template().format(email="jane%40acme.com"))[0] == 200
        assert [call.method for call in provider.calls()] == ["POST", "GET", "GET"]


def test_a_lookup_against_the_fake_provider() -> None:
    field_map = {"data.job_title": "title", "data.location_country": "company.country"}
    with fake_provider.running() as provider:
        provider.add("jane@acme.com", fake_provider.person("Jane", "Doe", title="CTO"))
        config = HttpJson(
            url_template=provider.url_template(),
            headers={"X-Api-Key": fake_provider.API_KEY},
            no_match_path="$.data",
        )
        assert check_http_json(config, LOCAL) == []
        method, url, headers, _ = render_request(config, lead("jane@acme.com"))
        status, _, body = fetch(url)
        assert read_answer(config, field_map, status, body) == Answer(
            True, {"title": "CTO", "company.country": "US"}
        )
        method, url, headers, _ = render_request(config, lead("nobody@acme.com"))
        status, _, body = fetch(url)
        assert read_answer(config, field_map, status, body) == Answer(False)
        provider.fault = fake_provider.Fault(huge=True)
        response = asyncio.run(_send(method, url, headers))
        with pytest.raises(ProviderError) as caught:
            read_answer(config, field_map, response[0], response[1])
        assert caught.value.reason == "BAD_RESPONSE"


async def _send(method: str, url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """Through the product's client, whose cap cuts the 10 MB body short."""
    async with OutboundClient(allow=LOCAL) as client:
        response = await client.request(method, url, headers=headers, timeout=10)
    assert len(response.body) == 64 * 1024
    return response.status, response.body
