"""The campaign pages through HTTP as a logged-in marketer sees them (SQLite and PostgreSQL), and the
editor in headless Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from kesher.accounts import service as accounts
from kesher.accounts.models import Workspace
from kesher.campaigns import abtest, service
from kesher.campaigns.models import Campaign
from kesher.campaigns.schemas import CampaignIn
from kesher.channels.models import OutboxMessage
from kesher.channels import senders
from kesher.config import Settings, get_settings
from kesher.contacts import groups
from kesher.contacts.service import save_contact, set_consent
from kesher.db import Database
from kesher.db.migrate import upgrade
from tests.browser import PASSWORD, logged_in, hebrew_page, sign_in
from tests.campaigns.conftest import BODY, SmtpServer

PARTIAL = {"HX-Request": "true"}
GOOD_BODY = BODY + "<p>חנות הדוגמה, רחוב הרצל 1, תל אביב</p>"


@pytest.fixture
def ui(app, database: Database, workspace):  # type: ignore[no-untyped-def]
    with logged_in(app, database, workspace, "/campaigns") as page:
        yield page


def audience_for(session: Session, workspace_id: int, n: int) -> tuple[int, int]:
    """The workspace's sender (made once) and the list "newsletter <n>" of n contacts with email consent."""
    sender = next(iter(senders.list_senders(session, workspace_id)), None) or senders.create_sender(
        session, workspace_id, name="חנות הדוגמה", email="news@shop.example.co.il", address="רחוב הרצל 1, תל אביב")
    the_list = groups.get_or_create(session, workspace_id, "list", f"newsletter {n}")
    ids = []
    for i in range(n):
        contact_id = save_contact(session, workspace_id, {"email": f"person{i}@example.com",
                                                          "first_name": f"דנה{i}"}).contact_id
        set_consent(session, workspace_id, contact_id, "email", "granted", source="test")
        ids.append(contact_id)
    groups.add_contacts(session, workspace_id, "list", the_list.id, ids)
    return sender.id, the_list.id


def draft(database: Database, workspace: Workspace, n: int = 3, *, variants: list[dict[str, str]] | None = None,
          **extra: object) -> int:
    """A draft campaign "winter <n>" to the list "newsletter <n>"."""
    with database.session() as s:
        ws = s.get_one(Workspace, workspace.id)
        sender_id, list_id = audience_for(s, ws.id, n)
        spec = CampaignIn.model_validate({
            "name": f"winter {n}", "sender_id": sender_id, "audience": {"lists": [list_id]},
            "variants": variants or [{"subject": "פרסומת: מבצע החורף בחנות", "html": GOOD_BODY}], **extra})
        return service.create_campaign(s, ws, spec).id


def campaign_row(database: Database, campaign_id: int) -> Campaign:
    with database.session() as s:
        campaign = s.get_one(Campaign, campaign_id)
        s.expunge(campaign)
        return campaign


def audience_ids(database: Database, workspace: Workspace, n: int = 3) -> tuple[int, int]:
    with database.session() as s:
        return audience_for(s, workspace.id, n)


def form(sender_id: int, list_id: int, **changes: str) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "מבצע החורף", "sender_id": str(sender_id), "advertising": "on", "audience.lists": [str(list_id)],
        "variants[0].subject": "פרסומת: מבצע החורף בחנות", "variants[0].html": GOOD_BODY,
        "variants[1].subject": "", "variants[1].html": "", "rate_per_second": "", "window.limit": "",
        "window.seconds": "3600", "ab.test_share": "20", "ab.metric": "open_rate", "ab.wait_hours": "4",
    }
    data.update(changes)
    return data


def error_of(html: str, name: str) -> str:
    match = re.search(rf'<p class="field-error" id="err-{re.escape(name)}"><bdi>(.*?)</bdi></p>', html, re.S)
    assert match, f"no error next to {name}"
    return unescape(match.group(1))


