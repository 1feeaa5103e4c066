from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from kesher.db.models import metadata


def test_migrations_build_exactly_the_models(database):
    """The migrated schema (upgraded by the fixture) has every table, column and index the models declare."""
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []


def test_postgresql_keeps_no_statistics_on_event_properties(database):
    """ANALYZE (autovacuum's, each time the events grow by a tenth) skips a column no plan reads."""
    from sqlalchemy import text

    if database.engine.dialect.name != "postgresql":
        return
    with database.engine.connect() as conn:
        targets = dict(conn.execute(text(
            "SELECT attname, attstattarget FROM pg_attribute WHERE attrelid = 'events'::regclass "
            "AND attname IN ('properties', 'ts')")).all())
    assert targets["properties"] == 0 and targets["ts"] in (-1, None)


def test_only_anonymous_visitors_events_are_in_the_anonymous_index(database):
    """Events named by a contact stay out of ix_events_ws_anonymous, and the look-up of a visitor still uses it."""
    from sqlalchemy import text

    postgresql = database.engine.dialect.name == "postgresql"
    with database.engine.connect() as conn:
        if postgresql:
            definition = conn.scalar(text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_events_ws_anonymous'"))
            conn.execute(text("SET enable_seqscan = off"))
            explain = "EXPLAIN SELECT id FROM events WHERE workspace_id = 1 AND anonymous_id = 'v-1'"
        else:
            definition = conn.scalar(text("SELECT sql FROM sqlite_master WHERE name = 'ix_events_ws_anonymous'"))
            explain = "EXPLAIN QUERY PLAN SELECT id FROM events WHERE workspace_id = 1 AND anonymous_id = 'v-1'"
        plan = " ".join(str(row[-1]) for row in conn.execute(text(explain)))
    assert "anonymous_id IS NOT NULL" in definition
    assert "ix_events_ws_anonymous" in plan
