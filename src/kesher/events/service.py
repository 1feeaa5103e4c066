"""Events as the rest of Kesher reads them: the explorer's queries, a contact's stats, JSONL import.

Every query here runs in one workspace; a contact of another workspace is missing, not empty.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import String, and_, cast, func, or_, select
from sqlalchemy.orm import Session

from kesher.accounts.models import Workspace
from kesher.contacts.service import get_contact
from kesher.db import Database
from kesher.db.base import MAX_ID
from kesher.errors import NotFound, ValidationError
from kesher.events import rollups
from kesher.events.ingest import ingest, settle
from kesher.events.models import CampaignReceipt, CategoryStat, ContactRollup, Event

MAX_PAGE = 500
IMPORT_BATCH = 1000
# Property names are matched inside a JSON path, so they keep to characters that need no escaping.
PROPERTY_NAME = re.compile(r"^[\w.:-]{1,100}$")


# Explorer ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventFilter:
    type: str | None = None
    contact_id: int | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    properties: dict[str, str] = field(default_factory=dict)  # top-level property name -> value as text


def parse_property_filter(text: str) -> tuple[str, str]:
    """`name=value` as (name, value); the value may be empty or hold `=` itself."""
    name, eq, value = text.partition("=")
    if not eq or not PROPERTY_NAME.match(name):
        raise ValidationError("write it as name=value, e.g. campaign_id=c1 (name: letters, digits, _ . : -)",
                              "property")
    return name, value


def find_events(session: Session, workspace_id: int, flt: EventFilter, *, cursor: str | None = None,
                limit: int = 50) -> tuple[list[Event], str | None]:
    """A page of matching events, newest first by when they happened (not when they arrived), and the
    cursor of the next page (None on the last)."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationError("must be between 1 and {most}", "limit", most=MAX_PAGE)
    for at, name in ((flt.since, "since"), (flt.until, "until")):
        if at is not None and at.utcoffset() is None:
            raise ValidationError("give a time zone, e.g. 2026-01-31T10:00:00+02:00 or ...Z", name)
    stmt = select(Event).where(Event.workspace_id == workspace_id)
    if flt.contact_id is not None:
        try:
            get_contact(session, workspace_id, flt.contact_id)
        except NotFound as exc:  # another workspace's contact is missing here, never an empty page
            raise exc.located("contact_id") from None
        stmt = stmt.where(Event.contact_id == flt.contact_id)
    if flt.type:
        stmt = stmt.where(Event.type == flt.type)
    if flt.since:
        stmt = stmt.where(Event.ts >= flt.since)
    if flt.until:
        stmt = stmt.where(Event.ts < flt.until)
    for name, value in flt.properties.items():
        # The cast makes a number compare as its text on SQLite too, as ->> does on PostgreSQL.
        stmt = stmt.where(cast(Event.properties[name].as_string(), String) == value)
    if cursor:
        ts, event_id = _decode_position(cursor)
        stmt = stmt.where(or_(Event.ts < ts, and_(Event.ts == ts, Event.id < event_id)))
    rows = list(session.scalars(stmt.order_by(Event.ts.desc(), Event.id.desc()).limit(limit + 1)))
    next_cursor = _encode_position(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def _encode_position(event: Event) -> str:
    """A page ends at an event: its time, and its id to order events of the same time."""
    raw = f"{event.ts.isoformat()}|{event.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_position(cursor: str) -> tuple[datetime, int]:
    try:
        ts, _, event_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().partition("|")
        at, number = datetime.fromisoformat(ts), int(event_id)
    except ValueError:
        at, number = None, 0
    if at is None or at.utcoffset() is None or not 1 <= number <= MAX_ID:
        raise ValidationError("is not a cursor this API gave out", "cursor")
    return at, number


# Clicked links ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkClicks:
    """One link of one campaign: how often it was clicked, and by how many contacts."""

    campaign_id: str
    url: str | None
    clicks: int
    clickers: int
    last_click_at: datetime


def clicked_links(session: Session, workspace_id: int, limit: int = 1000) -> list[LinkClicks]:
    """Every link clicked in each campaign with its total clicks and unique clickers, in one grouped
    query; the campaign clicked most recently first, and its links by clicks."""
    url = cast(Event.properties["url"].as_string(), String)
    rows = session.execute(
        select(Event.campaign_id, url, func.count(), func.count(Event.contact_id.distinct()), func.max(Event.ts))
        .where(Event.workspace_id == workspace_id, Event.type == "email_clicked", Event.campaign_id.is_not(None))
        .group_by(Event.campaign_id, url).order_by(func.max(Event.ts).desc()).limit(limit)).all()
    latest: dict[str, datetime] = {}
    for row in rows:
        latest[row[0]] = max(latest.get(row[0], row[4]), row[4])
    links = [LinkClicks(*row) for row in rows]
    return sorted(links, key=lambda link: (-latest[link.campaign_id].timestamp(), link.campaign_id, -link.clicks))


def campaign_responders(workspace_id: int, campaign_id: str, event_type: str, *, human_only: bool = True) -> Any:
    """The contacts who did `event_type` (email_opened, email_clicked) in a campaign, as a subquery;
    opens and clicks marked `machine` (privacy proxies, link scanners) left out when `human_only`."""
    where = [Event.workspace_id == workspace_id, Event.type == event_type, Event.campaign_id == campaign_id]
    if human_only:
        machine = Event.properties["machine"].as_boolean()
        where.append(or_(machine.is_(None), machine.is_(False)))
    return select(Event.contact_id).where(*where).distinct()


def purchases_since(workspace_id: int, since: datetime) -> Any:
    """Purchases (contact, time, amount in agorot) from `since`, as a subquery for attribution."""
    return select(Event.contact_id, Event.ts, Event.amount_minor).where(
        Event.workspace_id == workspace_id, Event.type == "purchase", Event.ts >= since)


# A contact's stats ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContactStats:
    """A contact's rollup with the figures derived from it, its categories and its last campaigns."""

    rollup: ContactRollup
    categories: list[CategoryStat]
    last_campaigns: list[CampaignReceipt]

    @property
    def total_revenue(self) -> float:
        """Purchases less refunds, in ILS."""
        return (self.rollup.revenue_minor - self.rollup.refunds_minor) / 100

    @property
    def avg_order_value(self) -> float | None:
        """Average purchase in ILS (refunds not deducted); None before the first purchase."""
        if not self.rollup.purchase_count:
            return None
        return round(self.rollup.revenue_minor / self.rollup.purchase_count / 100, 2)

    @property
    def avg_days_between_purchases(self) -> float | None:
        """Mean gap between purchases in days; None until there are two."""
        first, last, count = self.rollup.first_purchase_at, self.rollup.last_purchase_at, self.rollup.purchase_count
        if count < 2 or first is None or last is None:
            return None
        return round((last - first).total_seconds() / 86400 / (count - 1), 2)


def contact_stats(session: Session, workspace_id: int, contact_id: int) -> ContactStats:
    """The stats of a contact of this workspace (NotFound otherwise); zeros before its first event."""
    contact = get_contact(session, workspace_id, contact_id)
    rollup = rollups.contact_rollup(session, contact.id) or ContactRollup(
        contact_id=contact.id, workspace_id=workspace_id,
        **{c: rollups.ZERO[k] for c, k in rollups.CONTACT_KINDS.items()})
    categories = list(session.scalars(select(CategoryStat).where(CategoryStat.contact_id == contact.id)
                                      .order_by(CategoryStat.last_purchase_at.desc(), CategoryStat.category)))
    return ContactStats(rollup, categories, rollups.last_campaigns(session, contact.id))


# JSONL import -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineError:
    line: int
    field: str
    message: str


@dataclass
class ImportTotals:
    accepted: int = 0
    duplicates: int = 0
    errors: list[LineError] = field(default_factory=list)


def import_jsonl(db: Database, workspace_id: int, path: Path, *, batch_size: int = IMPORT_BATCH, region: str = "IL",
                 progress: Callable[[int], None] | None = None, history: bool = False) -> ImportTotals:
    """Ingest a file of one JSON event a line, `batch_size` lines a transaction; memory stays flat.

    A line that is not JSON (or not UTF-8) fails alone; blank lines are skipped. `progress` hears
    the bytes read so far. An unreadable file raises OSError before anything is stored. With
    `history`, the events are stored in bulk and rollups, stages and segments computed once at
    the end (`ingest.settle`).
    """
    totals = ImportTotals()
    batch: list[Any] = []
    lines: list[int] = []  # the line number of each item of `batch`
    done = 0
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            done += len(raw)
            try:
                text = raw.decode("utf-8").removeprefix("\ufeff").strip()
                if text:
                    batch.append(json.loads(text))
                    lines.append(number)
            except UnicodeDecodeError:
                totals.errors.append(LineError(number, "event", "not UTF-8 text"))
            except json.JSONDecodeError as exc:
                totals.errors.append(LineError(number, "event", f"not JSON: {exc.msg} (column {exc.colno})"))
            if len(batch) >= batch_size:
                _ingest_lines(db, workspace_id, batch, lines, region, totals, history)
                batch, lines = [], []
                if progress:
                    progress(done)
        _ingest_lines(db, workspace_id, batch, lines, region, totals, history)
    if history:
        settle(db, workspace_id)
    if progress:
        progress(done)
    totals.errors.sort(key=lambda e: e.line)
    return totals


def _ingest_lines(db: Database, workspace_id: int, batch: list[Any], lines: list[int], region: str,
                  totals: ImportTotals, history: bool) -> None:
    if not batch:
        return
    with db.session() as session:
        result = ingest(session, session.get_one(Workspace, workspace_id), batch, source="import", region=region,
                        history=history)
    totals.accepted += result.accepted
    totals.duplicates += result.duplicates
    totals.errors += [LineError(lines[e.index], e.field, e.message) for e in result.errors]
