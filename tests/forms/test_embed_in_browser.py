"""The embed snippet in a real browser: Debian's headless Chromium, driven by Playwright,
opens pages served on loopback origins that paste the snippet fetched from the API, fills
the form in and submits it, and the API then shows what the submission wrote.

Outside CI a missing Chromium (or playwright) skips these tests with the reason; under
CI=true it fails them (.ci/run installs Chromium with apt-get)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import requests

from tests.conftest import Workspace
from tests.forms.support import written

if TYPE_CHECKING:
    from playwright.sync_api import Browser

T = TypeVar("T")

CHROMIUM = os.environ.get("CRM_CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
# As this machine's notes require: no sandbox as root, and none of Chromium's background
# traffic (there is no network to reach, and each attempt would only slow the test down).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000
FIELDS: list[dict[str, Any]] = [
    {"name": "email", "label": "Work email", "type": "EMAIL", "required": True, "maps_to": "email"},
    {"name": "first_name", "label": "First name", "type": "TEXT", "maps_to": "first_name"},
    {
        "name": "team_size",
        "label": "Team size",
        "type": "SELECT",
        "options": ["1-10", "11-50", "51+"],
        "maps_to": "custom.team_size",
    },
    {
        "name": "consent",
        "label": "I agree to be contacted",
        "type": "CHECKBOX",
        "required": True,
        "maps_to": "custom.consent",
    },
    {"name": "campaign", "type": "HIDDEN", "default_value": "launch", "maps_to": "custom.utm"},
]


def _missing_browser() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (make install)"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    return None


class BrowserThread:
    """Chromium under Playwright's sync API on a thread of its own: that API keeps an event
    loop running on its thread, and the test thread needs its own for the database
    fixtures. Every Playwright call happens inside `run`."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chromium")
        self._browser = self._pool.submit(self._start).result()

    def _start(self) -> Browser:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        return self._playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )

    def run(self, scenario: Callable[[Browser], T]) -> T:
        return self._pool.submit(scenario, self._browser).result()

    def close(self) -> None:
        def stop() -> None:
            self._browser.close()
            self._playwright.stop()

        self._pool.submit(stop).result()
        self._pool.shutdown()


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserThread]:
    reason = _missing_browser()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser test cannot run under CI: {reason}")
        pytest.skip(f"browser test skipped: {reason}")
    worker = BrowserThread()
    try:
        yield worker
    finally:
        worker.close()


class Site:
    """A tiny static web site on loopback, as a customer's landing pages would be."""

    def __init__(self, host: str) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path.split("?")[0])
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write((body or "not found").encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def page(self, path: str, title: str, body: str) -> str:
        self.pages[path] = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
            f"<body><h1>{title}</h1>{body}</body></html>"
        )
        return self.origin + path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site() -> Iterator[Site]:
    served = Site("127.0.0.1")
    yield served
    served.close()


@pytest.fixture
def other_site() -> Iterator[Site]:
    # Same machine, another origin: a page that copied the snippet from the real site.
    served = Site("localhost")
    yield served
    served.close()


class Api:
    def __init__(self, base: str, ws: Workspace) -> None:
        self.base, self.ws = base, ws

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = requests.request(
            method, self.base + path, headers=self.ws.headers, timeout=30, **kwargs
        )
        assert reply.status_code == 200, reply.text
        return reply.json()


@dataclass(frozen=True)
class Outcome:
    """What the person saw after pressing submit."""

    url: str
    heading: str
    status: str
    form_visible: bool
    button_enabled: bool


def fill_and_submit(
    url: str, email: str, *, expect: str, screenshot: Path | None = None
) -> Callable[[Browser], Outcome]:
    """Open the page, fill the form as a person would and submit it; then wait until the
    snippet reports `expect` ("ok" or "error"), or until the browser is at `expect` (a URL)."""

    def scenario(browser: Browser) -> Outcome:
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        reported: list[str] = []
        page.on("pageerror", lambda error: reported.append(str(error)))
        page.on("console", lambda message: reported.append(message.text))
        try:
            page.goto(url)
            page.fill("form [name=email]", email)
            page.fill("form [name=first_name]", "Ada")
            page.select_option("form [name=team_size]", "11-50")
            page.check("form [name=consent]")
            page.click("form button[type=submit]")
            if expect.startswith("http"):
                page.wait_for_url(expect)
                return Outcome(page.url, page.inner_text("h1"), "", False, False)
            page.wait_for_selector(f".tnx-form-status[data-state={expect}]")
            if screenshot is not None:
                page.screenshot(path=str(screenshot))
            return Outcome(
                url=page.url,
                heading=page.inner_text("h1"),
                status=page.inner_text(".tnx-form-status"),
                form_visible=page.is_visible("form"),
                button_enabled=page.is_enabled("form button[type=submit]"),
            )
        except Exception as exc:
            raise AssertionError(f"in the browser: {exc}; the page reported {reported}") from exc
        finally:
            page.close()

    return scenario


