"""Custom field definitions and typed values."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kesher.accounts.service import audit
from kesher.contacts.models import FIELD_TYPES, CustomField
from kesher.contacts.normalize import BUILTIN_FIELDS, parse_date, reject_control
from kesher.errors import Conflict, NotFound, ValidationError

MAX_TEXT_VALUE = 5000
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_TRUE = {"1", "true", "yes", "y", "כן", "v", "✓"}
_FALSE = {"0", "false", "no", "n", "לא", ""}
VALUE_COLUMN = {"text": "value_text", "choice": "value_text", "number": "value_number", "date": "value_date",
                "boolean": "value_bool"}


@dataclass(frozen=True)
class FieldSpec:
    """What typing a value needs to know of a custom field; plain data, so it can go to a worker process."""

    id: int
    key: str
    type: str
    choices: tuple[str, ...] = ()

    @classmethod
    def of(cls, field: CustomField) -> FieldSpec:
        return cls(field.id, field.key, field.type, tuple(field.choices or ()))


def key_from_label(label: str) -> str:
    """A field key for a column header; Hebrew headers get a stable transliteration-free key."""
    key = re.sub(r"[^a-z0-9]+", "_", label.strip().lower()).strip("_")
    if not key or not key[0].isalpha():
        key = "f_" + (key or format(abs(hash_label(label)), "x"))
    return key[:64]


def hash_label(label: str) -> int:
    # A deterministic (not per-process) hash, so the same Hebrew header maps to the same key on every run.
    value = 0
    for ch in label.strip():
        value = (value * 131 + ord(ch)) % (1 << 40)
    return value


def create_field(
    session: Session, workspace_id: int, key: str, label: str, type: str, choices: list[str] | None = None,
    actor: str = "system",
) -> CustomField:
    if not _KEY.match(key):
        raise ValidationError("must start with a letter and hold only a-z, 0-9 and _ (64 at most)", "key")
    if key in BUILTIN_FIELDS:
        raise ValidationError(f"{key!r} is a built-in field", "key")
    if type not in FIELD_TYPES:
        raise ValidationError(f"must be one of {', '.join(FIELD_TYPES)}", "type")
    if not label.strip():
        raise ValidationError("must not be empty", "label")
    choices = [c.strip() for c in (choices or []) if c.strip()]
    if type == "choice" and not choices:
        raise ValidationError("a choice field needs at least one choice", "choices")
    if session.scalar(select(CustomField.id).where(CustomField.workspace_id == workspace_id, CustomField.key == key)):
        raise Conflict(f"a field {key!r} exists", "key")
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
        raise NotFound(f"no custom field {field_id}", "id")
    return field


def delete_field(session: Session, workspace_id: int, field_id: int, actor: str = "system") -> None:
    field = get_field(session, workspace_id, field_id)
    audit(session, workspace_id, actor, "field.deleted", "custom_field", field.id, {"key": field.key})
    session.delete(field)


def coerce(field: CustomField | FieldSpec, raw: Any) -> Any:
    """The typed value of `raw` for this field, None for blank; ValidationError names the field key."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    name = field.key
    if field.type == "text":
        text = reject_control(str(raw), name).strip()
        if len(text) > MAX_TEXT_VALUE:
            raise ValidationError(f"is {len(text):,} characters long; at most {MAX_TEXT_VALUE:,} are allowed", name)
        return text
    if field.type == "number":
        if isinstance(raw, bool):
            raise ValidationError("is not a number", name)
        try:
            return float(str(raw).replace(",", "").strip()) if not isinstance(raw, (int, float)) else float(raw)
        except ValueError:
            raise ValidationError(f"{str(raw)[:40]!r} is not a number", name) from None
    if field.type == "date":
        return parse_date(raw, name)
    if field.type == "boolean":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValidationError(f"{str(raw)[:40]!r} is not yes/no", name)
    text = str(raw).strip()
    if text not in field.choices:
        raise ValidationError(f"{text[:40]!r} is not one of: {', '.join(field.choices)}", name)
    return text


def value_row(field: CustomField | FieldSpec, contact_id: int, workspace_id: int, value: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"contact_id": contact_id, "field_id": field.id, "workspace_id": workspace_id,
                           "value_text": None, "value_number": None, "value_date": None, "value_bool": None}
    row[VALUE_COLUMN[field.type]] = value
    return row


def read_value(field: CustomField | FieldSpec, row: Any) -> str | float | date | bool | None:
    return getattr(row, VALUE_COLUMN[field.type])
