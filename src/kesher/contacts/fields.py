"""Custom field definitions and typed values."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kesher.accounts.service import audit
from kesher.contacts.inputs import FIELD_KEY, FIELD_TYPES, VALUE_COLUMN, FieldSpec
from kesher.contacts.models import CustomField
from kesher.contacts.changes import refuse_if_segments_use
from kesher.contacts.normalize import BUILTIN_FIELDS
from kesher.errors import Conflict, NotFound, ValidationError




def create_field(
    session: Session, workspace_id: int, key: str, label: str, type: str, choices: list[str] | None = None,
    actor: str = "system",
) -> CustomField:
    if not FIELD_KEY.match(key):
        raise ValidationError("must start with a letter and hold only a-z, 0-9 and _ (64 at most)", "key")
    if key in BUILTIN_FIELDS:
        raise ValidationError("{key!r} is a built-in field", "key", key=key)
    if type not in FIELD_TYPES:
        raise ValidationError("must be one of {choices}", "type", choices=", ".join(FIELD_TYPES))
    if not label.strip():
        raise ValidationError("must not be empty", "label")
    choices = [c.strip() for c in (choices or []) if c.strip()]
    if type == "choice" and not choices:
        raise ValidationError("a choice field needs at least one choice", "choices")
    if session.scalar(select(CustomField.id).where(CustomField.workspace_id == workspace_id, CustomField.key == key)):
        raise Conflict("a field {key!r} exists", "key", key=key)
    field = CustomField(workspace_id=workspace_id, key=key, label=label.strip(), type=type, choices=choices)
    session.add(field)
    session.flush()
    audit(session, workspace_id, actor, "field.created", "custom_field", field.id, {"key": key, "type": type})
    return field


def list_fields(session: Session, workspace_id: int) -> list[CustomField]:
    return list(session.scalars(select(CustomField).where(CustomField.workspace_id == workspace_id).order_by(CustomField.id)))


def fields_by_key(session: Session, workspace_id: int) -> dict[str, CustomField]:
    return {f.key: f for f in list_fields(session, workspace_id)}


def get_field(session: Session, workspace_id: int, field_id: int) -> CustomField:
    field = session.scalar(select(CustomField).where(CustomField.workspace_id == workspace_id, CustomField.id == field_id))
    if field is None:
        raise NotFound("no custom field {id}", "id", id=field_id)
    return field


def delete_field(session: Session, workspace_id: int, field_id: int, actor: str = "system") -> None:
    field = get_field(session, workspace_id, field_id)
    refuse_if_segments_use(session, workspace_id, "field", field.id, field.key)
    audit(session, workspace_id, actor, "field.deleted", "custom_field", field.id, {"key": field.key})
    session.delete(field)


def value_row(field: CustomField | FieldSpec, contact_id: int, workspace_id: int, value: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"contact_id": contact_id, "field_id": field.id, "workspace_id": workspace_id,
                           "value_text": None, "value_number": None, "value_date": None, "value_bool": None}
    row[VALUE_COLUMN[field.type]] = value
    return row


def read_value(field: CustomField | FieldSpec, row: Any) -> str | float | date | bool | None:
    return getattr(row, VALUE_COLUMN[field.type])