def test_a_person_fills_in_the_embedded_form_and_the_api_shows_the_lead(
    browser: BrowserThread, site: Site, gateway_url: str, workspace: Workspace, tmp_path: Path
) -> None:
    api = Api(gateway_url, workspace)
    static = api.ok("POST", "/api/v1/crm/lists", json={"name": "Launch", "membership": "STATIC"})
    message = "Thanks, we'll be in touch!"
    form = api.ok(
        "POST",
        "/api/v1/crm/forms",
        json={
            "name": "Launch waitlist",
            "fields": FIELDS,
            "allowed_origins": [site.origin],
            "segment_ids": [static["id"]],
            "success_message": message,
            "source": "landing-page",
        },
    )
    snippet = api.ok("GET", f"/api/v1/crm/forms/{form['id']}/embed", params={"origin": site.origin})
    url = site.page("/launch.html", "Join the waitlist", snippet["html"])

    seen = browser.run(
        fill_and_submit(url, "Ada@Example.org", expect="ok", screenshot=tmp_path / "ok.png")
    )
    assert (seen.status, seen.form_visible) == (message, False)

    leads = api.ok("GET", "/api/v1/crm/leads", params={"filter": 'email = "ada@example.org"'})
    [lead] = leads["leads"]
    assert (lead["first_name"], lead["source"], lead["segment_ids"]) == (
        "Ada",
        "landing-page",
        [static["id"]],
    )
    assert lead["custom_fields"] == {"team_size": "11-50", "consent": True, "utm": "launch"}
    assert lead["last_activity_at"]
    [submission] = api.ok("GET", f"/api/v1/crm/forms/{form['id']}/submissions")["submissions"]
    assert (submission["lead_id"], submission["origin"], submission["page_url"]) == (
        lead["id"],
        site.origin,
        url,
    )
    assert "Chrome" in submission["user_agent"]
    members = api.ok("GET", f"/api/v1/crm/lists/{static['id']}/members")
    assert [m["id"] for m in members["leads"]] == [lead["id"]]


def test_a_form_with_a_redirect_sends_the_browser_on(
    browser: BrowserThread, site: Site, gateway_url: str, workspace: Workspace
) -> None:
    api = Api(gateway_url, workspace)
    thanks = site.page("/thanks.html", "Thank you", "<p>See you soon.</p>")
    form = api.ok(
        "POST",
        "/api/v1/crm/forms",
        json={
            "name": "Demo request",
            "fields": FIELDS,
            "allowed_origins": [site.origin],
            "redirect_url": thanks,
        },
    )
    snippet = api.ok("GET", f"/api/v1/crm/forms/{form['id']}/embed", params={"origin": site.origin})
    url = site.page("/demo.html", "Book a demo", snippet["html"])
    seen = browser.run(fill_and_submit(url, "grace@example.org", expect=thanks))
    assert (seen.url, seen.heading) == (thanks, "Thank you")


def test_the_snippet_copied_to_another_origin_is_refused_and_writes_nothing(
    browser: BrowserThread,
    site: Site,
    other_site: Site,
    gateway_url: str,
    workspace: Workspace,
    database_url: str,
    tmp_path: Path,
) -> None:
    api = Api(gateway_url, workspace)
    form = api.ok(
        "POST",
        "/api/v1/crm/forms",
        json={"name": "Waitlist", "fields": FIELDS, "allowed_origins": [site.origin]},
    )
    snippet = api.ok("GET", f"/api/v1/crm/forms/{form['id']}/embed", params={"origin": site.origin})
    url = other_site.page("/copied.html", "Not the real site", snippet["html"])
    before = written(database_url, workspace.id)

    seen = browser.run(
        fill_and_submit(url, "mallory@example.org", expect="error", screenshot=tmp_path / "no.png")
    )
    assert "does not accept submissions from this origin" in seen.status
    assert seen.form_visible and seen.button_enabled  # the person can see it was not sent

    assert written(database_url, workspace.id) == before
    listed = api.ok("GET", f"/api/v1/crm/forms/{form['id']}/submissions")
    assert listed["submissions"] == []
