"""A TestClient that behaves like a browser on Kesher's pages: it sends back the CSRF token it was given."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient

from kesher.accounts import service as accounts

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """A TestClient that remembers the CSRF token of the last page it read and posts it with each form."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.csrf = ""

    def get(self, url: str, **kwargs):  # type: ignore[no-untyped-def]
        response = self.client.get(url, **kwargs)
        if match := TOKEN.search(response.text):
            self.csrf = match.group(1)
        return response

    def post(self, url: str, data: dict | None = None, **kwargs):  # type: ignore[no-untyped-def]
        return self.client.post(url, data={"csrf_token": self.csrf, **(data or {})}, **kwargs)


PASSWORD = "correct horse battery"


@contextmanager
def logged_in(app, database, workspace, start: str, browser: type[Browser] = Browser) -> Iterator[Browser]:  # type: ignore[no-untyped-def]
    """A new marketer of the workspace, logged in, on the page `start`."""
    email = f"marketer-{uuid.uuid4().hex[:8]}@example.com"
    with database.session() as s:
        accounts.create_user(s, email, PASSWORD, name="Noa", workspace=s.merge(workspace))
    with TestClient(app, follow_redirects=False) as client:
        page = browser(client)
        page.get("/login")
        assert page.post("/login", {"email": email, "password": PASSWORD, "next": start}).status_code == 303
        page.get(start)
        yield page


def sign_in(page, server: str, email: str, path: str) -> None:  # type: ignore[no-untyped-def]
    """Log a Playwright page in through the Hebrew login form, landing on `path`."""
    from playwright.sync_api import expect

    page.goto(f"/login?next={path}")
    page.get_by_label("אימייל").fill(email)
    page.get_by_label("סיסמה").fill(PASSWORD)
    page.get_by_role("button", name="כניסה").click()
    expect(page).to_have_url(f"{server}{path}")


def hebrew_page(playwright, chromium, server: str):  # type: ignore[no-untyped-def]
    """A new page of a desktop-sized Hebrew browser on `server`, and the list its script errors go to."""
    browser = playwright.chromium.launch(**chromium)
    page = browser.new_context(base_url=server, viewport={"width": 1280, "height": 900}, locale="he-IL").new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page, errors
