"""Web origins (scheme://host[:port]) in the one spelling browsers send in `Origin`, so an
allowed origin and a request's Origin compare as plain strings."""

from __future__ import annotations

from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")
MAX_ORIGIN = 300


def normalise(raw: str) -> str | None:
    """The origin as a browser writes it, or None when `raw` is not an http(s) origin
    (a path, query, credentials, "null" or an unparsable host all disqualify it)."""
    text = raw.strip()
    if not text or len(text) > MAX_ORIGIN:
        return None
    if text.endswith("/"):  # "https://example.com/" is how people paste it
        text = text[:-1]
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or parts.path or parts.query or parts.fragment:
        return None
    if parts.username is not None or parts.password is not None or not parts.hostname:
        return None
    host = _ascii_host(parts.hostname)
    if host is None:
        return None
    suffix = f":{port}" if port is not None and port != _DEFAULT_PORTS[scheme] else ""
    return f"{scheme}://{host}{suffix}"


def _ascii_host(hostname: str) -> str | None:
    host = hostname.lower()
    if ":" in host:  # IPv6 literal; urlsplit removed the brackets
        return f"[{host}]" if all(c in "0123456789abcdef:." for c in host) else None
    try:
        # Browsers send internationalised names in their punycode form.
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    if not host or not set(host) <= _HOST_CHARS or host.startswith(("-", ".")):
        return None
    return host
