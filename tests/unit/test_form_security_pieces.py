"""The pure parts of form security: origin spelling, embed tokens, rate-limit buckets and
which address counts as the client's."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.errors import ResourceExhausted
from server.forms import origins, tokens
from server.forms.limits import SubmissionLimits, TokenBucket
from server.forms.public_rpc import client_ip

SECRET = b"k" * 32


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://Example.COM", "https://example.com"),
        ("https://example.com:443/", "https://example.com"),
        ("http://example.com:80", "http://example.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[::1]:3000", "http://[::1]:3000"),
        ("https://bücher.de", "https://xn--bcher-kva.de"),
        ("https://example.com/path", None),
        ("https://example.com?x=1", None),
        ("https://user@example.com", None),
        ("ftp://example.com", None),
        ("null", None),
        ("", None),
        ("https://exa mple.com", None),
        ("https://example.com:99999", None),
    ],
)
def test_origins_are_spelled_as_browsers_send_them(raw: str, expected: str | None) -> None:
    assert origins.normalise(raw) == expected


def test_a_token_round_trips_and_any_change_breaks_it() -> None:
    claims = tokens.Claims(
        slug="contact-us", origin="https://example.com", expires_at=2_000_000_000
    )
    token = tokens.issue(SECRET, claims)
    assert tokens.verify(SECRET, token) == claims
    with pytest.raises(tokens.TokenInvalid):
        tokens.verify(b"another secret", token)
    for bad in ("", "abc", token + "x", "x" + token, token.replace(".", ".."), "a" * 5000):
        with pytest.raises(tokens.TokenInvalid):
            tokens.verify(SECRET, bad)


@given(st.text(max_size=200))
def test_no_arbitrary_text_passes_as_a_token(text: str) -> None:
    with pytest.raises(tokens.TokenInvalid):
        tokens.verify(SECRET, text)


def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(60, clock=lambda: now[0])  # one a second, bursts of 60
    assert all(bucket.take("ip") is None for _ in range(60))
    wait = bucket.take("ip")
    assert wait is not None and 0.9 < wait <= 1.0
    assert bucket.take("other") is None  # keys are independent
    now[0] += 1.0
    assert bucket.take("ip") is None
    assert bucket.take("ip") is not None


def test_a_zero_limit_is_off_and_idle_keys_are_forgotten() -> None:
    off = TokenBucket(0)
    assert not off.enabled and all(off.take("x") is None for _ in range(1000))
    now = [0.0]
    bucket = TokenBucket(10, max_keys=3, clock=lambda: now[0])
    for key in "abc":
        bucket.take(key)
    now[0] += 60
    bucket.take("d")
    assert len(bucket._buckets) == 1


def test_a_limited_client_gets_resource_exhausted_with_a_retry_hint() -> None:
    limits = SubmissionLimits.per_minute(per_ip=1, per_form=0)
    limits.check_ip("198.51.100.1")
    with pytest.raises(ResourceExhausted) as refused:
        limits.check_ip("198.51.100.1")
    assert refused.value.reason == "FORM_RATE_LIMITED"
    assert refused.value.metadata["scope"] == "client_ip"
    assert int(refused.value.metadata["retry_after_seconds"]) >= 1
    for _ in range(100):
        limits.check_form("form_1")  # per form: off


LOOPBACK = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # Through the gateway: its own hop is last; what the client wrote before it is not.
        ("ipv4:127.0.0.1:5000", ["6.6.6.6, 203.0.113.9"], "203.0.113.9"),
        ("ipv6:[::1]:5000", ["203.0.113.9"], "203.0.113.9"),
        ("ipv4:127.0.0.1:5000", ["1.1.1.1", "203.0.113.9"], "203.0.113.9"),
        # Straight to the server from elsewhere: its header is not believed.
        ("ipv4:198.51.100.4:5000", ["203.0.113.9"], "198.51.100.4"),
        ("ipv4:127.0.0.1:5000", [], "127.0.0.1"),
        ("unix:/tmp/socket", ["203.0.113.9"], "unix:/tmp/socket"),
    ],
)
def test_the_client_address_is_the_trusted_gateways_last_hop(
    peer: str, forwarded: list[str], expected: str
) -> None:
    assert client_ip(peer, forwarded, LOOPBACK) == expected
