"""Lifecycle stages, loyalty, RFM and engagement, on SQLite and PostgreSQL, at a fixed `now`."""

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, func, insert, select

from kesher.accounts import service as accounts
from kesher.accounts.models import Workspace
from kesher.config import Settings
from kesher.contacts.models import Contact
from kesher.errors import ValidationError
from kesher.events import lifecycle, rollups
from kesher.events.ingest import ingest
from kesher.events.models import CampaignReceipt, ContactRollup, Event

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
_serial = count()


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def add_contact(s, workspace_id: int, joined: datetime) -> int:
    contact = Contact(workspace_id=workspace_id, email=f"c{next(_serial)}@example.com", created_at=joined,
                      updated_at=joined)
    s.add(contact)
    s.flush()
    return contact.id


def record(s, workspace_id: int, contact_id: int, *events: tuple[str, datetime, dict]) -> None:
    raw = [{"type": kind, "contact": {"id": contact_id}, "ts": ts.isoformat(), "properties": props}
           for kind, ts, props in events]
    assert ingest(s, s.get(Workspace, workspace_id), raw).errors == []


def campaign(name: str, sent: datetime, opened: datetime | None = None, clicked: datetime | None = None):
    events = [("email_sent", sent, {"campaign_id": name})]
    events += [("email_opened", opened, {"campaign_id": name})] if opened else []
    events += [("email_clicked", clicked, {"campaign_id": name})] if clicked else []
    return events


def purchase(at: datetime, total: float = 100.0):
    return ("purchase", at, {"order_id": f"o{next(_serial)}", "total": total})


def column(s, name: str, ids) -> dict[int, object]:
    rows = s.execute(select(ContactRollup.contact_id, getattr(ContactRollup, name))
                     .where(ContactRollup.contact_id.in_(list(ids)))).all()
    return dict(rows)


def stage_events(s, workspace_id: int) -> list[tuple[int, dict, datetime]]:
    return [tuple(row) for row in s.execute(
        select(Event.contact_id, Event.properties, Event.ts)
        .where(Event.workspace_id == workspace_id, Event.type == "stage_changed").order_by(Event.id))]


def test_each_stage_from_events_at_a_fixed_now(database, workspace):
    with database.session() as s:
        ws = workspace.id
        who = {}
        who["new"] = add_contact(s, ws, ago(5))
        who["active"] = add_contact(s, ws, ago(200))
        record(s, ws, who["active"], *campaign("c1", ago(3), opened=ago(2)))
        who["subscriber"] = add_contact(s, ws, ago(100))  # never emailed, never bought: not dormant
        who["loyal"] = add_contact(s, ws, ago(400))
        record(s, ws, who["loyal"], purchase(ago(50)), purchase(ago(30)), purchase(ago(10)))
        who["at_risk_open"] = add_contact(s, ws, ago(200))
        record(s, ws, who["at_risk_open"], *campaign("c1", ago(40), opened=ago(40)))
        who["at_risk_interval"] = add_contact(s, ws, ago(300))
        record(s, ws, who["at_risk_interval"], purchase(ago(80)), purchase(ago(60)))  # 60 days > 1.5 x 20
        who["dormant_email"] = add_contact(s, ws, ago(300))
        record(s, ws, who["dormant_email"], *campaign("c1", ago(90)), *campaign("c2", ago(60)),
               *campaign("c3", ago(30)))
        who["dormant_shop"] = add_contact(s, ws, ago(300))
        record(s, ws, who["dormant_shop"], purchase(ago(120)))
        who["dormant_visitor"] = add_contact(s, ws, ago(300))
        record(s, ws, who["dormant_visitor"], ("page_view", ago(95), {"url": "https://shop.example/"}))
        who["lost"] = add_contact(s, ws, ago(500))
        record(s, ws, who["lost"], purchase(ago(400)), *campaign("c0", ago(380), opened=ago(370)))

        lifecycle.refresh(s, s.get(Workspace, ws), now=NOW)
        got = column(s, "stage", who.values())
    assert {name: got[cid] for name, cid in who.items()} == {
        "new": "new", "active": "active", "subscriber": "active", "loyal": "loyal", "at_risk_open": "at_risk",
        "at_risk_interval": "at_risk", "dormant_email": "dormant", "dormant_shop": "dormant",
        "dormant_visitor": "dormant", "lost": "lost"}


