"""INSERT ... ON CONFLICT for both dialects, so services never branch on the database."""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from operator import itemgetter
from typing import Any

import psycopg
from sqlalchemy import (JSON, BigInteger, Float, Integer, String, Table, any_, bindparam, func, insert,
                        literal_column, select, text, update)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType

from kesher.db.base import UTCDateTime, json_text


def dialect_insert(session: Session, table: Table) -> Any:
    """INSERT with the database's own ON CONFLICT support."""
    name = session.get_bind().dialect.name
    return postgresql.insert(table) if name == "postgresql" else sqlite.insert(table)


def lookup(session: Session, column: Any, values: Iterable[Any], columns: Sequence[Any], *where: Any) -> Any:
    """Rows (`columns`) whose `column` is one of `values`: thousands of identifiers matched at once."""
    values = list(values)
    if not values:
        return []
    return session.execute(select(*columns).where(*where, one_of(session, column, values))).all()


def one_of(session: Session, column: Any, values: Iterable[Any]) -> Any:
    """`column IN values`, the values in one parameter, not thousands: an array on PostgreSQL, which
    the driver would otherwise rewrite one by one; a JSON array on SQLite (`in_json_array`)."""
    values = list(values)
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return in_json_array(column, bindparam(None, value_array("sqlite", values), type_=String))


def in_json_array(column: Any, array: Any) -> Any:
    """`column IN` the values of the JSON array `array` (a parameter), on SQLite.

    An IN list of a thousand values had SQLAlchemy expand and process each as a parameter of its
    own, and SQLite parse a statement of a thousand placeholders, on every execution: 3% of the
    instructions of an event ingest. SQLite plans both the same, by the index on `column`. A value
    JSON cannot hold (a datetime) is refused rather than compared as text.
    """
    return column.in_(select(literal_column("value")).select_from(func.json_each(array)))


def value_array(dialect: str, values: Iterable[Any]) -> Any:
    """Values as the one parameter a statement compares a column with: a JSON array for
    `in_json_array` on SQLite, a list (an array) for `= ANY` on PostgreSQL."""
    return json.dumps(list(values)) if dialect == "sqlite" else list(values)


def id_table(session: Session, ids: Iterable[int]) -> Any:
    """Ids as a table of one column, `value`, from one parameter (`value_array`): to join with, where
    `one_of` only tests a column."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return func.unnest(bindparam(None, list(ids), type_=ARRAY(BigInteger))).table_valued("value").render_derived()
    return func.json_each(bindparam(None, value_array(dialect, ids), type_=String)).table_valued("value")


def same_workspace(session: Session, column: Any, workspace_id: int) -> Any:
    """`column = workspace_id` as a check on rows found by something narrower (a list of contact ids).

    Without statistics SQLite takes the workspace's index for it and reads every row of the
    workspace to find a few hundred of them: 20 ms at 200,000 contacts, each time. `+ 0` leaves it
    a check on the rows the narrower condition finds. PostgreSQL chooses by cost.
    """
    if session.get_bind().dialect.name == "sqlite":
        return column + 0 == workspace_id
    return column == workspace_id


SQLITE_SAMPLE = 1000  # rows SQLite reads per index of a sampled table


def refresh_statistics(session: Session, table: Table, *, sampled: bool = False) -> None:
    """Let the planner see a table's current size and spread after it has grown.

    SQLite keeps no statistics until asked; without them it cannot tell a selective index from a
    poor one, and segment queries pick plans ten times slower. `sampled` reads a sample of each
    index (milliseconds, for the event tables); otherwise all of it, which per-contact tables need:
    on sampled statistics SQLite misjudges them and scans every contact.
    """
    name = session.get_bind().dialect.identifier_preparer.quote(table.name)
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text(f"PRAGMA analysis_limit = {SQLITE_SAMPLE if sampled else 0}"))
    session.execute(text(f"ANALYZE {name}"))


FEW_ROWS = 20


def insert_new(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows known to be new, as fast as the database allows: COPY on PostgreSQL.

    Every row must have the same keys. On PostgreSQL one COPY replaces thousands of INSERT
    statements, each of which would cost the server a parse, a plan and a round of locking; a
    few rows (the real-time path's one event) take one INSERT, a round trip where COPY needs three.
    """
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if len(rows) > FEW_ROWS:
        rows = _with_defaults(table, rows)
    if dialect == "sqlite" and _sqlite_many(session, table, lambda: insert(table), rows, "insert"):
        return
    if dialect != "postgresql" or len(rows) <= FEW_ROWS:
        session.execute(insert(table), list(rows))
        return
    columns = list(rows[0])
    quote = session.get_bind().dialect.identifier_preparer.quote
    sql = f"COPY {quote(table.name)} ({', '.join(quote(c) for c in columns)}) FROM STDIN (FORMAT BINARY)"
    driver = session.connection().connection.driver_connection
    types = _column_types(driver, table.name)
    try:
        with driver.cursor() as cursor, generic_plans(session), cursor.copy(sql) as copy:
            copy.set_types([types[c] for c in columns])  # a JSON column's dicts go as jsonb
            cells = itemgetter(*columns) if len(columns) > 1 else lambda row: (row[columns[0]],)
            for row in rows:
                copy.write_row(cells(row))
    except psycopg.errors.IntegrityError as exc:
        # The driver's own error, as SQLAlchemy reports one, so callers' conflict handling sees it.
        raise IntegrityError(sql, None, exc) from exc


