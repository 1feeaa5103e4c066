"""Operator commands for users and API keys."""

import pytest
from typer.testing import CliRunner

from kesher.accounts import service as accounts
from kesher.cli import app
from kesher.config import get_settings


@pytest.fixture
def kesher(database, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("KESHER_DATABASE_URL", database.url)
    get_settings.cache_clear()

    def run(*args: str):  # type: ignore[no-untyped-def]
        return CliRunner().invoke(app, list(args))

    yield run
    get_settings.cache_clear()


def test_keys_are_listed_and_revoked(kesher, database, workspace, other_workspace):
    with database.session() as s:
        key, secret = accounts.create_api_key(s, s.merge(workspace), "shop")
    listed = kesher("apikey", "list", "--workspace", workspace.slug)
    assert listed.exit_code == 0 and f"{key.id}" in listed.output and "shop" in listed.output
    assert secret not in listed.output and "active" in listed.output
    assert kesher("apikey", "revoke", str(key.id), "--workspace", other_workspace.slug).exit_code == 2
    assert kesher("apikey", "revoke", str(key.id), "--workspace", workspace.slug).exit_code == 0
    with database.session() as s, pytest.raises(Exception):
        accounts.authenticate_api_key(s, secret)
    assert "revoked" in kesher("apikey", "list", "--workspace", workspace.slug).output


def test_users_join_workspaces_and_get_new_passwords(kesher, database, workspace, other_workspace):
    with database.session() as s:
        user = accounts.create_user(s, "ops@example.com", "first-password", workspace=s.merge(workspace))
    assert kesher("user", "add", "--email", "ops@example.com", "--workspace", other_workspace.slug,
                  "--role", "owner").exit_code == 2
    assert kesher("user", "add", "--email", "ops@example.com", "--workspace", other_workspace.slug).exit_code == 0
    changed = kesher("user", "password", "--email", "ops@example.com")
    assert changed.exit_code == 0
    new = changed.output.strip().rsplit(" ", 1)[1]
    with database.session() as s:
        assert accounts.authenticate_user(s, "ops@example.com", new).id == user.id
        assert {w.id for w in accounts.user_workspaces(s, user.id)} == {workspace.id, other_workspace.id}
    assert kesher("user", "password", "--email", "nobody@example.com").exit_code == 2
