"""The SSRF guard's rules without a request: which addresses are refused and why, the
operator's allow-list, and the check of a URL when a customer saves it."""

from __future__ import annotations

import ipaddress

import pytest

from server.outbound import AllowList, OutboundRefused, check_url, refusal
from server.outbound.guard import ALLOW_ENV, MAX_URL, ip_literal

LOCAL = AllowList.parse("127.0.0.2/32")

REFUSED = [
    # (address, words the reason must hold)
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local (cloud metadata)"),
    ("169.254.0.1", "link-local (cloud metadata)"),
    ("fe80::1", "link-local"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("fc00::1", "unique-local"),
    ("fd12:3456::1", "unique-local"),
    ("192.0.2.1", "not a globally routable"),  # documentation
    ("198.18.0.1", "not a globally routable"),  # benchmarking
    ("0.1.2.3", "not a globally routable"),  # "this network"
    ("2001:db8::1", "not a globally routable"),  # documentation
    ("64:ff9b:1::1", "local-use NAT64"),
    # IPv6 forms that carry an IPv4 address are judged by that address.
    ("::ffff:127.0.0.1", "IPv4 127.0.0.1) is a loopback"),
    ("::ffff:10.0.0.1", "IPv4 10.0.0.1) is a private"),
    ("::ffff:169.254.169.254", "IPv4 169.254.169.254) is a link-local"),
    ("::127.0.0.1", "IPv4 127.0.0.1) is a loopback"),  # IPv4-compatible
    ("64:ff9b::7f00:1", "IPv4 127.0.0.1) is a loopback"),  # NAT64
    ("64:ff9b::a9fe:a9fe", "IPv4 169.254.169.254) is a link-local"),
    ("2002:7f00:1::", "IPv4 127.0.0.1) is a loopback"),  # 6to4
    ("2002:a00:1::1", "IPv4 10.0.0.1) is a private"),
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize(("address", "words"), REFUSED)
def test_off_limits_addresses_are_refused_with_a_reason(address: str, words: str) -> None:
    reason = refusal(ipaddress.ip_address(address), AllowList())
    assert reason is not None
    assert words in reason
    assert reason.startswith(str(ipaddress.ip_address(address)))


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), AllowList()) is None


def test_exact_reasons_for_the_common_cases() -> None:
    def why(address: str) -> str | None:
        return refusal(ipaddress.ip_address(address), AllowList())

    assert why("127.0.0.1") == "127.0.0.1 is a loopback address"
    assert why("10.1.2.3") == "10.1.2.3 is a private address"
    assert why("169.254.169.254") == "169.254.169.254 is a link-local (cloud metadata) address"
    assert why("100.64.0.1") == "100.64.0.1 is a carrier-grade NAT address"


def test_the_allow_list_admits_its_networks_only() -> None:
    allow = AllowList.parse("127.0.0.2/32, 10.20.0.0/16 fd00:1::/64")
    for address in ("127.0.0.2", "10.20.3.4", "fd00:1::5", "::ffff:127.0.0.2"):
        assert refusal(ipaddress.ip_address(address), allow) is None, address
    for address in ("127.0.0.1", "10.21.0.1", "fd00:2::5", "169.254.169.254"):
        assert refusal(ipaddress.ip_address(address), allow) is not None, address
    # Public addresses stay allowed with an allow-list.
    assert refusal(ipaddress.ip_address("8.8.8.8"), allow) is None


def test_allow_list_parsing() -> None:
    allow = AllowList.parse(" 127.0.0.2,10.0.0.0/8\n::1  ,, 192.168.0.0/24 ")
    assert [str(n) for n in allow.networks] == [
        "127.0.0.2/32",
        "10.0.0.0/8",
        "::1/128",
        "192.168.0.0/24",
    ]
    assert AllowList.parse("").networks == ()
    assert AllowList.parse(" , ").networks == ()
    assert allow.contains(ipaddress.ip_address("10.9.9.9"))
    assert not allow.contains(ipaddress.ip_address("11.0.0.1"))


@pytest.mark.parametrize("entry", ["10.0.0.1/8", "localhost", "10.0.0.0/33", "1.2.3", "fe80::/x"])
def test_a_bad_allow_list_entry_is_named(entry: str) -> None:
    with pytest.raises(ValueError, match="bad allow-list entry") as raised:
        AllowList.parse(f"127.0.0.2, {entry}")
    assert repr(entry) in str(raised.value)


