"""Fixtures: every storage test runs on SQLite and on PostgreSQL.

One database per backend per test session (PostgreSQL: a fresh database, dropped at the end);
each test gets a fresh workspace in it, which is also how Kesher isolates tenants.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.orm import Session

from kesher.accounts import service as accounts
from kesher.accounts.models import Workspace
from kesher.config import Settings
from kesher.db import Database
from kesher.db.migrate import upgrade
from kesher.db.session import make_engine

SETTINGS = Settings()
BACKENDS = ["sqlite", "postgresql"]


def _postgres_database(tmp_name: str) -> tuple[str, object]:
    admin_url = make_url(SETTINGS.test_postgres_url)
    admin = make_engine(admin_url.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{tmp_name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure to reach PostgreSQL is reported the same way
        admin.dispose()
        if SETTINGS.ci:
            pytest.fail(f"PostgreSQL is required under CI but unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    return admin_url.set(database=tmp_name).render_as_string(hide_password=False), admin


@pytest.fixture(scope="session", params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("db") / "kesher.db"
        db = Database(f"sqlite:///{path}")
        upgrade(db.engine)
        yield db
        db.dispose()
        return
    name = f"kesher_test_{worker}_{uuid.uuid4().hex[:8]}"
    url, admin = _postgres_database(name)
    db = Database(url)
    upgrade(db.engine)
    yield db
    db.dispose()
    with admin.connect() as conn:  # type: ignore[attr-defined]
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()  # type: ignore[attr-defined]


@pytest.fixture
def session(database: Database) -> Iterator[Session]:
    with database.sessions() as s:
        yield s
        s.rollback()


@pytest.fixture
def workspace(database: Database) -> Workspace:
    with database.session() as s:
        return accounts.create_workspace(s, f"Test {uuid.uuid4().hex[:6]}")


@pytest.fixture
def other_workspace(database: Database) -> Workspace:
    with database.session() as s:
        return accounts.create_workspace(s, f"Other {uuid.uuid4().hex[:6]}")


@pytest.fixture
def app(database: Database, tmp_path):  # type: ignore[no-untyped-def]
    from kesher.web.app import create_app

    settings = Settings(database_url=database.url, queue="immediate", import_dir=str(tmp_path / "imports"),
                        secret_key="test-secret")
    return create_app(settings, database)


@pytest.fixture
def api_key(database: Database, workspace: Workspace) -> str:
    with database.session() as s:
        _, secret = accounts.create_api_key(s, s.merge(workspace), "tests")
    return secret


@pytest.fixture
def api(app, api_key):  # type: ignore[no-untyped-def]
    """An HTTP client for /api/v1 holding an API key of `workspace`."""
    from fastapi.testclient import TestClient

    with TestClient(app, base_url="http://testserver/api/v1", headers={"Authorization": f"Bearer {api_key}"}) as client:
        yield client
