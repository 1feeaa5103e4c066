"""Loading the demo shop: what it creates, that a second run changes nothing, and the command."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from kesher.accounts import service as accounts
from kesher.accounts.models import ApiKey, Membership
from kesher.contacts import groups
from kesher.contacts.fields import list_fields
from kesher.contacts.models import Consent, Contact, FieldValue
from kesher.db import Database
from kesher.demo import load
from kesher.demo.generator import contacts
from kesher.errors import AuthError

N = 300


def _snapshot(db: Database, workspace_id: int) -> dict[str, Any]:
    """Everything a load writes, counted, so two loads can be compared."""
    with db.session() as s:
        def rows(model: Any) -> int:
            return s.scalar(select(func.count()).select_from(model).where(model.workspace_id == workspace_id)) or 0

        return {
            "contacts": rows(Contact), "values": rows(FieldValue), "consents": rows(Consent), "keys": rows(ApiKey),
            "members": rows(Membership),
            "fields": {(f.key, f.label, tuple(f.choices)) for f in list_fields(s, workspace_id)},
            "lists": {g.name: n for g, n in groups.all_with_counts(s, workspace_id, "list")},
            "tags": {g.name: n for g, n in groups.all_with_counts(s, workspace_id, "tag")},
            "updated_at": s.scalar(select(func.max(Contact.updated_at)).where(Contact.workspace_id == workspace_id)),
        }


@pytest.fixture(scope="module")
def loaded(database: Database) -> tuple[load.DemoAccess, load.LoadResult, dict[str, Any]]:
    """One demo load (batches of 128, so several batches and a short last one) in a workspace of its own."""
    tag = uuid.uuid4().hex[:8]
    access = load.ensure_access(database, slug=f"demo-{tag}", email=f"admin-{tag}@kesher.local")
    done: list[int] = []
    result = load.load_contacts(database, access.workspace_id, N, seed=7, batch_size=128, progress=done.append)
    assert done == [128, 256, 300]
    return access, result, _snapshot(database, access.workspace_id)


def test_load_creates_the_shop(loaded) -> None:
    access, result, counts = loaded
    people = list(contacts(N, seed=7))
    kinds = Counter(p["customer_type"] for p in people)
    assert (result.created, result.updated, result.unchanged, result.failed) == (N, 0, 0, 0)
    assert (access.workspace_name, access.api_key is not None) == (load.DEMO_NAME, True)
    assert counts["contacts"] == N and counts["values"] == 2 * N and counts["keys"] == 1 and counts["members"] == 1
    assert counts["fields"] == {("customer_type", "סוג לקוח", tuple(load.TYPE_TAGS)),
                                ("role", "תפקיד", ("customer", "family", "caregiver"))}
    assert counts["lists"] == {"ניוזלטר": sum(p["consent_email"] for p in people), "לקוחות": N - kinds["prospect"]}
    assert counts["tags"] == {"נאמן": kinds["loyal"], "מזדמן": kinds["occasional"], "רדום": kinds["dormant"],
                              "חדש": kinds["new"], "מתעניין": kinds["prospect"]}
    reachable = sum(bool(p["email"]) + 2 * bool(p["phone"]) for p in people)
    assert counts["consents"] == reachable


def test_contact_carries_its_fields_consent_lists_and_tag(loaded, database) -> None:
    from kesher.contacts.service import contact_detail

    access = loaded[0]
    person = next(p for p in contacts(N, seed=7) if p["email"] and p["phone"] and p["customer_type"] == "loyal")
    with database.session() as s:
        contact_id = s.scalar(select(Contact.id).where(Contact.workspace_id == access.workspace_id,
                                                       Contact.external_id == person["external_id"]))
        detail = contact_detail(s, access.workspace_id, contact_id)
    assert (detail.contact.email, detail.contact.phone, detail.contact.first_name, detail.contact.source) == (
        person["email"], person["phone"], person["first_name"], "demo")
    assert detail.fields == {"customer_type": "loyal", "role": person["role"]}
    assert {c: detail.consent[c].status for c in ("email", "sms", "whatsapp")} == {
        c: "granted" if person[f"consent_{c}"] else "denied" for c in ("email", "sms", "whatsapp")}
    assert {g.name for g in detail.tags} == {"נאמן"}
    assert {g.name for g in detail.lists} == {"לקוחות"} | ({"ניוזלטר"} if person["consent_email"] else set())


def test_second_run_changes_nothing_and_the_new_password_works(loaded, database) -> None:
    first, _, before = loaded
    slug, email = first.workspace_slug, first.email
    again = load.ensure_access(database, slug=slug, email=email)
    result = load.load_contacts(database, again.workspace_id, N, seed=7, batch_size=128)
    assert (result.created, result.updated, result.unchanged, result.failed) == (0, 0, N, 0)
    assert (again.workspace_id, again.api_key) == (first.workspace_id, None)
    assert _snapshot(database, again.workspace_id) == before
    with database.session() as s:
        admin = accounts.authenticate_user(s, email, again.password)
        assert [w.slug for w in accounts.user_workspaces(s, admin.id)] == [slug]
        with pytest.raises(AuthError):
            accounts.authenticate_user(s, email, first.password)


def test_command_loads_and_prints_how_to_log_in(tmp_path, monkeypatch) -> None:
    from kesher.cli import app
    from kesher.config import get_settings

    monkeypatch.setenv("KESHER_DATABASE_URL", f"sqlite:///{tmp_path}/k.db")
    get_settings.cache_clear()
    try:
        first = CliRunner().invoke(app, ["demo", "--contacts", "200", "--events", "3000", "--no-serve"])
        second = CliRunner().invoke(app, ["demo", "--contacts", "200", "--events", "0", "--no-serve"])
    finally:
        get_settings.cache_clear()
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert "200 loaded (200 new" in first.output and "200 unchanged" in second.output
    stored = int(next(line for line in first.output.splitlines() if line.startswith("events:")).split()[1].replace(",", ""))
    assert 2700 <= stored <= 3300 and "events:" not in second.output
    assert "API key" in first.output and "API key" not in second.output
    login = next(line for line in second.output.splitlines() if "http://127.0.0.1:8000" in line)
    password = login.split(" / ")[1].strip()
    assert "admin@kesher.local" in login and len(password) >= 12
    db = Database(f"sqlite:///{tmp_path}/k.db")
    with db.session() as s:
        assert accounts.get_workspace(s, "demo").name == "חנות הדגמה"
        accounts.authenticate_user(s, "admin@kesher.local", password)
    db.dispose()


def test_history_is_stored_once_with_rollups_and_signup_dates(loaded, database) -> None:
    from kesher.events.models import ContactRollup, Event

    access, _, _ = loaded
    first = load.load_events(database, access.workspace_id, N, 2500, seed=7)
    again = load.load_events(database, access.workspace_id, N, 2500, seed=7)
    assert first.errors == [] and 2250 <= first.accepted <= 2750
    assert (again.accepted, again.duplicates) == (0, first.accepted)
    with database.session() as s:
        stored = s.scalar(select(func.count()).select_from(Event).where(  # not the stage changes Kesher adds
            Event.workspace_id == access.workspace_id, Event.type != "stage_changed"))
        buyers = s.scalar(select(func.count()).select_from(ContactRollup)
                          .where(ContactRollup.workspace_id == access.workspace_id, ContactRollup.purchase_count > 0))
        joined = {c.created_at.date() for c in s.scalars(select(Contact).where(Contact.workspace_id == access.workspace_id))}
    assert stored == first.accepted and buyers > 0
    assert len(joined) > 30  # signup dates spread over the generated year, not the load time
