"""The public links of a message through HTTP: open pixel, click redirect, unsubscribe, preferences.

Each test sends a message by writing its outbox row as the sender does, then follows the links
Kesher would have put in it, with no login and no cookies (SQLite and PostgreSQL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from kesher.accounts.models import Workspace
from kesher.channels.models import OutboxMessage
from kesher.contacts import groups
from kesher.contacts import service as contacts
from kesher.contacts.models import Consent, ListMembership
from kesher.db import Database
from kesher.db.base import utcnow
from kesher.events.models import Event
from kesher.messages import preferences
from kesher.messages.public import Fetcher, who_fetched
from kesher.messages.tracking import Tracking
from kesher.policy.models import ContactPreference

LINKS = Tracking("http://testserver", "test-secret")  # the `app` fixture's secret
FORGER = Tracking("http://testserver", "a-guess")
SHOP = "https://shop.example.co.il/מבצע?ref=mail"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
MESSAGE_EVENTS = ("email_opened", "email_clicked", "unsubscribed")


@dataclass
class Sent:
    message_id: int
    contact_id: int
    workspace_id: int


def send(database: Database, workspace: Workspace, *, email: str = "dana@example.co.il", language: str = "he",
         consent: dict[str, str] | None = None, ago: timedelta = timedelta(hours=1), **fields: Any) -> Sent:
    """A contact, and an email of campaign 42 sent to them `ago`."""
    with database.session() as s:
        contact_id = contacts.save_contact(s, workspace.id, {
            "email": email, "first_name": "דנה", "language": language, "consent": consent or {"email": "granted"},
            **fields}).contact_id
        assert contact_id is not None
        row = OutboxMessage(workspace_id=workspace.id, key=f"campaign:42:{contact_id}", channel="email",
                            campaign_id=42, variant="A", contact_id=contact_id, address=email, status="sent",
                            sent_at=utcnow() - ago)
        s.add(row)
        s.flush()
        row.message_id = f"<kesher.{row.id}@shop.example.co.il>"
        return Sent(row.id, contact_id, workspace.id)


def events(database: Database, workspace_id: int) -> list[Event]:
    with database.session() as s:
        return list(s.scalars(select(Event).where(Event.workspace_id == workspace_id, Event.type.in_(MESSAGE_EVENTS))
                              .order_by(Event.id)))


def consent(database: Database, contact_id: int, channel: str = "email") -> Consent | None:
    with database.session() as s:
        return s.get(Consent, (contact_id, channel))


def path(url: str) -> str:
    return url.removeprefix("http://testserver")


@pytest.fixture
def client(app) -> TestClient:  # type: ignore[no-untyped-def]
    with TestClient(app, follow_redirects=False, headers={"User-Agent": BROWSER}) as client:
        yield client


# Clicks -----------------------------------------------------------------------------------------


def test_a_click_redirects_to_its_own_url_and_records_one_event(client, database, workspace) -> None:  # type: ignore[no-untyped-def]
    sent = send(database, workspace)
    answer = client.get(path(LINKS.click_url(sent.message_id, SHOP)))
    assert answer.status_code == 302
    assert answer.headers["location"] == "https://shop.example.co.il/%D7%9E%D7%91%D7%A6%D7%A2?ref=mail"
    assert "set-cookie" not in answer.headers and answer.headers["cache-control"].startswith("no-store")
    [clicked] = events(database, workspace.id)
    assert (clicked.type, clicked.contact_id, clicked.campaign_id, clicked.source) == (
        "email_clicked", sent.contact_id, "42", "email")
    assert clicked.properties == {"url": SHOP, "campaign_id": "42",
                                  "message_id": f"<kesher.{sent.message_id}@shop.example.co.il>"}


def test_a_hebrew_domain_is_redirected_to_in_the_form_browsers_take(client, database, workspace) -> None:  # type: ignore[no-untyped-def]
    sent = send(database, workspace)
    answer = client.get(path(LINKS.click_url(sent.message_id, "https://חנות.קום/מבצע?מידה=L#תגובות")))
    assert answer.headers["location"] == ("https://xn--9dbd1a4b.xn--9dbq2a/%D7%9E%D7%91%D7%A6%D7%A2"
                                          "?%D7%9E%D7%99%D7%93%D7%94=L#%D7%AA%D7%92%D7%95%D7%91%D7%95%D7%AA")
    assert events(database, workspace.id)[0].properties["url"] == "https://חנות.קום/מבצע?מידה=L#תגובות"


def test_a_bad_click_token_is_a_404_page_never_a_redirect(client, database, workspace) -> None:  # type: ignore[no-untyped-def]
    sent = send(database, workspace)
    good = path(LINKS.click_url(sent.message_id, SHOP))
    evil = path(LINKS.click_url(sent.message_id, "https://evil.example/login"))
    for bad in (good[:27] + evil[27:],  # the shop link's signature on another address
                path(FORGER.click_url(sent.message_id, "https://evil.example/login")), good[:-3], "/c/nonsense"):
        answer = client.get(bad)
        assert answer.status_code == 404 and "location" not in answer.headers
        assert 'dir="rtl"' in answer.text and "<form" not in answer.text
    assert events(database, workspace.id) == []


def test_a_scanners_click_is_recorded_as_a_machines(client, database, workspace) -> None:  # type: ignore[no-untyped-def]
    fresh = send(database, workspace, ago=timedelta(seconds=0))
    assert client.get(path(LINKS.click_url(fresh.message_id, SHOP))).status_code == 302
    older = send(database, workspace, email="ron@example.co.il")
    scanner = {"User-Agent": "Mozilla/5.0 (compatible; Barracuda Sentinel link protection)"}
    assert client.get(path(LINKS.click_url(older.message_id, SHOP)), headers=scanner).status_code == 302
    assert [(e.contact_id, e.properties["machine"], e.properties["signal"]) for e in events(database, workspace.id)] == [
        (fresh.contact_id, True, "too_soon"), (older.contact_id, True, "scanner")]


# Opens ------------------------------------------------------------------------------------------


def test_the_pixel_records_an_open(client, database, workspace) -> None:  # type: ignore[no-untyped-def]
    sent = send(database, workspace)
    answer = client.get(path(LINKS.open_url(sent.message_id)))
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/gif"
    assert answer.content.startswith(b"GIF89a") and len(answer.content) < 100
    assert "no-store" in answer.headers["cache-control"]
    [opened] = events(database, workspace.id)
    assert (opened.type, opened.contact_id, opened.campaign_id) == ("email_opened", sent.contact_id, "42")
    assert "machine" not in opened.properties

    forged = path(FORGER.open_url(sent.message_id))
    assert client.get(forged).status_code == 404
    assert len(events(database, workspace.id)) == 1


def test_apple_privacy_protection_is_a_machine_open(app, database, workspace) -> None:  # type: ignore[no-untyped-def]
    sent = send(database, workspace)
    with TestClient(app, client=("17.58.101.7", 50000), headers={"User-Agent": "Mozilla/5.0"}) as apple:
        assert apple.get(path(LINKS.open_url(sent.message_id))).status_code == 200
    [opened] = events(database, workspace.id)
    assert opened.properties["machine"] is True and opened.properties["signal"] == "apple_mpp"


@pytest.mark.parametrize(("agent", "ip", "seconds", "expected"), [
    (BROWSER, "84.229.1.1", 3600, Fetcher()),
    ("Mozilla/5.0", "84.229.1.1", 3600, Fetcher(True, "apple_mpp")),
    (BROWSER, "17.1.2.3", 3600, Fetcher(True, "apple_mpp")),
    ("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)", "66.249.84.1",
     3600, Fetcher(False, "gmail_proxy")),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", None, 3600, Fetcher(True, "scanner")),
    ("python-requests/2.32", "10.0.0.1", None, Fetcher(True, "scanner")),
    ("Mozilla/5.0 (Linux; Android 12; Cubot X30) Chrome/120.0 Mobile Safari/537.36", "2a00:a040::1", 3600, Fetcher()),
    (BROWSER, "not an address", 1, Fetcher(True, "too_soon")),
])
def test_machines_are_told_from_people(agent: str, ip: str | None, seconds: int | None, expected: Fetcher) -> None:
    since = timedelta(seconds=seconds) if seconds is not None else None
    assert who_fetched(agent, ip, since) == expected


# Unsubscribe ------------------------------------------------------------------------------------


def test_one_click_unsubscribes_without_cookies_and_only_once(client, database, workspace) -> None:  # type: ignore[no-untyped-def]
    sent = send(database, workspace)
    target = path(LINKS.unsubscribe_url(sent.message_id))
    # RFC 8058: a mail provider POSTs this body, form-encoded or multipart, with no cookie.
    first = client.post(target, data={"List-Unsubscribe": "One-Click"})
    again = client.post(target, files={"List-Unsubscribe": (None, "One-Click")})
    assert first.status_code == again.status_code == 200
    assert "set-cookie" not in first.headers and not client.cookies
    stored = consent(database, sent.contact_id)
    assert stored is not None and (stored.status, stored.source, stored.text_shown) == (
        "unsubscribed", "unsubscribe_link", "List-Unsubscribe=One-Click")
    [event] = events(database, workspace.id)
    assert (event.type, event.contact_id, event.properties["channel"], event.campaign_id) == (
        "unsubscribed", sent.contact_id, "email", "42")


def test_the_unsubscribe_page_asks_first_in_the_contacts_language(client, database, workspace) -> None:  # type: ignore[no-untyped-def]
    hebrew = send(database, workspace)
    english = send(database, workspace, email="ron@example.com", language="en")
    page = client.get(path(LINKS.unsubscribe_url(hebrew.message_id)))
    assert page.status_code == 200 and '<html lang="he" dir="rtl">' in page.text
    assert workspace.name in page.text and "dana@example.co.il" in page.text
    assert 'class="mainnav"' not in page.text and "csrf" not in page.text and "set-cookie" not in page.headers
    prefs = re.search(r'href="(/p/[^"]+)"', page.text)
    assert prefs and prefs.group(1) == path(LINKS.preferences_url(hebrew.message_id))
    assert consent(database, hebrew.contact_id).status == "granted"  # type: ignore[union-attr] # a GET changes nothing

    page = client.get(path(LINKS.unsubscribe_url(english.message_id)))
    assert '<html lang="en" dir="ltr">' in page.text and "Yes, unsubscribe me" in page.text
    done = client.post(path(LINKS.unsubscribe_url(english.message_id)), data={"confirm": "yes"})
    assert done.status_code == 200 and "You are unsubscribed" in done.text and "<button" not in done.text
    assert consent(database, english.contact_id).status == "unsubscribed"  # type: ignore[union-attr]
    assert consent(database, hebrew.contact_id).status == "granted"  # type: ignore[union-attr]
    assert [e.contact_id for e in events(database, workspace.id)] == [english.contact_id]
    # Followed again, the link says so, and offers the way back.
    again = client.get(path(LINKS.unsubscribe_url(english.message_id)))
    assert "You are unsubscribed" in again.text and "/p/" in again.text


def test_forged_and_altered_tokens_change_nothing(client, database, workspace) -> None:  # type: ignore[no-untyped-def]
    sent = send(database, workspace)
    tokens = [path(t.unsubscribe_url(sent.message_id)) for t in (FORGER,)] + \
             [path(t.preferences_url(sent.message_id)) for t in (FORGER,)]
    unsubscribe, prefs = path(LINKS.unsubscribe_url(sent.message_id)), path(LINKS.preferences_url(sent.message_id))
    tokens += [unsubscribe[:-1] + ("A" if unsubscribe[-1] != "A" else "B"), prefs[:-2],
               "/u" + prefs[2:], "/p" + unsubscribe[2:]]  # a token of one kind used for the other
    for bad in tokens:
        assert client.get(bad).status_code == 404
        answer = client.post(bad, data={"List-Unsubscribe": "One-Click", "channel": [], "less_mail": "true"})
        assert answer.status_code == 404
    assert consent(database, sent.contact_id).status == "granted"  # type: ignore[union-attr]
    assert events(database, workspace.id) == []
    with database.session() as s:
        assert s.get(ContactPreference, sent.contact_id) is None


def test_a_token_reaches_only_its_own_messages_workspace(client, database, workspace, other_workspace) -> None:  # type: ignore[no-untyped-def]
    mine = send(database, workspace)
    theirs = send(database, other_workspace)  # the same address, a contact of another business
    with database.session() as s:
        their_list = groups.create(s, other_workspace.id, "list", "מבצעים")
        s.get_one(Workspace, workspace.id).settings = {"preferences": {"topic_lists": [their_list.id]}}
    page = client.get(path(LINKS.preferences_url(mine.message_id)))
    assert page.status_code == 200 and "מבצעים" not in page.text and other_workspace.name not in page.text
    refused = client.post(path(LINKS.preferences_url(mine.message_id)), data={"topic": [their_list.id]})
    assert refused.status_code == 422 and refused.json()["field"] == "topics"
    assert consent(database, mine.contact_id).status == "granted"  # type: ignore[union-attr] # nothing partial kept
    assert client.post(path(LINKS.unsubscribe_url(mine.message_id)), data={"confirm": "yes"}).status_code == 200
    assert consent(database, mine.contact_id).status == "unsubscribed"  # type: ignore[union-attr]
    assert consent(database, theirs.contact_id).status == "granted"  # type: ignore[union-attr]
    assert events(database, other_workspace.id) == []
    with database.session() as s:
        assert s.scalars(select(ListMembership).where(ListMembership.list_id == their_list.id)).all() == []


def test_a_message_no_longer_kept_is_a_404_page(client, database, workspace) -> None:  # type: ignore[no-untyped-def]
    sent = send(database, workspace)
    with database.session() as s:
        s.delete(s.get_one(OutboxMessage, sent.message_id))
    assert client.get(path(LINKS.unsubscribe_url(sent.message_id))).status_code == 404
    assert client.get(path(LINKS.open_url(sent.message_id))).status_code == 200  # the pixel never breaks a mail
    assert client.get(path(LINKS.click_url(sent.message_id, SHOP))).status_code == 302
    assert events(database, workspace.id) == []


# Preferences ------------------------------------------------------------------------------------


def test_the_preference_page_saves_channels_topics_and_less_mail(client, database, workspace) -> None:  # type: ignore[no-untyped-def]
    sent = send(database, workspace, phone="050-1234567", consent={"email": "granted", "sms": "granted"})
    with database.session() as s:
        news, deals, vip = (groups.create(s, workspace.id, "list", name) for name in ("חדשות", "מבצעים", "VIP"))
        s.get_one(Workspace, workspace.id).settings = {"preferences": {"topic_lists": [news.id, deals.id]}}
        for group in (news, vip):
            groups.add_contacts(s, workspace.id, "list", group.id, [sent.contact_id])
    url = path(LINKS.preferences_url(sent.message_id))
    page = client.get(url)
    assert page.status_code == 200 and '<html lang="he" dir="rtl">' in page.text
    assert re.search(rf'name="topic" value="{news.id}" checked', page.text)
    assert re.search(rf'name="topic" value="{deals.id}">', page.text) and "VIP" not in page.text
    assert 'value="email" checked' in page.text and 'value="sms" checked' in page.text
    assert 'value="whatsapp"' not in page.text  # never given, so it cannot be granted here

    saved = client.post(url, data={"channel": ["email", "whatsapp"], "topic": [deals.id], "less_mail": "true"})
    assert saved.status_code == 303 and saved.headers["location"] == f"{url}?saved=true"
    assert "alert success" in client.get(saved.headers["location"]).text
    sms = consent(database, sent.contact_id, "sms")
    assert sms is not None and (sms.status, sms.source) == ("unsubscribed", "preference_page")
    assert consent(database, sent.contact_id, "email").status == "granted"  # type: ignore[union-attr]
    assert consent(database, sent.contact_id, "whatsapp") is None
    with database.session() as s:
        lists = set(s.scalars(select(ListMembership.list_id).where(ListMembership.contact_id == sent.contact_id)))
        assert lists == {deals.id, vip.id}  # left news, joined deals; a list that is no topic is untouched
        assert preferences.get_preferences(s, sent.contact_id) == preferences.Preferences(True, frozenset({deals.id}))
        assert preferences.wants_less(s, [sent.contact_id, sent.contact_id + 1]) == {sent.contact_id}
    assert [(e.type, e.properties["channel"]) for e in events(database, workspace.id)] == [("unsubscribed", "sms")]

    # Unticking everything: the email goes too, and "less mail" is taken back.
    client.post(url, data={})
    assert consent(database, sent.contact_id, "email").status == "unsubscribed"  # type: ignore[union-attr]
    with database.session() as s:
        assert preferences.wants_less(s, [sent.contact_id]) == set()


def test_lists_offered_through_the_api_are_the_topics_of_the_preference_page(client, api, database, workspace) -> None:  # type: ignore[no-untyped-def]
    sent = send(database, workspace)
    news = api.post("/lists", json={"name": "חדשות", "description": "פעם בשבוע", "topic": True}).json()
    deals = api.post("/lists", json={"name": "מבצעים"}).json()
    url = path(LINKS.preferences_url(sent.message_id))
    page = client.get(url).text
    assert f'name="topic" value="{news["id"]}">' in page and "פעם בשבוע" in page and "מבצעים" not in page

    assert api.patch(f"/lists/{deals['id']}", json={"topic": True}).status_code == 200
    page = client.get(url).text
    assert page.index(f'value="{news["id"]}"') < page.index(f'value="{deals["id"]}"')  # in the order offered
    assert client.post(url, data={"channel": ["email"], "topic": [deals["id"]]}).status_code == 303
    assert api.get(f"/lists/{deals['id']}").json()["member_count"] == 1

    assert api.delete(f"/lists/{news['id']}").status_code == 204
    assert api.patch(f"/lists/{deals['id']}", json={"topic": False}).status_code == 200
    assert 'name="topic"' not in client.get(url).text
    refused = client.post(url, data={"channel": ["email"], "topic": [deals["id"]]})
    assert refused.status_code == 422 and refused.json()["field"] == "topics"


def test_email_can_be_taken_back_up_through_the_link(client, database, workspace) -> None:  # type: ignore[no-untyped-def]
    sent = send(database, workspace, language="en")
    client.post(path(LINKS.unsubscribe_url(sent.message_id)), data={"List-Unsubscribe": "One-Click"})
    url = path(LINKS.preferences_url(sent.message_id))
    page = client.get(url)
    assert re.search(r'name="channel" value="email">', page.text)  # offered, unticked
    client.post(url, data={"channel": "email"})
    back = consent(database, sent.contact_id)
    assert back is not None and (back.status, back.source) == ("granted", "preference_page")


# In a real browser ------------------------------------------------------------------------------


@pytest.mark.browser
def test_unsubscribing_in_chromium(chromium, live_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect, sync_playwright

    from kesher.accounts import service as accounts
    from kesher.config import Settings
    from kesher.db.migrate import upgrade
    from kesher.web.app import create_app

    database = Database(f"sqlite:///{tmp_path / 'kesher.db'}")
    upgrade(database.engine)
    with database.session() as s:
        workspace = accounts.create_workspace(s, "חנות הטבע")
    sent = send(database, workspace)
    settings = Settings(database_url=database.url, queue="immediate", import_dir=str(tmp_path), secret_key="browser")
    base = live_server(create_app(settings, database))
    with sync_playwright() as p:
        browser = p.chromium.launch(**chromium)
        page = browser.new_context(locale="he-IL").new_page()
        page.set_default_timeout(15_000)
        page.goto(Tracking(base, "browser").unsubscribe_url(sent.message_id))
        expect(page.locator("html")).to_have_attribute("dir", "rtl")
        expect(page.get_by_text("חנות הטבע", exact=True)).to_be_visible()
        page.locator("button[type=submit]").click()
        expect(page.locator(".alert.success")).to_be_visible()
        expect(page.locator("button[type=submit]")).to_have_count(0)
        assert not page.context.cookies()
        browser.close()
    assert consent(database, sent.contact_id).status == "unsubscribed"  # type: ignore[union-attr]
    assert [e.type for e in events(database, workspace.id)] == ["unsubscribed"]
    database.dispose()