@contextmanager
def generic_plans(session: Session) -> Iterator[None]:
    """PostgreSQL plans the statements run inside once, generically, within this transaction.

    Each row a bulk write inserts has its foreign keys checked by a query of its own, and so has
    each row an UPDATE changes if this transaction inserted it (the rollup rows of new contacts).
    Under the custom plans the engine asks for (db/session.py) every check is planned afresh, which
    cost PostgreSQL twice the insert itself; its one generic plan is a primary-key look-up. Nothing
    on SQLite, and nothing more inside another `generic_plans`.
    """
    if session.get_bind().dialect.name != "postgresql" or session.info.get("generic_plans"):
        yield
        return
    driver = session.connection().connection.driver_connection
    with driver.cursor() as cursor:
        old = cursor.execute("SELECT current_setting('plan_cache_mode'), "
                             "set_config('plan_cache_mode', 'force_generic_plan', true)").fetchone()[0]  # type: ignore[index]
    session.info["generic_plans"] = True
    try:
        yield
    finally:
        del session.info["generic_plans"]
    with driver.cursor() as cursor:
        cursor.execute("SELECT set_config('plan_cache_mode', %s, true)", (old,))


def _sqlite_many(session: Session, table: Table, make: Callable[[], Any], rows: Sequence[dict[str, Any]],
                 shape: Hashable = None) -> bool:
    """Run the INSERT `make()` builds for each of many rows straight through sqlite3; False (nothing
    done) for a few rows, or when a value needs SQLAlchemy's own processing (see `_sqlite_cells`).

    A statement named by a `shape` (with the table and the rows' columns) is built and compiled
    once: compiling the rollups' merges, CASE upon CASE, took 4% of an ingest call.
    """
    def compiled() -> tuple[str, Cells | None]:
        done = make().compile(dialect=session.get_bind().dialect, column_keys=list(rows[0]), for_executemany=True)
        names = tuple(done.positiontup or ())
        usable = set(names) <= rows[0].keys() and not any(type(table.c[n].type) is NullType for n in names)
        # NullType: a foreign key's type, before its table was loaded
        return done.string, _sqlite_cells(table, names) if usable else None

    return _sqlite_run(session, rows, None if shape is None else (table, tuple(rows[0]), shape), compiled)


