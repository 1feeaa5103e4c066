"""The one way events come in: validated one by one, stored once, rollups updated in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from pydantic import ValidationError as PydanticError
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kesher.accounts.models import Workspace
from kesher.contacts.inputs import ContactInput
from kesher.contacts.models import Contact
from kesher.contacts.normalize import normalize_email, normalize_phone
from kesher.contacts.upsert import upsert_contacts
from kesher.db import Database
from kesher.db.base import utcnow
from kesher.db.session import hold_writer_turn
from kesher.db.upsert import generic_plans, in_key_order, insert_new, insert_with_ids, lookup, same_workspace
from kesher.errors import ValidationError
from kesher.events import lifecycle, rollups
from kesher.events.models import Event, PurchaseItem
from kesher.events.schemas import TYPED_EVENTS, EventIn, IngestError, IngestResult, properties_model
from kesher.segments import membership

EVENTS = Event.__table__


@dataclass
class Accepted:
    """A valid event, with its contact resolved and its row ready."""

    index: int
    event: EventIn
    properties: dict[str, Any]  # as stored: checked by the type's model, properties it leaves unset left out
    ts: datetime
    contact_key: tuple[str, Any] | None
    contact_id: int | None = None


def _fail(result: IngestResult, index: int, field: str, message: str) -> None:
    result.errors.append(IngestError(index=index, field=field, message=message))


def _loc(prefix: str, loc: Sequence[Any]) -> str:
    return ".".join([prefix, *(str(p) for p in loc)]) if prefix else ".".join(str(p) for p in loc) or "event"


def _message(err: Any) -> str:
    # A validator's own message reads better without pydantic's "Value error, " in front.
    return str(err["ctx"]["error"]) if err["type"] == "value_error" else str(err["msg"])


def validate(raw: Sequence[Any], result: IngestResult, region: str, now: datetime) -> list[Accepted]:
    accepted = []
    for index, item in enumerate(raw):
        checked = _valid_at_once(item)
        if checked is not None:
            event, properties = checked
        else:  # checked in two steps, so that the error found first is the one reported
            try:
                event = EventIn.model_validate(item)
            except PydanticError as exc:
                err = exc.errors()[0]
                _fail(result, index, _loc("", err["loc"]), _message(err))
                continue
            try:
                model = properties_model(event.type)
                properties = model.model_validate(event.properties).model_dump(exclude_none=True)  # type: ignore[union-attr]
            except PydanticError as exc:
                err = exc.errors()[0]
                _fail(result, index, _loc("properties", err["loc"]), _message(err))
                continue
        try:
            key = _contact_key(event, region)
        except ValidationError as exc:
            _fail(result, index, f"contact.{exc.field}", exc.message)
            continue
        # In UTC from here on, the zone it is stored in: an offset parsed from JSON is a zone of
        # pydantic's, slower to ask for its offset, and each of an event's rows asks (its row, its
        # purchase lines, its contact's rollups).
        accepted.append(Accepted(index, event, properties, event.ts.astimezone(UTC) if event.ts else now, key))
    return accepted


def _valid_at_once(item: Any) -> tuple[EventIn, dict[str, Any]] | None:
    """The event checked in one pass, and its properties as stored, when it is of a canonical type
    and valid; None otherwise, and `validate` checks it in two steps to say what is wrong.

    The properties are handed back beside the event, not set on it: a model's attribute set after
    checking goes through pydantic's `__setattr__`, 1% of an ingest's instructions on SQLite."""
    kind = item.get("type") if isinstance(item, dict) else None
    typed = TYPED_EVENTS.get(kind) if isinstance(kind, str) else None
    if typed is None:
        return None
    try:
        event = typed.model_validate(item)
    except PydanticError:
        return None
    return event, event.properties.model_dump(exclude_none=True)  # type: ignore[attr-defined]


def _contact_key(event: EventIn, region: str) -> tuple[str, Any] | None:
    ref = event.contact
    if ref is None:
        return None
    if ref.id:
        return ("id", ref.id)
    if ref.external_id:
        return ("external_id", ref.external_id)
    if ref.email:
        return ("email", normalize_email(ref.email))
    return ("phone", normalize_phone(ref.phone, region))


def _resolve_contacts(session: Session, workspace: Workspace, accepted: list[Accepted], result: IngestResult) -> list[Accepted]:
    """Find each event's contact by one indexed query per kind of key; create missing ones if allowed."""
    wanted: dict[str, set[Any]] = {}
    for a in accepted:
        if a.contact_key:
            wanted.setdefault(a.contact_key[0], set()).add(a.contact_key[1])
    found: dict[tuple[str, Any], int] = {}
    table = Contact.__table__
    for kind, values in wanted.items():
        # By id, the primary key finds them; by the others, the workspace's unique index on that key.
        mine = same_workspace(session, table.c.workspace_id, workspace.id) if kind == "id" else \
            table.c.workspace_id == workspace.id
        rows = lookup(session, table.c[kind], values, [table.c[kind], table.c.id], mine)
        found.update({(kind, v): cid for v, cid in rows})
    missing = {a.contact_key for a in accepted if a.contact_key and a.contact_key not in found}
    creatable = sorted((k for k in missing if k[0] != "id"), key=str)
    if creatable and workspace.settings.get("events_create_contacts", True):
        items = [ContactInput(i, {kind: value}) for i, (kind, value) in enumerate(creatable)]
        for key, outcome in zip(creatable, upsert_contacts(session, workspace.id, items, source="events"), strict=True):
            if outcome.contact_id is not None:
                found[key] = outcome.contact_id
    kept = []
    for a in accepted:
        if a.contact_key is None:
            kept.append(a)
        elif a.contact_key in found:
            a.contact_id = found[a.contact_key]
            kept.append(a)
        else:
            kind, value = a.contact_key
            why = "no such contact in this workspace" if kind == "id" else \
                f"no contact with this {kind}, and this workspace does not create contacts from events"
            _fail(result, a.index, f"contact.{kind}", why)
    return kept


