"""The events pages through HTTP: a contact's activity on its card, and the explorer (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from sqlalchemy import update

from kesher.accounts.models import Workspace
from kesher.contacts import service as contacts
from kesher.contacts.models import Contact
from kesher.db import Database
from kesher.events import lifecycle
from kesher.events.ingest import ingest
from kesher.web.pages import local_time
from tests.browser import Browser, logged_in

PARTIAL = {"HX-Request": "true"}
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def ui(app, database: Database, workspace) -> Iterator[Browser]:  # type: ignore[no-untyped-def]
    with logged_in(app, database, workspace, "/events") as page:
        yield page


def send(database: Database, workspace, events: list[dict]) -> None:  # type: ignore[no-untyped-def]
    with database.session() as s:
        result = ingest(s, s.get_one(Workspace, workspace.id), events)
    assert not result.errors and result.accepted == len(events)


def add_contact(database: Database, workspace, email: str, joined_days_ago: int = 0) -> int:  # type: ignore[no-untyped-def]
    with database.session() as s:
        contact_id = contacts.save_contact(s, workspace.id, {"email": email}, actor="test").contact_id
        s.execute(update(Contact).where(Contact.id == contact_id)
                  .values(created_at=NOW - timedelta(days=joined_days_ago)))
    assert contact_id is not None
    return contact_id


def ago(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat()


def links(html: str, rel: str) -> str:
    match = re.search(rf'rel="{rel}" href="([^"]+)"', html)
    assert match, f"no {rel} link"
    return unescape(match.group(1))


@pytest.fixture
def dana(database: Database, workspace) -> int:  # type: ignore[no-untyped-def]
    """A contact who joined half a year ago, bought twice, got two campaigns and visited the shop."""
    contact_id = add_contact(database, workspace, "dana@example.com", joined_days_ago=180)
    who = {"id": contact_id}
    send(database, workspace, [
        {"type": "purchase", "contact": who, "ts": ago(40), "properties": {
            "order_id": "A-1001", "items": [{"sku": "VIT-D", "name": "ויטמין D", "category": "vitamins",
                                             "price": 49.9, "quantity": 2}]}},
        {"type": "purchase", "contact": who, "ts": ago(10), "properties": {
            "order_id": "A-1002", "total": 1250, "items": [
                {"sku": "OMEGA", "name": "אומגה 3", "category": "supplements", "price": 1200},
                {"sku": "VIT-C", "name": "ויטמין C", "category": "vitamins", "price": 50}]}},
        {"type": "email_sent", "contact": who, "ts": ago(5), "properties": {"campaign_id": "spring-sale"}},
        {"type": "email_opened", "contact": who, "ts": ago(4), "properties": {"campaign_id": "spring-sale"}},
        {"type": "email_clicked", "contact": who, "ts": ago(4), "properties": {
            "campaign_id": "spring-sale", "url": "https://shop.example/sale"}},
        {"type": "email_sent", "contact": who, "ts": ago(2), "properties": {"campaign_id": "summer"}},
        {"type": "page_view", "contact": who, "ts": ago(1), "properties": {"url": "https://shop.example/vitamins"}},
        {"type": "custom:quiz_done", "contact": who, "ts": ago(0.5), "properties": {"score": 7}},
    ])
    with database.session() as s:
        ws = s.get_one(Workspace, workspace.id)
        lifecycle.update_rfm(s, ws.id)
        lifecycle.update_engagement(s, ws)
    return contact_id


def activity(ui: Browser, contact_id: int) -> str:
    """The activity block as the card fetches it once it shows."""
    card = ui.get(f"/contacts/{contact_id}").text
    assert f'hx-get="/contacts/{contact_id}/activity" hx-trigger="load"' in card
    block = ui.get(f"/contacts/{contact_id}/activity", headers=PARTIAL)
    assert block.status_code == 200 and "<html" not in block.text
    return block.text


def test_card_shows_stage_rollups_campaigns_and_timeline_in_hebrew(ui: Browser, dana: int) -> None:
    page = activity(ui, dana)
    facts = page.split('class="facts"')[1].split("</dl>")[0]
    assert 'status-granted">פעיל<' in facts  # stage: active
    assert "חלשה" in facts  # loyalty: weak, one purchase or more
    assert "עדכניות 1 · תדירות 1 · ערך כספי 1" in facts  # the only purchaser of the workspace
    assert re.search(r"\d+ מתוך 100", facts)
    last_purchase = local_time(NOW - timedelta(days=10))
    assert "רכישה אחרונה" in facts and last_purchase in facts
    assert local_time(NOW - timedelta(days=4)) in facts  # last open and click
    assert "ביקור אחרון באתר" in facts and local_time(NOW - timedelta(days=1)) in facts

    counts = page.split('class="counts"')[1].split("</dl>")[0]
    assert "₪1,349.80" in counts  # 99.80 + 1,250
    assert "₪674.90" in counts  # average order
    assert "30 ימים" in counts  # between the two purchases
    categories = page.split("רכישות לפי קטגוריה")[1].split("</table>")[0]
    assert re.search(r'vitamins</bdi></td><td class="num">2</td><td class="nowrap">' + last_purchase, categories)
    assert re.search(r'supplements</bdi></td><td class="num">1</td><td class="nowrap">' + last_purchase, categories)
    campaigns = page.split("הקמפיינים האחרונים")[1].split("</table>")[0]
    assert campaigns.index("summer") < campaigns.index("spring-sale")
    summer, spring = campaigns.split("spring-sale")
    assert "לא נפתח" in summer and "לא נלחץ" in summer
    assert ">נפתח<" in spring and ">נלחץ<" in spring and "לא נ" not in spring

    entries = page.split('<li class="timeline-item">')[1:]
    labels = [re.search(r"<strong><bdi>(.*?)</bdi>", e).group(1) for e in entries]  # type: ignore[union-attr]
    # Newest first; the stage change is written after the batch that caused it.
    assert labels == ["שינוי שלב", "מותאם: quiz_done", "צפייה בעמוד", "אימייל נשלח", "לחיצה על קישור באימייל",
                      "אימייל נפתח", "אימייל נשלח", "רכישה", "רכישה"]
    assert "— ← פעיל" in entries[0]
    assert "score" in entries[1] and ">7<" in entries[1]
    assert 'dir="ltr">https://shop.example/vitamins<' in entries[2]
    assert "summer" in entries[3] and "https://shop.example/sale" in entries[4]
    assert "₪1,250.00" in entries[7] and "אומגה 3" in entries[7] and "ויטמין C" in entries[7]
    assert "₪99.80" in entries[8] and "2 × ויטמין D" in entries[8]
    assert local_time(NOW - timedelta(days=40)) in entries[8]
    assert "הצגת עוד" not in page


def test_card_in_english_and_for_a_contact_without_events(ui: Browser, database: Database, workspace) -> None:  # type: ignore[no-untyped-def]
    quiet = add_contact(database, workspace, "quiet@example.com")
    assert "עדיין אין אירועים" in activity(ui, quiet)
    send(database, workspace, [{"type": "purchase", "contact": {"id": quiet}, "ts": ago(3),
                                "properties": {"order_id": "9", "total": 80}}])
    ui.post("/language", {"language": "en", "next": "/contacts"})
    page = activity(ui, quiet)
    assert "Activity" in page and "Timeline" in page and "Purchase" in page and "₪80.00" in page
    assert "New" in page and "Weak" in page  # joined today
    assert "Stage changed" in page and "— → New" in page  # arrows point the way the text reads
    assert "No campaigns sent yet." in page and "Not scored yet" in page
    full = ui.get(f"/contacts/{quiet}/activity")  # without JavaScript: a page of its own
    assert '<html lang="en" dir="ltr">' in full.text and "₪80.00" in full.text


def test_timeline_pages_fifty_at_a_time_with_more(ui: Browser, database: Database, workspace) -> None:  # type: ignore[no-untyped-def]
    visitor = add_contact(database, workspace, "browser@example.com")
    send(database, workspace, [{"type": "page_view", "contact": {"id": visitor}, "ts": ago(2 - n / 100),
                                "properties": {"url": f"https://shop.example/page-{n:02d}/"}} for n in range(55)])
    first = activity(ui, visitor)
    assert first.count('class="timeline-item"') == 50  # the stage change and page-54 .. page-06
    assert "page-54/" in first and "page-06/" in first and "page-05/" not in first
    more = re.search(r'hx-get="(/contacts/\d+/timeline\?cursor=[^"]+)"', first).group(1)  # type: ignore[union-attr]
    second = ui.get(unescape(more), headers=PARTIAL)
    assert second.status_code == 200 and "<html" not in second.text
    assert second.text.count('class="timeline-item"') == 6
    assert "page-05/" in second.text and "page-00/" in second.text and "page-06/" not in second.text
    assert "timeline-more" not in second.text
    # Without JavaScript the button is a link to the activity page at that cursor.
    assert ui.get(unescape(more)).headers["location"].startswith(f"/contacts/{visitor}/activity?cursor=")


def test_another_workspaces_contact_has_no_activity(ui: Browser, database: Database, other_workspace) -> None:  # type: ignore[no-untyped-def]
    theirs = add_contact(database, other_workspace, "secret@example.com")
    send(database, other_workspace, [{"type": "purchase", "contact": {"id": theirs}, "properties": {"order_id": "1"}}])
    for url in (f"/contacts/{theirs}/activity", f"/contacts/{theirs}/timeline?cursor="):
        page = ui.get(url, headers=PARTIAL)
        assert page.status_code == 404 and "secret@example.com" not in page.text


@pytest.fixture
def mixed(database: Database, workspace, other_workspace, dana: int) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Dana's events, another contact's and a visitor's in this workspace, and another workspace's."""
    avi = add_contact(database, workspace, "avi@example.com")
    send(database, workspace, [
        # 23:30 on 1 March and 00:30 on 2 March in Jerusalem: both 1 March in UTC.
        {"type": "page_view", "contact": {"id": avi}, "ts": "2021-03-01T23:30:00+02:00",
         "properties": {"url": "https://shop.example/first-march"}},
        {"type": "page_view", "contact": {"id": avi}, "ts": "2021-03-02T00:30:00+02:00",
         "properties": {"url": "https://shop.example/second-march"}},
        {"type": "email_opened", "contact": {"id": avi}, "properties": {"campaign_id": "summer"}},
        {"type": "page_view", "anonymous_id": "v-7f3a", "properties": {"url": "https://shop.example/anon"}},
    ])
    theirs = add_contact(database, other_workspace, "secret@example.com")
    send(database, other_workspace, [
        {"type": "purchase", "contact": {"id": theirs}, "properties": {"order_id": "SECRET-1", "total": 5}},
        {"type": "email_opened", "contact": {"id": theirs}, "properties": {"campaign_id": "spring-sale"}},
        {"type": "custom:quiz_done", "contact": {"id": theirs}, "properties": {"secret": "SECRET-2"}},
    ])
    return {"dana": dana, "avi": avi, "theirs": theirs}


