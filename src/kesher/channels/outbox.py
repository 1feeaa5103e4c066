"""The outbox: every message of every channel is a row here, with a unique key, before it is sent.

A row's life: `queued` (due at `not_before`) -> `sending` (claimed by one worker until
`claimed_until`) -> `sent`, `failed`, `skipped` or `cancelled`; a temporary failure puts it back to
`queued` later, with back-off.

Exactly once: the key (campaign + contact, or enrollment + step) makes a message exist once; a
claim is taken with `FOR UPDATE SKIP LOCKED` on PostgreSQL (SQLite has a single claimer), so two
workers never hold the same row; and a row becomes `sent` in the database *before* the message is
finally handed over (the SMTP end-of-data), by the worker whose claim it still is. A worker that
dies holding claims leaves rows whose message no server accepted; once the claim expires another
worker sends them (on SQLite, the next worker to start gives them back at once: `release_all`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (BigInteger, Connection, Dialect, Select, String, and_, any_, bindparam, false, func,
                        literal_column, null, select, update)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from kesher.campaigns.models import Campaign
from kesher.channels.models import OutboxMessage
from kesher.db.upsert import dialect_insert, generic_plans, in_json_array, one_of, sqlite_text_time, value_array

OUTBOX = OutboxMessage.__table__
MAX_ATTEMPTS = 8
COLUMNS = ("workspace_id", "key", "channel", "campaign_id", "variant", "contact_id", "address", "status", "not_before")


@dataclass(frozen=True)
class Claimed:
    id: int
    workspace_id: int
    key: str
    campaign_id: int | None
    variant: str | None
    contact_id: int
    address: str
    attempts: int


def enqueue(session: Session, rows: Select[Any]) -> int:
    """Write the messages `rows` selects (columns named as COLUMNS) unless their key exists; how many were new."""
    stmt = dialect_insert(session, OUTBOX).from_select(list(COLUMNS), rows).on_conflict_do_nothing()
    if session.get_bind().dialect.name == "sqlite":
        return session.execute(stmt).rowcount or 0
    # psycopg reports no row count for INSERT ... SELECT; count what RETURNING gives, in the server.
    written = stmt.returning(OUTBOX.c.id).cte("written")
    with generic_plans(session):  # each new row's contact is checked by a query of its own
        return int(session.scalar(select(func.count()).select_from(written)) or 0)


def claim(session: Session, campaign_id: int, token: str, *, limit: int, lease: timedelta, now: datetime) -> list[Claimed]:
    """Take up to `limit` due messages of the campaign for this worker (`token`) until now + lease.

    Claims a dead worker left first (they are few), then queued messages in the order they fall due,
    the order of the index on (campaign_id, status, not_before): a batch costs the same whether ten
    messages wait or a million.
    """
    taken: list[Claimed] = []
    for status, due, order in (("sending", OUTBOX.c.claimed_until < now, OUTBOX.c.claimed_until),
                               ("queued", OUTBOX.c.not_before <= now, OUTBOX.c.not_before)):
        if len(taken) >= limit:
            break
        ids = (select(OUTBOX.c.id).where(OUTBOX.c.campaign_id == campaign_id, OUTBOX.c.status == status, due)
               .order_by(order).limit(limit - len(taken)).with_for_update(skip_locked=True))
        rows = session.execute(
            update(OUTBOX).where(OUTBOX.c.id.in_(ids))
            .values(status="sending", claim_token=token, claimed_until=now + lease)
            .returning(OUTBOX.c.id, OUTBOX.c.workspace_id, OUTBOX.c.key, OUTBOX.c.campaign_id, OUTBOX.c.variant,
                       OUTBOX.c.contact_id, OUTBOX.c.address, OUTBOX.c.attempts)).all()
        taken += (Claimed(*row) for row in rows)
    return sorted(taken, key=lambda c: c.id)


def _mine(ids: Iterable[int], token: str) -> Any:
    return and_(OUTBOX.c.id.in_(list(ids)), OUTBOX.c.claim_token == token, OUTBOX.c.status == "sending")


def message_id(outbox_id: int, domain: str) -> str:
    """The Message-ID of an outbox message; `mark_sent` stores the same text, so either side can find the other."""
    return f"<kesher.{outbox_id}@{domain}>"


@cache
def _mark_sent_sql(dialect: Dialect, if_sending: bool) -> tuple[str, tuple[str, ...] | None]:
    """`mark_sent`'s statement as its driver takes it (the SQL, and the order of its ? parameters), made once.

    It runs once for every few messages sent (each wave of the SMTP pool), where SQLAlchemy's own
    work per execution (its compiled cache, an IN list expanded into one parameter per id, a bind
    processor per value, a result object) cost more than the statement: given to the driver, the
    ids in one array (PostgreSQL) or one JSON text (SQLite), a wave is recorded in half (PostgreSQL)
    to two thirds (SQLite) of the CPU time.
    """
    if dialect.name == "postgresql":
        ids = OUTBOX.c.id == any_(bindparam("ids", type_=ARRAY(BigInteger)))
    else:
        ids = in_json_array(OUTBOX.c.id, bindparam("ids"))
    stmt = (update(OUTBOX)
            .where(ids, OUTBOX.c.claim_token == bindparam("token"), OUTBOX.c.status == literal_column("'sending'"))
            .values(status=literal_column("'sent'"), sent_at=bindparam("now"), claim_token=null(), claimed_until=null(),
                    error=literal_column("''"), message_id=literal_column("'<kesher.'", String)
                    + func.cast(OUTBOX.c.id, String) + bindparam("domain_end", type_=String))
            .returning(OUTBOX.c.id))
    if if_sending:  # in the same statement, so that a wave that counts nothing before it locks nothing
        stmt = stmt.where(select(Campaign.status).where(Campaign.id == bindparam("the_campaign")).scalar_subquery()
                          == literal_column("'sending'"))
    compiled = stmt.compile(dialect=dialect)
    return str(compiled), compiled.positiontup


def mark_sent(session: Session | Connection, ids: Sequence[int], token: str, now: datetime, domain: str, *,
              campaign_id: int | None = None) -> set[int]:
    """Record these messages as sent, those still claimed by `token`; returns the ids recorded.

    With `campaign_id`, only while that campaign is sending (a pause or a cancel records none)."""
    if not ids:
        return set()
    if isinstance(session, Session):
        session.flush()  # the driver's statement sees only what the database holds
        connection = session.connection()
    else:
        connection = session
    sql, order = _mark_sent_sql(connection.dialect, campaign_id is not None)
    sqlite = connection.dialect.name == "sqlite"
    values = {"ids": value_array(connection.dialect.name, ids), "token": token,
              "now": sqlite_text_time(now) if sqlite else now, "domain_end": f"@{domain}>", "the_campaign": campaign_id}
    driver = connection.connection.driver_connection
    assert driver is not None
    rows = driver.execute(sql, [values[name] for name in order] if order else values).fetchall()
    return {row[0] for row in rows}


def release(session: Session, ids: Sequence[int], token: str, not_before: datetime) -> None:
    """Give back claimed messages that were not sent (paused, throttled): due again at `not_before`."""
    if ids:
        session.execute(update(OUTBOX).where(_mine(ids, token))
                        .values(status="queued", not_before=not_before, claim_token=None, claimed_until=None))


def release_all(session: Session) -> int:
    """Give back every claim on the messages of campaigns under way; how many.

    For the start of the only worker of a SQLite database (`kesher.worker`): a claim found then was
    left by a process that died, and would otherwise hold its messages until its lease ran out. No
    server took any of them (a claimed message is recorded `sent` before its dot). Were a pass still
    at work after all (`kesher campaign send` in another process), its commit would find its claims
    gone and send none of them: work lost, never a message twice.
    """
    under_way = select(Campaign.id).where(Campaign.status.in_(("sending", "paused")))
    return session.execute(update(OUTBOX).where(OUTBOX.c.campaign_id.in_(under_way), OUTBOX.c.status == "sending")
                           .values(status="queued", claim_token=None, claimed_until=None)).rowcount or 0


def unsend(session: Session, message_id: int, error: str, now: datetime, *, permanent: bool,
           base: float = 60.0) -> None:
    """A message recorded as sent that the server then refused at the end of data: correct its row."""
    row = session.get_one(OutboxMessage, message_id)
    if permanent or row.attempts + 1 >= MAX_ATTEMPTS:
        values: dict[str, Any] = {"status": "failed", "sent_at": None}
    else:
        values = {"status": "queued", "sent_at": None, "not_before": now + backoff(row.attempts + 1, base)}
    session.execute(update(OUTBOX).where(OUTBOX.c.id == message_id)
                    .values(attempts=OUTBOX.c.attempts + 1, error=error[:1000], **values))


def backoff(attempt: int, base: float = 60.0) -> timedelta:
    """Wait before attempt `attempt` + 1: 1, 4, 16 minutes ... at most 6 hours (with base 60 s)."""
    return timedelta(seconds=min(base * 4 ** (attempt - 1), 6 * 3600))


def defer(session: Session, ids: Sequence[int], token: str, error: str, now: datetime, *, base: float = 60.0) -> int:
    """A temporary failure (4xx, lost connection): try again later; give up after MAX_ATTEMPTS. Returns how many gave up."""
    gave_up = 0
    for row in session.execute(select(OUTBOX.c.id, OUTBOX.c.attempts).where(_mine(ids, token))).all():
        attempts = row.attempts + 1
        if attempts >= MAX_ATTEMPTS:
            values: dict[str, Any] = {"status": "failed", "error": f"gave up after {attempts} attempts: {error}"[:1000]}
            gave_up += 1
        else:
            values = {"status": "queued", "not_before": now + backoff(attempts, base), "error": error[:1000]}
        session.execute(update(OUTBOX).where(OUTBOX.c.id == row.id)
                        .values(attempts=attempts, claim_token=None, claimed_until=None, **values))
    return gave_up


def finish(session: Session, ids: Sequence[int], token: str | None, status: str, error: str = "") -> list[int]:
    """End messages as `failed` or `skipped` (with the reason); returns the ids changed."""
    if not ids:
        return []
    where = _mine(ids, token) if token else and_(OUTBOX.c.id.in_(list(ids)), OUTBOX.c.status.in_(("queued", "sending")))
    return list(session.scalars(update(OUTBOX).where(where)
                                .values(status=status, error=error[:1000], claim_token=None, claimed_until=None)
                                .returning(OUTBOX.c.id)))


def cancel(session: Session, campaign_id: int) -> int:
    """Cancel every message of the campaign not yet sent (claims included: their commit will find none)."""
    return session.execute(update(OUTBOX).where(OUTBOX.c.campaign_id == campaign_id,
                                                OUTBOX.c.status.in_(("queued", "sending")))
                           .values(status="cancelled", claim_token=None, claimed_until=None)).rowcount or 0


def counts(session: Session, campaign_id: int) -> dict[str, int]:
    rows = session.execute(select(OUTBOX.c.status, func.count()).where(OUTBOX.c.campaign_id == campaign_id)
                           .group_by(OUTBOX.c.status)).all()
    return {status: n for status, n in rows}


def variant_counts(session: Session, campaign_id: int) -> dict[str | None, int]:
    """Messages sent per variant of the campaign."""
    rows = session.execute(select(OUTBOX.c.variant, func.count()).where(
        OUTBOX.c.campaign_id == campaign_id, OUTBOX.c.status == "sent").group_by(OUTBOX.c.variant)).all()
    return {variant: n for variant, n in rows}


def next_due(session: Session, campaign_id: int) -> datetime | None:
    """When the campaign's next queued message is due, or a claim expires; None when nothing is left."""
    queued = session.scalar(select(func.min(OUTBOX.c.not_before)).where(
        OUTBOX.c.campaign_id == campaign_id, OUTBOX.c.status == "queued"))
    claimed = session.scalar(select(func.min(OUTBOX.c.claimed_until)).where(
        OUTBOX.c.campaign_id == campaign_id, OUTBOX.c.status == "sending"))
    times = [t for t in (queued, claimed) if t is not None]
    return min(times) if times else None