def test_dormant_on_email_takes_the_last_three_campaigns_unclicked(database, workspace):
    with database.session() as s:
        ws = s.get(Workspace, workspace.id)
        two = add_contact(s, ws.id, ago(300))
        record(s, ws.id, two, *campaign("c1", ago(70)), *campaign("c2", ago(50)))
        clicked = add_contact(s, ws.id, ago(300))
        record(s, ws.id, clicked, *campaign("c1", ago(90)), *campaign("c2", ago(70), clicked=ago(65)),
               *campaign("c3", ago(50)))
        clicked_long_ago = add_contact(s, ws.id, ago(300))
        record(s, ws.id, clicked_long_ago, *campaign("c0", ago(100), clicked=ago(99)), *campaign("c1", ago(90)),
               *campaign("c2", ago(70)), *campaign("c3", ago(50)))
        opened_lately = add_contact(s, ws.id, ago(300))
        record(s, ws.id, opened_lately, *campaign("c1", ago(90)), *campaign("c2", ago(70)),
               *campaign("c3", ago(50), opened=ago(45)))
        lifecycle.refresh(s, ws, now=NOW)
        got = column(s, "stage", [two, clicked, clicked_long_ago, opened_lately])
    assert [got[two], got[clicked], got[clicked_long_ago], got[opened_lately]] == \
        ["at_risk", "at_risk", "dormant", "at_risk"]


def test_threshold_changes_move_contacts(database, workspace):
    with database.session() as s:
        ws = s.get(Workspace, workspace.id)
        cid = add_contact(s, ws.id, ago(200))
        record(s, ws.id, cid, *campaign("c1", ago(40), opened=ago(40)))
        lifecycle.refresh(s, ws, now=NOW)
        assert column(s, "stage", [cid])[cid] == "at_risk"
        lifecycle.set_thresholds(s, ws, {"at_risk_no_open_days": 45})
        lifecycle.refresh(s, ws, now=NOW)
        assert column(s, "stage", [cid])[cid] == "active"
        lifecycle.set_thresholds(s, ws, {"new_days": 365})
        lifecycle.refresh(s, ws, now=NOW)
        assert column(s, "stage", [cid])[cid] == "new"
        assert ws.settings["lifecycle"] == {"at_risk_no_open_days": 45, "new_days": 365}  # defaults are not stored

        shopper = add_contact(s, ws.id, ago(300))
        record(s, ws.id, shopper, purchase(ago(200)), purchase(ago(190)))
        lifecycle.set_thresholds(s, ws, {"new_days": 30})
        lifecycle.refresh(s, ws, now=NOW)
        assert column(s, "stage", [shopper])[shopper] == "dormant"
        lifecycle.set_thresholds(s, ws, lifecycle.DORMANT_PRESETS["lenient"])  # a year without buying
        lifecycle.refresh(s, ws, now=NOW)
        assert column(s, "stage", [shopper])[shopper] == "at_risk"


@pytest.mark.parametrize(("data", "field"), [
    ({"dormant_no_open_days": 0}, "lifecycle.dormant_no_open_days"),
    ({"dormant_no_open_days": "60"}, "lifecycle.dormant_no_open_days"),
    ({"at_risk_interval_factor": 0.5}, "lifecycle.at_risk_interval_factor"),
    ({"engagement_click_weight": -1}, "lifecycle.engagement_click_weight"),
    ({"dormant_after": 60}, "lifecycle.dormant_after"),
    ({"at_risk_no_open_days": 60}, "lifecycle.at_risk_no_open_days"),
    ({"dormant_no_open_days": 400}, "lifecycle.dormant_no_open_days"),
    ({"dormant_no_click_campaigns": None}, "lifecycle.dormant_no_click_campaigns"),
    ({"loyalty_medium_purchases": 7}, "lifecycle.loyalty_medium_purchases"),
    ({"loyalty_strong_days": 200}, "lifecycle.loyalty_strong_days"),
])
def test_bad_thresholds_are_rejected_naming_the_field(database, workspace, data, field):
    with database.session() as s:
        ws = s.get(Workspace, workspace.id)
        with pytest.raises(ValidationError) as caught:
            lifecycle.set_thresholds(s, ws, data)
        assert caught.value.field == field
        assert "lifecycle" not in ws.settings
        assert lifecycle.get_thresholds(ws) == lifecycle.Thresholds()


