from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from kesher.db.models import metadata


def test_migrations_build_exactly_the_models(database):
    """The migrated schema (upgraded by the fixture) has every table, column and index the models declare."""
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []
