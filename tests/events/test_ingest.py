"""Ingest: each event checked on its own, stored once, contacts found or created, rollups kept."""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from kesher.accounts.models import Workspace
from kesher.contacts import service as contacts
from kesher.contacts.models import Contact
from kesher.events import service
from kesher.events.ingest import ingest
from kesher.events.models import Event, PurchaseItem
from kesher.events.rollups import SYSTEM_TYPES
from tests.channels.conftest import wait_for
from tests.locks import waiting_for_locks

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def send(database, workspace, events, **settings):
    with database.session() as s:
        ws = s.get(Workspace, workspace.id)
        if settings:
            ws.settings = settings
        return ingest(s, ws, events)


def stored(database, workspace):
    """The events sent, without those Kesher writes itself (stage changes)."""
    with database.session() as s:
        return list(s.scalars(select(Event).where(Event.workspace_id == workspace.id,
                                                  Event.type.not_in(SYSTEM_TYPES)).order_by(Event.id)))


def new_contact(database, workspace, email="dana@example.co.il"):
    with database.session() as s:
        return contacts.save_contact(s, workspace.id, {"email": email}).contact_id


def purchase(order_id, ts=T0, key=None, contact=None, **props):
    props = {"order_id": order_id, "items": [{"sku": "VIT-D", "category": "vitamins", "price": 49.9, "quantity": 2}],
             **props}
    return {"type": "purchase", "contact": contact or {"email": "dana@example.co.il"}, "ts": ts.isoformat(),
            "properties": props, "idempotency_key": key}


def test_each_bad_event_is_reported_at_its_index_and_the_good_ones_kept(database, workspace, other_workspace):
    theirs = new_contact(database, other_workspace, "their@example.com")
    result = send(database, workspace, [
        {"type": "email_opened", "contact": {"email": "a@example.com"}},  # 0 good
        {"type": "teleported", "contact": {"email": "a@example.com"}},  # 1 unknown type
        {"type": "purchase", "contact": {"email": "a@example.com"}, "properties": {"total": 10}},  # 2 no order_id
        {"type": "page_view", "contact": {"email": "a@example.com"}, "ts": "2026-03-01T09:00:00",  # 3 naive ts
         "properties": {"url": "https://shop.example/"}},
        {"type": "email_opened", "contact": {}},  # 4 a contact with no key
        {"type": "email_opened", "contact": {"id": theirs}},  # 5 another workspace's contact
        "not an event",  # 6
        {"type": "email_opened"},  # 7 nobody at all
        {"type": "email_bounced", "contact": {"email": "a@example.com"}, "properties": {"bounce_type": "x"}},  # 8
        {"type": "email_opened", "contact": {"email": "no-at-sign"}},  # 9
        {"type": "custom:quiz_done", "contact": {"email": "a@example.com"}, "properties": {"score": 7}},  # 10 good
    ])
    assert result.accepted == 2 and result.duplicates == 0
    assert [(e.index, e.field) for e in result.errors] == [
        (1, "type"), (2, "properties.order_id"), (3, "ts"), (4, "contact"), (5, "contact.id"), (6, "event"),
        (7, "event"), (8, "properties.bounce_type"), (9, "contact.email")]
    assert all(e.message for e in result.errors)
    assert [e.type for e in stored(database, workspace)] == ["email_opened", "custom:quiz_done"]
    assert stored(database, other_workspace) == []


def test_numbers_too_big_to_store_are_errors_not_crashes(database, workspace):
    huge = [{"sku": "X", "price": 1e9, "quantity": 1e6}] * 10
    result = send(database, workspace, [
        {"type": "email_opened", "contact": {"id": 2**64}},
        {"type": "purchase", "contact": {"email": "a@example.com"}, "properties": {"order_id": "1", "items": huge}},
        {"type": "purchase", "contact": {"email": "a@example.com"}, "properties": {"order_id": "2", "total": 1e10}},
    ])
    assert [(e.index, e.field) for e in result.errors] == [(0, "contact.id"), (1, "properties"), (2, "properties.total")]
    assert "send the total" in result.errors[1].message


def test_an_idempotency_key_counts_once_in_a_batch_and_across_calls(database, workspace):
    first = send(database, workspace, [purchase("1", key="order-1"), purchase("1", key="order-1"),
                                       purchase("2", ts=T0 + timedelta(days=1))])
    assert (first.accepted, first.duplicates, first.errors) == (2, 1, [])
    again = send(database, workspace, [purchase("1", key="order-1"), purchase("3", key="order-3")])
    assert (again.accepted, again.duplicates) == (1, 1)
    assert len(stored(database, workspace)) == 3
    with database.session() as s:
        cid = s.scalar(select(Contact.id).where(Contact.workspace_id == workspace.id))
        stats = service.contact_stats(s, workspace.id, cid)
    assert (stats.rollup.purchase_count, stats.rollup.revenue_minor) == (3, 3 * 9980)


def test_the_same_key_in_another_workspace_is_not_a_duplicate(database, workspace, other_workspace):
    assert send(database, workspace, [purchase("1", key="k")]).accepted == 1
    assert send(database, other_workspace, [purchase("1", key="k")]).accepted == 1


