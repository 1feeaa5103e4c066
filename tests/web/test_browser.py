"""The real app in headless Chromium: log in, import a Hebrew CSV, watch it finish, find the contacts.

Runs on SQLite only, with the SQLite queue and the in-process worker, exactly as `kesher serve` does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kesher.accounts import service as accounts
from kesher.config import Settings
from kesher.db import Database
from kesher.db.migrate import upgrade
from kesher.web.app import create_app

pytestmark = pytest.mark.browser

EMAIL, PASSWORD = "noa@example.com", "correct horse battery"
SCREENSHOT = Path("/tmp/kesher-contacts.png")
CSV = (
    "שם פרטי,שם משפחה,טלפון,אימייל,עיר\n"
    "דנה,כהן,050-1234567,dana@example.com,חיפה\n"
    "יוסי,לוי,052-7654321,yossi@example.com,תל אביב\n"
    "רותי,מזרחי,12,not-an-email,אילת\n"
    "אבי,פרץ,054-1112233,avi@example.com,ירושלים\n"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, live_server) -> Iterator[str]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("browser")
    database = Database(f"sqlite:///{tmp / 'kesher.db'}")
    upgrade(database.engine)
    with database.session() as s:
        workspace = accounts.create_workspace(s, "חנות הטבע")
        accounts.create_user(s, EMAIL, PASSWORD, name="נועה", workspace=workspace)
    settings = Settings(database_url=database.url, queue="sqlite", queue_path=str(tmp / "queue.db"),
                        import_dir=str(tmp), secret_key="browser-test")
    yield live_server(create_app(settings, database, with_worker=True))
    database.dispose()


@pytest.fixture(scope="module")
def page(chromium, server: str):  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(**chromium)
        context = browser.new_context(base_url=server, viewport={"width": 1280, "height": 800}, locale="he-IL")
        page = context.new_page()
        page.set_default_timeout(15_000)
        yield page
        browser.close()


def test_import_a_hebrew_csv_and_find_the_contacts(page, server: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.goto("/contacts")
    expect(page).to_have_url(f"{server}/login?next=/contacts")
    page.get_by_label("אימייל").fill(EMAIL)
    page.get_by_label("סיסמה").fill("wrong password")
    page.get_by_role("button", name="כניסה").click()
    expect(page.get_by_role("alert")).to_contain_text("אימייל או סיסמה שגויים")
    page.get_by_label("סיסמה").fill(PASSWORD)
    page.get_by_role("button", name="כניסה").click()
    expect(page).to_have_url(f"{server}/contacts")
    assert page.evaluate("[document.documentElement.lang, document.documentElement.dir]") == ["he", "rtl"]

    page.get_by_role("navigation", name="ראשי").get_by_role("link", name="ייבוא").click()
    page.get_by_role("link", name="ייבוא חדש").click()
    upload = tmp_path / "לקוחות.csv"
    upload.write_text(CSV, encoding="utf-8")
    page.get_by_label("קובץ CSV או Excel").set_input_files(str(upload))
    page.get_by_label("או רשימה חדשה").fill("לקוחות מהחנות")
    page.get_by_role("button", name="התחלת ייבוא").click()

    expect(page.locator("#progress .badge")).to_have_text("הסתיים", timeout=30_000)
    expect(page.locator(".count-created")).to_have_text("3")
    expect(page.locator(".count-failed")).to_have_text("1")
    error_rows = page.locator("table.errors tbody tr")
    expect(error_rows.first).to_be_visible()
    assert "4" in error_rows.first.locator("td").first.inner_text()  # the fourth line of the file

    page.get_by_role("link", name="לאנשי הקשר").click()
    table = page.locator("#results table")
    for name in ("דנה", "יוסי", "אבי"):
        expect(table).to_contain_text(name)
    expect(table).not_to_contain_text("רותי")
    expect(page.locator("#results .count")).to_have_text("3 אנשי קשר")

    # The table follows the search box as one types, without reloading the page.
    page.evaluate("window.notReloaded = true")
    page.get_by_label("חיפוש").press_sequentially("יוס", delay=50)
    expect(page.locator("#results .count")).to_have_text("איש קשר אחד")
    expect(table).to_contain_text("יוסי")
    expect(table).not_to_contain_text("דנה")
    assert page.evaluate("window.notReloaded") is True
    page.get_by_label("חיפוש").fill("")
    page.get_by_label("חיפוש").press("Backspace")
    expect(page.locator("#results .count")).to_have_text("3 אנשי קשר")

    # Right-to-left: the brand sits at the right edge, the first column of the table is the rightmost.
    brand = page.locator(".brand").bounding_box()
    assert brand and brand["x"] > 1280 / 2
    headers = page.locator("#results thead th")
    first, last = headers.first.bounding_box(), headers.last.bounding_box()
    assert first and last and first["x"] > last["x"]
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    page.locator("#results tbody a.row-link", has_text="דנה").click()
    expect(page.locator("h1")).to_contain_text("דנה כהן")
    expect(page.locator("#groups")).to_contain_text("לקוחות מהחנות")

    # Tags change in place (HTMX posts carry the CSRF token in a header).
    page.evaluate("window.notReloaded = true")
    page.get_by_placeholder("הוספת תגית").fill("לקוחה חוזרת")
    page.locator("#groups form.add-group").nth(1).get_by_role("button", name="הוספה").click()
    expect(page.locator("#groups .chip", has_text="לקוחה חוזרת")).to_be_visible()
    page.get_by_role("button", name="הסרת התגית לקוחה חוזרת").click()
    expect(page.locator("#groups .chip", has_text="לקוחה חוזרת")).to_have_count(0)
    assert page.evaluate("window.notReloaded") is True
