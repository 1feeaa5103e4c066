"""The tracking snippet in headless Chromium, on a shop served from another origin than Kesher.

Kesher runs with uvicorn on one port; a tiny shop page is served by a second HTTP server on
another port (another origin, the one the site allows). The page loads /t/kesher.js, which sends
a page view on load, a queued custom event and, after a newsletter form, an identify.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from kesher.accounts import service as accounts
from kesher.config import Settings
from kesher.contacts.models import Contact
from kesher.db import Database
from kesher.db.migrate import upgrade
from kesher.events import rollups, tracking
from kesher.events.models import ContactRollup, Event
from kesher.events.tracking_api import QUEUE_STUB
from kesher.web.app import create_app

pytestmark = pytest.mark.browser

EMAIL = "dana@example.co.il"
SHOP_PAGE = """<!doctype html>
<html lang="he" dir="rtl"><head><meta charset="utf-8"><title>חנות הטבע: ויטמינים</title>
<script>{stub}</script>
<script src="{kesher}/t/kesher.js" data-key="{key}" async></script>
<script>kesher.track("custom:quiz_done", {{score: 7}});</script>
</head><body>
<h1>ויטמינים</h1>
<form id="newsletter"><label>אימייל <input type="email" name="email"></label><button>הרשמה</button></form>
<p id="thanks" hidden>תודה!</p>
<script>
document.getElementById("newsletter").addEventListener("submit", function (event) {{
  event.preventDefault();
  kesher.track("form_submitted", {{form_id: "newsletter"}});
  kesher.identify({{email: event.target.email.value}});
  document.getElementById("thanks").hidden = false;
}});
</script>
</body></html>
"""


@dataclass
class Setup:
    database: Database
    workspace_id: int
    kesher: str
    shop: str


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, live_server, free_port) -> Iterator[Setup]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("tracking")
    database = Database(f"sqlite:///{tmp / 'kesher.db'}")
    upgrade(database.engine)
    kesher_port, shop_port = free_port(), free_port()
    kesher = f"http://127.0.0.1:{kesher_port}"
    shop = f"http://127.0.0.1:{shop_port}"
    with database.session() as s:
        workspace = accounts.create_workspace(s, "חנות הטבע")
        site = tracking.create_site(s, workspace.id, "חנות הטבע", [shop])
    pages = tmp / "shop"
    pages.mkdir()
    (pages / "index.html").write_text(SHOP_PAGE.format(stub=QUEUE_STUB, kesher=kesher, key=site.write_key),
                                      encoding="utf-8")

    settings = Settings(database_url=database.url, queue="immediate", import_dir=str(tmp), secret_key="browser-test")
    live_server(create_app(settings, database), kesher_port)
    shop_server = ThreadingHTTPServer(("127.0.0.1", shop_port), functools.partial(_QuietHandler, directory=str(pages)))
    threading.Thread(target=shop_server.serve_forever, daemon=True).start()
    yield Setup(database, workspace.id, kesher, shop)
    shop_server.shutdown()
    database.dispose()


@pytest.fixture(scope="module")
def page(chromium, setup: Setup):  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(**chromium)
        context = browser.new_context(locale="he-IL")
        page = context.new_page()
        page.set_default_timeout(15_000)
        yield page
        browser.close()


def _events(setup: Setup) -> list[Event]:
    with setup.database.session() as s:
        return list(s.scalars(select(Event).where(Event.workspace_id == setup.workspace_id,
                                                  Event.type.not_in(rollups.SYSTEM_TYPES)).order_by(Event.id)))


def _wait_for(setup: Setup, done: Any, what: str) -> list[Event]:
    deadline = time.monotonic() + 15
    while True:
        events = _events(setup)
        if done(events):
            return events
        assert time.monotonic() < deadline, f"{what}; stored: {[(e.type, e.contact_id) for e in events]}"
        time.sleep(0.1)


def test_a_shop_page_sends_a_visit_and_an_identify(page, setup: Setup) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    requests: list[str] = []
    answers: list[tuple[str, int]] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("response", lambda r: answers.append((r.url, r.status)) if "/t/" in r.url else None)

    page.goto(f"{setup.shop}/index.html")
    events = _wait_for(setup, lambda es: len(es) >= 2, "the page view and the queued event never arrived")
    visitor = page.evaluate("localStorage.getItem('kesher_aid')")
    assert visitor and len(visitor) == 32
    assert [(e.type, e.anonymous_id, e.contact_id, e.source) for e in events] == [
        ("page_view", visitor, None, "web"), ("custom:quiz_done", visitor, None, "web")]
    assert events[0].properties == {"url": f"{setup.shop}/index.html", "title": "חנות הטבע: ויטמינים"}
    assert events[1].properties == {"score": 7}

    page.get_by_label("אימייל").fill(EMAIL)
    page.get_by_role("button", name="הרשמה").click()
    expect(page.locator("#thanks")).to_be_visible()
    events = _wait_for(setup, lambda es: len(es) == 3 and all(e.contact_id for e in es),
                       "the identify did not give the visit to the contact")
    with setup.database.session() as s:
        dana = s.scalar(select(Contact).where(Contact.workspace_id == setup.workspace_id, Contact.email == EMAIL))
        assert dana is not None and dana.source == "web"
        assert {e.contact_id for e in events} == {dana.id}
        assert events[2].type == "form_submitted"
        rollup = s.get(ContactRollup, dana.id)
        assert rollup is not None and rollup.last_visit_at == events[2].ts

    # The next page of the same visitor goes straight to the contact.
    page.reload()
    events = _wait_for(setup, lambda es: len(es) >= 5, "the second visit never arrived")
    assert [(e.type, e.anonymous_id, e.contact_id) for e in events[3:]] == [
        ("page_view", visitor, dana.id), ("custom:quiz_done", visitor, dana.id)]

    assert answers and all(status in (200, 204, 304) for _, status in answers), answers
    assert all(url.startswith((setup.shop, setup.kesher)) for url in requests), requests
