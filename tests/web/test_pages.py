"""The UI pages through HTTP, as a logged-in marketer sees them (SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import re
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from kesher.accounts import service as accounts
from kesher.accounts.models import User, Workspace
from kesher.contacts import fields as field_service
from kesher.contacts import groups
from kesher.contacts import service as contacts
from kesher.db import Database
from tests.browser import TOKEN, Browser

PASSWORD = "correct horse battery"
SRC = Path(__file__).resolve().parents[2] / "src" / "kesher"


def token(html: str) -> str:
    match = TOKEN.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


@pytest.fixture
def email(database: Database, workspace) -> str:  # type: ignore[no-untyped-def]
    address = f"marketer-{uuid.uuid4().hex[:8]}@example.com"
    with database.session() as s:
        accounts.create_user(s, address, PASSWORD, name="Noa", workspace=s.merge(workspace))
    return address


@pytest.fixture
def client(app) -> TestClient:  # type: ignore[no-untyped-def]
    with TestClient(app, follow_redirects=False) as client:
        yield client


@pytest.fixture
def ui(client: TestClient, email: str) -> Browser:
    browser = Browser(client)
    browser.get("/login")
    response = browser.post("/login", {"email": email, "password": PASSWORD, "next": "/contacts"})
    assert response.status_code == 303 and response.headers["location"] == "/contacts"
    browser.get("/contacts")  # logging in starts a new session, with a new token
    return browser


def add_contact(database: Database, workspace, **data) -> int:  # type: ignore[no-untyped-def]
    with database.session() as s:
        return contacts.save_contact(s, workspace.id, data, actor="test").contact_id  # type: ignore[return-value]


def test_login_then_contacts_in_hebrew_rtl_then_english(client: TestClient, email: str) -> None:
    browser = Browser(client)
    assert client.get("/contacts").headers["location"].startswith("/login")
    page = browser.get("/login")
    assert '<html lang="he" dir="rtl">' in page.text
    wrong = browser.post("/login", {"email": email, "password": "not the password"})
    assert wrong.status_code == 401 and "אימייל או סיסמה שגויים" in wrong.text
    assert browser.post("/login", {"email": email, "password": PASSWORD}).headers["location"] == "/contacts"
    assert client.get("/").headers["location"] == "/contacts"

    page = browser.get("/contacts")
    assert page.status_code == 200
    assert '<html lang="he" dir="rtl">' in page.text and "אנשי קשר" in page.text
    assert browser.post("/language", {"language": "en", "next": "/contacts"}).status_code == 303
    page = browser.get("/contacts")
    assert '<html lang="en" dir="ltr">' in page.text and ">Contacts<" in page.text and "אנשי קשר" not in page.text

    assert browser.post("/logout").headers["location"] == "/login"
    assert client.get("/contacts").status_code == 303


def test_post_without_csrf_token_is_refused(ui: Browser) -> None:
    refused = ui.client.post("/lists", data={"name": "Sneaky"})
    assert refused.status_code == 403
    assert ui.client.post("/lists", data={"name": "Sneaky", "csrf_token": "forged"}).status_code == 403
    assert "Sneaky" not in ui.get("/lists").text
    assert ui.post("/lists", {"name": "Honest"}).status_code == 303
    assert "Honest" in ui.get("/lists").text


def test_search_filter_and_columns(ui: Browser, database: Database, workspace) -> None:  # type: ignore[no-untyped-def]
    dana = add_contact(database, workspace, first_name="דנה", last_name="כהן", phone="050-1234567", city="חיפה")
    add_contact(database, workspace, first_name="Avi", email="avi@example.com", city="אילת")
    with database.session() as s:
        vip = groups.create(s, workspace.id, "list", "VIP")
        groups.add_contacts(s, workspace.id, "list", vip.id, [dana])
        field_service.create_field(s, workspace.id, "shoe_size", "Shoe size", "number")
        contacts.update_contact(s, workspace.id, dana, {"fields": {"shoe_size": "38"}})

    page = ui.get("/contacts")
    assert "2 אנשי קשר" in page.text and "דנה" in page.text and "avi@example.com" in page.text

    partial = ui.get("/contacts?q=050-123", headers={"HX-Request": "true", "HX-Target": "results"})
    assert partial.text.lstrip().startswith("<section id=\"results\"") and "<html" not in partial.text
    assert "דנה" in partial.text and "Avi" not in partial.text and "איש קשר אחד" in partial.text

    assert "avi@example.com" in ui.get("/contacts?q=avi").text
    by_list = ui.get(f"/contacts?list_id={vip.id}").text
    assert "דנה" in by_list and "avi@example.com" not in by_list
    assert "Avi" in ui.get("/contacts?city=אילת").text and "דנה" not in ui.get("/contacts?city=אילת").text

    assert ui.post("/contacts/columns", {"columns": ["first_name", "fields.shoe_size"], "next": "/contacts"}).status_code == 303
    page = ui.get("/contacts")
    assert "Shoe size" in page.text and ">38<" in page.text and "avi@example.com" not in page.text
    export = ui.client.get(f"/contacts/export.csv?list_id={vip.id}")
    assert export.status_code == 200 and export.content.startswith(b"\xef\xbb\xbf")
    assert export.content.decode("utf-8-sig").splitlines() == ["שם פרטי,Shoe size", "דנה,38"]
    xlsx = ui.client.get("/contacts/export.xlsx")
    assert xlsx.status_code == 200 and xlsx.content.startswith(b"PK")


def test_keyset_pages_go_forward_and_back(ui: Browser, database: Database, workspace, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from kesher.contacts import views

    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    for n in range(5):
        add_contact(database, workspace, email=f"p{n}@example.com")
    first = ui.get("/contacts").text
    assert "p4@example.com" in first and "p3@example.com" in first and 'rel="prev"' not in first
    next_url = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    second = ui.get(next_url).text
    assert "p2@example.com" in second and "p1@example.com" in second and "p4@example.com" not in second
    third = ui.get(re.search(r'rel="next" href="([^"]+)"', second).group(1).replace("&amp;", "&")).text  # type: ignore[union-attr]
    assert "p0@example.com" in third and 'rel="next"' not in third
    back = ui.get(re.search(r'rel="prev" href="([^"]+)"', third).group(1).replace("&amp;", "&")).text  # type: ignore[union-attr]
    assert "p2@example.com" in back and "p1@example.com" in back
    home = ui.get(re.search(r'rel="prev" href="([^"]+)"', back).group(1).replace("&amp;", "&")).text  # type: ignore[union-attr]
    assert "p4@example.com" in home and 'rel="prev"' not in home


def test_card_shows_everything_and_edit_marks_the_wrong_field(
    ui: Browser, database: Database, workspace,  # type: ignore[no-untyped-def]
) -> None:
    contact_id = add_contact(database, workspace, first_name="דנה", email="dana@example.com", phone="0501234567",
                             consent={"email": "granted"})
    card = ui.get(f"/contacts/{contact_id}")
    assert card.status_code == 200
    assert "dana@example.com" in card.text and "+972501234567" in card.text and "ניתנה" in card.text
    assert "איש הקשר נוצר" in card.text  # the audit trail

    bad = ui.post(f"/contacts/{contact_id}", {"first_name": "דנה", "email": "dana@example.com", "phone": "12",
                                              "language": "he"})
    assert bad.status_code == 422
    phone_field = re.search(r'<input id="f-phone".*?</div>', bad.text, re.S).group(0)  # type: ignore[union-attr]
    assert 'aria-invalid="true"' in phone_field and 'id="err-phone"' in phone_field and "מספר טלפון" in phone_field
    assert 'value="12"' in phone_field
    with database.session() as s:
        assert contacts.get_contact(s, workspace.id, contact_id).phone == "+972501234567"

    good = ui.post(f"/contacts/{contact_id}", {"first_name": "דנה", "last_name": "לוי", "email": "dana@example.com",
                                               "phone": "052-7654321", "language": "he", "city": "חיפה"})
    assert good.status_code == 303
    card = ui.get(good.headers["location"])
    assert "השינויים נשמרו" in card.text and "+972527654321" in card.text and "איש הקשר עודכן" in card.text

    added = ui.post(f"/contacts/{contact_id}/tags", {"name": "לקוחה חוזרת"}, headers={"HX-Request": "true"})
    assert added.status_code == 200 and 'id="groups"' in added.text and "לקוחה חוזרת" in added.text
    assert "<html" not in added.text
    with database.session() as s:
        tag = contacts.contact_detail(s, workspace.id, contact_id).tags[0]
    removed = ui.post(f"/contacts/{contact_id}/tags/{tag.id}/remove", headers={"HX-Request": "true"})
    assert "לקוחה חוזרת" not in removed.text.split("<datalist")[0]

    assert ui.post(f"/contacts/{contact_id}/consent", {"channel": "sms", "status": "denied"}).status_code == 303
    assert "סורבה" in ui.get(f"/contacts/{contact_id}").text


def test_new_contact_form_marks_problems_and_saves_nothing_until_right(
    ui: Browser, database: Database, workspace,  # type: ignore[no-untyped-def]
) -> None:
    ui.get("/contacts/new")
    bad = ui.post("/contacts/new", {"first_name": "שירה", "email": "not-an-email", "language": "he"})
    assert bad.status_code == 422 and 'id="err-email"' in bad.text and 'value="שירה"' in bad.text
    nobody = ui.post("/contacts/new", {"first_name": "שירה", "language": "he"})
    assert nobody.status_code == 422 and "נדרשים אימייל, טלפון או מזהה חיצוני" in nobody.text
    with database.session() as s:
        assert contacts.count(s, workspace.id, contacts.ContactFilter()) == 0
    created = ui.post("/contacts/new", {"first_name": "שירה", "email": "shira@example.com", "language": "he"})
    assert created.status_code == 303
    assert "shira@example.com" in ui.get(created.headers["location"]).text


def test_another_workspaces_contact_is_a_404_page(
    ui: Browser, database: Database, other_workspace,  # type: ignore[no-untyped-def]
) -> None:
    theirs = add_contact(database, other_workspace, email="secret@example.com")
    page = ui.get(f"/contacts/{theirs}")
    assert page.status_code == 404 and "text/html" in page.headers["content-type"]
    assert "לא נמצא" in page.text and "secret@example.com" not in page.text
    assert ui.post(f"/contacts/{theirs}", {"email": "stolen@example.com"}).status_code == 404
    assert ui.post(f"/contacts/{theirs}/tags", {"name": "x"}).status_code == 404


def test_workspace_switch_shows_only_that_workspaces_contacts(
    ui: Browser, database: Database, email: str, other_workspace,  # type: ignore[no-untyped-def]
) -> None:
    add_contact(database, other_workspace, email="elsewhere@example.com")
    assert "elsewhere@example.com" not in ui.get("/contacts").text
    with database.session() as s:
        user = s.scalars(select(User).where(User.email == email)).one()
        accounts.add_member(s, user, s.merge(other_workspace))
    page = ui.get("/contacts")
    assert 'name="workspace_id"' in page.text
    assert ui.post("/workspace", {"workspace_id": str(other_workspace.id)}).status_code == 303
    assert "elsewhere@example.com" in ui.get("/contacts").text


def test_lists_and_tags_pages(ui: Browser, database: Database, workspace) -> None:  # type: ignore[no-untyped-def]
    contact_id = add_contact(database, workspace, email="member@example.com")
    assert ui.post("/lists", {"name": "ניוזלטר"}).status_code == 303
    assert ui.post("/lists", {"name": "ניוזלטר"}).status_code == 409
    with database.session() as s:
        (newsletter, _count), = groups.all_with_counts(s, workspace.id, "list")
        groups.add_contacts(s, workspace.id, "list", newsletter.id, [contact_id])
    page = ui.get("/lists").text
    assert f'href="/contacts?list_id={newsletter.id}"' in page and ">1<" in page
    assert ui.post(f"/lists/{newsletter.id}/rename", {"name": "עדכונים"}).status_code == 303
    assert "עדכונים" in ui.get("/lists").text
    assert ui.post(f"/lists/{newsletter.id}/delete").status_code == 303
    assert "עדכונים" not in ui.get("/lists").text

    assert ui.post("/tags", {"name": "VIP"}).status_code == 303
    assert "VIP" in ui.get("/tags").text and "VIP" not in ui.get("/lists").text


def test_lists_page_offers_lists_as_topics_of_the_preference_page(  # type: ignore[no-untyped-def]
    ui: Browser, database: Database, workspace, other_workspace,
) -> None:
    page = ui.get("/lists").text
    assert 'name="topic"' in page and "מוצעת כנושא בדף ההעדפות" in page
    assert ui.post("/lists", {"name": "חדשות", "topic": "true"}).status_code == 303
    assert ui.post("/lists", {"name": "מבצעים"}).status_code == 303
    with database.session() as s:
        news, deals = (g.id for g in sorted((g for g, _n in groups.all_with_counts(s, workspace.id, "list")),
                                            key=lambda g: g.id))
        assert groups.topic_ids(s.get_one(Workspace, workspace.id)) == [news]
        theirs = groups.create(s, other_workspace.id, "list", "Theirs").id
    page = ui.get("/lists").text
    assert page.count('class="badge status-granted">נושא<') == 1 and "דף ההעדפות" in page
    row = page.split(f'action="/lists/{news}/topic"')[1].split("</form>")[0]
    assert 'name="topic" value="false"' in row and "הסרה מדף ההעדפות" in row

    assert ui.post(f"/lists/{deals}/topic", {"topic": "true"}).status_code == 303
    assert ui.post(f"/lists/{news}/topic", {"topic": "false"}).status_code == 303
    with database.session() as s:
        assert groups.topic_ids(s.get_one(Workspace, workspace.id)) == [deals]
    row = ui.get("/lists").text.split(f'action="/lists/{news}/topic"')[1].split("</form>")[0]
    assert 'name="topic" value="true"' in row and "הוספה לדף ההעדפות" in row

    assert ui.post(f"/lists/{theirs}/topic", {"topic": "true"}).status_code == 404
    with database.session() as s:
        assert groups.topic_ids(s.get_one(Workspace, other_workspace.id)) == []
    assert "/topic" not in ui.get("/tags").text and 'name="topic"' not in ui.get("/tags").text

    assert ui.post("/language", {"language": "en", "next": "/lists"}).status_code == 303
    page = ui.get("/lists").text
    assert "Offered as a topic on the preference page" in page and ">Topic<" in page
    assert "Remove from the preference page" in page and "Add to the preference page" in page


def test_import_pages(ui: Browser, database: Database, workspace) -> None:  # type: ignore[no-untyped-def]
    assert "ייבוא חדש" in ui.get("/imports").text
    ui.get("/imports/new")
    data = "שם פרטי,טלפון,עיר\nדנה,050-1234567,חיפה\nרון,12,אילת\n".encode()
    started = ui.post("/imports", {"new_list": "יבוא ראשון"},
                      files={"file": ("אנשי קשר.csv", io.BytesIO(data), "text/csv")})
    assert started.status_code == 303, started.text
    page = ui.get(started.headers["location"])  # the test app's queue runs the import at once
    assert page.status_code == 200
    assert re.search(r'class="count-created">1<', page.text) and re.search(r'class="count-failed">1<', page.text)
    assert "12" in page.text.split("שורות עם שגיאות")[1]
    assert "hx-trigger=\"every 1s\"" not in page.text
    assert "דנה" in ui.get("/contacts").text
    assert "אנשי קשר.csv" in ui.get("/imports").text

    empty = ui.post("/imports", {}, files={"file": ("empty.csv", io.BytesIO(b""), "text/csv")})
    assert empty.status_code == 422 and "alert error" in empty.text


def test_a_user_of_no_workspace_is_told_so_at_login(client: TestClient, database: Database) -> None:
    with database.session() as s:
        accounts.create_user(s, "lonely@example.com", PASSWORD)
    browser = Browser(client)
    browser.get("/login")
    answer = browser.post("/login", {"email": "lonely@example.com", "password": PASSWORD})
    assert answer.status_code == 403 and "לאף סביבת עבודה" in answer.text
    assert browser.get("/contacts", follow_redirects=False).status_code == 303  # still not logged in