def test_pages_in_hebrew_rtl_then_in_english(ui, database: Database, workspace) -> None:  # type: ignore[no-untyped-def]
    page = ui.get("/campaigns").text
    assert '<html lang="he" dir="rtl">' in page and "<h1>קמפיינים</h1>" in page and "עדיין אין קמפיינים" in page
    assert 'aria-current="page">קמפיינים<' in page and 'href="/campaigns/new"' in page
    campaign_id = draft(database, workspace)

    page = ui.get("/campaigns").text
    assert "winter 3" in page and "טיוטה" in page and "0 / 0" in page
    new = ui.get("/campaigns/new").text
    assert "קמפיין חדש" in new and "חוק התקשורת, תיקון 40" in new and '"פרסומת"' in new
    assert re.search(r'name="advertising" value="on" checked', new)  # advertising by default
    assert "[[שם פרטי]]" in new and "newsletter 3 (3)" in new and "/static/kesher-campaigns.js" in new
    detail = ui.get(f"/campaigns/{campaign_id}").text
    assert "<h1><bdi>winter 3</bdi></h1>" in detail and "בדיקות לפני שליחה" in detail
    assert "3 אנשי קשר יקבלו את הקמפיין" in detail and 'value="פרסומת: מבצע החורף בחנות"' in detail
    assert '<iframe class="mail-frame"' in detail and "sandbox srcdoc=" in detail and "שלום דנה" in detail
    assert 'id="send-button">שליחה<' in detail  # nothing blocks this one

    assert ui.post("/language", {"language": "en", "next": "/campaigns"}).status_code == 303
    page = ui.get("/campaigns").text
    assert '<html lang="en" dir="ltr">' in page and "<h1>Campaigns</h1>" in page and "Draft" in page
    detail = ui.get(f"/campaigns/{campaign_id}").text
    assert "Pre-send checks" in detail and "Communications Law, amendment 40" in detail
    assert "3 contacts can be reached" in detail and "Test send" in detail and "קמפיינים" not in detail


def test_a_bad_field_is_shown_next_to_it_and_nothing_is_kept_then_a_good_form_saves(
    ui, database: Database, workspace,  # type: ignore[no-untyped-def]
) -> None:
    draft(database, workspace)  # a sender and a list to choose
    sender_id, list_id = audience_ids(database, workspace)
    with database.session() as s:
        before = len(service.list_campaigns(s, workspace.id))
    ui.get("/campaigns/new")

    # The model refuses an empty subject; the template sandbox refuses variant B's broken HTML.
    empty = ui.post("/campaigns", form(sender_id, list_id, **{"variants[0].subject": " "}))
    assert empty.status_code == 422 and "שום דבר לא נשמר" in empty.text
    assert error_of(empty.text, "variants[0].subject") == "נדרשת שורת נושא, עד 500 תווים."
    assert 'value="מבצע החורף"' in empty.text  # what was typed comes back
    broken = form(sender_id, list_id, ab="on", **{"variants[1].subject": "פרסומת: גרסה ב",
                                                   "variants[1].html": "<p>{% if %}</p>"})
    answer = ui.post("/campaigns", broken)
    assert answer.status_code == 422 and error_of(answer.text, "variants[1].html").startswith("יש טעות בתבנית")
    assert 'aria-invalid="true" aria-describedby="err-variants[1].html"' in answer.text
    nobody = ui.post("/campaigns", form(sender_id, list_id, **{"audience.lists": []}))
    assert nobody.status_code == 422 and error_of(nobody.text, "audience") == "בחרו לפחות רשימה אחת או פלח אחד."
    pace = ui.post("/campaigns", form(sender_id, list_id, rate_per_second="fast", **{"window.limit": "0"}))
    assert error_of(pace.text, "rate_per_second").startswith("הזינו הודעות לשנייה")
    assert error_of(pace.text, "window.limit").startswith("הזינו כמה הודעות")
    with database.session() as s:
        assert len(service.list_campaigns(s, workspace.id)) == before

    # "Add a variant" shows variant C without saving anything.
    more = ui.post("/campaigns", {**broken, "edit": "add_variant"})
    assert more.status_code == 200 and 'id="variant-C"' in more.text and "field-error" not in more.text

    good = form(sender_id, list_id, ab="on", rate_per_second="20", **{
        "variants[1].subject": "פרסומת: רק היום 20% הנחה", "variants[1].html": GOOD_BODY, "ab.test_share": "30",
        "ab.metric": "click_rate", "window.limit": "1000", "window.seconds": "86400", "utm.utm_source": "kesher",
        "utm.utm_campaign": "winter"})
    saved = ui.post("/campaigns", good)
    assert saved.status_code == 303
    campaign_id = int(saved.headers["location"].split("/")[2].split("?")[0])
    page = ui.get(saved.headers["location"]).text
    assert "הקמפיין נשמר" in page and "<h1><bdi>מבצע החורף</bdi></h1>" in page
    with database.session() as s:
        campaign = service.get_campaign(s, workspace.id, campaign_id)
        assert [v.subject for v in service.variants_of(s, campaign_id)] == ["פרסומת: מבצע החורף בחנות",
                                                                            "פרסומת: רק היום 20% הנחה"]
        assert campaign.ab == {"test_share": 0.3, "metric": "click_rate", "wait_hours": 4}
        assert (campaign.rate_per_second, campaign.window_limit, campaign.window_seconds) == (20, 1000, 86400)
        assert campaign.utm == {"utm_source": "kesher", "utm_campaign": "winter"}
        assert campaign.audience["lists"] == [list_id] and campaign.advertising

    # Editing: the test ends and B goes; a bad edit keeps the stored campaign as it was.
    ui.get(f"/campaigns/{campaign_id}")
    bad = ui.post(f"/campaigns/{campaign_id}", {**good, "name": ""})
    assert bad.status_code == 422 and error_of(bad.text, "name") == "נדרש שם, עד 200 תווים."
    plain = {k: v for k, v in good.items() if k != "ab"}
    assert ui.post(f"/campaigns/{campaign_id}", {**plain, "name": "מבצע החורף 2"}).status_code == 303
    with database.session() as s:
        campaign = service.get_campaign(s, workspace.id, campaign_id)
        assert campaign.name == "מבצע החורף 2" and campaign.ab == {}
        assert [v.label for v in service.variants_of(s, campaign_id)] == ["A"]


