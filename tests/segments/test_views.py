"""The segment pages through HTTP as a logged-in marketer sees them (SQLite and PostgreSQL), and the
rule builder in headless Chromium."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path

import pytest

from kesher.accounts import service as accounts
from kesher.accounts.models import Workspace
from kesher.config import Settings
from kesher.contacts import groups
from kesher.contacts import service as contacts
from kesher.db import Database
from kesher.db.migrate import upgrade
from kesher.events.ingest import ingest
from kesher.segments import service as segments
from kesher.segments.models import Segment
from tests.browser import PASSWORD, Browser as PageBrowser, logged_in, hebrew_page, sign_in

PARTIAL = {"HX-Request": "true"}
NOW = datetime.now(UTC).replace(microsecond=0)
HAIFA = {"field": "city", "op": "eq", "value": "חיפה"}


class Browser(PageBrowser):
    """A logged-in browser that can also ask the builder's preview."""

    def preview(self, rule: object, **extra: str):  # type: ignore[no-untyped-def]
        body = {"rule": rule if isinstance(rule, str) else json.dumps(rule), **extra}
        return self.client.post("/segments/preview", data=body, headers={"X-CSRF-Token": self.csrf})


@pytest.fixture
def ui(app, database: Database, workspace) -> Iterator[Browser]:  # type: ignore[no-untyped-def]
    with logged_in(app, database, workspace, "/segments", Browser) as page:
        yield page


def add_contact(database: Database, workspace, **data) -> int:  # type: ignore[no-untyped-def]
    with database.session() as s:
        return contacts.save_contact(s, workspace.id, data, actor="test").contact_id  # type: ignore[return-value]


def send(database: Database, workspace, events: list[dict]) -> None:  # type: ignore[no-untyped-def]
    with database.session() as s:
        result = ingest(s, s.get_one(Workspace, workspace.id), events)
    assert not result.errors and result.accepted == len(events)


def save(database: Database, workspace, name: str, rule: dict) -> int:  # type: ignore[no-untyped-def]
    with database.session() as s:
        return segments.create_segment(s, s.get_one(Workspace, workspace.id), name, rule).id