def rows(html: str) -> list[str]:
    body = html.split("<tbody>")[1].split("</tbody>")[0]
    return [r for r in re.findall(r"<tr>(.*?)</tr>", body, re.S) if 'class="empty"' not in r]


def test_explorer_filters_by_type_time_property_and_contact(ui: Browser, mixed: dict[str, int]) -> None:
    page = ui.get("/events")
    assert page.status_code == 200 and '<html lang="he" dir="rtl">' in page.text
    assert '<a href="/events" aria-current="page">אירועים</a>' in page.text
    everything = rows(page.text)
    assert len(everything) == 14  # Dana's 8 and her stage change, Avi's 3 and his, the visitor's
    assert "SECRET" not in page.text
    assert any("מבקר" in r and "v-7f3a" in r for r in everything)

    purchases = rows(ui.get("/events?type=purchase").text)
    assert len(purchases) == 2 and all("רכישה" in r for r in purchases)
    assert "A-1002" in purchases[0] and "A-1001" in purchases[1]
    assert f'href="/contacts/{mixed["dana"]}"' in purchases[0]

    custom = rows(ui.get("/events?custom=quiz_done").text)
    assert len(custom) == 1 and "quiz_done" in custom[0] and "score" in custom[0]
    assert rows(ui.get("/events?type=purchase&custom=custom:quiz_done").text) == custom  # free text wins

    second_march = rows(ui.get("/events?since=2021-03-02&until=2021-03-02").text)
    assert len(second_march) == 1 and "second-march" in second_march[0] and "02/03/2021 00:30" in second_march[0]
    first_march = rows(ui.get("/events?since=2021-03-01&until=2021-03-01").text)
    assert len(first_march) == 1 and "first-march" in first_march[0] and "01/03/2021 23:30" in first_march[0]
    assert len(rows(ui.get("/events?until=2021-03-02").text)) == 2

    spring = rows(ui.get("/events?property=campaign_id%3Dspring-sale").text)
    assert len(spring) == 3 and all("spring-sale" in r for r in spring)  # sent, opened, clicked: Dana's only
    assert len(rows(ui.get("/events?property=campaign_id%3Dsummer&type=email_opened").text)) == 1

    avis = rows(ui.get(f"/events?contact_id={mixed['avi']}").text)
    assert len(avis) == 4 and all(f'href="/contacts/{mixed["avi"]}"' in r for r in avis)


