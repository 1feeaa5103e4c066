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