def ago(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat()


def link(html: str, rel: str) -> str:
    match = re.search(rf'rel="{rel}" href="([^"]+)"', html)
    assert match, f"no {rel} link"
    return unescape(match.group(1))


def test_pages_in_hebrew_rtl_then_in_english(ui: Browser, database: Database, workspace) -> None:  # type: ignore[no-untyped-def]
    add_contact(database, workspace, email="dana@example.com", first_name="דנה", city="חיפה")
    segment_id = save(database, workspace, "לקוחות חיפה", HAIFA)

    page = ui.get("/segments").text
    assert '<html lang="he" dir="rtl">' in page and "<h1>פלחים</h1>" in page
    assert "לקוחות חיפה" in page and ">1<" in page
    assert "רדום" in page and "לחצו על קישור בקמפיין" in page and "10% הלקוחות המובילים" in page  # presets
    assert 'aria-current="page">פלחים<' in page
    builder = ui.get("/segments/new").text
    assert "פלח חדש" in builder and 'id="builder"' in builder and "/static/kesher-segments.js" in builder
    vocabulary = json.loads(unescape(re.search(r'id="builder-vocabulary">(.*?)</script>', builder, re.S).group(1)))  # type: ignore[union-attr]
    assert vocabulary["kinds"]["event"] == "עשו משהו (אירוע)" and vocabulary["ops"]["in"] == "אחד מ-"
    assert {"key": "city", "label": "עיר", "type": "text", "choices": []} in vocabulary["fields"]
    assert vocabulary["events"]["purchase"] == "רכישה" and len(vocabulary["stats"]) > 10
    detail = ui.get(f"/segments/{segment_id}").text
    assert "dana@example.com" in detail and "<bdi>עיר</bdi> שווה ל- <bdi>חיפה</bdi>" in detail
    assert "עריכת הכלל" in ui.get(f"/segments/{segment_id}").text
    edit = ui.get(f"/segments/{segment_id}/edit").text
    assert "עריכת פלח" in edit and "&#34;field&#34;: &#34;city&#34;" in edit

    assert ui.post("/language", {"language": "en", "next": "/segments"}).status_code == 303
    page = ui.get("/segments").text
    assert '<html lang="en" dir="ltr">' in page and "<h1>Segments</h1>" in page and "פלחים" not in page
    assert "Dormant" in page and "Clicked a campaign link" in page and "Start from a preset" in page
    builder = ui.get("/segments/new").text
    assert "New segment" in builder and "Did something (event)" in builder
    assert "<bdi>City</bdi> is <bdi>חיפה</bdi>" in ui.get(f"/segments/{segment_id}").text


def test_create_edit_and_delete_through_the_forms(ui: Browser, database: Database, workspace) -> None:  # type: ignore[no-untyped-def]
    add_contact(database, workspace, email="dana@example.com", city="חיפה")
    add_contact(database, workspace, email="avi@example.com", city="אילת")
    ui.get("/segments/new")

    created = ui.post("/segments", {"name": "חיפה", "description": "מי שגר בחיפה", "rule": json.dumps(HAIFA)})
    assert created.status_code == 303
    page = ui.get(created.headers["location"]).text
    assert "dana@example.com" in page and "avi@example.com" not in page and "מי שגר בחיפה" in page

    taken = ui.post("/segments", {"name": "חיפה", "rule": json.dumps(HAIFA)})
    assert taken.status_code == 409 and "השם הזה כבר תפוס" in taken.text and 'id="err-name"' in taken.text
    nameless = ui.post("/segments", {"name": " ", "rule": json.dumps(HAIFA)})
    assert nameless.status_code == 422 and "נדרש שם" in nameless.text

    bad_rule = {"all": [HAIFA, {"event": "purchase", "within_days": 0}]}
    bad = ui.post("/segments", {"name": "קונים", "rule": json.dumps(bad_rule)})
    assert bad.status_code == 422
    assert 'data-error-path="$.all[1].within_days"' in bad.text and "הזינו מספר ימים" in bad.text
    assert "קונים" in bad.text  # what was typed comes back
    not_json = ui.post("/segments", {"name": "קונים", "rule": "{all"})
    assert not_json.status_code == 422 and 'data-error-path="$"' in not_json.text
    with database.session() as s:
        assert [x.name for x in segments.list_segments(s, workspace.id)] == ["חיפה"]

    segment_id = int(created.headers["location"].rsplit("/", 1)[1])
    ui.get(f"/segments/{segment_id}/edit")
    eilat = {"field": "city", "op": "in", "value": ["אילת"]}
    edited = ui.post(f"/segments/{segment_id}", {"name": "אילת", "description": "", "rule": json.dumps(eilat)})
    assert edited.status_code == 303
    page = ui.get(f"/segments/{segment_id}").text
    assert "avi@example.com" in page and "dana@example.com" not in page and "<h1><bdi>אילת</bdi></h1>" in page
    itself = ui.post(f"/segments/{segment_id}", {"name": "אילת", "rule": json.dumps({"segment": segment_id})})
    assert itself.status_code == 422 and "פלח לא יכול לכלול את עצמו" in itself.text

    user = save(database, workspace, "משתמש", {"all": [{"segment": segment_id}, HAIFA]})
    refused = ui.post(f"/segments/{segment_id}/delete")
    assert refused.status_code == 409 and "פלח אחר משתמש בפלח הזה" in refused.text and "משתמש" in refused.text
    assert ui.post(f"/segments/{user}/delete").headers["location"] == "/segments"
    assert ui.post(f"/segments/{segment_id}/delete").status_code == 303
    assert ui.get(f"/segments/{segment_id}").status_code == 404
    assert ui.client.post(f"/segments/{user}/delete").status_code == 403  # no CSRF token


def test_preview_counts_samples_and_points_at_the_bad_condition(ui: Browser, database: Database, workspace) -> None:  # type: ignore[no-untyped-def]
    for n in range(12):
        add_contact(database, workspace, email=f"p{n}@example.com", first_name=f"נועה{n}", city="חיפה")
    add_contact(database, workspace, email="other@example.com", city="אילת")

    answer = ui.preview(HAIFA).json()
    assert answer["ok"] and answer["count"] == 12 and answer["text"] == "12 אנשי קשר מתאימים"
    assert len(answer["sample"]) == 10 and answer["sample"][0]["name"] == "נועה11"
    assert answer["sample"][0]["url"].startswith("/contacts/")
    one = ui.preview({"field": "email", "op": "eq", "value": "other@example.com"}).json()
    assert one["count"] == 1 and one["text"] == "איש קשר אחד מתאים"

    bad = ui.preview({"all": [HAIFA, {"any": [{"stat": "total_revenue", "op": "gte", "value": "lots"}]}]}).json()
    assert bad == {"ok": False, "path": "$.all[1].any[0].value", "message": "יש להזין מספר."}
    missing = ui.preview({"not": {"list": "אין כזו"}}).json()
    assert missing["path"] == "$.not.list" and missing["message"] == "אין רשימה כזו בסביבת העבודה הזו."
    assert ui.preview("{").json()["path"] == "$"
    assert ui.preview({"all": []}).json()["message"] == "קבוצה צריכה לפחות תנאי אחד."
    segment_id = save(database, workspace, "חיפה", HAIFA)
    assert ui.preview({"segment": segment_id}).json()["count"] == 12
    assert ui.preview({"segment": segment_id}, segment_id=str(segment_id)).json()["path"] == "$.segment"
    assert ui.client.post("/segments/preview", data={"rule": json.dumps(HAIFA)}).status_code == 403


def test_presets_make_segments_and_open_them(ui: Browser, database: Database, workspace) -> None:  # type: ignore[no-untyped-def]
    created = ui.post("/segments/presets/vip")
    assert created.status_code == 303
    again = ui.post("/segments/presets/vip")
    assert again.headers["location"] == created.headers["location"]  # the same segment opens again
    page = ui.get(created.headers["location"]).text
    assert "VIP" in page and "ב-10% העליונים" in page

    no_campaign = ui.post("/segments/presets/clicked_link", {"campaign_id": " "})
    assert no_campaign.status_code == 422 and "בחרו את הקמפיין" in no_campaign.text
    clicked = ui.post("/segments/presets/clicked_link", {"campaign_id": "spring", "url": "https://shop.example/a"})
    with database.session() as s:
        segment = s.get_one(Segment, int(clicked.headers["location"].rsplit("/", 1)[1]))
        assert segment.preset == "clicked_link" and segment.name == "לחצו על קישור בקמפיין"
        assert segment.rule["where"] == [{"prop": "campaign_id", "op": "eq", "value": "spring"},
                                         {"prop": "url", "op": "eq", "value": "https://shop.example/a"}]
    other = ui.post("/segments/presets/clicked_link", {"campaign_id": "summer"})
    assert other.headers["location"] != clicked.headers["location"]
    assert "לחצו על קישור בקמפיין (2)" in ui.get(other.headers["location"]).text
    assert ui.post("/segments/presets/nonsense").status_code == 404

    adjust = ui.get("/segments/new?preset=dormant").text
    assert 'value="רדום"' in adjust and 'name="preset" value="dormant"' in adjust and "&#34;stage&#34;" in adjust
    saved = ui.post("/segments", {"name": "רדומים בחיפה", "preset": "dormant",
                                  "rule": json.dumps({"all": [{"stage": "dormant"}, HAIFA]})})
    with database.session() as s:
        assert s.get_one(Segment, int(saved.headers["location"].rsplit("/", 1)[1])).preset == "dormant"
    assert "רדום" in ui.get("/segments").text.split("רדומים בחיפה")[1].split("</tr>")[0]


def test_members_page_like_the_contacts_table_and_export_through_it(
    ui: Browser, database: Database, workspace, monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    from kesher.segments import views

    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    for n in range(5):
        add_contact(database, workspace, email=f"m{n}@example.com", first_name=f"חבר{n}", city="חיפה")
    add_contact(database, workspace, email="out@example.com", first_name="בחוץ", city="אילת")
    segment_id = save(database, workspace, "חיפה", HAIFA)

    first = ui.get(f"/segments/{segment_id}").text
    assert "5 אנשי קשר" in first and "חבר4" in first and "חבר3" in first and 'rel="prev"' not in first
    assert re.search(r'href="/contacts/\d+"><bdi>חבר4</bdi>', first)
    second = ui.get(link(first, "next"), headers={**PARTIAL, "HX-Target": "results"}).text
    assert second.lstrip().startswith('<section id="results"') and "חבר2" in second and "חבר4" not in second
    third = ui.get(link(second, "next")).text
    assert "חבר0" in third and 'rel="next"' not in third
    assert "חבר2" in ui.get(link(third, "prev")).text

    assert f'href="/contacts/export.csv?segment={segment_id}"' in first
    assert f'href="/contacts?segment={segment_id}"' in first
    table = ui.get(f"/contacts?segment={segment_id}").text
    assert "m0@example.com" in table and "out@example.com" not in table
    assert f'<option value="{segment_id}" selected>חיפה</option>' in table
    assert f"export.csv?segment={segment_id}" in table  # the export keeps the filter
    assert ui.post("/contacts/columns", {"columns": ["email", "city"], "next": f"/contacts?segment={segment_id}"}).status_code == 303
    export = ui.client.get(f"/contacts/export.csv?segment={segment_id}")
    lines = export.content.decode("utf-8-sig").splitlines()
    assert lines[0] == "אימייל,עיר" and len(lines) == 6 and "out@example.com,אילת" not in lines
    xlsx = ui.client.get(f"/contacts/export.xlsx?segment={segment_id}")
    assert xlsx.status_code == 200 and xlsx.content.startswith(b"PK")

    # Refresh now: a contact moved to Haifa after the segment was computed comes in.
    with database.session() as s:
        out = contacts.search(s, workspace.id, contacts.ContactFilter(q="out@example.com"))[0][0]
        out.city = "חיפה"
    refreshed = ui.post(f"/segments/{segment_id}/refresh")
    assert refreshed.status_code == 303
    assert "רוענן: 1 נכנסו, 0 יצאו." in ui.get(refreshed.headers["location"]).text


def test_contact_card_lists_segments_and_explains_why(ui: Browser, database: Database, workspace) -> None:  # type: ignore[no-untyped-def]
    dana = add_contact(database, workspace, email="dana@example.com", first_name="דנה", city="חיפה",
                       consent={"email": "granted"})
    with database.session() as s:
        newsletter = groups.create(s, workspace.id, "list", "ניוזלטר")
        groups.add_contacts(s, workspace.id, "list", newsletter.id, [dana])
    send(database, workspace, [
        {"type": "email_sent", "contact": {"id": dana}, "ts": ago(6), "properties": {"campaign_id": "spring"}},
        {"type": "email_opened", "contact": {"id": dana}, "ts": ago(5), "properties": {"campaign_id": "spring"}},
        {"type": "purchase", "contact": {"id": dana}, "ts": ago(3), "properties": {
            "order_id": "A-1", "total": 120, "items": [{"sku": "V", "name": "ויטמין", "category": "vitamins", "price": 120}]}},
    ])
    rule = {"all": [HAIFA, {"list": newsletter.id}, {"consent": "email"},
                    {"event": "purchase", "within_days": 30, "count": {"op": "gte", "value": 1}},
                    {"stat": "total_revenue", "op": "gte", "value": 100},
                    {"campaigns": 1, "action": "opened", "op": "eq", "value": 1},
                    {"not": {"field": "email", "op": "is_not_set"}}]}
    inside = save(database, workspace, "לקוחות מחיפה", rule)
    outside = save(database, workspace, "אילת", {"field": "city", "op": "eq", "value": "אילת"})

    card = ui.get(f"/contacts/{dana}").text
    assert f'hx-get="/contacts/{dana}/segments" hx-trigger="load"' in card
    section = ui.get(f"/contacts/{dana}/segments", headers=PARTIAL).text
    assert "<html" not in section and "לקוחות מחיפה" in section and "מאז " in section
    assert f'/contacts/{dana}/segments/why?segment={inside}' in section
    assert f'<option value="{outside}">אילת</option>' in section  # "why?" for any segment
    assert "<html" in ui.get(f"/contacts/{dana}/segments").text  # a page of its own without JavaScript

    why = ui.get(f"/contacts/{dana}/segments/why?segment={inside}", headers=PARTIAL).text
    assert "איש הקשר עונה כרגע על הכלל של הפלח." in why
    # The root and its 7 conditions hold; inside the last, "has no email" does not, so "not" holds.
    assert why.count('class="reason yes"') == 8 and why.count('class="reason no"') == 1
    for evidence in ("ערך: חיפה", "נוסף/ה לרשימה ב-", "אימייל: ניתנה מאז", "אירוע תואם אחד", "₪120",
                     "ערך: ₪120", "קמפיינים שהתקבלו: 1 מתוך 1 הנדרשים", "spring"):
        assert evidence in why, evidence
    no = ui.get(f"/contacts/{dana}/segments/why?segment={outside}", headers=PARTIAL).text
    assert "איש הקשר לא עונה כרגע על הכלל של הפלח." in no and 'class="reason no"' in no and "ערך: חיפה" in no
    assert "<html" in ui.get(f"/contacts/{dana}/segments/why?segment={outside}").text


def test_campaign_links_count_clicks_and_clickers_and_make_a_segment(
    ui: Browser, database: Database, workspace,  # type: ignore[no-untyped-def]
) -> None:
    dana, avi, noa = (add_contact(database, workspace, email=f"{n}@example.com") for n in ("dana", "avi", "noa"))
    sale, blog = "https://shop.example/sale", "https://shop.example/blog"

    def click(contact: int, url: str, campaign: str = "spring") -> dict:
        return {"type": "email_clicked", "contact": {"id": contact}, "ts": ago(1), "properties": {"campaign_id": campaign, "url": url}}

    send(database, workspace, [click(dana, sale), click(dana, sale), click(avi, sale), click(noa, blog),
                               click(noa, sale, "summer")])
    page = ui.get("/segments/links").text
    spring = page.partition("spring")[2].partition("</section>")[0]
    sale_row = spring.partition(sale)[2].partition("</tr>")[0]
    assert re.findall(r'class="num">(\d+)<', sale_row) == ["3", "2"]  # 3 clicks by 2 contacts
    assert re.findall(r'class="num">(\d+)<', spring.partition(blog)[2].partition("</tr>")[0]) == ["1", "1"]
    assert "summer" in page

    name = "לחצו על https://shop.example/sale ב-spring"
    made = ui.post("/segments/presets/clicked_link", {"campaign_id": "spring", "url": sale, "name": name})
    assert made.status_code == 303
    segment_page = ui.get(made.headers["location"]).text
    assert "2 אנשי קשר" in segment_page and "dana@example.com" in segment_page and "noa@example.com" not in segment_page
    assert ui.post("/segments/presets/clicked_link", {"campaign_id": "spring", "url": sale, "name": name}).headers[
        "location"] == made.headers["location"]
    everyone = ui.post("/segments/presets/clicked_link", {"campaign_id": "spring", "name": "כל הלוחצים"})
    assert "3 אנשי קשר" in ui.get(everyone.headers["location"]).text
    assert "עדיין לא נרשמו לחיצות" not in page


def test_another_workspaces_segment_is_a_404(ui: Browser, database: Database, workspace, other_workspace) -> None:  # type: ignore[no-untyped-def]
    theirs = save(database, other_workspace, "סודי", {"field": "city", "op": "is_set"})
    their_contact = add_contact(database, other_workspace, email="secret@example.com", city="חיפה")
    for url in (f"/segments/{theirs}", f"/segments/{theirs}/edit", f"/contacts/{their_contact}/segments"):
        page = ui.get(url)
        assert page.status_code == 404 and "לא נמצא" in page.text and "סודי" not in page.text
    assert ui.post(f"/segments/{theirs}", {"name": "נגנב", "rule": json.dumps(HAIFA)}).status_code == 404
    assert ui.post(f"/segments/{theirs}/refresh").status_code == 404
    assert ui.post(f"/segments/{theirs}/delete").status_code == 404
    mine = add_contact(database, workspace, email="mine@example.com")
    assert ui.get(f"/contacts/{mine}/segments/why?segment={theirs}").status_code == 404
    assert ui.preview({"segment": theirs}).json()["message"] == "אין פלח כזה בסביבת העבודה הזו."
    assert "secret@example.com" not in ui.client.get(f"/contacts/export.csv?segment={theirs}").text
    with database.session() as s:
        assert s.get_one(Segment, theirs).name == "סודי"


# The builder in a real browser -----------------------------------------------------------------------

EMAIL = "noa@example.com"
SCREENSHOT = Path("/tmp/kesher-segment-builder.png")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, live_server) -> Iterator[str]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("segments-browser")
    database = Database(f"sqlite:///{tmp / 'kesher.db'}")
    upgrade(database.engine)
    with database.session() as s:
        workspace = accounts.create_workspace(s, "חנות הטבע")
        accounts.create_user(s, EMAIL, PASSWORD, name="נועה", workspace=workspace)
        newsletter = groups.create(s, workspace.id, "list", "ניוזלטר")
        people = [contacts.save_contact(s, workspace.id, {"email": f"{n}@example.com", "first_name": name, "city": city},
                                        actor="test").contact_id
                  for n, name, city in (("dana", "דנה", "חיפה"), ("rut", "רותי", "חיפה"), ("yossi", "יוסי", "חיפה"),
                                        ("avi", "אבי", "אילת"))]
        groups.add_contacts(s, workspace.id, "list", newsletter.id, people[:1])
        ingest(s, workspace, [{"type": "purchase", "contact": {"id": people[1]}, "ts": ago(3),
                               "properties": {"order_id": "A-1", "total": 80}}])
    settings = Settings(database_url=database.url, queue="immediate", import_dir=str(tmp), secret_key="browser-test")
    from kesher.web.app import create_app

    yield live_server(create_app(settings, database))
    database.dispose()


@pytest.mark.browser
def test_build_a_nested_rule_watch_the_count_and_save(chromium, server: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        page, errors = hebrew_page(p, chromium, server)
        sign_in(page, server, EMAIL, "/segments")
        page.get_by_role("link", name="פלח חדש").click()
        count = page.locator("#preview-count")
        expect(count).to_have_text("הוסיפו תנאי כדי להתחיל.")
        assert not page.locator("#rule-json").is_visible()  # the JSON waits behind its summary

        # City is Haifa, and (in the newsletter, or bought in the last 30 days).
        page.get_by_label("שם", exact=True).fill("חיפה: מנויים או קונים")
        root = page.locator(".b-root")
        root.locator(":scope > .b-actions").get_by_role("button", name="+ הוספת תנאי").click()
        haifa = root.locator(":scope > .b-children > .b-leaf").first
        expect(count).to_have_text("מלאו כל תנאי כדי לראות כמה אנשי קשר מתאימים.")
        haifa.get_by_label("ערך").last.fill("חיפה")
        expect(count).to_have_text("3 אנשי קשר מתאימים")
        expect(page.locator("#preview-sample")).to_contain_text("יוסי")

        root.locator(":scope > .b-actions").get_by_role("button", name="+ הוספת קבוצה").click()
        nested = root.locator(":scope > .b-children > .b-group")
        expect(nested.get_by_label("איך התנאים מתחברים")).to_have_value("any")
        nested.locator(".b-leaf").first.get_by_label("סוג התנאי").select_option("list")
        expect(count).to_have_text("איש קשר אחד מתאים")
        nested.locator(":scope > .b-actions").get_by_label("סוג התנאי").select_option("event")
        nested.locator(":scope > .b-actions").get_by_role("button", name="+ הוספת תנאי").click()
        bought = nested.locator(".b-leaf").nth(1)
        bought.get_by_label("מתי").select_option("days")
        expect(count).to_have_text("2 אנשי קשר מתאימים")

        # A bad number is marked on its own condition, in Hebrew, from the JSON path the server names.
        bought.get_by_label("ימים").fill("0")
        expect(bought.locator(".b-error")).to_have_text("הזינו מספר ימים, יותר מ-0 ועד 3650.")
        expect(bought.get_by_label("ימים")).to_have_attribute("aria-invalid", "true")
        expect(haifa.locator(".b-error")).to_be_hidden()
        expect(count).to_have_text("תקנו את התנאי המסומן כדי לראות את הספירה.")
        bought.get_by_label("ימים").fill("30")
        expect(count).to_have_text("2 אנשי קשר מתאימים")
        expect(bought.locator(".b-error")).to_be_hidden()
        assert page.evaluate("[document.documentElement.lang, document.documentElement.dir]") == ["he", "rtl"]
        page.screenshot(path=str(SCREENSHOT), full_page=True)

        rule = json.loads(page.locator("#rule-json").input_value())
        assert rule == {"all": [HAIFA, {"any": [{"list": 1}, {"event": "purchase", "within_days": 30}]}]}
        page.get_by_role("button", name="שמירת הפלח").click()
        expect(page.locator("h1")).to_have_text("חיפה: מנויים או קונים")
        expect(page.locator("#results .count")).to_have_text("2 אנשי קשר")
        expect(page.locator("#results table")).to_contain_text("דנה")
        expect(page.locator("#results table")).to_contain_text("רותי")
        expect(page.locator(".rule-root")).to_contain_text("ברשימה ניוזלטר")
        expect(page.locator(".rule-root")).to_contain_text("לפחות אחד מהתנאים האלה")

        # Editing starts from the saved rule; the nested group comes back as it was.
        page.get_by_role("link", name="עריכת הכלל").click()
        expect(page.locator(".b-root > .b-children > .b-group .b-leaf")).to_have_count(2)
        expect(count).to_have_text("2 אנשי קשר מתאימים")
    assert not errors