def test_explorer_never_shows_another_workspace_and_says_what_is_wrong(ui: Browser, mixed: dict[str, int]) -> None:
    theirs = ui.get(f"/events?contact_id={mixed['theirs']}")
    assert theirs.status_code == 200 and rows(theirs.text) == [] and "SECRET" not in theirs.text
    assert "אין איש קשר עם המספר הזה בסביבת העבודה" in theirs.text
    for query, problem in (("property=campaign_id", "יש לכתוב name=value"), ("contact_id=abc", "יש להזין מספר איש קשר"),
                           ("since=yesterday", "יש להזין תאריך"), ("until=9999-12-31", "יש להזין תאריך"),
                           ("since=0001-01-01", "יש להזין תאריך")):
        page = ui.get(f"/events?{query}")
        assert page.status_code == 200 and problem in page.text and rows(page.text) == [], query
    assert rows(ui.get("/events?custom=quiz_done&property=secret%3DSECRET-2").text) == []
    assert rows(ui.get("/events?type=purchase&property=order_id%3DSECRET-1").text) == []


def test_explorer_refreshes_with_htmx_and_pages_by_keyset(
    ui: Browser, mixed: dict[str, int], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kesher.events import views

    partial = ui.get("/events?type=page_view", headers={**PARTIAL, "HX-Target": "results"})
    assert partial.status_code == 200 and partial.text.lstrip().startswith('<section id="results"')
    assert len(rows(partial.text)) == 4 and "HX-Request" in partial.headers["vary"]

    monkeypatch.setattr(views, "PAGE_SIZE", 3)
    first = ui.get("/events?type=page_view").text
    # Newest first by when each happened: now, a day ago, then March 2021 (late evening, then earlier).
    assert [("anon" in r, "vitamins" in r, "second-march" in r) for r in rows(first)] == [
        (True, False, False), (False, True, False), (False, False, True)]
    assert 'rel="prev"' not in first
    second = ui.get(links(first, "next")).text
    assert len(rows(second)) == 1 and "shop.example/first-march" in second and 'rel="next"' not in second
    assert "type=page_view" in links(first, "next")
    back = ui.get(links(second, "prev")).text
    assert rows(back) == rows(first) and 'rel="prev"' not in back
    assert rows(ui.get("/events?type=page_view&cursor=not-a-cursor").text) == rows(first)


def test_explorer_in_english(ui: Browser, mixed: dict[str, int]) -> None:
    ui.post("/language", {"language": "en", "next": "/events"})
    page = ui.get("/events?type=stage_changed").text
    assert '<html lang="en" dir="ltr">' in page and ">Events</a>" in page and "Event type" in page
    assert '<option value="purchase">Purchase</option>' in page
    assert len(rows(page)) == 2 and all("Stage changed" in r for r in rows(page))
    assert "— → Active" in page and "— → Dormant" in page  # Avi last visited in 2021
    assert "Enter a contact number" in ui.get("/events?contact_id=x").text


def test_explorer_names_contacts(ui: Browser, database: Database, workspace) -> None:  # type: ignore[no-untyped-def]
    named = add_contact(database, workspace, "rivka@example.com")
    unnamed = add_contact(database, workspace, "no.name@example.com")
    with database.session() as s:
        contacts.update_contact(s, workspace.id, named, {"first_name": "רבקה", "last_name": "לוי"})
    send(database, workspace, [
        {"type": "custom:quiz_done", "contact": {"id": named}, "properties": {}},
        {"type": "custom:quiz_done", "contact": {"id": unnamed}, "properties": {}},
    ])
    found = rows(ui.get("/events?custom=quiz_done").text)
    assert any(f'href="/contacts/{named}"><bdi>רבקה לוי</bdi>' in r for r in found)
    assert any(f'href="/contacts/{unnamed}"><bdi>no.name@example.com</bdi>' in r for r in found)
