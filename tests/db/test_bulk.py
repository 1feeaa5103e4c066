"""Bulk inserts (COPY on PostgreSQL) store every row and leave the session as they found it."""

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select, text

from kesher.contacts.models import Contact
from kesher.db.base import JSONData, utcnow
from kesher.db.upsert import (FEW_ROWS, in_key_order, insert_new, insert_with_ids, merge_rows, sqlite_text_time,
                             update_rows)

NOW = utcnow()


def test_copied_rows_are_stored_with_their_ids(database, workspace):
    rows = [{"workspace_id": workspace.id, "email": f"bulk{i}@example.com", "first_name": f"שם {i}",
             "language": "he", "timezone": "Asia/Jerusalem", "created_at": NOW, "updated_at": NOW} for i in range(FEW_ROWS * 3)]
    with database.session() as session:
        ids = insert_with_ids(session, Contact.__table__, rows)
    with database.session() as session:
        stored = dict(session.execute(select(Contact.id, Contact.email).where(Contact.id.in_(ids))).all())
    assert [stored[i] for i in ids] == [r["email"] for r in rows]


def test_a_single_column_is_copied(database):
    table = Table(f"bulk_{uuid.uuid4().hex[:8]}", MetaData(), Column("n", Integer), Column("note", String(10)))
    table.create(database.engine)
    try:
        with database.session() as session:
            insert_new(session, table, [{"n": i} for i in range(FEW_ROWS * 2)])
        with database.session() as session:
            assert session.scalar(select(func.sum(table.c.n))) == sum(range(FEW_ROWS * 2))
    finally:
        table.drop(database.engine)


def test_json_values_are_copied_as_they_were(database):
    table = Table(f"bulk_{uuid.uuid4().hex[:8]}", MetaData(), Column("n", Integer), Column("data", JSONData))
    table.create(database.engine)
    values = [{"n": i, "data": {"שם": f"דנה {i}", "items": [i, None, 1.5], "ok": i % 2 == 0}} for i in range(FEW_ROWS * 2)]
    try:
        with database.session() as session:
            insert_new(session, table, values)
        with database.session() as session:
            assert [dict(r._mapping) for r in session.execute(select(table).order_by(table.c.n))] == values
    finally:
        table.drop(database.engine)


def test_the_plan_setting_is_restored_after_a_copy(database, workspace):
    if database.engine.dialect.name != "postgresql":
        return
    rows = [{"workspace_id": workspace.id, "email": f"plan{i}@example.com", "language": "he",
             "timezone": "Asia/Jerusalem", "created_at": NOW, "updated_at": NOW} for i in range(FEW_ROWS * 2)]
    with database.session() as session:
        insert_with_ids(session, Contact.__table__, rows)
        assert session.scalar(text("SELECT current_setting('plan_cache_mode')")) == "force_custom_plan"


def test_bulk_rows_are_stored_exactly_as_single_inserts_store_them(database):
    """SQLite's bulk path converts values itself; what it stores must be what SQLAlchemy would store."""
    from datetime import timedelta, timezone

    from sqlalchemy import Float, insert

    from kesher.db.base import UTCDateTime

    table = Table(f"bulk_{uuid.uuid4().hex[:8]}", MetaData(), Column("n", Integer), Column("name", String(20)),
                  Column("at", UTCDateTime), Column("price", Float), Column("data", JSONData))
    table.create(database.engine)
    israel = timezone(timedelta(hours=3))
    rows = [{"n": i, "name": f"שם {i}" if i % 3 else None,
             "at": (NOW + timedelta(seconds=i, microseconds=i)).astimezone(israel) if i % 4 else None,
             "price": i / 3, "data": None if i % 5 == 0 else {"i": i, "x": [1.5, None, "א"]}}
            for i in range(FEW_ROWS * 2)]
    try:
        with database.session() as session:
            insert_new(session, table, rows)  # the bulk path
            session.execute(insert(table), [{**r, "n": r["n"] + 1000} for r in rows])  # SQLAlchemy's own
        with database.session() as session:
            as_text = [tuple(str(v) for v in r) for r in session.execute(text(
                f"SELECT n, name, at, price, data FROM {table.name} ORDER BY n")).all()]
            typed = [dict(r._mapping) for r in session.execute(select(table).order_by(table.c.n))]
        half = len(rows)
        assert as_text[:half] == [(str(int(n) - 1000), *rest) for n, *rest in as_text[half:]]
        if database.engine.dialect.name == "sqlite":  # (PostgreSQL hands jsonb back parsed)
            assert as_text[1][4] == '{"i":1,"x":[1.5,null,"א"]}'  # compact, Hebrew as it is
        assert typed[:half] == [{**r, "at": r["at"] and r["at"].astimezone(israel)} for r in typed[:half]]
        assert [r["at"] for r in typed[:half]] == [r["at"] for r in rows]
        assert [r["data"] for r in typed[:half]] == [r["data"] for r in rows]
    finally:
        table.drop(database.engine)


