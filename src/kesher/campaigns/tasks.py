"""The campaigns' clock, run by the worker every minute and at start-up.

It starts what is due: scheduled campaigns whose time has come, A/B tests whose wait is over, and
a sending pass for every sending campaign that has messages due and no worker holding any (after a
restart, a crash, a pause and resume, or a back-off). Passes themselves run as queue tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select

from kesher.accounts.models import Workspace
from kesher.campaigns import abtest, service
from kesher.campaigns.models import Campaign
from kesher.channels import outbox
from kesher.config import Settings
from kesher.db import Database
from kesher.db.base import utcnow

log = logging.getLogger("kesher.campaigns")


def tick(db: Database, start_pass: Callable[[int], None], now: datetime | None = None, *, passes: int = 1) -> list[int]:
    """Start what is due; returns the campaigns a pass was started for (once per pass started).

    Each sending campaign with due messages gets passes until `passes` workers hold its messages:
    with several worker processes, as many as there are processes share a campaign.
    """
    now = now or utcnow()
    with db.session() as session:
        for campaign in session.scalars(select(Campaign).where(Campaign.status == "scheduled", Campaign.send_at <= now)):
            try:
                with session.begin_nested():
                    written = service.begin(session, session.get_one(Workspace, campaign.workspace_id), campaign, now)
                log.info("campaign %s: scheduled time reached, %s messages queued", campaign.id, written)
            except Exception:
                log.exception("campaign %s: could not start", campaign.id)
        for campaign in session.scalars(select(Campaign).where(Campaign.status == "testing")):
            if abtest.due(campaign, now):
                decision = abtest.conclude(session, session.get_one(Workspace, campaign.workspace_id), campaign, now)
                log.info("campaign %s: A/B test decided for %s (significant: %s)", campaign.id, decision.winner,
                         decision.significant)
    started = []
    with db.session() as session:
        for campaign_id in session.scalars(select(Campaign.id).where(Campaign.status == "sending")):
            due = outbox.next_due(session, campaign_id)
            if due is None or due <= now:
                started += [campaign_id] * max(passes - outbox.live_claimers(session, campaign_id, now), 0)
    for campaign_id in started:
        start_pass(campaign_id)
    return started


def start_pass(settings: Settings, campaign_id: int, database_url: str | None = None) -> None:
    """Queue a sending pass over the campaign (in this process at once when the queue is immediate)."""
    from kesher.worker import queue

    queue(settings).enqueue("send_campaign", database_url or settings.database_url, campaign_id)
