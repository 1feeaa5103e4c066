"""INSERT ... ON CONFLICT for both dialects, so services never branch on the database."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Table, any_, bindparam, insert, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session


def _insert(session: Session, table: Table) -> Any:
    name = session.get_bind().dialect.name
    return postgresql.insert(table) if name == "postgresql" else sqlite.insert(table)


def among(session: Session, column: Any, values: Iterable[Any]) -> Any:
    """`column IN values` for thousands of values: one array parameter on PostgreSQL, where an
    IN list of N placeholders costs the driver N rewrites and the server N parameters."""
    values = list(values)
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)


def reserve_ids(session: Session, table: Table, count: int) -> list[int] | None:
    """Ids for rows about to be inserted, from the table's sequence, where the database has one.

    PostgreSQL hands them out in one query, so bulk inserts need no lookup afterwards to learn
    them; SQLite has no sequence (None), and its in-process lookups are cheap.
    """
    if count == 0 or session.get_bind().dialect.name != "postgresql":
        return None
    sequence = f"{table.name}_id_seq"
    rows = session.execute(text("SELECT nextval(:seq) FROM generate_series(1, :n)"), {"seq": sequence, "n": count})
    return list(rows.scalars())


def insert_new(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows known to be new, as fast as the database allows: COPY on PostgreSQL.

    Every row must have the same keys. On PostgreSQL one COPY replaces thousands of INSERT
    statements, each of which would cost the server a parse, a plan and a round of locking.
    """
    if not rows:
        return
    if session.get_bind().dialect.name != "postgresql":
        session.execute(insert(table), list(rows))
        return
    columns = list(rows[0])
    quote = session.get_bind().dialect.identifier_preparer.quote
    sql = f"COPY {quote(table.name)} ({', '.join(quote(c) for c in columns)}) FROM STDIN"
    driver = session.connection().connection.driver_connection
    with driver.cursor() as cursor, cursor.copy(sql) as copy:  # type: ignore[union-attr]
        for row in rows:
            copy.write_row([row[c] for c in columns])


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