def test_times_come_back_aware_in_utc_however_the_database_holds_them(database):
    from kesher.db.base import UTCDateTime

    table = Table(f"times_{uuid.uuid4().hex[:8]}", MetaData(), Column("n", Integer), Column("at", UTCDateTime))
    table.create(database.engine)
    held = {1: "2026-03-01 09:30:00.123456", 2: "2026-03-01 09:30:00", 3: "2026-03-01T07:30:00+02:00",
            4: "2026-03-01", 5: "2026-03-01 09:30:00.5"}
    if database.engine.dialect.name == "postgresql":  # where a time without a zone is the session's
        held = {n: value if "+" in value else value + "+00:00" for n, value in held.items()}
    expected = {1: datetime(2026, 3, 1, 9, 30, 0, 123456, UTC), 2: datetime(2026, 3, 1, 9, 30, tzinfo=UTC),
                3: datetime(2026, 3, 1, 5, 30, tzinfo=UTC), 4: datetime(2026, 3, 1, tzinfo=UTC),
                5: datetime(2026, 3, 1, 9, 30, 0, 500000, UTC), 6: NOW, 7: None}
    try:
        with database.session() as session:
            session.execute(text(f"INSERT INTO {table.name} (n, at) VALUES (:n, :at)"),
                            [{"n": n, "at": value} for n, value in held.items()])
            session.execute(table.insert(), [{"n": 6, "at": NOW.astimezone(ZoneInfo("Asia/Jerusalem"))},
                                             {"n": 7, "at": None}])
        with database.session() as session:
            read = dict(session.execute(select(table.c.n, table.c.at)).all())
        assert read == expected
        assert all(at.tzinfo is UTC for at in read.values() if at is not None)
    finally:
        table.drop(database.engine)


def test_json_text_is_compact_utf8_and_refuses_what_json_cannot_hold():
    import pytest
    from pydantic_core import PydanticSerializationError

    from kesher.db.base import json_text

    assert json_text({"שם": "דנה", "n": [1.5, None, True], 3: "x"}) == '{"שם":"דנה","n":[1.5,null,true],"3":"x"}'
    assert json.loads(json_text({"big": 10**30, "tiny": 1e-7, "sum": 0.1 + 0.2})) == \
        {"big": 10**30, "tiny": 1e-7, "sum": 0.1 + 0.2}
    with pytest.raises(PydanticSerializationError):
        json_text({"x": object()})


def test_a_column_left_to_its_default_gets_it_in_bulk(database):
    from kesher.db.base import UTCDateTime

    table = Table(f"bulk_{uuid.uuid4().hex[:8]}", MetaData(), Column("n", Integer),
                  Column("at", UTCDateTime, default=utcnow), Column("source", String(10), default="api"))
    table.create(database.engine)
    try:
        with database.session() as session:
            insert_new(session, table, [{"n": i} for i in range(FEW_ROWS * 2)])
        with database.session() as session:
            stored = session.execute(select(table.c.at, table.c.source)).all()
        assert len(stored) == FEW_ROWS * 2
        assert all(at is not None and at >= NOW and source == "api" for at, source in stored)
    finally:
        table.drop(database.engine)


