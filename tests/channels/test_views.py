"""The sender identity and mailbox pages through HTTP as a logged-in marketer sees them (SQLite and
PostgreSQL)."""

from __future__ import annotations

import re
from email.message import EmailMessage
from html import unescape

import pytest

from kesher.channels import senders
from kesher.channels.email import sign
from kesher.channels.models import CaughtMail, Sender
from kesher.db import Database
from tests.browser import logged_in
from tests.campaigns.test_views import error_of

SHOP = "news@shop.example.co.il"


@pytest.fixture
def ui(app, database: Database, workspace):  # type: ignore[no-untyped-def]
    with logged_in(app, database, workspace, "/senders") as page:
        yield page


def add_sender(database: Database, workspace, email: str = SHOP) -> int:  # type: ignore[no-untyped-def]
    with database.session() as s:
        return senders.create_sender(s, workspace.id, name="חנות הדוגמה", email=email, address="רחוב הרצל 1").id


def test_add_a_sender_and_make_its_dkim_key(ui, database: Database, workspace) -> None:  # type: ignore[no-untyped-def]
    page = ui.get("/senders").text
    assert '<html lang="he" dir="rtl">' in page and "<h1>זהויות שולח</h1>" in page and "עדיין אין זהויות שולח" in page
    assert 'aria-current="page">קמפיינים<' in page

    bad = ui.post("/senders", {"name": "חנות הדוגמה", "email": "not an address", "reply_to": "", "address": ""})
    assert bad.status_code == 422 and error_of(bad.text, "email") == "הזינו כתובת אימייל תקינה."
    assert 'value="חנות הדוגמה"' in bad.text
    nameless = ui.post("/senders", {"name": " ", "email": SHOP})
    assert nameless.status_code == 422 and error_of(nameless.text, "name") == "נדרש שם, עד 200 תווים."
    made = ui.post("/senders", {"name": "חנות הדוגמה", "email": SHOP, "reply_to": "owner@shop.example.co.il",
                                "address": "רחוב הרצל 1, תל אביב"})
    assert made.status_code == 303
    sender_id = int(made.headers["location"].rsplit("/", 1)[1])
    again = ui.post("/senders", {"name": "עוד אחת", "email": SHOP})
    assert again.status_code == 409 and error_of(again.text, "email") == "כבר יש זהות שולח עם האימייל הזה."

    page = ui.get(f"/senders/{sender_id}").text
    assert "עדיין אין מפתח DKIM" in page and 'value="kesher"' in page
    assert ui.post(f"/senders/{sender_id}/dkim", {"selector": "Not a selector!"}).status_code == 422
    assert ui.post(f"/senders/{sender_id}/dkim", {"selector": "k1"}).status_code == 303
    page = ui.get(f"/senders/{sender_id}").text
    assert '<code id="dkim-name">k1._domainkey.shop.example.co.il</code>' in page and "<code>TXT</code>" in page
    value = unescape(re.search(r'<textarea id="dkim-value"[^>]*>(.*?)</textarea>', page, re.S).group(1))  # type: ignore[union-attr]
    with database.session() as s:
        record = senders.dkim_record(s.get_one(Sender, sender_id))
    assert record is not None and value == record.value and value.startswith("v=DKIM1; k=rsa; p=MII")
    zone = unescape(re.search(r'<textarea id="dkim-zone"[^>]*>(.*?)</textarea>', page, re.S).group(1))  # type: ignore[union-attr]
    strings = re.findall(r'"([^"]*)"', zone)
    assert zone.startswith("k1._domainkey.shop.example.co.il. IN TXT ( \"v=DKIM1; k=rsa; p=")
    assert "".join(strings) == value and max(map(len, strings)) <= 255 and len(strings) > 1
    assert "BEGIN PRIVATE KEY" not in page
    assert "יש מפתח" in ui.get("/senders").text

    edited = ui.post(f"/senders/{sender_id}", {"name": "חנות הטבע", "email": SHOP, "reply_to": "",
                                               "address": "רחוב הרצל 2, חיפה"})
    assert edited.status_code == 303
    with database.session() as s:
        sender = s.get_one(Sender, sender_id)
        assert (sender.name, sender.reply_to, sender.address) == ("חנות הטבע", None, "רחוב הרצל 2, חיפה")
    assert ui.post(f"/senders/{sender_id}/delete").headers["location"] == "/senders"
    assert ui.get(f"/senders/{sender_id}").status_code == 404

    assert ui.post("/language", {"language": "en", "next": "/senders"}).status_code == 303
    assert "<h1>Sender identities</h1>" in ui.get("/senders").text