def test_a_stage_change_writes_one_event_and_no_change_none(database, workspace):
    with database.session() as s:
        ws = s.get(Workspace, workspace.id)
        fresh = add_contact(s, ws.id, ago(5))  # no rollup row until the refresh
        buyer, = put_rollups(s, ws.id, [{"purchase_count": 1, "first_purchase_at": ago(20),
                                         "last_purchase_at": ago(20)}])  # a rollup row, no stage yet
        before = len(stage_events(s, ws.id))
        assert lifecycle.refresh(s, ws, now=NOW) == 2
        assert sorted(stage_events(s, ws.id)[before:], key=lambda e: e[0]) == [
            (fresh, {"from": None, "to": "new"}, NOW), (buyer, {"from": None, "to": "active"}, NOW)]
        assert column(s, "stage_changed_at", [fresh, buyer]) == {fresh: NOW, buyer: NOW}

        assert lifecycle.refresh(s, ws, now=NOW) == 0
        assert lifecycle.refresh(s, ws, now=NOW + timedelta(hours=1)) == 0
        assert len(stage_events(s, ws.id)) == before + 2

        later = NOW + timedelta(days=400)
        assert lifecycle.refresh(s, ws, now=later) == 2
        assert sorted(stage_events(s, ws.id)[before + 2:], key=lambda e: e[0]) == [
            (fresh, {"from": "new", "to": "lost"}, later), (buyer, {"from": "active", "to": "lost"}, later)]
        assert column(s, "stage_changed_at", [fresh, buyer]) == {fresh: later, buyer: later}


def test_stage_changed_events_leave_the_rollups_alone(database, workspace):
    keep = [r.column for r in rollups.ROLLUPS]

    def aggregates(s):
        s.expire_all()
        return sorted(tuple(getattr(r, c) for c in ["contact_id", *keep])
                      for r in s.scalars(select(ContactRollup).where(ContactRollup.workspace_id == workspace.id)))

    with database.session() as s:
        ws = s.get(Workspace, workspace.id)
        cid = add_contact(s, ws.id, ago(300))
        record(s, ws.id, cid, purchase(ago(200)), *campaign("c1", ago(150), opened=ago(149)))
        before = aggregates(s)
        lifecycle.refresh(s, ws, now=NOW)
        lifecycle.refresh(s, ws, now=NOW + timedelta(days=400))
        assert len(stage_events(s, ws.id)) >= 2
        assert aggregates(s) == before
        rollups.rebuild(s, ws.id)
        s.flush()
        assert aggregates(s) == before
        # Stage changes posted from outside count in no rollup either.
        record(s, ws.id, cid, ("stage_changed", NOW, {"from": "a", "to": "b"}))
        assert aggregates(s) == before


@st.composite
def a_contact(draw):
    # Days ago on and either side of where the rules flip, give or take a minute.
    days = st.sampled_from([-1, 0, 1, 10, 20, 29, 30, 31, 44, 45, 46, 59, 60, 61, 89, 90, 91, 119, 120, 121,
                            181, 182, 183, 300, 364, 365, 366, 500, 700])
    if draw(st.booleans()):  # a quiet contact: everything long ago, around the lost rule
        days = st.sampled_from([181, 182, 183, 364, 365, 366, 500, 700])
    minutes = st.tuples(days, st.sampled_from([0, 0, 1, -1, 719])).map(lambda dm: dm[0] * 24 * 60 + dm[1])

    def at(value: int) -> datetime:
        return NOW - timedelta(minutes=value)

    def maybe() -> datetime | None:
        return draw(st.one_of(st.none(), minutes.map(at)))

    purchases = draw(st.integers(0, 8))
    last_purchase = first_purchase = None
    if purchases:
        ends = sorted([draw(minutes), draw(minutes)])
        last_purchase, first_purchase = at(ends[0]), at(ends[1] if purchases > 1 else ends[0])
    campaign_days = st.sampled_from([1, 20, 40, 61, 100, 200])  # few values: ties in sent_at
    campaigns = draw(st.lists(st.tuples(campaign_days.map(lambda d: at(d * 24 * 60)), st.booleans(), st.booleans()),
                              max_size=5))
    return {"joined": at(draw(minutes)), "last_open_at": maybe(), "last_click_at": maybe(),
            "last_visit_at": maybe(), "purchase_count": purchases, "last_purchase_at": last_purchase,
            "first_purchase_at": first_purchase, "revenue_minor": purchases * 1000, "campaigns": campaigns}


