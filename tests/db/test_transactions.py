"""A transaction is whole on both databases, savepoints included."""

import pytest
from sqlalchemy import func, select

from kesher.accounts.models import Workspace


def _workspaces(database, slug: str) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(Workspace).where(Workspace.slug == slug)) or 0


def test_a_released_savepoint_is_undone_with_its_transaction(database):
    """SQLite's driver would start the transaction with the SAVEPOINT itself, and its RELEASE would commit."""
    with pytest.raises(RuntimeError), database.session() as session:
        session.get(Workspace, 1)  # a read first, as services do
        with session.begin_nested():
            session.add(Workspace(slug="half-written", name="Half written"))
        session.flush()
        raise RuntimeError("the rest of the work failed")
    assert _workspaces(database, "half-written") == 0


def test_work_after_a_savepoint_commits_with_it(database):
    with database.session() as session:
        with session.begin_nested():
            session.add(Workspace(slug="saved-first", name="Saved first"))
        session.add(Workspace(slug="saved-after", name="Saved after"))
    assert _workspaces(database, "saved-first") == _workspaces(database, "saved-after") == 1