def test_the_audience_count_follows_the_choice(ui, database: Database, workspace, other_workspace) -> None:  # type: ignore[no-untyped-def]
    _sender, list_id = audience_ids(database, workspace, 4)
    with database.session() as s:
        vip = groups.create(s, workspace.id, "list", "vip")
        people = [save_contact(s, workspace.id, {"email": f"vip{i}@example.com"}).contact_id for i in range(2)]
        set_consent(s, workspace.id, people[0], "email", "granted", source="test")
        groups.add_contacts(s, workspace.id, "list", vip.id, people)
        theirs = groups.create(s, other_workspace.id, "list", "theirs").id

    def count(**audience: list[str]) -> str:
        data = {f"audience.{key}": value for key, value in audience.items()}
        answer = ui.client.post("/campaigns/audience", data=data, headers={**PARTIAL, "X-CSRF-Token": ui.csrf})
        assert answer.status_code == 200
        return unescape(answer.text)

    page = ui.get("/campaigns/new").text
    assert 'hx-post="/campaigns/audience" hx-trigger="change" hx-target="#audience-count"' in page
    assert count() == "בחרו רשימות או פלחים כדי לראות מי יקבל את הקמפיין."
    assert count(lists=[str(list_id)]) == "4 אנשי קשר יקבלו את הקמפיין"
    assert count(lists=[str(list_id), str(vip.id)]) == "5 אנשי קשר יקבלו את הקמפיין"  # one has no consent
    assert count(lists=[str(list_id), str(vip.id)], exclude_lists=[str(vip.id)]) == "4 אנשי קשר יקבלו את הקמפיין"
    assert count(lists=[str(vip.id)]) == "איש קשר אחד יקבל את הקמפיין"
    assert count(lists=[str(theirs)]) == "רשימה או פלח שנבחרו כבר אינם בסביבת העבודה הזו."