def test_unknown_contacts_are_created_unless_the_workspace_says_no(database, workspace, other_workspace):
    created = send(database, workspace, [{"type": "email_opened", "contact": {"email": "New@Example.com"}},
                                         {"type": "email_clicked", "contact": {"phone": "050-1234567"}}])
    assert (created.accepted, created.errors) == (2, [])
    with database.session() as s:
        people = s.execute(select(Contact.email, Contact.phone, Contact.source)
                           .where(Contact.workspace_id == workspace.id).order_by(Contact.id)).all()
    assert sorted(people, key=str) == sorted([("new@example.com", None, "events"), (None, "+972501234567", "events")],
                                             key=str)

    known = new_contact(database, other_workspace, "known@example.com")
    refused = send(database, other_workspace, [{"type": "email_opened", "contact": {"email": "stranger@example.com"}},
                                               {"type": "email_opened", "contact": {"email": "Known@example.com"}}],
                   events_create_contacts=False)
    assert refused.accepted == 1
    assert [(e.index, e.field) for e in refused.errors] == [(0, "contact.email")]
    assert [e.contact_id for e in stored(database, other_workspace)] == [known]


def test_anonymous_events_are_stored_without_a_contact(database, workspace):
    result = send(database, workspace, [{"type": "page_view", "anonymous_id": "v-1",
                                         "properties": {"url": "https://shop.example/"}}])
    assert (result.accepted, result.errors) == (1, [])
    [event] = stored(database, workspace)
    assert (event.contact_id, event.anonymous_id, event.properties["url"]) == (None, "v-1", "https://shop.example/")


def test_a_purchase_is_kept_in_agorot_with_its_lines(database, workspace):
    assert send(database, workspace, [purchase("1001")]).accepted == 1
    [event] = stored(database, workspace)
    assert (event.amount_minor, event.properties["total"], event.ts) == (9980, 99.8, T0)
    with database.session() as s:
        lines = s.execute(select(PurchaseItem.sku, PurchaseItem.category, PurchaseItem.quantity)
                          .where(PurchaseItem.event_id == event.id)).all()
    assert lines == [("VIT-D", "vitamins", 2.0)]


def test_rollups_after_a_few_events(database, workspace):
    cid = new_contact(database, workspace)
    me = {"id": cid}
    result = send(database, workspace, [
        {"type": "email_sent", "contact": me, "ts": T0.isoformat(), "properties": {"campaign_id": "c1"}},
        {"type": "email_opened", "contact": me, "ts": (T0 + timedelta(hours=1)).isoformat(),
         "properties": {"campaign_id": "c1"}},
        {"type": "email_sent", "contact": me, "ts": (T0 + timedelta(days=1)).isoformat(),
         "properties": {"campaign_id": "c2"}},
        purchase("1", contact=me, ts=T0 + timedelta(days=2)),
        purchase("2", contact=me, ts=T0 + timedelta(days=12), items=[{"sku": "W", "category": "walkers", "price": 100}]),
        {"type": "refund", "contact": me, "ts": (T0 + timedelta(days=13)).isoformat(),
         "properties": {"order_id": "2", "amount": 20.5}},
    ])
    assert result.errors == []
    with database.session() as s:
        stats = service.contact_stats(s, workspace.id, cid)
    r = stats.rollup
    assert (r.sent_count, r.open_count, r.purchase_count, r.revenue_minor, r.refunds_minor) == (2, 1, 2, 19980, 2050)
    assert (r.first_purchase_at, r.last_purchase_at) == (T0 + timedelta(days=2), T0 + timedelta(days=12))
    assert (stats.total_revenue, stats.avg_order_value, stats.avg_days_between_purchases) == (179.3, 99.9, 10.0)
    assert [(c.category, c.purchase_count) for c in stats.categories] == [("walkers", 1), ("vitamins", 1)]
    assert [(c.campaign_id, c.first_open_at) for c in stats.last_campaigns] == [
        ("c2", None), ("c1", T0 + timedelta(hours=1))]


