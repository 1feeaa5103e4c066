"""Contacts: read, change, delete and search, one workspace at a time."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from kesher.accounts.service import audit
from kesher.contacts.fields import fields_by_key, read_value, value_row
from kesher.contacts.inputs import ContactInput, FieldSpec, validate_contact
from kesher.contacts.models import (
    CHANNELS, CONSENT_STATUSES, Consent, Contact, ContactList, ContactTag, CustomField, FieldValue, ListMembership, Tag,
)
from kesher.contacts.normalize import IDENTITY_FIELDS
from kesher.contacts.changes import contacts_changed
from kesher.contacts.upsert import Outcome, upsert_contacts
from kesher.db.base import MAX_ID, utcnow
from kesher.db.upsert import one_of, same_workspace, upsert
from kesher.errors import Conflict, NotFound, ValidationError

MAX_PAGE = 500


def build_input(
    session: Session | None, workspace_id: int, ref: int, data: dict[str, Any], region: str = "IL",
    known_fields: dict[str, CustomField] | dict[str, FieldSpec] | None = None,
) -> ContactInput:
    """Validate one contact given as a dict of built-in fields, `fields` and `consent`.

    The workspace's custom fields are read when `known_fields` is not given.
    """
    if known_fields is None:
        known_fields = fields_by_key(session, workspace_id)  # type: ignore[arg-type]
    return validate_contact(ref, data, known_fields, region)


def save_contact(
    session: Session, workspace_id: int, data: dict[str, Any], *, actor: str = "api", region: str = "IL",
) -> Outcome:
    """Create a contact, or merge into the one with the same external id, email or phone."""
    outcome = upsert_contacts(session, workspace_id, [build_input(session, workspace_id, 0, data, region)],
                              source=actor.split(":")[0])[0]
    if outcome.status == "error":
        raise outcome.errors[0]
    if outcome.status != "unchanged":
        audit(session, workspace_id, actor, f"contact.{outcome.status}", "contact", outcome.contact_id,
              _jsonable({k: v for k, v in data.items() if k != "consent"}))
    return outcome


def get_contact(session: Session, workspace_id: int, contact_id: int) -> Contact:
    contact = session.scalar(select(Contact).where(Contact.workspace_id == workspace_id, Contact.id == contact_id))
    if contact is None:
        raise NotFound("no contact {id}", "id", id=contact_id)
    return contact


def update_contact(
    session: Session, workspace_id: int, contact_id: int, data: dict[str, Any], *, actor: str = "api",
    region: str = "IL",
) -> Contact:
    """Change the given fields of one contact; a blank value clears a field (except all identities)."""
    contact = get_contact(session, workspace_id, contact_id)
    item = build_input(session, workspace_id, 0, data, region)
    if item.errors:
        raise item.errors[0]
    for key in IDENTITY_FIELDS:
        value = item.values.get(key)
        if value is None or value == getattr(contact, key):
            continue
        other = session.scalar(select(Contact.id).where(
            Contact.workspace_id == workspace_id, getattr(Contact, key) == value, Contact.id != contact.id))
        if other is not None:
            raise Conflict("{value} belongs to another contact ({other})", key, value=value, other=other)
    changes: dict[str, Any] = {}
    for key, value in item.values.items():
        if value is None and key in ("language", "timezone"):
            continue  # these always have a value; blank means "leave as is"
        if getattr(contact, key) != value:
            changes[key] = [_jsonable(getattr(contact, key)), _jsonable(value)]
            setattr(contact, key, value)
    if not any(getattr(contact, k) for k in IDENTITY_FIELDS):
        raise ValidationError("a contact needs an email, a phone or an external id", "email")
    _set_fields(session, contact, item.fields, changes)
    for channel, status in item.consent.items():
        set_consent(session, workspace_id, contact.id, channel, status, source=actor)
    if changes:
        contact.updated_at = utcnow()
        audit(session, workspace_id, actor, "contact.updated", "contact", contact.id, changes)
    session.flush()
    if changes:
        contacts_changed(session, workspace_id, [contact.id])
    return contact


def _set_fields(session: Session, contact: Contact, values: dict[CustomField, Any], changes: dict[str, Any]) -> None:
    for fld, value in values.items():
        stored = session.get(FieldValue, (contact.id, fld.id))
        old = read_value(fld, stored) if stored is not None else None
        if old == value:
            continue
        changes[f"fields.{fld.key}"] = [_jsonable(old), _jsonable(value)]
        if value is None:
            session.delete(stored)
        else:
            upsert(session, FieldValue.__table__, [value_row(fld, contact.id, contact.workspace_id, value)],
                   ("contact_id", "field_id"), ("value_text", "value_number", "value_date", "value_bool"))


def delete_contact(session: Session, workspace_id: int, contact_id: int, *, actor: str = "api") -> None:
    contact = get_contact(session, workspace_id, contact_id)
    audit(session, workspace_id, actor, "contact.deleted", "contact", contact.id,
          {"email": contact.email, "phone": contact.phone})
    session.delete(contact)
    session.flush()


@dataclass
class ContactDetail:
    contact: Contact
    fields: dict[str, Any]
    lists: list[ContactList]
    tags: list[Tag]
    consent: dict[str, Consent]


def contact_detail(session: Session, workspace_id: int, contact_id: int) -> ContactDetail:
    contact = get_contact(session, workspace_id, contact_id)
    fields = {}
    for fld, value in session.execute(
        select(CustomField, FieldValue).join(FieldValue, FieldValue.field_id == CustomField.id)
        .where(FieldValue.contact_id == contact.id)
    ):
        fields[fld.key] = read_value(fld, value)
    lists = list(session.scalars(select(ContactList).join(ListMembership).where(ListMembership.contact_id == contact.id)
                                 .order_by(ContactList.name)))
    tags = list(session.scalars(select(Tag).join(ContactTag).where(ContactTag.contact_id == contact.id)
                                .order_by(Tag.name)))
    consent = {c.channel: c for c in session.scalars(select(Consent).where(Consent.contact_id == contact.id))}
    return ContactDetail(contact, fields, lists, tags, consent)


def set_consent(
    session: Session, workspace_id: int, contact_id: int, channel: str, status: str, *, source: str,
    ip: str | None = None, text_shown: str | None = None, actor: str | None = None,
    changed_at: datetime | None = None,
) -> Consent:
    """Record a consent decision with its proof (where, from which address, what the person saw).

    `actor` is who recorded it for the audit log when that is not the source itself (an API key
    reporting a checkout form's consent). `changed_at` is when the person decided, when that was
    before Kesher heard of it (a store reporting its checkout); by default, now.
    """
    if channel not in CHANNELS:
        raise ValidationError("must be one of {choices}", "channel", choices=", ".join(CHANNELS))
    if status not in CONSENT_STATUSES:
        raise ValidationError("must be one of {choices}", "status", choices=", ".join(CONSENT_STATUSES))
    get_contact(session, workspace_id, contact_id)
    consent = session.get(Consent, (contact_id, channel))
    before = consent.status if consent else None
    if consent is None:
        consent = Consent(contact_id=contact_id, channel=channel, workspace_id=workspace_id)
        session.add(consent)
    consent.status, consent.source, consent.ip, consent.text_shown = status, source, ip, text_shown
    consent.changed_at = changed_at or utcnow()
    session.flush()
    if before != status:
        audit(session, workspace_id, actor or source, "consent.changed", "contact", contact_id,
              {"channel": channel, "status": [before, status], "ip": ip})
        contacts_changed(session, workspace_id, [contact_id])
    return consent


def consent_is(channel: str, status: str) -> Any:
    """`contacts` whose consent on `channel` is `status`, as a condition other packages compose."""
    return exists().where(Consent.contact_id == Contact.id, Consent.channel == channel, Consent.status == status)


# Search -----------------------------------------------------------------------------------------


@dataclass
class ContactFilter:
    """What the contacts table, the API and exports filter on."""

    q: str | None = None
    list_id: int | None = None
    tag_id: int | None = None
    city: str | None = None
    consent: str | None = None  # a channel with granted consent
    field_filters: dict[str, Any] = field(default_factory=dict)
    where: list[Any] = field(default_factory=list)  # conditions on Contact from other packages (a segment's members)


def _prefix(column: Any, text: str) -> Any:
    # A range instead of LIKE, so both databases use the index whatever their LIKE collation.
    return and_(column >= text, column < text + "\U0010ffff")


def _search_clause(q: str, region: str) -> Any:
    q = q.strip()
    if "@" in q:
        return _prefix(Contact.email, q.lower())
    digits = q.lstrip("+").replace("-", "").replace(" ", "")
    if digits.isdigit():
        if q.startswith("+"):
            return _prefix(Contact.phone, "+" + digits)
        local = "+972" + digits[1:] if region == "IL" and digits.startswith("0") else "+" + digits
        return or_(_prefix(Contact.phone, local), Contact.external_id == q)
    first, _, last = q.partition(" ")
    if last:
        return or_(and_(Contact.first_name == first, _prefix(Contact.last_name, last)), _prefix(Contact.first_name, q))
    return or_(_prefix(Contact.first_name, q), _prefix(Contact.last_name, q), _prefix(Contact.email, q.lower()),
               Contact.external_id == q)


def filtered(workspace_id: int, flt: ContactFilter, region: str = "IL") -> Select[Any]:
    stmt = select(Contact).where(Contact.workspace_id == workspace_id)
    if flt.q:
        stmt = stmt.where(_search_clause(flt.q, region))
    if flt.list_id is not None:
        stmt = stmt.where(exists().where(ListMembership.list_id == flt.list_id, ListMembership.contact_id == Contact.id))
    if flt.tag_id is not None:
        stmt = stmt.where(exists().where(ContactTag.tag_id == flt.tag_id, ContactTag.contact_id == Contact.id))
    if flt.city:
        stmt = stmt.where(Contact.city == flt.city)
    if flt.consent:
        stmt = stmt.where(exists().where(Consent.contact_id == Contact.id, Consent.channel == flt.consent,
                                         Consent.status == "granted"))
    return stmt.where(*flt.where)


def encode_cursor(contact_id: int) -> str:
    return base64.urlsafe_b64encode(str(contact_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        contact_id = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except ValueError:
        contact_id = 0
    if not 1 <= contact_id <= MAX_ID:
        raise ValidationError("is not a cursor this API gave out", "cursor")
    return contact_id


def search(
    session: Session, workspace_id: int, flt: ContactFilter, *, cursor: str | None = None, limit: int = 50,
) -> tuple[list[Contact], str | None]:
    """A page of contacts, newest first; the cursor fetches the next page (keyset, so page 10,000 is fast)."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationError("must be between 1 and {most}", "limit", most=MAX_PAGE)
    stmt = filtered(workspace_id, flt)
    if cursor:
        stmt = stmt.where(Contact.id < decode_cursor(cursor))
    rows = list(session.scalars(stmt.order_by(Contact.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


def count(session: Session, workspace_id: int, flt: ContactFilter) -> int:
    sub = filtered(workspace_id, flt).with_only_columns(Contact.id).subquery()
    return session.scalar(select(func.count()).select_from(sub)) or 0


def stream(session: Session, workspace_id: int, flt: ContactFilter, batch: int = 2000) -> Iterator[list[Contact]]:
    """Every matching contact in batches of `batch`, by keyset, so memory stays flat for any list size."""
    last: int | None = None
    while True:
        stmt = filtered(workspace_id, flt)
        if last is not None:
            stmt = stmt.where(Contact.id > last)
        rows = list(session.scalars(stmt.order_by(Contact.id).limit(batch)))
        if not rows:
            return
        yield rows
        session.expunge_all()
        last = rows[-1].id


def display_names(session: Session, workspace_id: int, contact_ids: Iterable[int]) -> dict[int, str]:
    """How to name each of many contacts in one query: full name, else email, else phone, else external id."""
    ids = list(set(contact_ids))
    if not ids:
        return {}
    stmt = select(Contact.id, Contact.first_name, Contact.last_name, Contact.email, Contact.phone,
                  Contact.external_id).where(same_workspace(session, Contact.workspace_id, workspace_id),
                                              one_of(session, Contact.id, ids))
    names = {}
    for contact_id, first, last, email, phone, external in session.execute(stmt):
        full = " ".join(part for part in (first, last) if part)
        names[contact_id] = full or email or phone or external or ""
    return {cid: name for cid, name in names.items() if name}


def custom_values(session: Session, contact_ids: list[int], fields: list[CustomField]) -> dict[tuple[int, str], Any]:
    """Custom values of many contacts in one query, keyed by (contact id, field key)."""
    if not contact_ids or not fields:
        return {}
    by_id = {f.id: f for f in fields}
    stmt = select(FieldValue).where(FieldValue.contact_id.in_(contact_ids), FieldValue.field_id.in_(list(by_id)))
    return {(v.contact_id, by_id[v.field_id].key): read_value(by_id[v.field_id], v) for v in session.scalars(stmt)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