def _drop_replays(session: Session, workspace_id: int, accepted: list[Accepted], result: IngestResult) -> list[Accepted]:
    """An idempotency key already stored, or seen earlier in this batch, is counted once."""
    keys = {a.event.idempotency_key for a in accepted if a.event.idempotency_key}
    seen: set[str] = set()
    if keys:
        rows = lookup(session, EVENTS.c.idempotency_key, keys, [EVENTS.c.idempotency_key],
                      EVENTS.c.workspace_id == workspace_id)
        seen = {key for (key,) in rows}
    fresh = []
    for a in accepted:
        key = a.event.idempotency_key
        if key and key in seen:
            result.duplicates += 1
            continue
        if key:
            seen.add(key)
        fresh.append(a)
    return fresh


def minor_units(amount: float) -> int:
    """Money in agorot, rounded half up once here, so every sum after this is exact."""
    return int((Decimal(str(amount)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _amount(a: Accepted) -> int | None:
    if a.event.type == "purchase":
        return minor_units(a.properties["total"])
    if a.event.type == "refund":
        return minor_units(a.properties["amount"])
    return None


def ingest(session: Session, workspace: Workspace, raw: Sequence[Any], *, source: str = "api",
           region: str = "IL", history: bool = False) -> IngestResult:
    """Store every valid event of `raw` and update rollups; report each rejected one by its index.

    With `history`, only the events and their purchase lines are written: the way to load a past
    of millions of events in bulk. `settle` then recomputes, once, everything they feed.
    """
    result = IngestResult()
    now = utcnow()
    accepted = validate(raw, result, region, now)
    hold_writer_turn(session)  # what follows may write, from creating contacts on
    accepted = _resolve_contacts(session, workspace, accepted, result)
    for attempt in (1, 2):
        duplicates_before = result.duplicates
        fresh = _drop_replays(session, workspace.id, accepted, result)
        try:
            with session.begin_nested():
                store(session, workspace.id, fresh, source, now, history=history)
            break
        except IntegrityError:
            # Another request stored one of these idempotency keys meanwhile: look again, once.
            result.duplicates = duplicates_before
            if attempt == 2:
                raise
    result.accepted = len(fresh)
    result.errors.sort(key=lambda e: e.index)
    return result


def store(session: Session, workspace_id: int, accepted: list[Accepted], source: str, now: datetime, *,
          history: bool = False) -> list[int]:
    """Write events (and purchase lines) known to be new, and fold them into the rollups (unless `history`).

    Returns the new events' ids in the order they were written: by idempotency key on PostgreSQL."""
    if not accepted:
        return []
    rows = [{"workspace_id": workspace_id, "contact_id": a.contact_id, "anonymous_id": a.event.anonymous_id,
             "type": a.event.type, "ts": a.ts, "received_at": now, "idempotency_key": a.event.idempotency_key,
             "source": source, "amount_minor": _amount(a), "campaign_id": a.properties.get("campaign_id"),
             "properties": a.properties} for a in accepted]
    # Two calls replaying some of the same new keys at once insert them in one order (see `in_key_order`).
    rows = in_key_order(session, EVENTS, rows, ["idempotency_key"])
    ids = insert_with_ids(session, EVENTS, rows)
    items = [{"event_id": event_id, "workspace_id": workspace_id, "contact_id": row["contact_id"], "ts": row["ts"],
              "sku": i["sku"], "name": i.get("name", ""), "category": i.get("category", ""),
              "price": i.get("price", 0.0), "quantity": i.get("quantity", 1.0)}
             for row, event_id in zip(rows, ids, strict=True) if row["type"] == "purchase"
             for i in row["properties"].get("items", [])]
    insert_new(session, PurchaseItem.__table__, items)
    if history:
        return ids
    known = [row for row in rows if row["contact_id"] is not None]
    with generic_plans(session):  # rollup rows this transaction made have their foreign keys checked on update
        rollups.apply(session, workspace_id, known, items)
    _after_rollups(session, session.get_one(Workspace, workspace_id), known, now)
    return ids


def _after_rollups(session: Session, workspace: Workspace, rows: list[dict[str, Any]], now: datetime) -> None:
    """What the new rollups move, in the same transaction: lifecycle stages, then segment membership."""
    touched: dict[int, set[str]] = {}
    for row in rows:
        touched.setdefault(row["contact_id"], set()).add(row["type"])
    lifecycle.refresh(session, workspace, touched, now)
    membership.on_change(session, workspace, touched, now)


def settle(db: Database, workspace_id: int, now: datetime | None = None) -> None:
    """After a load of history: rollups rebuilt from all the events, then lifecycle and segments.

    Each step is its own transaction (segments one per segment), so running it again after an
    interruption finishes the job; until it has run, the loaded events are stored but not counted.
    """
    with db.session() as session:
        rollups.rebuild(session, workspace_id)
    lifecycle.refresh_all(db, now, workspace_id=workspace_id)
    membership.refresh_all(db, now, workspace_id=workspace_id)


def attach_anonymous(session: Session, workspace: Workspace, anonymous_id: str, contact_id: int) -> int:
    """Give a visitor's anonymous events (and their purchase lines) to the contact the visitor turned out to be.

    Only events without a contact move, and they are folded into the rollups as they move, so
    attaching the same visitor again counts nothing twice. Returns how many events moved.
    """
    # The rows come back as plain dicts, the shape `rollups.apply` takes; no loaded object needs updating.
    moved = [dict(row) for row in session.execute(
        update(Event).where(Event.workspace_id == workspace.id, Event.anonymous_id == anonymous_id,
                            Event.contact_id.is_(None))
        .values(contact_id=contact_id).returning(*EVENTS.c).execution_options(synchronize_session=False)).mappings()]
    if not moved:
        return 0
    purchases = [row["id"] for row in moved if row["type"] == "purchase"]
    items = [dict(row) for row in session.execute(
        update(PurchaseItem).where(PurchaseItem.event_id.in_(purchases)).values(contact_id=contact_id)
        .returning(*PurchaseItem.__table__.c).execution_options(synchronize_session=False)).mappings()
    ] if purchases else []
    rollups.apply(session, workspace.id, moved, items)
    _after_rollups(session, workspace, moved, utcnow())
    return len(moved)
