"""A campaign's report: delivery, people's opens and clicks apart from machines', unsubscribes, revenue."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from kesher.accounts.models import Workspace
from kesher.campaigns import report as reports
from kesher.campaigns import service
from kesher.campaigns.models import Campaign
from kesher.campaigns.sending import send_campaign
from kesher.channels.models import OutboxMessage
from kesher.events.ingest import ingest

from .conftest import BODY, make_campaign


def _event(kind: str, contact: int, campaign_id: int, **properties: object) -> dict[str, object]:
    return {"type": kind, "contact": {"id": contact}, "properties": {"campaign_id": str(campaign_id), **properties}}


def test_the_report_counts_people_machines_bounces_and_revenue(database, workspace, smtp_server, send_settings) -> None:
    with database.session() as session:
        campaign_id, ids = make_campaign(session, workspace, 20)
        service.send(session, session.get_one(Workspace, workspace.id), campaign_id)
    send_campaign(database, send_settings, campaign_id)
    with database.session() as session:
        sent = dict(session.execute(select(OutboxMessage.contact_id, OutboxMessage.sent_at)
                                    .where(OutboxMessage.campaign_id == campaign_id)).all())
        assert len(sent) == 20 and all(sent.values())
        a, b, c, d, e, f, g = ids[:7]
        events = [
            _event("email_bounced", a, campaign_id, bounce_type="hard"),
            _event("email_bounced", b, campaign_id, bounce_type="soft"),
            _event("email_opened", c, campaign_id), _event("email_opened", c, campaign_id),  # a person, twice
            _event("email_opened", d, campaign_id, machine=True),  # Apple's proxy only
            _event("email_opened", e, campaign_id, machine=True), _event("email_opened", e, campaign_id),
            _event("email_clicked", c, campaign_id, url="https://shop.example/a"),
            _event("email_clicked", c, campaign_id, url="https://shop.example/a"),
            _event("email_clicked", e, campaign_id, url="https://shop.example/b"),
            _event("email_clicked", f, campaign_id, url="https://shop.example/a", machine=True),  # a link scanner
            _event("unsubscribed", f, campaign_id, channel="email"),
            _event("email_complained", g, campaign_id),
            _event("email_opened", c, 999_999),  # another campaign's
            # Purchases: within the window, before the message, and after the window.
            {"type": "purchase", "contact": {"id": c}, "ts": (sent[c] + timedelta(days=1)).isoformat(),
             "properties": {"order_id": "1", "total": 120.5, "items": []}},
            {"type": "purchase", "contact": {"id": d}, "ts": (sent[d] - timedelta(hours=1)).isoformat(),
             "properties": {"order_id": "2", "total": 80, "items": []}},
            {"type": "purchase", "contact": {"id": e}, "ts": (sent[e] + timedelta(days=6)).isoformat(),
             "properties": {"order_id": "3", "total": 99, "items": []}},
        ]
        assert not ingest(session, session.get_one(Workspace, workspace.id), events).errors
        result = reports.report(session, session.get_one(Campaign, campaign_id))
    t = result.total
    assert (t.sent, t.bounced, t.hard_bounced, t.delivered) == (20, 2, 1, 18)
    assert (t.openers, t.machine_openers, t.opens, t.machine_opens) == (2, 1, 3, 2)
    assert (t.clickers, t.machine_clickers, t.clicks, t.machine_clicks) == (2, 1, 3, 1)
    assert (t.unsubscribed, t.complained, t.orders, t.revenue_minor) == (1, 1, 1, 12050)
    assert t.delivery_rate == 0.9 and t.open_rate == round(2 / 18, 4) and t.click_to_open_rate == 1.0
    assert t.revenue_per_recipient == round(120.5 / 18, 2)
    assert [(link.url, link.clicks, link.clickers) for link in result.links] == [
        ("https://shop.example/a", 2, 1), ("https://shop.example/b", 1, 1)]
    assert result.variants == []  # one variant: no split to show


def test_an_ab_test_reports_each_variant(database, workspace, smtp_server, send_settings) -> None:
    variants = [{"subject": "פרסומת: נושא א", "html": BODY}, {"subject": "פרסומת: נושא ב", "html": BODY}]
    with database.session() as session:
        campaign_id, _ids = make_campaign(session, workspace, 40, variants=variants,
                                          ab={"test_share": 0.5, "metric": "open_rate", "wait_hours": 1})
        service.send(session, session.get_one(Workspace, workspace.id), campaign_id)
    send_campaign(database, send_settings, campaign_id)
    with database.session() as session:
        rows = session.execute(select(OutboxMessage.contact_id, OutboxMessage.variant)
                               .where(OutboxMessage.campaign_id == campaign_id, OutboxMessage.status == "sent")).all()
        openers = [c for c, v in rows if v == "B"]
        ingest(session, session.get_one(Workspace, workspace.id),
               [_event("email_opened", c, campaign_id) for c in openers])
        result = reports.report(session, session.get_one(Campaign, campaign_id))
    by = {f.variant: f for f in result.variants}
    assert set(by) == {"A", "B"} and by["A"].sent + by["B"].sent == result.total.sent == len(rows) > 10
    assert by["B"].open_rate == 1.0 and by["A"].openers == 0 and result.total.openers == len(openers)


def test_the_api_and_the_cli_give_the_same_figures(app, api, database, workspace, smtp_server, send_settings,
                                                   monkeypatch) -> None:
    import json

    from typer.testing import CliRunner

    from kesher.cli import app as cli
    from kesher.config import get_settings

    with database.session() as session:
        campaign_id, ids = make_campaign(session, workspace, 5)
        service.send(session, session.get_one(Workspace, workspace.id), campaign_id)
    send_campaign(database, send_settings, campaign_id)
    with database.session() as session:
        ingest(session, session.get_one(Workspace, workspace.id), [_event("email_opened", ids[0], campaign_id)])
    body = api.get(f"/campaigns/{campaign_id}/report").json()
    assert body["total"]["sent"] == 5 and body["total"]["open_rate"] == 0.2 and body["variants"] == []
    assert api.get("/campaigns/999999/report").status_code == 404
    monkeypatch.setenv("KESHER_DATABASE_URL", database.url)
    get_settings.cache_clear()
    try:
        printed = CliRunner().invoke(cli, ["campaign", "report", str(campaign_id), "--workspace", workspace.slug,
                                           "--json"])
        words = CliRunner().invoke(cli, ["campaign", "report", str(campaign_id), "--workspace", workspace.slug])
    finally:
        get_settings.cache_clear()
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.stdout) == body
    assert "5 sent, 5 delivered (100.0%)" in words.stdout and "opened by 1 (20.0%" in words.stdout