def test_a_blocking_check_disables_sending_until_it_is_fixed(ui, database: Database, workspace) -> None:  # type: ignore[no-untyped-def]
    campaign_id = draft(database, workspace, variants=[{"subject": "מבצע החורף בחנות", "html": GOOD_BODY}])
    sender_id, list_id = audience_ids(database, workspace)
    page = ui.get(f"/campaigns/{campaign_id}").text
    checks = page.split('id="checks"')[1].split("</section>")[0]
    assert 'class="finding finding-error"' in checks and "חוסם שליחה" in checks and "פרסומת" in checks
    assert re.search(r'id="send-button" disabled aria-describedby="send-blocked"', page)
    assert "השליחה חסומה עד שיתוקנו השגיאות" in page
    refused = ui.post(f"/campaigns/{campaign_id}/send", {"when": "now"})
    assert refused.status_code == 422 and "בדיקה שחוסמת שליחה נכשלה" in refused.text
    assert campaign_row(database, campaign_id).status == "draft"

    # Not advertising: the same subject may go.
    assert ui.post(f"/campaigns/{campaign_id}", form(sender_id, list_id, name="winter 3", advertising="", **{
        "variants[0].subject": "מבצע החורף בחנות"})).status_code == 303
    page = ui.get(f"/campaigns/{campaign_id}").text
    assert "finding-error" not in page and 'id="send-button">שליחה<' in page

    # A time in the past is refused; a later one schedules the campaign in the workspace's timezone.
    past = ui.post(f"/campaigns/{campaign_id}/send", {"when": "later", "send_at": "2020-01-01T09:00"})
    assert past.status_code == 422 and "המועד הזה כבר עבר" in past.text
    assert ui.post(f"/campaigns/{campaign_id}/send", {"when": "later", "send_at": "2099-05-01T09:30"}).status_code == 303
    campaign = campaign_row(database, campaign_id)
    assert campaign.status == "scheduled" and campaign.send_at.isoformat() == "2099-05-01T06:30:00+00:00"
    page = ui.get(f"/campaigns/{campaign_id}").text
    assert "מתוזמן" in page and "יוצא ב-01/05/2099 09:30" in page


@pytest.fixture
def sending_app(app, smtp_server: SmtpServer, monkeypatch):  # type: ignore[no-untyped-def]
    """The test app sending to the test SMTP server, for test sends and for the worker's passes."""
    monkeypatch.setenv("KESHER_SMTP_PORT", str(smtp_server.port))
    monkeypatch.setenv("KESHER_PUBLIC_URL", "http://kesher.test")
    get_settings.cache_clear()
    app.state.settings = app.state.settings.model_copy(update={"smtp_port": smtp_server.port,
                                                                "public_url": "http://kesher.test"})
    yield app
    get_settings.cache_clear()


def test_pause_resume_and_cancel_by_status_with_progress(
    sending_app, database: Database, workspace, smtp_server: SmtpServer,  # type: ignore[no-untyped-def]
) -> None:
    campaign_id = draft(database, workspace)
    with database.session() as s:  # sending, with no pass started yet
        service.send(s, s.get_one(Workspace, workspace.id), campaign_id)
    with logged_in(sending_app, database, workspace, f"/campaigns/{campaign_id}") as ui:
        page = ui.get(f"/campaigns/{campaign_id}").text
        live = page.split('id="live"')[1].split('id="ab-title"')[0]
        assert 'hx-trigger="every 2s"' in live and "נשלח כעת" in live
        assert ">השהיה<" in live and ">ביטול הקמפיין<" in live and ">המשך שליחה<" not in live
        assert 'id="send-form"' not in live and re.search(r'class="count-queued">3<', live)
        assert 'fieldset class="stack" disabled' in page  # nothing to edit while sending

        assert ui.post(f"/campaigns/{campaign_id}/pause").status_code == 303
        live = ui.client.get(f"/campaigns/{campaign_id}/live", headers=PARTIAL).text
        assert "מושהה" in live and ">המשך שליחה<" in live and ">השהיה<" not in live and "every 2s" not in live
        assert ui.post(f"/campaigns/{campaign_id}/pause").status_code == 409  # twice: refused, said so
        assert 'fieldset class="stack">' in ui.get(f"/campaigns/{campaign_id}").text  # paused: editable

        # Resuming queues a sending pass (the test queue runs it at once) to the test SMTP server.
        assert ui.post(f"/campaigns/{campaign_id}/resume").status_code == 303
        assert len(smtp_server.received) == 3
        live = ui.client.get(f"/campaigns/{campaign_id}/live", headers=PARTIAL).text
        assert "נשלחו 3 מתוך 3" in live and re.search(r'class="count-sent">3<', live)
        assert "every 2s" not in live and ">ביטול הקמפיין<" not in live

    cancel_id = draft(database, workspace, 2)
    with database.session() as s:
        service.send(s, s.get_one(Workspace, workspace.id), cancel_id)
        service.pause(s, s.get_one(Workspace, workspace.id), cancel_id)
    with logged_in(sending_app, database, workspace, f"/campaigns/{cancel_id}") as ui:
        assert ui.post(f"/campaigns/{cancel_id}/cancel").status_code == 303
        page = ui.get(f"/campaigns/{cancel_id}").text
        assert "בוטל" in page and ">המשך שליחה<" not in page and re.search(r'class="count-cancelled">2<', page)
    assert len(smtp_server.received) == 3


