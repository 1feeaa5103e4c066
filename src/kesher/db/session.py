"""Engines and sessions for SQLite (embedded) and PostgreSQL (scale-out)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from psycopg.types.array import ListBinaryDumper
from psycopg.types.json import set_json_dumps
from pydantic_core import to_json
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from kesher.db.base import json_text

# How long a writer waits for SQLite's lock (busy_timeout), and for the writer turn.
WRITER_WAIT = 30.0

try:
    import fcntl
except ImportError:  # not on Windows, where SQLite's own waiting is the only one
    fcntl = None  # type: ignore[assignment]


PAGE_CACHE_KB = 32 * 1024  # SQLite's page cache, a connection; the OS page cache serves the rest
PASSING_CACHE_KB = 8 * 1024  # while reading what no later statement reads again (`passing_through`)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={int(WRITER_WAIT * 1000)}")
    # A savepoint inside a transaction copies each page it changes to a sub-journal, a temporary file
    # unless kept in memory: on disk it cost bulk writes (ingest, import) some 6%.
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KB}")
    # A checkpoint copies the pages the WAL holds back into the database; every 10,000 pages
    # (40 MB) instead of 1,000, a page that many commits change (a rollup, an index leaf) is copied
    # once rather than each time: event ingest spends half as long committing.
    cur.execute("PRAGMA wal_autocheckpoint=10000")
    cur.close()


@contextmanager
def passing_through(session: Session) -> Iterator[None]:
    """A session's reads pass through data once (a campaign's batch: its recipients, their purchase
    lines): on SQLite its connection keeps a smaller page cache meanwhile, which the next user of the
    connection gets back whole. A worker sending a newsletter that shows purchases filled 32 MB with
    pages it never read again (a peak of 189 MB against 164 at 30,000 recipients), at no gain in
    speed; the writes of ingest are 2-4% slower with the smaller cache, so it stays the default."""
    if session.get_bind().dialect.name != "sqlite":
        yield
        return
    driver = session.connection().connection.driver_connection  # whatever becomes of the session's transaction
    assert driver is not None
    driver.execute(f"PRAGMA cache_size=-{PASSING_CACHE_KB}")
    try:
        yield
    finally:
        driver.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KB}")


def _sqlite_begin_before_savepoint(conn: Any, _name: str | None) -> None:
    """Open the transaction, as a writer, before a first SAVEPOINT.

    Python's sqlite3 driver issues BEGIN only before a write; a SAVEPOINT sent before any write would
    itself start SQLite's transaction, and its RELEASE would then commit everything so far, leaving
    the rest of the caller's transaction to commit or fail on its own.

    IMMEDIATE: a savepoint guards a write (a contact upsert, stored events) that reads first. In a
    plain BEGIN the reads pin a snapshot, and when another writer commits before this one's first
    write, SQLite cannot let it write on that snapshot: it fails at once with "database is locked",
    without waiting (four callers posting new contacts' events at once lost most of their calls).
    Taking the write lock at BEGIN waits for it (busy_timeout), and the reads then see the latest.
    """
    driver = conn.connection.dbapi_connection
    if not driver.in_transaction:
        driver.execute("BEGIN IMMEDIATE")


def hold_writer_turn(session: Session) -> None:
    """On SQLite, wait for this database's turn to write, and keep it until the session's
    transaction ends; on PostgreSQL nothing.

    While one process writes, SQLite makes another wait by sleeping in growing steps (up to 100 ms)
    and looking again; with two processes posting event batches, the waiting one slept past the
    moment the database was free by about a quarter of the time a batch holds it. The turn is a
    lock on a file beside the database, looked at every millisecond. A writer that has waited for
    it as long as SQLite would wait for its own lock goes on without it. Only the hot
    writers take it (event ingest), and only before their transaction has written anything; any
    other writer still waits the SQLite way. So nobody holding the database's lock ever waits for
    the turn, and nothing can deadlock. A thread that holds the turn in one session does not wait
    for it in another.
    """
    bind = session.get_bind()
    if bind.dialect.name != "sqlite" or "writer_turn" in session.info or fcntl is None or _turns.held:
        return
    path = bind.url.database
    if not path or path == ":memory:":
        return
    if session.connection().connection.driver_connection.in_transaction:
        return  # it has written already, so holds the database's own lock
    turn = os.open(f"{path}-writer", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if not _wait_for(turn):
            os.close(turn)  # held too long (a session left open?): SQLite's own wait decides, as for any writer
            return
    except BaseException:
        os.close(turn)
        raise
    session.info["writer_turn"] = turn
    _turns.held = True
    if not session.info.get("gives_writer_turn_back"):
        session.info["gives_writer_turn_back"] = True
        event.listen(session, "after_transaction_end", _give_writer_turn_back)


def _wait_for(turn: int) -> bool:
    """Take the lock on `turn`, looking every millisecond for as long as SQLite would wait (busy_timeout);
    False when it stayed taken. A blocking flock could wait for ever on a holder that never ends."""
    deadline = time.monotonic() + WRITER_WAIT
    while True:
        try:
            fcntl.flock(turn, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.001)


def _give_writer_turn_back(session: Session, transaction: Any) -> None:
    if transaction.parent is None and "writer_turn" in session.info:
        os.close(session.info.pop("writer_turn"))  # closing the file gives the lock up
        _turns.held = False


class _Turns(threading.local):
    held = False  # whether this thread holds its database's writer turn


_turns = _Turns()


def _psycopg_binary_arrays(dbapi_conn: Any, _record: Any) -> None:
    """Python lists go to PostgreSQL as binary arrays, five times cheaper to write than psycopg's default
    text form (which quotes every element in Python): bulk merges send a column of rows as one array."""
    dbapi_conn.adapters.register_dumper(list, ListBinaryDumper)
    set_json_dumps(to_json, context=dbapi_conn)  # JSON columns written by COPY: as `json_text` writes them


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith(("postgresql://", "postgres://")):
        # Kesher ships psycopg 3; a bare URL would ask some SQLAlchemy versions for psycopg2.
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False}, json_serializer=json_text, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "savepoint", _sqlite_begin_before_savepoint)
        return engine
    # Custom plans always: a generic plan made while a table was small (early in an import) would
    # keep scanning it whole after it has grown to millions of rows. Random reads priced for SSDs
    # and cached data rather than spinning disks, or thousands of index look-ups of identifiers
    # are planned as full scans.
    connect_args = {"options": "-c plan_cache_mode=force_custom_plan -c random_page_cost=1.1"}
    engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args, json_serializer=json_text, **kwargs)
    event.listen(engine, "connect", _psycopg_binary_arrays)
    return engine


class Database:
    """One engine and its session factory; web, worker and CLI each hold one."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error."""
        with self.sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()
