"""A/B tests: the statistics, and a test from its share to the winner sent to the rest."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from sqlalchemy import select

from kesher.accounts.models import Workspace
from kesher.campaigns import abtest, service
from kesher.campaigns.abtest import Arm
from kesher.campaigns.models import Campaign
from kesher.campaigns.sending import send_campaign
from kesher.channels.models import OutboxMessage
from kesher.db.base import utcnow
from kesher.events.ingest import ingest

from .conftest import BODY, make_campaign


def test_two_proportion_z_matches_the_textbook() -> None:
    # 200 of 1000 against 150 of 1000: pooled 0.175, z = 0.05 / sqrt(.175 * .825 * .002) = 2.943
    z, p = abtest.two_proportion_z(Arm("B", 1000, 0.2, 200), Arm("A", 1000, 0.15, 150))
    assert z == pytest.approx(2.9430, abs=1e-3)
    assert p == pytest.approx(0.00325, abs=1e-4)


def test_a_small_difference_keeps_the_default_and_says_so() -> None:
    decision = abtest.decide([Arm("A", 100, 0.20, 20), Arm("B", 100, 0.23, 23)], "open_rate")
    assert decision.winner == "A" and not decision.significant and decision.p_value > 0.05
    assert decision.method == "two-proportion z-test"


def test_a_clear_difference_wins() -> None:
    decision = abtest.decide([Arm("A", 2000, 0.15, 300), Arm("B", 2000, 0.20, 400)], "open_rate")
    assert decision.winner == "B" and decision.significant and decision.p_value < 0.001


def test_revenue_uses_welch() -> None:
    a = Arm("A", 500, 10.0, variance=400.0)
    b = Arm("B", 500, 16.0, variance=900.0)
    z, p = abtest.welch(b, a)
    assert z == pytest.approx(6 / math.sqrt(400 / 500 + 900 / 500))
    decision = abtest.decide([a, b], "revenue")
    assert decision.winner == "B" and decision.significant and decision.method.startswith("Welch")


def test_a_test_sends_its_share_then_the_winner_to_the_rest(database, workspace, smtp_server, send_settings) -> None:
    from kesher.campaigns.tasks import tick

    variants = [{"subject": "פרסומת: נושא א", "html": BODY}, {"subject": "פרסומת: נושא ב", "html": BODY}]
    with database.session() as session:
        campaign_id, ids = make_campaign(session, workspace, 200, variants=variants,
                                         ab={"test_share": 0.4, "metric": "open_rate", "wait_hours": 1})
        service.send(session, session.get_one(Workspace, workspace.id), campaign_id)
    send_campaign(database, send_settings, campaign_id)
    test_size = len(smtp_server.received)
    assert 50 < test_size < 110  # about 40% of 200
    with database.session() as session:
        campaign = session.get_one(Campaign, campaign_id)
        assert campaign.status == "testing"
        rows = session.execute(select(OutboxMessage.contact_id, OutboxMessage.variant)
                               .where(OutboxMessage.campaign_id == campaign_id)).all()
        by_variant = {v: [c for c, vv in rows if vv == v] for v in ("A", "B")}
        assert by_variant["A"] and by_variant["B"]
        # Everyone who got B opens it; a third of those who got A do.
        openers = by_variant["B"] + by_variant["A"][::3]
        ingest(session, session.get_one(Workspace, workspace.id),
               [{"type": "email_opened", "contact": {"id": c}, "properties": {"campaign_id": str(campaign_id)}}
                for c in openers])
    tick(database, lambda _: None)
    with database.session() as session:
        campaign = session.get_one(Campaign, campaign_id)
        assert campaign.status == "testing"  # the wait is not over
        campaign.ab = {**campaign.ab, "test_sent_at": (utcnow() - timedelta(hours=1, minutes=1)).isoformat()}
    tick(database, lambda _: None)
    with database.session() as session:
        campaign = session.get_one(Campaign, campaign_id)
        assert campaign.ab["winner"] == "B" and campaign.ab["report"]["significant"] is True
        assert campaign.status == "sending"
    send_campaign(database, send_settings, campaign_id)
    counts = smtp_server.counts()
    assert len(counts) == 200 and set(counts.values()) == {1}
    rest = smtp_server.received[test_size:]
    assert {r.message["Subject"] for r in rest} == {"פרסומת: נושא ב"}