def live_claimers(session: Session, campaign_id: int, now: datetime) -> int:
    """How many workers hold messages of the campaign now (passes at work on it)."""
    return int(session.scalar(select(func.count(OUTBOX.c.claim_token.distinct())).where(
        OUTBOX.c.campaign_id == campaign_id, OUTBOX.c.status == "sending", OUTBOX.c.claimed_until >= now)) or 0)


def sent_since(session: Session | Connection, campaign_id: int, since: datetime) -> tuple[int, datetime | None]:
    """How many of the campaign's messages were sent after `since`, and the earliest of them."""
    n, first = session.execute(select(func.count(), func.min(OUTBOX.c.sent_at)).where(
        OUTBOX.c.campaign_id == campaign_id, OUTBOX.c.status == "sent", OUTBOX.c.sent_at > since)).one()
    return int(n), first


def sent_counts(session: Session, channel: str, contact_ids: Sequence[int], since: datetime) -> dict[int, int]:
    """Messages on `channel` sent to each of these contacts after `since` (frequency caps)."""
    rows = session.execute(select(OUTBOX.c.contact_id, func.count()).where(
        one_of(session, OUTBOX.c.contact_id, contact_ids), OUTBOX.c.sent_at > since, OUTBOX.c.channel == channel,
        OUTBOX.c.status == "sent").group_by(OUTBOX.c.contact_id)).all()
    return {cid: n for cid, n in rows}


