"""Bulk inserts (COPY on PostgreSQL) store every row and leave the session as they found it."""

import uuid

from sqlalchemy import Column, Integer, MetaData, String, Table, func, select, text

from kesher.contacts.models import Contact
from kesher.db.base import JSONData, utcnow
from kesher.db.upsert import FEW_ROWS, insert_new, insert_with_ids

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
