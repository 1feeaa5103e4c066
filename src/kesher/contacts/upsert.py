"""Bulk create-or-merge of contacts: the one write path behind import, the API and the UI.

A batch is matched against the workspace by external id, email and phone with one indexed query
per key, then written with one statement per table, so a batch of thousands costs a handful of
round trips. Rows of the batch that share a key are merged before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kesher.contacts.changes import contacts_changed
from kesher.contacts.fields import read_value, value_row
from kesher.contacts.inputs import ContactInput
from kesher.contacts.models import Consent, ContactTag, Contact, CustomField, FieldValue, ListMembership
from kesher.contacts.normalize import BUILTIN_FIELDS, IDENTITY_FIELDS
from kesher.db.base import utcnow
from kesher.db.upsert import insert_ignore, insert_new, insert_with_ids, lookup, update_rows, upsert
from kesher.errors import ValidationError

CONTACTS = Contact.__table__
WRITABLE = BUILTIN_FIELDS
DEFAULTS = {"language": "he", "timezone": "Asia/Jerusalem"}


@dataclass
class Outcome:
    ref: int
    status: str  # created, updated, unchanged, error
    contact_id: int | None = None
    errors: list[ValidationError] = field(default_factory=list)


@dataclass
class _Group:
    """Rows of one batch that name the same person."""

    head: ContactInput
    values: dict[str, Any]
    fields: dict[CustomField, Any]
    consent: dict[str, str]
    keys: list[tuple[str, Any]]  # the identity keys of `values`, kept as they change
    members: list[tuple[ContactInput, bool]] = field(default_factory=list)  # (row, changed anything)
    contact_id: int | None = None
    existing: dict[str, Any] | None = None
    error: ValidationError | None = None


def _keys(values: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(k, values[k]) for k in IDENTITY_FIELDS if values.get(k)]


def _merge_rows(items: Sequence[ContactInput], outcomes: dict[int, Outcome]) -> list[_Group]:
    groups: list[_Group] = []
    by_key: dict[tuple[str, Any], _Group] = {}
    for item in items:
        if item.errors:
            outcomes[item.ref] = Outcome(item.ref, "error", errors=item.errors)
            continue
        keys = _keys(item.values)
        if not keys:
            err = ValidationError("a contact needs an email, a phone or an external id", "email")
            outcomes[item.ref] = Outcome(item.ref, "error", errors=[err])
            continue
        matched = {id(by_key[k]): by_key[k] for k in keys if k in by_key}
        if len(matched) > 1:
            err = ValidationError("matches two different earlier rows by different keys", keys[-1][0])
            outcomes[item.ref] = Outcome(item.ref, "error", errors=[err])
            continue
        if matched:
            group = next(iter(matched.values()))
            changed = _apply(group.values, item.values) | _apply(group.fields, item.fields)
            changed |= _apply(group.consent, item.consent)
            group.members.append((item, changed))
            keys = group.keys = _keys(group.values)
        else:
            group = _Group(item, {k: v for k, v in item.values.items() if v is not None},
                           {f: v for f, v in item.fields.items() if v is not None}, dict(item.consent), keys)
            groups.append(group)
        for k in keys:
            by_key[k] = group
    return groups


def _apply(target: dict[Any, Any], incoming: dict[Any, Any]) -> bool:
    """Copy non-blank incoming values over target; True when anything changed."""
    changed = False
    for key, value in incoming.items():
        if value is not None and target.get(key) != value:
            target[key] = value
            changed = True
    return changed


def _find_existing(session: Session, workspace_id: int, groups: list[_Group]) -> None:
    wanted: dict[str, set[Any]] = {k: set() for k in IDENTITY_FIELDS}
    group_keys = [group.keys for group in groups]
    for keys in group_keys:
        for k, v in keys:
            wanted[k].add(v)
    found: dict[tuple[str, Any], dict[str, Any]] = {}
    columns = [CONTACTS.c.id, *(CONTACTS.c[f] for f in WRITABLE)]
    for key, values in wanted.items():
        if not values:
            continue
        for row in lookup(session, CONTACTS.c[key], values, columns, CONTACTS.c.workspace_id == workspace_id):
            found[(key, row._mapping[key])] = dict(row._mapping)
    for group, keys in zip(groups, group_keys, strict=True):
        hits = {found[k]["id"]: found[k] for k in keys if k in found}
        if len(hits) > 1:
            names = ", ".join(k for k, v in keys if (k, v) in found)
            group.error = ValidationError("matches {count} different existing contacts (by {names})", keys[-1][0],
                                          count=len(hits), names=names)
        elif hits:
            group.existing = next(iter(hits.values()))
            group.contact_id = group.existing["id"]


# A transaction-scoped lock per workspace for creating contacts: one entry in PostgreSQL's lock table.
_CREATION_LOCK = "hashtextextended('kesher:contacts:' || CAST(:workspace AS text), 0)"
_TRY_TAKE_CREATION = text(f"SELECT pg_try_advisory_xact_lock({_CREATION_LOCK})")
_TAKE_CREATION = text(f"SELECT pg_advisory_xact_lock({_CREATION_LOCK})")


def _take_turn_to_create(session: Session, workspace_id: int, groups: list[_Group]) -> None:
    """On PostgreSQL, when some contacts are new: take the workspace's turn to create contacts, kept
    to the end of the transaction; when another transaction had it, look for the new ones again.

    Two transactions creating the same new contact both found nothing, and the second then waited on
    the unique index for the first to commit and failed; its one retry could meet a third the same
    way (four callers posting the same new people's events lost calls). Taking turns, the second
    looks again once the first has committed, and finds the contact. Only creating takes turns:
    batches whose contacts all exist go on side by side. A turn free at once needs no second look
    (an import's batches), but a creator may have committed between the first look and the turn:
    the unique index then refuses the insert, and the retry finds what it made. SQLite's write
    lock, taken when the savepoint's transaction begins, does all this there.
    """
    new = [group for group in groups if group.existing is None and group.error is None]
    if not new or session.get_bind().dialect.name != "postgresql":
        return
    if not session.scalar(_TRY_TAKE_CREATION, {"workspace": workspace_id}):
        session.execute(_TAKE_CREATION, {"workspace": workspace_id})
        _find_existing(session, workspace_id, new)


def upsert_contacts(
    session: Session, workspace_id: int, items: Sequence[ContactInput], *, source: str = "api",
    list_ids: Iterable[int] = (), tag_ids: Iterable[int] = (), consent_source: str = "",
) -> list[Outcome]:
    """Create or merge every item; the result has one outcome per item, in order.

    Blank incoming values never erase stored ones. Runs in a savepoint and retries once if a
    concurrent writer created one of the same contacts meanwhile, so nothing is half-written.
    """
    list_ids, tag_ids = list(list_ids), list(tag_ids)
    for attempt in (1, 2):
        outcomes: dict[int, Outcome] = {}
        groups = _merge_rows(items, outcomes)
        try:
            with session.begin_nested():
                _find_existing(session, workspace_id, groups)
                _take_turn_to_create(session, workspace_id, groups)
                _write(session, workspace_id, groups, outcomes, source, list_ids, tag_ids, consent_source)
            break
        except IntegrityError:
            if attempt == 2:
                raise
    grouped = bool(list_ids or tag_ids)
    contacts_changed(session, workspace_id, {
        o.contact_id for o in outcomes.values()
        if o.contact_id is not None and (o.status in ("created", "updated") or (grouped and o.status != "error"))})
    return [outcomes[item.ref] for item in items]


def _write(
    session: Session, workspace_id: int, groups: list[_Group], outcomes: dict[int, Outcome], source: str,
    list_ids: list[int], tag_ids: list[int], consent_source: str,
) -> None:
    now = utcnow()
    new = [g for g in groups if g.error is None and g.existing is None]
    old = [g for g in groups if g.error is None and g.existing is not None]
    if new:
        blank = {**dict.fromkeys(WRITABLE), **DEFAULTS, "workspace_id": workspace_id, "source": source, "updated_at": now}
        rows = [{**blank, **g.values, "created_at": g.head.created_at or now} for g in new]
        for group, contact_id in zip(new, insert_with_ids(session, CONTACTS, rows), strict=True):
            group.contact_id = contact_id
    new_ids = {g.contact_id for g in new}
    changed = [g for g in old if any(g.existing[k] != v for k, v in g.values.items())]  # type: ignore[index]
    update_rows(session, CONTACTS, [{"id": g.contact_id, **{f: g.existing[f] for f in WRITABLE},  # type: ignore[index]
                                     **g.values, "updated_at": now} for g in changed], "id")
    fields_changed = _write_fields(session, workspace_id, [g for g in groups if g.error is None and g.fields],
                                   new_ids)
    consent_changed = _write_consent(session, workspace_id, [g for g in groups if g.error is None and g.consent],
                                     consent_source or source, new_ids)
    ok = [g for g in groups if g.error is None]
    for list_id in list_ids:
        _store(session, ListMembership.__table__, [
            {"list_id": list_id, "contact_id": g.contact_id, "workspace_id": workspace_id, "added_at": now} for g in ok
        ], new_ids, ("list_id", "contact_id"))
    for tag_id in tag_ids:
        _store(session, ContactTag.__table__, [
            {"tag_id": tag_id, "contact_id": g.contact_id, "workspace_id": workspace_id, "added_at": now} for g in ok
        ], new_ids, ("tag_id", "contact_id"))
    changed_ids = {id(g) for g in changed} | fields_changed | consent_changed
    for group in groups:
        if group.error is not None:
            for item in [group.head, *(m for m, _ in group.members)]:
                outcomes[item.ref] = Outcome(item.ref, "error", errors=[group.error])
            continue
        status = "created" if group.existing is None else ("updated" if id(group) in changed_ids else "unchanged")
        outcomes[group.head.ref] = Outcome(group.head.ref, status, group.contact_id)
        for item, did_change in group.members:
            # A later row of the same person counts as an update only if the stored contact changed.
            member = "updated" if did_change and status != "unchanged" else "unchanged"
            outcomes[item.ref] = Outcome(item.ref, member, group.contact_id)


def _store(
    session: Session, table: Any, rows: list[dict[str, Any]], new_ids: set[int | None], keys: tuple[str, ...],
    update: tuple[str, ...] = (),
) -> None:
    """Rows of just-created contacts cannot conflict, so they take the bulk path; the rest merge."""
    insert_new(session, table, [r for r in rows if r["contact_id"] in new_ids])
    rest = [r for r in rows if r["contact_id"] not in new_ids]
    if update:
        upsert(session, table, rest, keys, update)
    else:
        insert_ignore(session, table, rest, keys)


def _write_fields(session: Session, workspace_id: int, groups: list[_Group], new_ids: set[int | None]) -> set[int]:
    """Upsert custom values that differ from what is stored; returns ids of groups that changed."""
    if not groups:
        return set()
    field_ids = {f.id for g in groups for f in g.fields}
    known_ids = [g.contact_id for g in groups if g.existing is not None]
    stored: dict[tuple[int, int], Any] = {}
    if known_ids:
        by_id = {f.id: f for g in groups for f in g.fields}
        stmt = select(FieldValue).where(FieldValue.contact_id.in_(known_ids), FieldValue.field_id.in_(field_ids))
        for value in session.scalars(stmt):
            stored[(value.contact_id, value.field_id)] = read_value(by_id[value.field_id], value)
    rows, changed = [], set()
    for group in groups:
        for fld, value in group.fields.items():
            if (group.contact_id, fld.id) in stored and stored[(group.contact_id, fld.id)] == value:
                continue
            rows.append(value_row(fld, group.contact_id, workspace_id, value))  # type: ignore[arg-type]
            if group.existing is not None:
                changed.add(id(group))
    _store(session, FieldValue.__table__, rows, new_ids, ("contact_id", "field_id"),
           ("value_text", "value_number", "value_date", "value_bool"))
    return changed


def _write_consent(
    session: Session, workspace_id: int, groups: list[_Group], source: str, new_ids: set[int | None],
) -> set[int]:
    """Record consent given with the data; an unsubscribe is never overwritten by a bulk write.

    Returns the ids of groups whose stored consent changed."""
    if not groups:
        return set()
    ids = [g.contact_id for g in groups if g.existing is not None]
    stored: dict[tuple[int, str], str] = {}
    if ids:
        stmt = select(Consent.contact_id, Consent.channel, Consent.status).where(Consent.contact_id.in_(ids))
        stored = {(c, ch): st for c, ch, st in session.execute(stmt)}
    now = utcnow()
    rows, changed = [], set()
    for group in groups:
        for channel, status in group.consent.items():
            if stored.get((group.contact_id, channel)) in ("unsubscribed", status):  # type: ignore[arg-type]
                continue
            rows.append({"contact_id": group.contact_id, "channel": channel, "workspace_id": workspace_id,
                         "status": status, "source": source, "changed_at": now})
            if group.existing is not None:
                changed.add(id(group))
    _store(session, Consent.__table__, rows, new_ids, ("contact_id", "channel"), ("status", "source", "changed_at"))
    return changed