def unrecorded(session: Session, campaign_id: int, limit: int = 1000) -> list[Any]:
    """Sent or failed messages whose event is not stored yet.

    On PostgreSQL the rows stay locked to this transaction and rows another worker is recording are
    skipped, so two workers never store the same events at once (the second would wait on the
    first's idempotency keys, then fail on them). SQLite has one writer at a time anyway.
    """
    return list(session.execute(select(OUTBOX.c.id, OUTBOX.c.workspace_id, OUTBOX.c.key, OUTBOX.c.contact_id,
                                       OUTBOX.c.status, OUTBOX.c.sent_at, OUTBOX.c.message_id, OUTBOX.c.error,
                                       OUTBOX.c.variant, OUTBOX.c.address)
                                .where(OUTBOX.c.campaign_id == campaign_id, OUTBOX.c.recorded == false(),
                                       OUTBOX.c.status.in_(("sent", "failed")))
                                .order_by(OUTBOX.c.id).limit(limit).with_for_update(skip_locked=True)).all())


def mark_recorded(session: Session, ids: Sequence[int]) -> None:
    if ids:
        session.execute(update(OUTBOX).where(one_of(session, OUTBOX.c.id, ids)).values(recorded=True))


def find(session: Session, message_id: int) -> OutboxMessage | None:
    return session.get(OutboxMessage, message_id)
