"""Fixtures: every storage test runs on SQLite and on PostgreSQL.

One database per backend per test session (PostgreSQL: a fresh database, dropped at the end);
each test gets a fresh workspace in it, which is also how Kesher isolates tenants.
"""

from __future__ import annotations

import gc
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner
from sqlalchemy import make_url, text
from sqlalchemy.orm import Session

from kesher.accounts import service as accounts
from kesher.accounts.models import Workspace
from kesher.cli import app as cli_app
from kesher.config import Settings, get_settings
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


@pytest.fixture(autouse=True)
def _collector_unfrozen() -> Iterator[None]:
    """Commands run in this process freeze what it holds and space out young collections (memory.settle);
    a test leaves the collector as it found it."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


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


# Real servers and a real browser ------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def chromium() -> dict[str, Any]:
    """Launch options for Debian's headless Chromium; skipped where it is missing, a failure under CI."""
    if not CHROMIUM.exists():
        if SETTINGS.ci:
            pytest.fail(f"{CHROMIUM} is required under CI (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} not installed; install Debian's chromium to run the browser tests")
    # This machine reaches no network: Chromium's own background requests would only fail.
    return {"executable_path": str(CHROMIUM),
            "args": ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync"]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """A port on 127.0.0.1 that nothing listens on."""
    return _free_port


@pytest.fixture(scope="module")
def live_server() -> Iterator[Callable[..., str]]:
    """Serve an app with uvicorn in a thread on 127.0.0.1 (call it with the app, and a port if chosen);
    returns the base URL once it answers. Every server started is stopped after the module."""
    import uvicorn

    servers: list[tuple[Any, threading.Thread]] = []

    def start(app: Any, port: int | None = None) -> str:
        port = port or _free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 15
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def kesher(database, tmp_path, monkeypatch):
    """Runs `kesher ...` against the test database; returns the result."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KESHER_DATABASE_URL", database.url)
    get_settings.cache_clear()

    def run(*args):
        return CliRunner().invoke(cli_app, [str(a) for a in args])

    yield run
    get_settings.cache_clear()