def test_allow_list_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, "127.0.0.2/32 10.5.0.0/16")
    assert [str(n) for n in AllowList.from_env().networks] == ["127.0.0.2/32", "10.5.0.0/16"]
    monkeypatch.setenv(ALLOW_ENV, "")
    assert AllowList.from_env() == AllowList()
    monkeypatch.delenv(ALLOW_ENV)
    assert AllowList.from_env() == AllowList()


def test_numeric_host_forms_are_read_as_the_resolver_would() -> None:
    assert ip_literal("127.1") == ipaddress.ip_address("127.0.0.1")
    assert ip_literal("2130706433") == ipaddress.ip_address("127.0.0.1")
    assert ip_literal("0x7f.0.0.1") == ipaddress.ip_address("127.0.0.1")
    assert ip_literal("::ffff:127.0.0.1") == ipaddress.ip_address("::ffff:127.0.0.1")
    assert ip_literal("example.com") is None
    assert ip_literal("hooks.example") is None


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("https://hooks.example.com/in", "https://hooks.example.com/in"),
        ("HTTPS://Hooks.Example.COM:8443/a?b=1#frag", "https://hooks.example.com:8443/a?b=1"),
        ("https://example.com", "https://example.com/"),
        ("https://bücher.de/ä", "https://xn--bcher-kva.de/%C3%A4"),
        ("https://8.8.8.8/hook", "https://8.8.8.8/hook"),
        ("https://[2606:4700::1111]:443/x", "https://[2606:4700::1111]:443/x"),
        # Plain http to an allow-listed literal: tests and local demos.
        ("http://127.0.0.2:8080/hook", "http://127.0.0.2:8080/hook"),
    ],
)
def test_check_url_accepts_and_normalises(url: str, normalised: str) -> None:
    assert check_url(url, LOCAL) == normalised


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://user:secret@example.com/", "user information"),
        ("https://user@example.com/", "user information"),
        ("https://example.com\\@evil.test/", "user information"),
        ("https://example.com:0/", "port"),
        ("https://example.com:65536/", "port"),
        ("https://example.com:http/", "port"),
        ("https://example.com:/", "port"),
        ("https://example.com/a b", "white space"),
        ("https://example.com/a\tb", "white space"),
        ("https://example.com/\x00", "control"),
        (" https://example.com/", "white space"),
        ("https://exa\nmple.com/", "white space"),
        ("ftp://example.com/file", "absolute http(s)"),
        ("file:///etc/passwd", "absolute http(s)"),
        ("gopher://127.0.0.2:70/", "absolute http(s)"),
        ("example.com/hook", "absolute http(s)"),
        ("//example.com/hook", "absolute http(s)"),
        ("https:///hook", "absolute http(s)"),
        ("https://exa_mple!.com/", "host name"),
        ("https://example.com/" + "a" * MAX_URL, f"longer than {MAX_URL}"),
        ("http://example.com/", "https"),
        ("http://8.8.8.8/", "https"),
        ("https://127.0.0.1/", "loopback"),
        ("https://127.1/", "127.0.0.1 is a loopback"),
        ("https://2130706433/", "127.0.0.1 is a loopback"),
        ("https://169.254.169.254/latest/meta-data", "link-local (cloud metadata)"),
        ("https://10.0.0.1/", "private"),
        ("https://100.64.0.1/", "carrier-grade NAT"),
        ("https://[::1]/", "loopback"),
        ("https://[::ffff:127.0.0.1]/", "loopback"),
        ("https://[fd00::1]/", "unique-local"),
        ("https://0.0.0.0/", "unspecified"),
        ("http://127.0.0.1:8080/", "loopback"),
        ("http://127.0.0.3/", "loopback"),
    ],
)
def test_check_url_refuses(url: str, words: str) -> None:
    with pytest.raises(OutboundRefused) as refused:
        check_url(url, LOCAL)
    assert words in refused.value.reason
    assert str(refused.value) == refused.value.reason
    assert "secret" not in refused.value.reason


def test_check_url_leaves_dns_names_to_connect_time() -> None:
    # Not resolved now: what a name resolves to when saved says nothing about later.
    assert check_url("https://localhost/hook", LOCAL) == "https://localhost/hook"
    assert check_url("https://metadata.google.internal/", LOCAL).startswith("https://")