def _sqlite_run(session: Session, rows: Sequence[dict[str, Any]], key: Hashable,
                compiled: Callable[[], tuple[str, Cells | None]]) -> bool:
    """Run a statement for each of many rows straight through sqlite3; False (nothing done) for a few
    rows, or when `compiled()` found no `_sqlite_cells` for its columns. A statement with a `key` is
    compiled once for it."""
    if len(rows) <= FEW_ROWS:
        return False
    found = _SQLITE_STATEMENTS.get(key) if key is not None else None
    if found is None:
        found = compiled()
        if key is not None and found[1] is not None:
            if len(_SQLITE_STATEMENTS) >= 512:  # shapes are few; this only bounds a caller that varies them
                _SQLITE_STATEMENTS.clear()
            _SQLITE_STATEMENTS[key] = found
    sql, cells = found
    if cells is None:
        return False
    session.connection().exec_driver_sql(sql, [cells(row) for row in rows])
    return True


Cells = Callable[[dict[str, Any]], tuple[Any, ...]]
_SQLITE_STATEMENTS: dict[Hashable, tuple[str, Cells | None]] = {}


def _with_defaults(table: Table, rows: Sequence[dict[str, Any]]) -> Sequence[dict[str, Any]]:
    """Rows with the columns they leave out set to the columns' Python defaults, as an INSERT through
    SQLAlchemy would set them; COPY and the SQLite bulk path would leave them NULL."""
    missing = [c for c in table.c if c.name not in rows[0] and c.default is not None
               and (c.default.is_scalar or c.default.is_callable)]
    if not missing:
        return rows
    fixed = {c.name: c.default.arg for c in missing if c.default.is_scalar}  # type: ignore[union-attr]
    made = [(c.name, c.default.arg) for c in missing if c.default.is_callable]  # type: ignore[union-attr]
    # SQLAlchemy hands a callable default the execution context; Kesher's defaults take none.
    return [{**row, **fixed, **{name: make(None) for name, make in made}} for row in rows]


def sqlite_text_time(value: datetime | None) -> str | None:
    """A datetime as SQLAlchemy's SQLite DATETIME stores it (UTC, microseconds, no zone), in one C call.

    Each is remembered: a batch converts the same instants again and again (an event's time goes
    into its row, its purchase lines and its contact's rollups; a wave's messages were sent at one
    instant, a call's events received at one), and a look-up costs a quarter of a conversion. The
    offset is part of the key: two times of one zone are equal by their wall clock alone, and in
    the hour a clock goes back one wall-clock time is two instants. A time in UTC (an event's, once
    checked; every time Kesher makes) is its own key: no hour of UTC comes twice, and asking for the
    offset cost as much as the look-up. A naive time has no offset, so it is refused here every time."""
    if value is None:
        return None
    if value.tzinfo is UTC:
        key: Hashable = value
    else:
        offset = value.utcoffset()
        if offset is None:
            raise ValueError("naive datetime given; Kesher stores aware UTC datetimes only")
        key = (value, offset)
    text = _TIMES.get(key)
    if text is not None:
        return text
    text = value.astimezone(UTC).isoformat(" ", "microseconds")[:26]
    if len(_TIMES) >= TIMES_KEPT:
        _TIMES.clear()  # threads sharing it at worst convert again
    _TIMES[key] = text
    return text


TIMES_KEPT = 20_000  # more than the instants of a batch of 10,000 events; about 3 MB
_TIMES: dict[Hashable, str] = {}


@cache
def _sqlite_cells(table: Table, columns: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]] | None:
    """A function giving a row's values as sqlite3 takes them, for these columns of the table; None
    when a column's type needs SQLAlchemy's own processing.

    Bulk inserts and merges (events, purchase lines, rollups) spent as long in SQLAlchemy's per-row
    processing as in SQLite itself; the few types these tables use are converted here the way
    SQLAlchemy would, and tests/db/test_bulk.py reads rows back both ways to show they are stored the same.
    """
    convert: list[Callable[[Any], Any] | None] = []
    for name in columns:
        kind = table.c[name].type
        if type(kind) is UTCDateTime:
            convert.append(sqlite_text_time)
        elif type(kind) is JSON:
            convert.append(json_text)  # None too: SQLAlchemy's JSON stores it as the JSON null
        elif type(kind) in (Integer, BigInteger, String, Float):
            convert.append(None)
        else:
            return None
    getters = itemgetter(*columns) if len(columns) > 1 else (lambda row: (row[columns[0]],))
    if not any(convert):
        return getters  # type: ignore[return-value]
    steps = [(i, step) for i, step in enumerate(convert) if step is not None]

    def cells(row: dict[str, Any]) -> tuple[Any, ...]:
        values = list(getters(row))
        for i, step in steps:
            values[i] = step(values[i])
        return tuple(values)

    return cells