def caught(database: Database, sender: str, to: str, subject: str, *, signed: bool = False) -> int:
    message = EmailMessage()
    message["From"] = f"חנות הדוגמה <{sender}>"
    message["To"] = to
    message["Subject"] = subject
    message["List-Unsubscribe"] = "<https://kesher.test/u/abc>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content("שלום דנה, טקסט פשוט")
    message.add_alternative("<p>שלום <b>דנה</b></p><script>alert(1)</script>", subtype="html")
    data = message.as_bytes()
    if signed:
        with database.session() as s:
            sender_row = next(x for x in senders.list_senders(s, _workspace_of(s, sender)) if x.email == sender)
            senders.generate_dkim_key(s, sender_row.workspace_id, sender_row.id, "k1")
            key = senders.dkim_key(sender_row)
        assert key is not None
        data = sign(data, key)
    with database.session() as s:
        mail = CaughtMail(mail_from=f"bounces+x@{sender.split('@')[1]}", recipients=[to], subject=subject, message=data)
        s.add(mail)
        s.flush()
        return mail.id


def _workspace_of(session, email: str) -> int:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    return int(session.scalar(select(Sender.workspace_id).where(Sender.email == email)))


def test_the_mailbox_shows_the_workspaces_caught_mail(ui, database: Database, workspace, other_workspace) -> None:  # type: ignore[no-untyped-def]
    add_sender(database, workspace)
    add_sender(database, other_workspace, "secret@other.example.com")
    mine = caught(database, SHOP, "dana@example.com", "פרסומת: מבצע החורף", signed=True)
    theirs = caught(database, "secret@other.example.com", "x@example.com", "סוד של מישהו אחר")

    page = ui.get("/mailbox").text
    assert "<h1>תיבת דואר</h1>" in page and "פרסומת: מבצע החורף" in page and "dana@example.com" in page
    assert f'href="/mailbox/{mine}"' in page and "סוד של מישהו אחר" not in page
    assert "תיבת הדואר המקומית כבויה" in page  # the test app runs no sink

    mail = ui.get(f"/mailbox/{mine}").text
    assert "<h1><bdi>פרסומת: מבצע החורף</bdi></h1>" in mail
    assert "חתום על ידי shop.example.co.il (סלקטור k1)" in mail
    assert "&lt;https://kesher.test/u/abc&gt;" in mail and "List-Unsubscribe=One-Click" in mail
    assert re.search(r'<iframe class="mail-frame" title="[^"]+" sandbox srcdoc="[^"]*שלום &lt;b&gt;דנה', mail)
    assert "שלום דנה, טקסט פשוט" in mail and "<script>alert(1)</script>" not in mail
    assert ui.get(f"/mailbox/{theirs}").status_code == 404
    assert ui.get("/mailbox/99999999999999999999").status_code == 404


def test_the_mailbox_pages_back_through_older_mail(ui, database: Database, workspace) -> None:  # type: ignore[no-untyped-def]
    add_sender(database, workspace)
    ids = [caught(database, SHOP, f"p{i}@example.com", f"מייל {i}") for i in range(53)]
    page = ui.get("/mailbox").text
    assert "מייל 52" in page and "מייל 3<" in page and "מייל 2<" not in page
    older = re.search(r'rel="next" href="(/mailbox\?before=\d+)"', page)
    assert older and older.group(1) == f"/mailbox?before={ids[3]}"
    page = ui.get(older.group(1)).text
    assert "מייל 2<" in page and "מייל 0<" in page and "מייל 3<" not in page and 'rel="next"' not in page
    unsigned = ui.get(f"/mailbox/{ids[0]}").text
    assert "לא חתום" in unsigned


def test_the_providers_webhook_keys_are_set_on_the_senders_page(ui, database: Database, workspace) -> None:  # type: ignore[no-untyped-def]
    page = ui.get("/senders").text
    assert "החזרות ותלונות מספק הדואר שלכם" in page
    assert f"http://testserver/hooks/mailgun/{workspace.slug}" in page and page.count("אין מפתח: הודעות נדחות") == 2

    bad = ui.post("/senders/webhooks", {"sendgrid_public_key": "not a key", "mailgun_signing_key": "key-abc"})
    assert bad.status_code == 422
    assert error_of(bad.text, "sendgrid_public_key") == "זה אינו מפתח אימות של SendGrid (מפתח ציבורי EC, ב-base64 או PEM)."
    assert "key-abc" not in bad.text and bad.text.count("אין מפתח: הודעות נדחות") == 2  # nothing stored

    saved = ui.post("/senders/webhooks", {"mailgun_signing_key": "key-abc", "ses_confirm_subscriptions": "1"})
    assert saved.status_code == 200 and "נשמר." in saved.text and "key-abc" not in saved.text
    assert saved.text.count("אין מפתח: הודעות נדחות") == 1 and "קשר מאשר מינויים בעצמו" in saved.text
    with database.session() as s:
        stored = s.get_one(type(workspace), workspace.id).settings["email_webhooks"]
    assert stored == {"mailgun_signing_key": "key-abc", "ses_confirm_subscriptions": True}

    kept = ui.post("/senders/webhooks", {"mailgun_signing_key": "", "ses_confirm_subscriptions": "1"})
    assert kept.text.count("אין מפתח: הודעות נדחות") == 1  # a blank field keeps the key
    removed = ui.post("/senders/webhooks", {"clear_mailgun": "1"})
    assert removed.text.count("אין מפתח: הודעות נדחות") == 2 and "אשרו את המינוי בעצמכם" in removed.text
