"""Incremental rollups equal rebuilt ones, for any order, batching and replay of events."""

from datetime import UTC, datetime, timedelta
from itertools import cycle

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from kesher.accounts import service as accounts
from kesher.contacts import service as contacts
from kesher.events import rollups
from kesher.events.ingest import ingest
from kesher.events.models import CampaignReceipt, CategoryStat, ContactRollup

START = datetime(2026, 1, 1, tzinfo=UTC)
CATEGORIES = ["vitamins", "absorbent", "walkers", ""]


@st.composite
def an_event(draw):
    contact = draw(st.integers(0, 2))
    ts = START + timedelta(minutes=draw(st.integers(0, 60 * 24 * 90)))
    kind = draw(st.sampled_from(["email_sent", "email_opened", "email_clicked", "purchase", "refund", "page_view",
                                 "cart_updated", "custom:quiz"]))
    props: dict = {}
    if kind.startswith("email_"):
        props = {"campaign_id": draw(st.sampled_from(["c1", "c2", "c3"]))}
    elif kind == "purchase":
        items = draw(st.lists(st.fixed_dictionaries({
            "sku": st.sampled_from(["A", "B", "C"]), "category": st.sampled_from(CATEGORIES),
            "price": st.decimals(0, 500, places=2).map(float), "quantity": st.integers(1, 3)}), max_size=3))
        props = {"order_id": draw(st.text("0123456789", min_size=1, max_size=4)), "items": items}
    elif kind == "refund":
        props = {"order_id": "r", "amount": float(draw(st.decimals(0, 300, places=2)))}
    elif kind in ("page_view", "cart_updated"):
        props = {"url": "https://shop.example/p"}
    key = draw(st.one_of(st.none(), st.sampled_from([f"k{i}" for i in range(6)])))  # a small pool: replays
    return contact, {"type": kind, "ts": ts.isoformat(), "properties": props, "idempotency_key": key}


def snapshot(session, workspace_id):
    session.expire_all()
    keep = [r.column for r in rollups.ROLLUPS] + ["recent_campaigns"]
    return (
        sorted(tuple(getattr(r, c) for c in ["contact_id", *keep])
               for r in session.scalars(select(ContactRollup).where(ContactRollup.workspace_id == workspace_id))),
        sorted((c.contact_id, c.category, c.purchase_count, c.first_purchase_at, c.last_purchase_at)
               for c in session.scalars(select(CategoryStat).where(CategoryStat.workspace_id == workspace_id))),
        sorted((c.contact_id, c.campaign_id, c.sent_at, c.first_open_at, c.first_click_at)
               for c in session.scalars(select(CampaignReceipt).where(CampaignReceipt.workspace_id == workspace_id))),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(an_event(), max_size=25), order=st.randoms(use_true_random=False),
       cuts=st.lists(st.integers(1, 6), min_size=1, max_size=8))
def test_incremental_rollups_equal_a_rebuild(database, events, order, cuts):
    with database.session() as s:
        ws = accounts.create_workspace(s, "prop")
        ids = [contacts.save_contact(s, ws.id, {"email": f"p{i}@example.com"}).contact_id for i in range(3)]
    raw = [{**e, "contact": {"id": ids[c]}} for c, e in events]
    order.shuffle(raw)
    position, sizes = 0, cycle(cuts)
    while position < len(raw):
        size = next(sizes)
        with database.session() as s:
            result = ingest(s, s.get(type(ws), ws.id), raw[position:position + size])
            assert result.errors == []
        position += size
    with database.session() as s:
        incremental = snapshot(s, ws.id)
        rollups.rebuild(s, ws.id)
        s.flush()
        assert snapshot(s, ws.id) == incremental
        whole, rollups.REBUILD_CONTACTS = rollups.REBUILD_CONTACTS, 2  # the same, two contacts at a time
        try:
            rollups.rebuild(s, ws.id)
        finally:
            rollups.REBUILD_CONTACTS = whole
        s.flush()
        assert snapshot(s, ws.id) == incremental