THRESHOLD_CHOICES = [{}, lifecycle.DORMANT_PRESETS["lenient"],
                     {"dormant_no_click_campaigns": 1, "dormant_no_click_days": 45, "at_risk_interval_factor": 1.0},
                     {"dormant_no_click_campaigns": 4},
                     # More campaigns than the rollup's letters keep: read from the receipts themselves.
                     {"dormant_no_click_campaigns": rollups.RECENT_CAMPAIGNS + 1},
                     {"new_days": 90, "loyal_purchases": 2, "at_risk_no_open_days": 45, "lost_days": 182,
                      "dormant_no_purchase_or_visit_days": 120}]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(people=st.lists(a_contact(), min_size=1, max_size=6), choice=st.sampled_from(THRESHOLD_CHOICES))
def test_sql_and_python_agree(database, people, choice):
    t = lifecycle.parse_thresholds(choice)
    with database.sessions() as s:
        ws = accounts.create_workspace(s, "agree")
        ids = []
        for person in people:
            cid = add_contact(s, ws.id, person["joined"])
            ids.append(cid)
            rollup = {k: v for k, v in person.items() if k not in ("joined", "campaigns")}
            s.add(ContactRollup(contact_id=cid, workspace_id=ws.id, **rollup, sent_count=len(person["campaigns"]),
                                open_count=0, click_count=0, refunds_minor=0))
            for n, (sent, opened, clicked) in enumerate(person["campaigns"]):
                s.add(CampaignReceipt(contact_id=cid, campaign_id=f"c{n}", workspace_id=ws.id, sent_at=sent,
                                      first_open_at=sent if opened else None, first_click_at=sent if clicked else None))
        s.flush()
        rollups.refresh_recent_campaigns(s, ws.id, ids)  # as ingest keeps it whenever receipts change
        c, r = lifecycle.CONTACTS, lifecycle.CONTACT_ROLLUPS
        in_sql = dict(s.execute(select(c.c.id, lifecycle.stage_sql(t, NOW))
                                .select_from(c.outerjoin(r, r.c.contact_id == c.c.id))
                                .where(c.c.workspace_id == ws.id)).all())
        loyalty_sql = dict(s.execute(select(r.c.contact_id, lifecycle.loyalty_sql(t, NOW))
                                     .where(r.c.workspace_id == ws.id)).all())
        facts = {cid: lifecycle.contact_facts(s, cid, t) for cid in ids}
        assert in_sql == {cid: lifecycle.stage_of(f, t, NOW) for cid, f in facts.items()}
        assert loyalty_sql == {cid: lifecycle.loyalty_of(f, t, NOW) for cid, f in facts.items()}
        # The same statements with the moment left to parameters, as ingest runs them.
        moment = lifecycle.moment_params(t, NOW)
        assert dict(s.execute(select(c.c.id, lifecycle.stage_sql(t, None))
                              .select_from(c.outerjoin(r, r.c.contact_id == c.c.id))
                              .where(c.c.workspace_id == ws.id), moment).all()) == in_sql
        assert dict(s.execute(select(r.c.contact_id, lifecycle.loyalty_sql(t, None))
                              .where(r.c.workspace_id == ws.id), moment).all()) == loyalty_sql
        s.rollback()