def test_the_results_show_once_sent_with_machine_opens_apart(  # type: ignore[no-untyped-def]
        ui, database: Database, workspace, smtp_server: SmtpServer, send_settings) -> None:
    from kesher.campaigns.sending import send_campaign
    from kesher.events.ingest import ingest

    campaign_id = draft(database, workspace, 4)
    assert 'id="report"' not in ui.get(f"/campaigns/{campaign_id}").text  # a draft has no results
    with database.session() as s:
        service.send(s, s.get_one(Workspace, workspace.id), campaign_id)
    send_campaign(database, send_settings, campaign_id)
    with database.session() as s:
        contacts = [r.contact_id for r in s.query(OutboxMessage).filter_by(campaign_id=campaign_id)]
        about = {"campaign_id": str(campaign_id)}
        ingest(s, s.get_one(Workspace, workspace.id), [
            {"type": "email_opened", "contact": {"id": contacts[0]}, "properties": about},
            {"type": "email_opened", "contact": {"id": contacts[1]}, "properties": {**about, "machine": True}},
            {"type": "email_clicked", "contact": {"id": contacts[0]},
             "properties": {**about, "url": "https://shop.example.co.il/winter"}}])
    page = ui.get(f"/campaigns/{campaign_id}").text
    report = unescape(page.split('id="report"')[1].split("</section>")[0])
    assert "תוצאות" in report and "100.0%" in report and "25.0%" in report  # delivered; opened and clicked 1 of 4
    assert "1 פתיחות ו-0 הקלקות נראו אוטומטיות" in report and "https://shop.example.co.il/winter" in report


def test_preview_as_a_contact_and_a_test_send(sending_app, database: Database, workspace, smtp_server) -> None:  # type: ignore[no-untyped-def]
    campaign_id = draft(database, workspace)
    with logged_in(sending_app, database, workspace, f"/campaigns/{campaign_id}") as ui:
        sample = ui.client.get(f"/campaigns/{campaign_id}/preview?variant=A", headers=PARTIAL).text
        assert sample.startswith('<div id="preview"') and "שלום דנה," in sample and "איש קשר לדוגמה" in sample
        as_contact = ui.client.get(f"/campaigns/{campaign_id}/preview?variant=A&contact=person2@example.com",
                                   headers=PARTIAL).text
        assert "שלום דנה2," in as_contact and "person2@example.com" in as_contact
        page = ui.get(f"/campaigns/{campaign_id}/preview?contact=דנה1").text  # a whole page, found by name
        assert "שלום דנה1," in page
        nobody = ui.client.get(f"/campaigns/{campaign_id}/preview?contact=nobody@example.com", headers=PARTIAL)
        assert "אין איש קשר שמתאים ל-nobody@example.com" in nobody.text

        ui.get(f"/campaigns/{campaign_id}")
        sent = ui.client.post(f"/campaigns/{campaign_id}/test", data={"emails": "me@example.com, boss@example.com",
                                                                      "variant": "A", "contact": "person1@example.com"},
                              headers={**PARTIAL, "X-CSRF-Token": ui.csrf})
        assert sent.status_code == 200 and "הודעת בדיקה נשלחה אל me@example.com, boss@example.com" in sent.text
        assert sorted(r.to for r in smtp_server.received) == ["boss@example.com", "me@example.com"]
        assert smtp_server.received[0].message["subject"] == "[TEST] פרסומת: מבצע החורף בחנות"
        assert "דנה1" in smtp_server.received[0].message.get_body(("html",)).get_content()
        bad = ui.post(f"/campaigns/{campaign_id}/test", {"emails": "not-an-address"})
        assert bad.status_code == 422 and "not-an-address אינה כתובת אימייל" in bad.text
        assert campaign_row(database, campaign_id).status == "draft"


