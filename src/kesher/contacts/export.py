"""Contacts to CSV or Excel with the columns the marketer chose, for any number of rows.

Rows are read in keyset batches (`service.stream`), so memory stays flat for a million contacts:
CSV is yielded batch by batch, and XLSX goes through openpyxl's write-only mode into a file that
the caller streams afterwards.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from sqlalchemy.orm import Session

from kesher.contacts import service
from kesher.contacts.fields import list_fields
from kesher.contacts.models import Contact

BUILTIN_COLUMNS = (
    "first_name", "last_name", "email", "phone", "city", "gender", "birthday", "language", "timezone",
    "external_id", "source", "created_at", "updated_at",
)
CUSTOM_PREFIX = "fields."
# A spreadsheet reads a cell starting with one of these as a formula (=HYPERLINK(...) phoning home).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Column:
    """One exported column: a built-in field name or `fields.<custom key>`, and its header."""

    key: str
    header: str


def escape_formula(text: str) -> str:
    """Text a spreadsheet shows as typed: a leading apostrophe keeps it from being run as a formula."""
    return "'" + text if text.startswith(FORMULA_START) else text


def rows(
    session: Session, workspace_id: int, flt: service.ContactFilter, columns: Sequence[Column], timezone: str,
    batch: int = 2000,
) -> Iterator[list[list[Any]]]:
    """Batches of rows of typed values (text escaped, times naive in the workspace's zone)."""
    wanted = {c.key.removeprefix(CUSTOM_PREFIX) for c in columns if c.key.startswith(CUSTOM_PREFIX)}
    fields = [f for f in list_fields(session, workspace_id) if f.key in wanted]
    zone = ZoneInfo(timezone)
    for contacts in service.stream(session, workspace_id, flt, batch=batch):
        custom = service.custom_values(session, [c.id for c in contacts], fields)
        yield [[_value(contact, column.key, custom, zone) for column in columns] for contact in contacts]


def _value(contact: Contact, key: str, custom: dict[tuple[int, str], Any], zone: ZoneInfo) -> Any:
    if key.startswith(CUSTOM_PREFIX):
        value = custom.get((contact.id, key.removeprefix(CUSTOM_PREFIX)))
    else:
        value = getattr(contact, key)
    if isinstance(value, datetime):
        return value.astimezone(zone).replace(tzinfo=None, microsecond=0)
    if isinstance(value, str):
        return escape_formula(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def csv_chunks(
    session: Session, workspace_id: int, flt: service.ContactFilter, columns: Sequence[Column], timezone: str,
    batch: int = 2000,
) -> Iterator[bytes]:
    """UTF-8 CSV with a byte-order mark (without it Excel reads Hebrew as Windows-1255), one chunk per batch."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")
    writer.writerow([escape_formula(c.header) for c in columns])
    for chunk in rows(session, workspace_id, flt, columns, timezone, batch):
        writer.writerows([_csv_text(v) for v in row] for row in chunk)
        yield buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode("utf-8")


def write_xlsx(
    session: Session, workspace_id: int, flt: service.ContactFilter, columns: Sequence[Column], timezone: str,
    path: str | Path, *, title: str = "Contacts", right_to_left: bool = False, batch: int = 2000,
) -> None:
    """An Excel workbook at `path`; write-only mode streams rows to disk instead of building them in memory."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title[:31])
    sheet.sheet_view.rightToLeft = right_to_left
    sheet.append([escape_formula(c.header) for c in columns])
    for chunk in rows(session, workspace_id, flt, columns, timezone, batch):
        for row in chunk:
            sheet.append(row)
    workbook.save(str(path))