def put_rollups(s, workspace_id: int, rows: list[dict]) -> list[int]:
    ids = []
    for row in rows:
        cid = add_contact(s, workspace_id, ago(400))
        base = {"sent_count": 0, "open_count": 0, "click_count": 0, "purchase_count": 0, "revenue_minor": 0,
                "refunds_minor": 0}
        s.add(ContactRollup(contact_id=cid, workspace_id=workspace_id, **{**base, **row}))
        ids.append(cid)
    s.flush()
    return ids


def test_rfm_quintiles_on_a_known_distribution(database, workspace):
    with database.session() as s:
        buyers = put_rollups(s, workspace.id, [
            {"purchase_count": n, "first_purchase_at": ago(300), "last_purchase_at": ago(110 - 10 * n),
             "revenue_minor": 10_000 * n + 500, "refunds_minor": 500} for n in range(1, 11)])
        browser, = put_rollups(s, workspace.id, [{"last_visit_at": ago(1), "rfm_recency": 3}])
        lifecycle.update_rfm(s, workspace.id)
        expected = dict(zip(buyers, [1, 1, 2, 2, 3, 3, 4, 4, 5, 5], strict=True))
        assert column(s, "rfm_recency", buyers) == expected  # the latest purchase scores highest
        assert column(s, "rfm_frequency", buyers) == expected
        assert column(s, "rfm_monetary", buyers) == expected
        assert column(s, "rfm_recency", [browser]) == {browser: None}

        # Equal values share a quintile.
        twins = put_rollups(s, workspace.id, [{"purchase_count": 1, "first_purchase_at": ago(5),
                                                "last_purchase_at": ago(5), "revenue_minor": 100}] * 5)
        lifecycle.update_rfm(s, workspace.id)
        assert set(column(s, "rfm_frequency", twins).values()) == {1} == {column(s, "rfm_frequency", buyers)[buyers[0]]}
        # The five latest buyers rank 11th to 15th of 15; tied, all take the quintile of the 11th.
        assert set(column(s, "rfm_recency", twins).values()) == {4}
        assert column(s, "rfm_frequency", buyers)[buyers[-1]] == 5


def test_loyalty_levels(database, workspace):
    cases = [((6, 30), "strong"), ((6, 90), "medium"), ((3, 100), "medium"), ((3, 130), "weak"),
             ((2, 10), "weak"), ((1, 500), "weak"), ((0, None), None)]
    with database.session() as s:
        ws = s.get(Workspace, workspace.id)
        ids = put_rollups(s, ws.id, [
            {"purchase_count": n, "last_purchase_at": None if days is None else ago(days),
             "first_purchase_at": None if days is None else ago(600)} for (n, days), _ in cases])
        lifecycle.refresh(s, ws, now=NOW)
        assert [column(s, "loyalty", ids)[cid] for cid in ids] == [level for _, level in cases]
        lifecycle.set_thresholds(s, ws, {"loyalty_strong_purchases": 7})
        lifecycle.refresh(s, ws, now=NOW)
        assert column(s, "loyalty", ids[:1]) == {ids[0]: "medium"}


def test_engagement_score(database, workspace):
    with database.session() as s:
        ws = s.get(Workspace, workspace.id)
        ids = put_rollups(s, ws.id, [{"last_visit_at": NOW}, {}, {"last_visit_at": ago(45)}, {},
                                     {"last_visit_at": ago(200)}])
        for cid, sent, opened, clicked in [(ids[0], NOW, True, True), (ids[1], ago(45), True, False),
                                           (ids[3], ago(100), True, True)]:
            s.add(CampaignReceipt(contact_id=cid, campaign_id="c1", workspace_id=ws.id, sent_at=sent,
                                  first_open_at=sent if opened else None, first_click_at=sent if clicked else None))
        s.flush()
        lifecycle.update_engagement(s, ws, now=NOW)
        scores = column(s, "engagement_score", ids)
    # all of it; an open of a half-faded campaign (1 of 1 + 2 + 1); a half-faded visit alone; too old twice
    assert [round(scores[cid], 6) for cid in ids] == [100.0, 25.0, 50.0, 0.0, 0.0]