def test_the_ab_test_says_which_variant_won_and_whether_it_was_significant(ui, database: Database, workspace) -> None:  # type: ignore[no-untyped-def]
    variants = [{"subject": "פרסומת: מבצע החורף בחנות", "html": GOOD_BODY},
                {"subject": "פרסומת: רק היום בחנות", "html": GOOD_BODY}]
    won = draft(database, workspace, variants=variants, ab={"test_share": 0.2, "metric": "open_rate"})
    tie = draft(database, workspace, 2, variants=variants, ab={"test_share": 0.2, "metric": "open_rate"})
    clear = abtest.decide([abtest.Arm("A", 1000, 0.20, 200), abtest.Arm("B", 1000, 0.30, 300)], "open_rate")
    close = abtest.decide([abtest.Arm("A", 100, 0.20, 20), abtest.Arm("B", 100, 0.22, 22)], "open_rate")
    with database.session() as s:
        for campaign_id, decision in ((won, clear), (tie, close)):
            campaign = s.get_one(Campaign, campaign_id)
            campaign.status = "sent"
            campaign.ab = {**campaign.ab, "winner": decision.winner, "report": decision.report()}

    page = ui.get(f"/campaigns/{won}").text
    summary = unescape(page.split('id="ab-summary"')[1].split("</p>")[0])
    assert "גרסה B ניצחה: שיעור פתיחה 30.0% לעומת 20.0% בגרסה A" in summary and "ההבדל מובהק" in summary
    assert "מבחן z לשני פרופורציות" in summary and "גרסה B נשלחה לשאר הקהל" in summary
    assert re.search(r"<td>B</td><td class=\"num\">1,000</td><td class=\"num\" dir=\"ltr\">30.0%</td>", page)
    summary = unescape(ui.get(f"/campaigns/{tie}").text.split('id="ab-summary"')[1].split("</p>")[0])
    assert "אף גרסה לא הייתה טובה יותר באופן מובהק" in summary and "גרסת ברירת המחדל A נשלחה" in summary

    waiting = draft(database, workspace, 4, variants=variants, ab={"test_share": 0.5, "metric": "click_rate"})
    with database.session() as s:
        service.send(s, s.get_one(Workspace, workspace.id), waiting)
    page = ui.get(f"/campaigns/{waiting}").text
    assert "עדיין אין מספיק תוצאות כדי להשוות בין הגרסאות" in page and "לפי שיעור הקלקה נשלחת" in page

    assert ui.post("/language", {"language": "en", "next": "/campaigns"}).status_code == 303
    summary = unescape(ui.get(f"/campaigns/{won}").text.split('id="ab-summary"')[1].split("</p>")[0])
    summary = summary.replace("\u2066", "").replace("\u2069", "")  # the p-value is isolated left to right
    assert ("Variant B won: open rate 30.0% against 20.0% for variant A. The difference is significant "
            "(p < 0.001, two-proportion z-test), so variant B went to the rest of the audience.") in summary


def test_another_workspaces_campaign_is_a_404(ui, database: Database, workspace, other_workspace) -> None:  # type: ignore[no-untyped-def]
    theirs = draft(database, other_workspace)
    for url in (f"/campaigns/{theirs}", f"/campaigns/{theirs}/preview", "/campaigns/99999999999999999999"):
        page = ui.get(url)
        assert page.status_code == 404 and "winter" not in page.text
    assert ui.client.get(f"/campaigns/{theirs}/live", headers=PARTIAL).status_code == 404
    for action in ("", "/send", "/pause", "/resume", "/cancel", "/delete", "/test"):
        assert ui.post(f"/campaigns/{theirs}{action}", {"name": "נגנב", "when": "now"}).status_code == 404
    assert "winter" not in ui.get("/campaigns").text
    assert campaign_row(database, theirs).status == "draft" and campaign_row(database, theirs).name == "winter 3"