def test_a_bulk_merge_gives_what_merging_row_by_row_gives(database):
    """merge_rows of many rows (SQLite's direct path, its statement built once for the shape; PostgreSQL's
    arrays) against a few at a time."""
    from datetime import timedelta

    from kesher.db.base import UTCDateTime

    table = Table(f"merge_{uuid.uuid4().hex[:8]}", MetaData(), Column("k", Integer, primary_key=True),
                  Column("total", Integer), Column("latest", UTCDateTime))

    def merge(new):
        return {"total": table.c.total + new.total, "latest": func.max(table.c.latest, new.latest)
                if database.dialect == "sqlite" else func.greatest(table.c.latest, new.latest)}

    first = [{"k": i, "total": i, "latest": NOW + timedelta(seconds=i)} for i in range(FEW_ROWS * 3)]
    second = [{"k": i, "total": 1, "latest": NOW + timedelta(seconds=30 - i)} for i in range(0, FEW_ROWS * 4, 2)]
    table.create(database.engine)
    try:
        with database.session() as session:
            for rows in (first, second):  # the second merge takes the statement the first built for its shape
                merge_rows(session, table, rows, ["k"], merge, shape="total+latest")
            bulk = session.execute(select(table).order_by(table.c.k)).all()
            session.execute(table.delete())
            for rows in (first, second):
                for i in range(0, len(rows), FEW_ROWS // 2):
                    merge_rows(session, table, rows[i:i + FEW_ROWS // 2], ["k"], merge)
            few = session.execute(select(table).order_by(table.c.k)).all()
        assert bulk == few
        assert len(bulk) == len({row["k"] for row in first + second})
        assert bulk[2] == (2, 3, NOW + timedelta(seconds=28))
    finally:
        table.drop(database.engine)


def test_update_rows_writes_each_row_by_its_key_and_leaves_the_rest(database):
    table = Table(f"bulk_{uuid.uuid4().hex[:8]}", MetaData(), Column("n", Integer, primary_key=True),
                  Column("note", String(20)), Column("other", String(10)))
    table.create(database.engine)
    try:
        with database.session() as session:
            insert_new(session, table, [{"n": i, "note": "לפני", "other": "x"} for i in range(FEW_ROWS * 2)])
        with database.session() as session:
            # Every other row, a NULL among the values, and a key no row has.
            update_rows(session, table, [{"n": i, "note": None if i == 4 else f"אחרי {i}"}
                                         for i in [*range(0, FEW_ROWS * 2, 2), 10_000]], "n")
        with database.session() as session:
            stored = {n: (note, other) for n, note, other in session.execute(select(table))}
        assert len(stored) == FEW_ROWS * 2
        assert stored[4] == (None, "x") and stored[2] == ("אחרי 2", "x") and stored[3] == ("לפני", "x")
        assert all(stored[i][0] == (f"אחרי {i}" if i % 2 == 0 else "לפני") for i in range(FEW_ROWS * 2) if i != 4)
    finally:
        table.drop(database.engine)


def test_update_rows_in_bulk_stores_what_a_few_rows_at_a_time_store(database):
    """Many rows take SQLite's bulk path, a few SQLAlchemy's own; a time in another zone, JSON and a
    NULL must be stored alike either way."""
    from kesher.db.base import UTCDateTime

    table = Table(f"bulk_{uuid.uuid4().hex[:8]}", MetaData(), Column("n", Integer, primary_key=True),
                  Column("at", UTCDateTime), Column("data", JSONData))
    table.create(database.engine)
    israel = timezone(timedelta(hours=2))
    count = FEW_ROWS * 2
    values = [{"at": (NOW + timedelta(seconds=i, microseconds=i)).astimezone(israel) if i % 4 else None,
               "data": None if i % 5 == 0 else {"i": i, "x": [1.5, None, "א"]}} for i in range(count)]
    try:
        with database.session() as session:
            insert_new(session, table, [{"n": i, "at": None, "data": {}} for i in range(count * 2)])
        with database.session() as session:
            update_rows(session, table, [{"n": i, **v} for i, v in enumerate(values)], "n")  # in bulk
            for start in range(0, count, FEW_ROWS // 2):  # a few at a time
                update_rows(session, table, [{"n": count + i, **values[i]}
                                             for i in range(start, min(start + FEW_ROWS // 2, count))], "n")
        with database.session() as session:
            as_text = [tuple(str(v) for v in r[1:]) for r in session.execute(text(
                f"SELECT n, at, data FROM {table.name} ORDER BY n")).all()]
            typed = [dict(r._mapping) for r in session.execute(select(table).order_by(table.c.n))]
        assert as_text[:count] == as_text[count:]
        assert [(r["at"], r["data"]) for r in typed[:count]] == [(v["at"], v["data"]) for v in values]
    finally:
        table.drop(database.engine)


def test_generic_plans_nest_and_restore_the_engine_setting(database):
    from kesher.db.upsert import generic_plans

    postgresql = database.engine.dialect.name == "postgresql"
    with database.session() as session:
        def mode() -> str | None:
            return session.scalar(text("SELECT current_setting('plan_cache_mode')")) if postgresql else None

        with generic_plans(session):  # nothing at all on SQLite
            assert mode() == ("force_generic_plan" if postgresql else None)
            with generic_plans(session):
                assert mode() == ("force_generic_plan" if postgresql else None)
            assert mode() == ("force_generic_plan" if postgresql else None)
        assert mode() == ("force_custom_plan" if postgresql else None)
        assert "generic_plans" not in session.info


def test_times_are_written_in_utc_however_often_and_in_whatever_zone_they_come():
    israel = timezone(timedelta(hours=2))
    instant = datetime(2026, 3, 4, 10, 11, 12, 345000, tzinfo=UTC)
    assert sqlite_text_time(instant) == "2026-03-04 10:11:12.345000"
    assert sqlite_text_time(instant.astimezone(israel)) == "2026-03-04 10:11:12.345000"  # remembered as one instant
    assert sqlite_text_time(datetime(2026, 3, 4, 12, 11, 12, 345000, tzinfo=israel)) == "2026-03-04 10:11:12.345000"
    assert sqlite_text_time(None) is None
    for _ in range(2):  # a naive time is refused, also after the same wall-clock time was written aware
        with pytest.raises(ValueError, match="naive"):
            sqlite_text_time(datetime(2026, 3, 4, 10, 11, 12, 345000))


def test_the_two_instants_of_one_wall_clock_time_are_written_apart():
    """In the hour the clock goes back, 01:30 in Jerusalem happens twice; the two are equal as datetimes."""
    jerusalem = ZoneInfo("Asia/Jerusalem")
    first = datetime(2026, 10, 25, 1, 30, tzinfo=jerusalem)
    second = first.replace(fold=1)
    assert first == second
    assert sqlite_text_time(first) == "2026-10-24 22:30:00.000000"
    assert sqlite_text_time(second) == "2026-10-24 23:30:00.000000"


def test_rows_are_written_in_key_order_on_postgresql_a_missing_key_first(database):
    """The order two writers of the same rows lock them in (see the catalogue's deadlock test)."""
    table = Table(f"bulk_{uuid.uuid4().hex[:8]}", MetaData(), Column("id", Integer, primary_key=True),
                  Column("code", String(10), nullable=True))
    rows = [{"id": 3, "code": "b"}, {"id": 1, "code": None}, {"id": 2, "code": "a"}]
    both = [{"id": 3, "code": None}, {"id": 2, "code": "a"}, {"id": 1, "code": None}]
    with database.session() as session:
        by_code = [row["id"] for row in in_key_order(session, table, rows, ["code"])]
        by_id = [row["id"] for row in in_key_order(session, table, rows, ["id"])]
        by_code_then_id = [row["id"] for row in in_key_order(session, table, both, ["code", "id"])]
    if database.dialect == "postgresql":
        assert (by_code, by_id, by_code_then_id) == ([1, 2, 3], [1, 2, 3], [1, 3, 2])
    else:  # one writer at a time: left as given
        assert by_code == by_id == [3, 1, 2] and by_code_then_id == [3, 2, 1]
