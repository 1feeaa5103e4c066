"""Validating incoming contacts, with no database: usable in worker processes and anywhere else.

The vocabulary of the contacts domain (channels, consent states, field types) lives here too,
so that checking a row needs nothing heavier than the normalisers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kesher.contacts.normalize import BUILTIN_FIELDS, normalize_contact, parse_date, reject_control
from kesher.errors import ValidationError

CHANNELS = ("email", "sms", "whatsapp")
CONSENT_STATUSES = ("granted", "pending", "denied", "unsubscribed")
FIELD_TYPES = ("text", "number", "date", "boolean", "choice")
FIELD_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_TEXT_VALUE = 5000
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
    def of(cls, field: Any) -> FieldSpec:
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


def coerce(field: Any, raw: Any) -> Any:
    """The typed value of `raw` for this field, None for blank; ValidationError names the field key."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    name = field.key
    if field.type == "text":
        text = reject_control(str(raw), name).strip()
        if len(text) > MAX_TEXT_VALUE:
            raise ValidationError("is {length:,} characters long; at most {limit:,} are allowed", name,
                                  length=len(text), limit=MAX_TEXT_VALUE)
        return text
    if field.type == "number":
        if isinstance(raw, bool):
            raise ValidationError("is not a number", name)
        try:
            return float(str(raw).replace(",", "").strip()) if not isinstance(raw, (int, float)) else float(raw)
        except ValueError:
            raise ValidationError("{value!r} is not a number", name, value=str(raw)[:40]) from None
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
        raise ValidationError("{value!r} is not yes/no", name, value=str(raw)[:40])
    text = str(raw).strip()
    if text not in field.choices:
        raise ValidationError("{value!r} is not one of: {choices}", name, value=text[:40],
                              choices=", ".join(field.choices))
    return text


@dataclass
class ContactInput:
    """One incoming contact: clean built-in values, typed custom values, consent by channel."""

    ref: int
    values: dict[str, Any]
    fields: dict[Any, Any] = field(default_factory=dict)
    consent: dict[str, str] = field(default_factory=dict)
    errors: list[ValidationError] = field(default_factory=list)
    # When the person became a contact, if known from elsewhere (a store, a migration); else now.
    created_at: datetime | None = None



def validate_contact(ref: int, data: dict[str, Any], known_fields: dict[str, Any], region: str = "IL") -> ContactInput:
    """One contact given as a dict of built-in fields, `fields` and `consent`, checked in full:
    every problem is collected, not just the first."""
    unknown = set(data) - set(BUILTIN_FIELDS) - {"fields", "consent"}
    values, errors = normalize_contact(data, region)
    errors += [ValidationError("is not a contact field", name) for name in sorted(unknown)]
    typed: dict[Any, Any] = {}
    for key, raw in (data.get("fields") or {}).items():
        fld = known_fields.get(key)
        if fld is None:
            errors.append(ValidationError("no such custom field; create it first", f"fields.{key}"))
            continue
        try:
            typed[fld] = coerce(fld, raw)
        except ValidationError as exc:
            errors.append(exc.located(f"fields.{key}"))
    consent: dict[str, str] = {}
    for channel, status in (data.get("consent") or {}).items():
        if channel not in CHANNELS:
            errors.append(ValidationError("must be one of {choices}", f"consent.{channel}",
                                          choices=", ".join(CHANNELS)))
        elif status not in CONSENT_STATUSES:
            errors.append(ValidationError("must be one of {choices}", f"consent.{channel}",
                                          choices=", ".join(CONSENT_STATUSES)))
        else:
            consent[channel] = status
    return ContactInput(ref, values, typed, consent, errors)