# The editor in a real browser ------------------------------------------------------------------------

EMAIL = "noa@example.com"
SCREENSHOT = Path("/tmp/kesher-campaign-editor.png")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, live_server) -> Iterator[str]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("campaigns-browser")
    database = Database(f"sqlite:///{tmp / 'kesher.db'}")
    upgrade(database.engine)
    with database.session() as s:
        workspace = accounts.create_workspace(s, "חנות הטבע")
        accounts.create_user(s, EMAIL, PASSWORD, name="נועה", workspace=workspace)
        audience_for(s, workspace.id, 3)
        vip = groups.create(s, workspace.id, "list", "לקוחות VIP")
        person = save_contact(s, workspace.id, {"email": "vip@example.com", "first_name": "רותי"}).contact_id
        set_consent(s, workspace.id, person, "email", "granted", source="test")
        groups.add_contacts(s, workspace.id, "list", vip.id, [person])
    settings = Settings(database_url=database.url, queue="immediate", import_dir=str(tmp), secret_key="browser-test")
    from kesher.web.app import create_app

    yield live_server(create_app(settings, database))
    database.dispose()


@pytest.mark.browser
def test_write_a_campaign_watch_the_count_and_the_checks(chromium, server: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        page, errors = hebrew_page(p, chromium, server)
        sign_in(page, server, EMAIL, "/campaigns")
        page.get_by_role("link", name="קמפיין חדש").click()

        count = page.locator("#audience-count")
        expect(count).to_have_text("בחרו רשימות או פלחים כדי לראות מי יקבל את הקמפיין.")
        page.get_by_label("שם", exact=True).fill("מבצע החורף")
        page.get_by_label("רשימות", exact=True).select_option(label="newsletter 3 (3)")
        expect(count).to_have_text("3 אנשי קשר יקבלו את הקמפיין")
        page.get_by_label("רשימות", exact=True).select_option(label=["newsletter 3 (3)", "לקוחות VIP (1)"])
        expect(count).to_have_text("4 אנשי קשר יקבלו את הקמפיין")
        page.get_by_label("חוץ מהרשימות").select_option(label="לקוחות VIP (1)")
        expect(count).to_have_text("3 אנשי קשר יקבלו את הקמפיין")

        # The A/B settings and variant B show only while the test is on.
        settings = page.locator("#ab-settings")
        expect(settings).to_be_hidden()
        expect(page.locator("#variant-B")).to_be_hidden()
        page.get_by_label("בדיקת A/B", exact=True).check()
        expect(settings).to_be_visible()
        expect(page.locator("#variant-B")).to_be_visible()
        page.get_by_label("בדיקת A/B", exact=True).uncheck()

        # Advertising, but the subject lacks "פרסומת": saved, and the checks block sending.
        variant = page.locator("#variant-A")
        variant.get_by_label("שורת נושא").fill("מבצע החורף בחנות הטבע")
        variant.get_by_label("גוף ההודעה (HTML)").fill(GOOD_BODY)
        assert page.evaluate("[document.documentElement.lang, document.documentElement.dir]") == ["he", "rtl"]
        page.get_by_role("button", name="שמירת הקמפיין").click()
        expect(page.locator("h1")).to_have_text("מבצע החורף")
        expect(page.get_by_role("status").filter(has_text="הקמפיין נשמר")).to_be_visible()
        checks = page.locator("#checks")
        expect(checks.locator(".finding-error").first).to_contain_text("פרסומת")
        expect(page.locator("#send-button")).to_be_disabled()
        expect(page.locator("#audience-count")).to_have_text("3 אנשי קשר יקבלו את הקמפיין")
        expect(page.frame_locator("iframe.mail-frame").locator("body")).to_contain_text("שלום דנה")
        page.screenshot(path=str(SCREENSHOT), full_page=True)

        # Fixed in the editor, the campaign may go.
        page.locator("#variant-A").get_by_label("שורת נושא").fill("פרסומת: מבצע החורף בחנות הטבע")
        page.get_by_role("button", name="שמירת הקמפיין").click()
        expect(page.locator("#checks .finding-error")).to_have_count(0)
        expect(page.locator("#send-button")).to_be_enabled()
    assert not errors
