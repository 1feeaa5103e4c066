"""INSERT ... ON CONFLICT for both dialects, so services never branch on the database."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def _insert(session: Session, table: Table) -> Any:
    name = session.get_bind().dialect.name
    return postgresql.insert(table) if name == "postgresql" else sqlite.insert(table)


def insert_ignore(session: Session, table: Table, rows: Sequence[dict[str, Any]], keys: Iterable[str]) -> None:
    """Insert rows, leaving rows that already exist (by the unique `keys`) untouched."""
    if not rows:
        return
    stmt = _insert(session, table).on_conflict_do_nothing(index_elements=list(keys))
    session.execute(stmt, list(rows))


def upsert(
    session: Session, table: Table, rows: Sequence[dict[str, Any]], keys: Iterable[str], update: Iterable[str]
) -> None:
    """Insert rows, or overwrite the `update` columns of rows that exist (by the unique `keys`)."""
    if not rows:
        return
    stmt = _insert(session, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys), set_={col: stmt.excluded[col] for col in update}
    )
    session.execute(stmt, list(rows))
