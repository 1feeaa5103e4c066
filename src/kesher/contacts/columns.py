"""Which contact field a spreadsheet column holds, from its header in Hebrew or English."""

from __future__ import annotations

import re
from dataclasses import dataclass

from typing import TYPE_CHECKING

from kesher.contacts.inputs import CHANNELS, FIELD_KEY, key_from_label
from kesher.contacts.normalize import BUILTIN_FIELDS
from kesher.errors import ValidationError

if TYPE_CHECKING:
    from kesher.contacts.models import CustomField

_ALIASES: dict[str, tuple[str, ...]] = {
    "first_name": ("first name", "firstname", "given name", "name", "שם פרטי", "שם", "פרטי"),
    "last_name": ("last name", "lastname", "surname", "family name", "שם משפחה", "משפחה"),
    "email": ("email", "e-mail", "e mail", "email address", "mail", "אימייל", "אי-מייל", "מייל", "דואל", "דוא\"ל",
              "דואר אלקטרוני", "כתובת מייל", "כתובת דואל"),
    "phone": ("phone", "mobile", "cell", "cellphone", "telephone", "phone number", "mobile phone", "טלפון", "נייד",
              "טלפון נייד", "סלולרי", "פלאפון", "מספר טלפון", "טלפון סלולרי"),
    "external_id": ("external id", "customer id", "client id", "id", "מזהה", "מספר לקוח", "קוד לקוח", "מזהה חיצוני"),
    "gender": ("gender", "sex", "מין", "מגדר"),
    "birthday": ("birthday", "birth date", "date of birth", "dob", "תאריך לידה", "יום הולדת"),
    "city": ("city", "town", "עיר", "ישוב", "יישוב", "עיר מגורים"),
    "language": ("language", "lang", "שפה"),
    "timezone": ("timezone", "time zone", "אזור זמן"),
    "consent.email": ("email consent", "consent email", "accepts email", "הסכמה לדיוור", "אישור דיוור",
                      "מאשר דיוור", "הסכמה למייל"),
    "consent.sms": ("sms consent", "consent sms", "accepts sms", "הסכמה לsms", "אישור sms", "הסכמה להודעות sms"),
    "consent.whatsapp": ("whatsapp consent", "consent whatsapp", "הסכמה לוואטסאפ", "אישור וואטסאפ"),
}
SKIP = "skip"
_LOOKUP = {alias: target for target, aliases in _ALIASES.items() for alias in aliases}


def header_key(header: str) -> str:
    """Headers compared without case, quotes, underscores or extra spaces: "First_Name" == "first name"."""
    text = header.replace("\ufeff", "").replace("״", '"').replace("'", "").strip().lower()
    text = re.sub(r"[_\s]+", " ", text)
    return text.replace("דוא ל", "דואל")


def field_for_header(header: str) -> str | None:
    """The built-in field (or `consent.<channel>`) a header names in Hebrew or English, or None.

    Message merge tags use it too, so `[[שם פרטי]]` means what a "שם פרטי" column means."""
    return _LOOKUP.get(header_key(header))


@dataclass(frozen=True)
class Column:
    """Where a column's values go: a built-in field, `consent.<channel>`, a custom field, or nowhere."""

    index: int
    header: str
    target: str  # built-in field name, "consent.<channel>", "field" or "skip"
    field_key: str | None = None
    new_field: bool = False


def plan_columns(
    headers: list[str], custom: dict[str, CustomField], manual: dict[str, str] | None = None,
    *, unknown_as_fields: bool = True,
) -> list[Column]:
    """Map every header; `manual` ("header" -> field) wins over the automatic guess."""
    manual = {header_key(h): t.strip() for h, t in (manual or {}).items()}
    known_headers = {header_key(h) for h in headers}
    for header in manual:
        if header not in known_headers:
            raise ValidationError("the file has no column {column!r}", "map", column=header)
    labels = {header_key(f.label): f for f in custom.values()}
    columns: list[Column] = []
    taken: dict[str, str] = {}
    for index, header in enumerate(headers):
        key = header_key(header)
        if not key:
            columns.append(Column(index, header, SKIP))
            continue
        column = _resolve(index, header, manual.get(key) or _LOOKUP.get(key), custom, labels, unknown_as_fields)
        claim = column.field_key if column.target == "field" else column.target
        if claim != SKIP and claim in taken:
            raise ValidationError("columns {first!r} and {second!r} both map to {target}; "
                                  "map one of them elsewhere or to {skip}", "map",
                                  first=taken[claim], second=header, target=claim, skip=SKIP)
        taken[claim] = header  # type: ignore[index]
        columns.append(column)
    if not any(c.target in ("email", "phone", "external_id") for c in columns):
        raise ValidationError("no column holds an email, a phone or an external id; map one with --map", "map")
    return columns


def _resolve(
    index: int, header: str, target: str | None, custom: dict[str, CustomField], labels: dict[str, CustomField],
    unknown_as_fields: bool,
) -> Column:
    if target in (SKIP, "-", "ignore"):
        return Column(index, header, SKIP)
    if target in BUILTIN_FIELDS or target in {f"consent.{c}" for c in CHANNELS}:
        return Column(index, header, target)
    if target is not None:
        key = target.removeprefix("custom:").removeprefix("fields.")
        if key in custom:
            return Column(index, header, "field", key)
        if target.startswith("custom:"):
            if not FIELD_KEY.match(key):
                raise ValidationError("{key!r} (for column {column!r}) is not a field key: start with a letter, "
                                      "then a-z, 0-9 and _ (64 at most)", "map", key=key, column=header)
            return Column(index, header, "field", key, new_field=True)
        raise ValidationError("{target!r} (for column {column!r}) is not a contact field or a custom field", "map",
                          target=target, column=header)
    existing = custom.get(header_key(header)) or labels.get(header_key(header))
    if existing is not None:
        return Column(index, header, "field", existing.key)
    if not unknown_as_fields:
        return Column(index, header, SKIP)
    return Column(index, header, "field", key_from_label(header), new_field=True)


def parse_map_option(items: list[str]) -> dict[str, str]:
    """`--map "column=field"` options into a dict."""
    mapping = {}
    for item in items:
        header, sep, target = item.partition("=")
        if not sep or not header.strip() or not target.strip():
            raise ValidationError("{item!r} is not COLUMN=FIELD", "map", item=item)
        mapping[header.strip()] = target.strip()
    return mapping
