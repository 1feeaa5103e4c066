"""Watching PostgreSQL's lock waits, for tests that hold transactions in a chosen order."""

from sqlalchemy import text


def waiting_for_locks(database) -> int:
    """How many connections to the test database wait for a lock now."""
    with database.session() as session:
        return session.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                   "AND wait_event_type = 'Lock'")) or 0