_TYPES: dict[str, dict[str, int]] = {}


def _column_types(driver: Any, table: str) -> dict[str, int]:
    """The type (oid) of each column of a table, as binary COPY needs them; Kesher's tables use built-in types only."""
    if table not in _TYPES:
        rows = driver.execute("SELECT attname, atttypid FROM pg_attribute WHERE attrelid = %s::regclass "
                              "AND attnum > 0 AND NOT attisdropped", (table,)).fetchall()
        _TYPES[table] = {name: oid for name, oid in rows}
    return _TYPES[table]


def insert_with_ids(session: Session, table: Table, rows: list[dict[str, Any]]) -> list[int]:
    """Insert rows known to be new; returns their ids, in the order of `rows`.

    PostgreSQL hands the ids out from the table's sequence in one query, then takes the rows by
    COPY. SQLite gives each new row max(id) + 1, and the writer holds the database lock from its
    first insert to its commit, so the newest N ids are exactly these rows.
    """
    if not rows:
        return []
    if session.get_bind().dialect.name == "postgresql":
        ids = list(session.execute(text("SELECT nextval(:seq) FROM generate_series(1, :n)"),
                                   {"seq": f"{table.name}_id_seq", "n": len(rows)}).scalars())
        insert_new(session, table, [row | {"id": row_id} for row, row_id in zip(rows, ids, strict=True)])
        return ids
    insert_new(session, table, rows)
    newest = session.execute(select(table.c.id).order_by(table.c.id.desc()).limit(len(rows))).scalars()
    return sorted(newest)


def in_key_order(session: Session, table: Table, rows: Sequence[dict[str, Any]],
                 keys: Sequence[str]) -> list[dict[str, Any]]:
    """On PostgreSQL, the rows sorted by their `keys`, the order in which a bulk write locks them.

    Two transactions writing some of the same rows then lock those in one order, and neither can
    hold a row the other waits for while it waits itself: given in the order of its lines, one
    order of products A, C, B and another of B, C, A deadlocked, and PostgreSQL failed one of
    them. A NULL key, where a key column may hold one, sorts first. SQLite has one writer at a
    time: the rows stay as given.
    """
    if session.get_bind().dialect.name != "postgresql":
        return list(rows)
    if any(table.c[k].nullable for k in keys):
        if len(keys) == 1:  # an event's idempotency key: a quarter of the time of the general key below
            (key,) = keys
            return sorted(rows, key=lambda row: ((value := row[key]) is not None, value))
        return sorted(rows, key=lambda row: tuple((row[k] is not None, row[k]) for k in keys))
    return sorted(rows, key=itemgetter(*keys))


def insert_ignore(session: Session, table: Table, rows: Sequence[dict[str, Any]], keys: Iterable[str]) -> None:
    """Insert rows, leaving rows that already exist (by the unique `keys`) untouched; in key order (`in_key_order`)."""
    if not rows:
        return
    keys = list(keys)
    stmt = dialect_insert(session, table).on_conflict_do_nothing(index_elements=keys)
    session.execute(stmt, in_key_order(session, table, rows, keys))


def merge_rows(
    session: Session, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str],
    merge: Callable[[Any], dict[str, Any]], *, shape: Hashable = None,
) -> None:
    """Insert rows, or merge each into the stored row with the same `keys`.

    `merge(excluded)` gives the SET clause from the incoming row (`excluded`) and the stored one
    (the table's columns). Rows must be unique by `keys`. On PostgreSQL all rows travel as one
    array per column in a single statement; an executemany would cost the server one statement
    per row. `shape`, when given, names what `merge` builds for rows of these columns, so that
    SQLite's bulk path builds and compiles the statement once for it. Rows are written in key
    order (`in_key_order`).
    """
    if not rows:
        return
    if session.get_bind().dialect.name != "postgresql":
        def make() -> Any:
            stmt = dialect_insert(session, table)
            return stmt.on_conflict_do_update(index_elements=list(keys), set_=merge(stmt.excluded))

        if not _sqlite_many(session, table, make, rows, None if shape is None else ("merge", tuple(keys), shape)):
            session.execute(make(), list(rows))
        return
    columns = list(rows[0])
    source = _unnested(table, in_key_order(session, table, rows, keys), columns)
    stmt = postgresql.insert(table).from_select(columns, select(*(source.c[c] for c in columns)))
    with generic_plans(session):
        session.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=merge(stmt.excluded)))


def update_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]], key: str) -> None:
    """Write each row's other columns onto the stored row with the same `key`; rows not stored are left out.

    On PostgreSQL all rows travel as one array per column in a single UPDATE ... FROM unnest(...):
    an executemany had the server plan and run one UPDATE a row, 86 µs each. The rows go in key
    order (`in_key_order`), the order a join that looks each up by its key locks them in.
    """
    if not rows:
        return
    columns = list(rows[0])
    others = [c for c in columns if c != key]
    if session.get_bind().dialect.name != "postgresql":
        # Parameters named apart from the columns, which SQLAlchemy keeps for the SET clause.
        stmt = update(table).where(table.c[key] == bindparam(f"p_{key}")).values(
            {c: bindparam(f"p_{c}") for c in others})
        if not _sqlite_update(session, table, stmt, rows, key):
            session.execute(stmt, [{f"p_{c}": row[c] for c in columns} for row in rows])
        return
    source = _unnested(table, in_key_order(session, table, rows, [key]), columns)
    session.execute(update(table).where(table.c[key] == source.c[key]).values({c: source.c[c] for c in others}))


def _sqlite_update(session: Session, table: Table, stmt: Any, rows: Sequence[dict[str, Any]], by: str) -> bool:
    """Run `update_rows`' UPDATE (parameters named `p_<column>`) for each of many rows straight through
    sqlite3, as `_sqlite_many` does an INSERT; False (nothing done) for a few rows or a column whose
    type needs SQLAlchemy's own processing.

    SQLAlchemy's processing of each row's parameters cost eight times what SQLite took to update the
    rows: writing the recent campaigns of the contacts a campaign was sent to, 2% of a message."""
    def compiled() -> tuple[str, Cells | None]:
        done = stmt.compile(dialect=session.get_bind().dialect)
        return done.string, _sqlite_cells(table, tuple(name.removeprefix("p_") for name in done.positiontup or ()))

    if session.autoflush and len(rows) > FEW_ROWS:  # as `Session.execute` would: pending changes first
        session.flush()
    return _sqlite_run(session, rows, (table, tuple(rows[0]), ("update", by)), compiled)


def _unnested(table: Table, rows: Sequence[dict[str, Any]], columns: list[str]) -> Any:
    """The rows as a PostgreSQL table of these columns: one array parameter per column, unnested."""
    arrays = [bindparam(f"v_{c}", [row[c] for row in rows], type_=ARRAY(table.c[c].type)) for c in columns]
    return func.unnest(*arrays).table_valued(*columns).render_derived()


def upsert(
    session: Session, table: Table, rows: Sequence[dict[str, Any]], keys: Iterable[str], update: Iterable[str]
) -> None:
    """Insert rows, or overwrite the `update` columns of rows that exist (by the unique `keys`)."""
    columns = list(update)
    merge_rows(session, table, rows, list(keys), lambda new: {c: new[c] for c in columns},
               shape=("overwrite", tuple(columns)))
