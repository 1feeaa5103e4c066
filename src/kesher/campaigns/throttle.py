"""A campaign's pace: at most `rate_per_second`, and at most `window_limit` in any `window_seconds`.

Both are sliding windows over the times messages were recorded as sent, read from the outbox, so
any number of workers together keep one limit, exactly: the count and the recording happen under
a lock on the campaign's row (PostgreSQL) or in SQLite's single writer. Before claiming, a worker
asks for the room left (`room`) so it does not prepare messages it may not send; when it records
them (`allow`) the same count decides again, and what does not fit goes back to the queue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from kesher.campaigns.models import Campaign
from kesher.channels import outbox


@dataclass(frozen=True)
class Window:
    limit: int
    seconds: float


@dataclass(frozen=True)
class Room:
    messages: int | None  # None: no limit
    free_at: datetime | None  # when there is room again, if there is none now


def windows(campaign: Campaign) -> list[Window]:
    found = []
    if campaign.rate_per_second:
        rate = campaign.rate_per_second
        # 0.5 a second is one message in any 2 seconds; 20 a second is 20 in any second.
        found.append(Window(math.floor(rate), 1.0) if rate >= 1 else Window(1, 1 / rate))
    if campaign.window_limit and campaign.window_seconds:
        found.append(Window(campaign.window_limit, float(campaign.window_seconds)))
    return found


def room(session: Session | Connection, campaign_id: int, limits: list[Window], now: datetime) -> Room:
    """How many more messages the campaign may record as sent at `now` under `limits` (its `windows`)."""
    left: int | None = None
    free_at: datetime | None = None
    for window in limits:
        n, first = outbox.sent_since(session, campaign_id, now - timedelta(seconds=window.seconds))
        here = max(window.limit - n, 0)
        left = here if left is None else min(left, here)
        if here == 0 and first is not None:
            at = first + timedelta(seconds=window.seconds)
            free_at = at if free_at is None else max(free_at, at)
    return Room(left, free_at if left == 0 else None)


_LOCK = select(Campaign.status).where(Campaign.id == bindparam("campaign_id")).with_for_update()


def lock(session: Session | Connection, campaign_id: int) -> str | None:
    """Lock the campaign's row until the transaction ends (PostgreSQL); returns its status now."""
    return session.scalar(_LOCK, {"campaign_id": campaign_id})
