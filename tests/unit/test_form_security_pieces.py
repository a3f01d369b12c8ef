"""The pure parts of form security: origin spelling, embed tokens, rate-limit buckets and
which address counts as the client's."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.forms import origins, tokens
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
        # Through the server's unix socket: the gateway on this host.
        ("unix:", ["6.6.6.6, 203.0.113.9"], "203.0.113.9"),
        ("unix:", [], "unix:"),
    ],
)
def test_the_client_address_is_the_trusted_gateways_last_hop(
    peer: str, forwarded: list[str], expected: str
) -> None:
    assert client_ip(peer, forwarded, LOOPBACK) == expected


def test_without_trusted_proxies_a_header_sent_to_the_tcp_port_is_not_believed() -> None:
    """Issue 16, fault 9: x-forwarded-for sent straight to the gRPC port chose the bucket."""
    assert client_ip("ipv4:127.0.0.1:5000", ["203.0.113.9"], []) == "127.0.0.1"
    assert client_ip("unix:", ["203.0.113.9"], []) == "203.0.113.9"
