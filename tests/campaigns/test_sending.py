"""Sending a campaign through a real SMTP server: exactly once, back-off on 4xx, failures on 5xx,
pause and resume, sliding windows, and the policy gate at send time."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from kesher.accounts.models import Workspace
from kesher.campaigns import service
from kesher.campaigns.models import Campaign
from kesher.campaigns.sending import send_campaign
from kesher.channels.models import OutboxMessage
from kesher.contacts.models import Suppression
from kesher.contacts.service import set_consent
from kesher.db.base import utcnow
from kesher.events.models import Event

from .conftest import make_campaign


def _start(database, workspace, n, **extra):
    with database.session() as session:
        campaign_id, ids = make_campaign(session, workspace, n, **extra)
        service.send(session, session.get_one(Workspace, workspace.id), campaign_id)
    return campaign_id, ids


def _run_until_done(database, settings, campaign_id, passes=20):
    for _ in range(passes):
        send_campaign(database, settings, campaign_id)
        with database.session() as session:
            if session.get_one(Campaign, campaign_id).status != "sending":
                return
    raise AssertionError("the campaign did not finish")


def test_every_recipient_gets_the_campaign_exactly_once(database, workspace, smtp_server, send_settings) -> None:
    campaign_id, ids = _start(database, workspace, 45)
    _run_until_done(database, send_settings, campaign_id)
    counts = smtp_server.counts()
    assert len(counts) == 45 and set(counts.values()) == {1}
    mail = smtp_server.received[0].message
    assert mail["Subject"].startswith("פרסומת")
    assert "List-Unsubscribe=One-Click" in mail["List-Unsubscribe-Post"]
    assert "<mailto:unsubscribe+" in mail["List-Unsubscribe"] and "<https://kesher.test/u/" in mail["List-Unsubscribe"]
    assert mail["Message-ID"].startswith("<kesher.")
    assert smtp_server.received[0].mail_from.startswith("bounces+")
    html = mail.get_body(("html",)).get_content()
    assert "https://kesher.test/c/" in html and "https://kesher.test/o/" in html
    assert "דנה" in html
    with database.session() as session:
        campaign = session.get_one(Campaign, campaign_id)
        assert campaign.status == "sent" and campaign.finished_at is not None
        sent = session.scalars(select(Event.contact_id).where(Event.type == "email_sent",
                                                              Event.campaign_id == str(campaign_id))).all()
        assert sorted(sent) == sorted(ids)
    # Another pass finds nothing to do and sends nothing.
    send_campaign(database, send_settings, campaign_id)
    assert len(smtp_server.received) == 45


def test_events_are_stored_while_sending_each_once(database, workspace, smtp_server, send_settings,
                                                  monkeypatch) -> None:
    """Events are stored every few messages during the pass: on PostgreSQL by a thread of the pass
    while it goes on sending, on SQLite (one writer) by the pass itself between batches."""
    from kesher.campaigns import sending
    from kesher.channels import outbox

    monkeypatch.setattr(sending, "RECORD_EVERY", 10)
    threads: list[bool] = []
    mark_recorded = outbox.mark_recorded

    def noted(session, ids):
        if ids:
            threads.append(threading.current_thread() is threading.main_thread())
        return mark_recorded(session, ids)

    monkeypatch.setattr(outbox, "mark_recorded", noted)
    campaign_id, ids = _start(database, workspace, 60)
    send_campaign(database, send_settings.model_copy(update={"send_batch": 10}), campaign_id)
    assert len(smtp_server.counts()) == 60
    assert len(threads) > 1
    if database.engine.dialect.name == "postgresql":
        assert not all(threads)  # some stored meanwhile
    else:
        assert all(threads)
    with database.session() as session:
        sent = session.scalars(select(Event.contact_id).where(Event.type == "email_sent",
                                                              Event.campaign_id == str(campaign_id))).all()
        assert sorted(sent) == sorted(ids)
        assert not session.scalars(select(OutboxMessage.id).where(OutboxMessage.campaign_id == campaign_id,
                                                                  OutboxMessage.recorded.is_(False))).all()


def test_waves_are_planned_once_on_postgresql_and_their_connection_goes_back_as_it_came(
        database, workspace, smtp_server, send_settings, monkeypatch) -> None:
    if database.engine.dialect.name != "postgresql":
        pytest.skip("plans are PostgreSQL's")
    from kesher.campaigns import sending

    seen: list[tuple[str, object]] = []
    mark_sent = sending.outbox.mark_sent

    def noted(connection, ids, *args, **kwargs):
        seen.append((connection.exec_driver_sql("SHOW plan_cache_mode").scalar(),
                     connection.connection.driver_connection))
        return mark_sent(connection, ids, *args, **kwargs)

    monkeypatch.setattr(sending.outbox, "mark_sent", noted)
    campaign_id, _ = _start(database, workspace, 5)
    send_campaign(database, send_settings, campaign_id)
    assert len(smtp_server.counts()) == 5
    assert {mode for mode, _ in seen} == {"force_generic_plan"}
    driver = seen[0][1]
    assert driver.execute("SHOW plan_cache_mode").fetchone()[0] == "force_custom_plan"  # the engine's own
    driver.rollback()


def test_a_campaign_shows_each_recipient_its_purchases_rollups_and_segments(database, workspace, smtp_server,
                                                                           send_settings) -> None:
    from kesher.events.ingest import ingest
    from kesher.segments import service as segments

    html = ('{% segment "קונים" %}<p>שוב תודה!</p>{% else %}<p>ברוכים הבאים</p>{% endsegment %}'
            "<p>קניות: {{ rollups.purchase_count }}</p>{{ products.last_bought }}")
    with database.session() as session:
        campaign_id, ids = make_campaign(session, workspace, 2, variants=[{"subject": "פרסומת: חדש", "html": html}])
        ws = session.get_one(Workspace, workspace.id)
        line = {"sku": "VIT-D", "name": "ויטמין D3", "category": "vitamins", "price": 49.9}
        assert ingest(session, ws, [{"type": "purchase", "contact": {"id": ids[0]},
                                     "properties": {"order_id": "1", "items": [line]}}]).errors == []
        segments.create_segment(session, ws, "קונים", {"stat": "purchase_count", "op": "gte", "value": 1})
        service.send(session, ws, campaign_id)
    send_campaign(database, send_settings, campaign_id)
    html_of = {r.to: r.message.get_body(("html",)).get_content() for r in smtp_server.received}
    buyer, other = html_of["person0@example.com"], html_of["person1@example.com"]
    assert "שוב תודה" in buyer and "קניות: 1" in buyer and "ויטמין D3" in buyer
    assert "ברוכים הבאים" in other and "קניות: 0" in other and "ויטמין D3" not in other


def test_a_campaign_reads_no_purchases_when_its_templates_show_none(database, workspace, smtp_server,
                                                                    send_settings) -> None:
    from sqlalchemy import event

    campaign_id, _ = _start(database, workspace, 3)
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):  # noqa: ANN001 - SQLAlchemy's listener signature
        statements.append(statement)

    event.listen(database.engine, "before_cursor_execute", seen)
    try:
        send_campaign(database, send_settings, campaign_id)
    finally:
        event.remove(database.engine, "before_cursor_execute", seen)
    assert len(smtp_server.counts()) == 3
    assert not [s for s in statements if "FROM purchase_items" in s or "segment_members" in s]


def test_a_throttling_server_gets_the_message_later_and_slower(database, workspace, smtp_server, send_settings) -> None:
    campaign_id, _ = _start(database, workspace, 10)
    smtp_server.replies["person3@example.com"] = ["454 4.7.0 throttling, try later", "454 4.7.0 throttling"]
    first = send_campaign(database, send_settings, campaign_id)
    assert first.deferred >= 1
    _run_until_done(database, send_settings, campaign_id)
    counts = smtp_server.counts()
    assert len(counts) == 10 and set(counts.values()) == {1}
    with database.session() as session:
        row = session.scalars(select(OutboxMessage).where(OutboxMessage.address == "person3@example.com",
                                                       OutboxMessage.campaign_id == campaign_id)).one()
        assert row.status == "sent" and row.attempts == 2


def test_a_refused_recipient_fails_and_is_suppressed(database, workspace, smtp_server, send_settings) -> None:
    campaign_id, _ = _start(database, workspace, 5)
    smtp_server.replies["person1@example.com"] = ["550 5.1.1 no such user"]
    _run_until_done(database, send_settings, campaign_id)
    assert set(smtp_server.counts()) == {f"person{i}@example.com" for i in (0, 2, 3, 4)}
    with database.session() as session:
        row = session.scalars(select(OutboxMessage).where(OutboxMessage.address == "person1@example.com",
                                                       OutboxMessage.campaign_id == campaign_id)).one()
        assert row.status == "failed" and row.error.startswith("550")
        assert session.scalars(select(Suppression.reason).where(Suppression.address == "person1@example.com",
                                                           Suppression.workspace_id == workspace.id)).one() \
            == "hard_bounce"
        bounced = session.scalars(select(Event.properties).where(Event.type == "email_bounced", Event.workspace_id == workspace.id)).all()
        assert [b["bounce_type"] for b in bounced] == ["hard"]


def test_pause_stops_at_once_and_resume_skips_nobody(database, workspace, smtp_server, send_settings) -> None:
    campaign_id, _ = _start(database, workspace, 60)
    paused = threading.Event()

    def pause_after_ten(_item) -> None:
        if len(smtp_server.received) >= 10 and not paused.is_set():
            paused.set()
            with database.session() as session:
                service.pause(session, session.get_one(Workspace, workspace.id), campaign_id)

    smtp_server.on_receive = pause_after_ten
    report = send_campaign(database, send_settings, campaign_id)
    assert report.stopped == "paused"
    during = len(smtp_server.received)
    assert 10 <= during < 60
    send_campaign(database, send_settings, campaign_id)  # paused: nothing more goes out
    assert len(smtp_server.received) == during
    smtp_server.on_receive = None
    with database.session() as session:
        service.resume(session, session.get_one(Workspace, workspace.id), campaign_id)
    _run_until_done(database, send_settings, campaign_id)
    counts = smtp_server.counts()
    assert len(counts) == 60 and set(counts.values()) == {1}


def test_a_sliding_window_never_lets_one_more_through(database, workspace, smtp_server, send_settings) -> None:
    campaign_id, _ = _start(database, workspace, 12, window={"limit": 5, "seconds": 2})
    _run_until_done(database, send_settings, campaign_id)
    assert len(smtp_server.received) == 12
    with database.session() as session:
        times = sorted(session.scalars(select(OutboxMessage.sent_at).where(OutboxMessage.campaign_id == campaign_id)))
    for t in times:
        in_window = [u for u in times if t - timedelta(seconds=2) < u <= t]
        assert len(in_window) <= 5
    assert times[-1] - times[0] >= timedelta(seconds=4)  # 12 at 5 per 2 s needs two full windows


def test_consent_withdrawn_after_the_send_began_is_respected(database, workspace, smtp_server, send_settings) -> None:
    campaign_id, ids = _start(database, workspace, 4)
    with database.session() as session:
        set_consent(session, workspace.id, ids[2], "email", "unsubscribed", source="test")
    _run_until_done(database, send_settings, campaign_id)
    assert "person2@example.com" not in smtp_server.counts() and len(smtp_server.received) == 3
    with database.session() as session:
        row = session.scalars(select(OutboxMessage).where(OutboxMessage.contact_id == ids[2])).one()
        assert row.status == "skipped"


def test_cancel_sends_nothing_more(database, workspace, smtp_server, send_settings) -> None:
    campaign_id, _ = _start(database, workspace, 8)
    with database.session() as session:
        service.cancel(session, session.get_one(Workspace, workspace.id), campaign_id)
    report = send_campaign(database, send_settings, campaign_id)
    assert report.sent == 0 and smtp_server.received == []
    with database.session() as session:
        assert service.progress(session, session.get_one(Campaign, campaign_id)).cancelled == 8


def test_a_scheduled_campaign_waits_for_its_time(database, workspace, smtp_server, send_settings) -> None:
    from kesher.campaigns.tasks import tick

    with database.session() as session:
        campaign_id, _ = make_campaign(session, workspace, 3)
        service.send(session, session.get_one(Workspace, workspace.id), campaign_id,
                     send_at=utcnow() + timedelta(seconds=1))
    started: list[int] = []
    assert tick(database, started.append) == []
    with database.session() as session:
        assert session.get_one(Campaign, campaign_id).status == "scheduled"
    time.sleep(1.1)
    tick(database, started.append)
    assert started == [campaign_id]
    _run_until_done(database, send_settings, campaign_id)
    assert len(smtp_server.received) == 3