def test_ingest_refreshes_the_stage_of_the_contacts_it_touches(database, workspace):
    with database.session() as s:
        ws = s.get(Workspace, workspace.id)
        cid = add_contact(s, ws.id, datetime.now(UTC) - timedelta(days=1))
        untouched = add_contact(s, ws.id, datetime.now(UTC) - timedelta(days=1))
        record(s, ws.id, cid, *campaign("c1", datetime.now(UTC)))
        assert column(s, "stage", [cid, untouched]) == {cid: "new"}
        assert [(c, p) for c, p, _ in stage_events(s, ws.id)] == [(cid, {"from": None, "to": "new"})]


def test_ingest_plans_the_stage_query_with_the_contacts_known(database, workspace):
    """PostgreSQL's generic plan of the stage query reads every contact of the workspace (see
    `lifecycle._changes_of_ids`): ingest writes under generic plans, but asks for stages outside them."""
    seen: list[bool] = []
    with database.session() as s:
        def note(conn, cursor, statement, parameters, context, executemany) -> None:
            if "new_stage" in statement:
                seen.append(bool(s.info.get("generic_plans")))

        event.listen(database.engine, "before_cursor_execute", note)
        try:
            ws = s.get(Workspace, workspace.id)
            cid = add_contact(s, ws.id, datetime.now(UTC) - timedelta(days=1))
            record(s, ws.id, cid, purchase(datetime.now(UTC)))
        finally:
            event.remove(database.engine, "before_cursor_execute", note)
        assert column(s, "stage", [cid]) == {cid: "new"}
    assert seen == [False]


def test_refresh_all_covers_every_workspace(database):
    with database.session() as s:
        one = accounts.create_workspace(s, "one")
        two = accounts.create_workspace(s, "two")
        first = add_contact(s, one.id, ago(5))
        second = add_contact(s, two.id, ago(200))
        record(s, two.id, second, purchase(ago(10), 50))
    assert lifecycle.refresh_all(database, now=NOW) >= 2
    with database.session() as s:
        assert column(s, "stage", [first, second]) == {first: "new", second: "active"}
        assert column(s, "rfm_frequency", [first, second]) == {first: None, second: 1}
        assert column(s, "engagement_score", [first, second]) == {first: 0.0, second: 0.0}
    assert lifecycle.refresh_all(database, now=NOW) == 0


def test_the_worker_refreshes_every_hour(database):
    from kesher.worker import queue

    huey = queue(Settings(queue="immediate", database_url=database.url)).huey
    def due(minute: int) -> set[str]:
        return {task.name for task in huey.read_periodic(datetime(2026, 6, 1, 10, minute))}

    every_minute = {"resume_imports", "tick_campaigns"}  # interrupted imports, campaigns due
    assert due(0) == {"refresh_lifecycle"} | every_minute
    assert due(15) == {"refresh_segments"} | every_minute  # after the stages it may read
    assert due(30) == every_minute


def test_refresh_of_20000_contacts_in_chunks(database, workspace):
    joined = [ago(5) if n % 2 else ago(200) for n in range(20_000)]
    with database.session() as s:
        s.execute(insert(Contact), [
            {"workspace_id": workspace.id, "email": f"bulk{n}@example.com", "created_at": at, "updated_at": at}
            for n, at in enumerate(joined)])
        ranges = lifecycle.id_ranges(s, workspace.id, 6_000)
        assert len(ranges) == 4 and ranges[-1][1] - ranges[0][0] >= 20_000
        assert lifecycle.refresh(s, s.get(Workspace, workspace.id), now=NOW, chunk_size=6_000) == 20_000
    with database.session() as s:
        stages = dict(s.execute(select(ContactRollup.stage, func.count())
                                .where(ContactRollup.workspace_id == workspace.id).group_by(ContactRollup.stage)).all())
        assert stages == {"new": 10_000, "active": 10_000}
        assert len(stage_events(s, workspace.id)) == 20_000
        assert lifecycle.refresh(s, s.get(Workspace, workspace.id), now=NOW, chunk_size=6_000) == 0
