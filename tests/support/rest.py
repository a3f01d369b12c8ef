"""A REST client for tests that go through the real Envoy gateway with a workspace's key."""

from __future__ import annotations

from typing import Any

import requests

from tests.conftest import Workspace


class RestClient:
    def __init__(self, http: requests.Session, base: str, ws: Workspace) -> None:
        self.http, self.base, self.ws = http, base, ws

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {**self.ws.headers, **kwargs.pop("headers", {})}
        return self.http.request(method, self.base + path, headers=headers, timeout=30, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON body of a call that must succeed."""
        reply = self.call(method, path, **kwargs)
        assert reply.status_code == 200, reply.text
        return reply.json()