def test_events_checked_in_one_pass_come_out_as_the_two_steps_give_them(monkeypatch):
    """Valid events of canonical types take one pydantic pass; what it keeps equals the two-step check."""
    from kesher.demo.generator import events as demo_events
    from kesher.events import ingest as ingest_module
    from kesher.events.schemas import IngestResult

    now = datetime(2026, 12, 7, tzinfo=UTC)
    sample = [{**e, "ts": e["ts"].isoformat()} if isinstance(e["ts"], datetime) else e for e in demo_events(60, 600)]
    sample += [
        {"type": " unsubscribed ", "contact": {"email": " Ann@Example.com "}},
        {"type": "unsubscribed", "contact": {"id": 3}, "properties": {"note": None, "extra": {"a": None}}},
        {"type": "purchase", "contact": {"phone": "050-123-4567"}, "properties": {"order_id": " A1 ", "items": [
            {"sku": "X", "price": 10, "quantity": 2, "size": "M", "gift": None}]}},
        {"type": "email_bounced", "anonymous_id": "v1", "properties": {"bounce_type": "hard", "reason": None}},
        {"type": "page_view", "anonymous_id": "v1", "properties": {"url": "https://a.example/", "title": "דף"}},
        {"type": "purchase", "contact": {"id": 1}, "properties": None},
        {"type": "purchase", "contact": {"id": 1}},
        {"type": ["purchase"], "contact": {"id": 1}},
        {"type": "page_view", "contact": {"id": 1}, "properties": {"url": ""}, "idempotency_key": ""},
    ]

    def checked() -> tuple[list, list]:
        result = IngestResult()
        kept = ingest_module.validate(sample, result, "IL", now)
        return ([(a.index, a.event.type, a.event.contact, a.event.anonymous_id, a.event.idempotency_key,
                  a.properties, a.ts, a.contact_key) for a in kept], result.errors)

    fast = sum(ingest_module._valid_at_once(item) is not None for item in sample)
    assert fast == len(sample) - 5  # all but the four bad events and " unsubscribed " (stripped later)
    one_pass = checked()
    monkeypatch.setattr(ingest_module, "_valid_at_once", lambda item: None)
    two_steps = checked()
    assert one_pass == two_steps
    assert len(one_pass[0]) == len(sample) - 4 and len(one_pass[1]) == 4


def test_callers_at_once_each_creating_contacts_all_get_their_events_stored(database, workspace):
    """Four callers post at the same time, each naming people not known yet, on both databases.

    On SQLite a transaction that read in a savepoint (looking for the contacts) and then wrote
    (creating them) found the database changed by another writer meanwhile, and failed at once
    with "database is locked" instead of waiting its turn."""
    def caller(c: int) -> list[int]:
        accepted = []
        for n in range(4):
            accepted.append(send(database, workspace, [
                {"type": "page_view", "contact": {"email": f"new{c}-{n}-{i}@example.com"},
                 "idempotency_key": f"at-once-{c}-{n}-{i}", "properties": {"url": "https://shop.example/"}}
                for i in range(30)]).accepted)
        return accepted

    with ThreadPoolExecutor(4) as callers:
        results = [done.result() for done in [callers.submit(caller, c) for c in range(4)]]
    assert results == [[30] * 4] * 4
    assert len(stored(database, workspace)) == 4 * 4 * 30


def test_callers_at_once_creating_the_same_people_all_get_their_events_stored(database, workspace):
    """Four callers post events for the same 120 people, none known yet, in different orders.

    On PostgreSQL two transactions creating one contact meet on its unique email: the second
    waited for the first, then failed, and its one retry could meet a third."""
    import random

    def caller(c: int) -> list[int]:
        order = list(range(120))
        random.Random(c).shuffle(order)
        return [send(database, workspace, [
            {"type": "page_view", "contact": {"email": f"same{p}@example.com"},
             "idempotency_key": f"same-{c}-{n}-{j}", "properties": {"url": "https://shop.example/"}}
            for j, p in enumerate(order[n * 40:(n + 1) * 40] + order[:10])]).accepted for n in range(3)]

    with ThreadPoolExecutor(4) as callers:
        results = [done.result() for done in [callers.submit(caller, c) for c in range(4)]]
    assert results == [[50] * 3] * 4
    with database.session() as s:
        people = s.scalars(select(Contact.email).where(Contact.workspace_id == workspace.id,
                                                      Contact.email.like("same%"))).all()
    assert sorted(people) == sorted(f"same{p}@example.com" for p in range(120))


def test_two_calls_replaying_the_same_new_keys_in_opposite_orders_both_succeed(database, workspace):
    """Each call inserts its events in key order (PostgreSQL), so neither holds a key the other waits for.

    Given in the order of the call, the first would insert A and wait for C (held by a third,
    unfinished call), the second B and wait for C too; once C was given up, one would wait for
    the other's B or A and PostgreSQL would fail it as a deadlock, where a replay should only be
    counted as one."""
    if database.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: no two writers wait for each other")
    contact = new_contact(database, workspace)

    def events(keys: str) -> list[dict]:
        return [{"type": "page_view", "contact": {"id": contact}, "idempotency_key": f"replay-{k}",
                 "ts": T0.isoformat(), "properties": {"url": f"https://shop.example/{k}"}} for k in keys]

    with ThreadPoolExecutor(2) as callers, database.session() as blocker:
        ingest(blocker, blocker.get_one(Workspace, workspace.id), events("C"))
        first = callers.submit(send, database, workspace, events("ACB"))
        wait_for(lambda: waiting_for_locks(database) == 1, seconds=10)
        second = callers.submit(send, database, workspace, events("BCA"))
        wait_for(lambda: waiting_for_locks(database) == 2, seconds=10)
        blocker.rollback()  # C is free again: both go on
        results = [first.result(30), second.result(30)]
    assert sorted((r.accepted, r.duplicates) for r in results) == [(0, 3), (3, 0)]
    assert sorted(e.idempotency_key for e in stored(database, workspace)) == ["replay-A", "replay-B", "replay-C"]