@st.composite
def receipts(draw):
    """A contact's receipts: more than the rollup keeps letters of, few distinct times (ties), some not sent."""
    times = [None, *(START + timedelta(days=d) for d in range(6))]
    n = draw(st.integers(0, rollups.RECENT_CAMPAIGNS + 10))
    return [(f"c{i:02d}", draw(st.sampled_from(times)), draw(st.booleans()), draw(st.booleans())) for i in range(n)]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(people=st.lists(receipts(), min_size=1, max_size=4))
def test_recent_campaigns_are_the_newest_receipts_letters(database, people):
    """Newest first by sending time, then campaign id; the newest RECENT_CAMPAIGNS only; NULL for none."""
    with database.session() as s:
        ws = accounts.create_workspace(s, "recent")
        expected = {}
        for i, person in enumerate(people):
            cid = contacts.save_contact(s, ws.id, {"email": f"r{i}@example.com"}).contact_id
            s.add(ContactRollup(contact_id=cid, workspace_id=ws.id, recent_campaigns="stale"))
            for campaign, sent, opened, clicked in person:
                s.add(CampaignReceipt(contact_id=cid, campaign_id=campaign, workspace_id=ws.id, sent_at=sent,
                                      first_open_at=START if opened else None, first_click_at=START if clicked else None))
            sent_ones = sorted((r for r in person if r[1] is not None), key=lambda r: (r[1], r[0]), reverse=True)
            letters = "".join(("b" if c else "o") if o else ("c" if c else "-")
                              for _, _, o, c in sent_ones[:rollups.RECENT_CAMPAIGNS])
            expected[cid] = letters or None
        s.flush()
        rollups.refresh_recent_campaigns(s, ws.id, sorted(expected))
        s.expire_all()
        assert {cid: s.get(ContactRollup, cid).recent_campaigns for cid in expected} == expected
        s.rollback()


def test_replays_and_out_of_order_events_count_once(database, workspace):
    with database.session() as s:
        cid = contacts.save_contact(s, workspace.id, {"email": "o@example.com"}).contact_id
        ws = s.get(type(workspace), workspace.id)
        late = {"type": "email_opened", "contact": {"id": cid}, "ts": "2026-03-01T10:00:00Z",
                "properties": {"campaign_id": "c1"}, "idempotency_key": "open-1"}
        early = {**late, "ts": "2026-02-01T10:00:00Z", "idempotency_key": "open-0"}
        assert ingest(s, ws, [late, late]).model_dump()["duplicates"] == 1
        assert ingest(s, ws, [early, late]).model_dump()["duplicates"] == 1
        rollup = s.get(ContactRollup, cid)
        assert (rollup.open_count, rollup.last_open_at) == (2, datetime(2026, 3, 1, 10, tzinfo=UTC))


def test_a_key_stored_by_another_request_meanwhile_counts_once(database, workspace):
    """Two requests with the same new key: the one that loses the race re-checks instead of failing."""
    from kesher.events import ingest as ingest_module

    with database.session() as s:
        cid = contacts.save_contact(s, workspace.id, {"email": "race@example.com"}).contact_id
    event = {"type": "email_opened", "contact": {"id": cid}, "ts": "2026-03-01T10:00:00Z",
             "properties": {"campaign_id": "c1"}, "idempotency_key": "race-1"}
    real = ingest_module._drop_replays
    calls = []

    def blind_first(session, workspace_id, accepted, result):  # the first look misses the other request's row
        calls.append(1)
        if len(calls) == 1:
            with database.session() as other:
                ingest(other, other.get(type(workspace), workspace_id), [event])
            return list(accepted)
        return real(session, workspace_id, accepted, result)

    ingest_module._drop_replays = blind_first
    try:
        with database.session() as s:
            result = ingest(s, s.get(type(workspace), workspace.id), [event])
    finally:
        ingest_module._drop_replays = real
    assert (result.accepted, result.duplicates) == (0, 1)
    with database.session() as s:
        assert s.get(ContactRollup, cid).open_count == 1
