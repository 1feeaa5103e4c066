"""Stored membership: moved at once by the events and changes that can move it, and by the periodic refresh."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from itertools import count
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from kesher.accounts.models import Workspace
from kesher.contacts import groups
from kesher.contacts import service as contacts
from kesher.contacts.models import Contact
from kesher.db import utcnow
from kesher.errors import ValidationError
from kesher.events import catalogue
from kesher.events.ingest import ingest
from kesher.events.models import ContactRollup, Event
from kesher.segments import membership
from kesher.segments import service as segments
from kesher.segments.models import Segment, SegmentMember
from tests.segments import reference

_serial = count()


def person(s: Any, workspace_id: int, joined_days_ago: float | None = 400, **data: Any) -> int:
    """A contact; one that joined long ago is in no "new" segment."""
    cid = contacts.save_contact(s, workspace_id, {"email": f"m{next(_serial)}@example.com", **data}).contact_id
    if joined_days_ago is not None:
        joined = utcnow() - timedelta(days=joined_days_ago)
        s.execute(update(Contact).where(Contact.id == cid).values(created_at=joined, updated_at=joined))
    return cid


def record(s: Any, ws: Workspace, cid: int, kind: str, days_ago: float = 0.1, **props: Any) -> None:
    event = {"type": kind, "contact": {"id": cid}, "ts": (utcnow() - timedelta(days=days_ago)).isoformat(),
             "properties": props}
    assert ingest(s, ws, [event]).errors == []


def buy(s: Any, ws: Workspace, cid: int, total: float = 100.0, days_ago: float = 0.1, **props: Any) -> None:
    record(s, ws, cid, "purchase", days_ago, order_id=f"o{next(_serial)}", total=total, **props)


def members(s: Any, segment: Segment) -> set[int]:
    return set(s.scalars(select(SegmentMember.contact_id).where(SegmentMember.segment_id == segment.id)))


def moves(s: Any, segment: Segment) -> list[tuple[str, int]]:
    """The segment's entries and exits as stored events, oldest first."""
    rows = s.execute(select(Event.type, Event.contact_id, Event.properties)
                     .where(Event.type.in_(["segment_entered", "segment_exited"])).order_by(Event.id)).all()
    return [(kind.removeprefix("segment_"), cid) for kind, cid, props in rows
            if props["segment_id"] == str(segment.id)]


def counted_right(s: Any, ws: Workspace, segment: Segment, now: datetime | None = None) -> bool:
    s.refresh(segment)
    return segment.member_count == len(members(s, segment)) == membership.count(s, ws, segment.rule, now)


@pytest.fixture
def ws(database, workspace):
    with database.session() as s:
        yield s.get_one(Workspace, workspace.id), s


def test_an_event_moves_a_contact_into_one_segment_and_out_of_another(ws):
    workspace, s = ws
    cid = person(s, workspace.id)
    buyers = segments.create_segment(s, workspace, "Buyers", {"stat": "purchase_count", "op": "gte", "value": 1})
    never = segments.create_segment(s, workspace, "Never bought", {"stat": "purchase_count", "op": "eq", "value": 0})
    assert (members(s, buyers), members(s, never)) == (set(), {cid})
    buy(s, workspace, cid)
    assert (members(s, buyers), members(s, never)) == ({cid}, set())
    assert moves(s, buyers) == [("entered", cid)]
    assert moves(s, never) == [("entered", cid), ("exited", cid)]
    entered = s.scalars(select(Event).where(Event.type == "segment_entered", Event.contact_id == cid)
                        .order_by(Event.id)).all()[-1]
    assert (entered.properties, entered.source) == ({"segment_id": str(buyers.id), "segment": "Buyers"}, "segments")
    assert counted_right(s, workspace, buyers) and counted_right(s, workspace, never)
    rollup = s.get_one(ContactRollup, cid)
    assert rollup.last_event_at < entered.ts  # what Kesher records about a contact is not something it did


def test_only_the_segments_an_event_can_move_are_evaluated(ws):
    workspace, s = ws
    cid = person(s, workspace.id)
    recent = segments.create_segment(s, workspace, "Bought lately", {"event": "purchase", "within_days": 30})
    openers = segments.create_segment(s, workspace, "Openers", {"event": "email_opened"})
    buy(s, workspace, cid, days_ago=40)  # moved by purchases, and already out of the window: stays out
    assert members(s, recent) == set()
    # Stale on purpose: as the time of evaluation passes its purchase, the contact would now qualify.
    s.execute(update(Event).where(Event.contact_id == cid, Event.type == "purchase").values(ts=utcnow()))
    record(s, workspace, cid, "email_opened", campaign_id="c1")
    assert (members(s, recent), members(s, openers)) == (set(), {cid})
    assert moves(s, recent) == []
    buy(s, workspace, cid)  # a purchase does move it
    assert members(s, recent) == {cid}


def test_contact_changes_move_the_segments_that_read_contact_data(ws):
    workspace, s = ws
    cid = person(s, workspace.id, city="Tel Aviv")
    haifa = segments.create_segment(s, workspace, "Haifa", {"field": "city", "op": "eq", "value": "Haifa"})
    hot = groups.create(s, workspace.id, "tag", "hot")
    tagged = segments.create_segment(s, workspace, "Hot", {"tag": "hot"})
    contacts.update_contact(s, workspace.id, cid, {"city": "Haifa"})
    groups.add_contacts(s, workspace.id, "tag", hot.id, [cid])
    assert (members(s, haifa), members(s, tagged)) == ({cid}, {cid})
    groups.remove_contacts(s, workspace.id, "tag", hot.id, [cid])
    assert members(s, tagged) == set()
    assert moves(s, tagged) == [("entered", cid), ("exited", cid)]


def test_the_refresh_moves_what_time_moves_and_records_each_move_once(ws):
    workspace, s = ws
    cid, other = person(s, workspace.id), person(s, workspace.id)
    recent = segments.create_segment(s, workspace, "Bought lately", {"event": "purchase", "within_days": 30})
    buy(s, workspace, cid, days_ago=1)
    assert members(s, recent) == {cid}
    later = utcnow() + timedelta(days=60)
    assert membership.refresh(s, recent, later) == membership.Moves(entered=0, exited=1)
    assert membership.refresh(s, recent, later) == membership.Moves(0, 0)
    assert members(s, recent) == set()
    assert counted_right(s, workspace, recent, later)
    buy(s, workspace, other, days_ago=1)  # real time lets it in
    sooner = later - timedelta(days=45)  # 30 days after both purchases... less a day: both are in
    assert membership.refresh_workspace(s, workspace, sooner) == membership.Moves(1, 0)
    assert membership.refresh_workspace(s, workspace, sooner) == membership.Moves(0, 0)
    assert moves(s, recent) == [("entered", cid), ("exited", cid), ("entered", other), ("entered", cid)]
    s.refresh(recent)
    assert (recent.member_count, recent.refreshed_at) == (2, sooner)


def test_a_rank_reused_in_real_time_goes_stale_for_minutes_only(ws):
    workspace, s = ws
    big, small = person(s, workspace.id), person(s, workspace.id)
    top = segments.create_segment(s, workspace, "Top buyers", {"all": [
        {"stat": "total_revenue", "op": "top_percent", "value": 50}, {"event": "purchase"}]})
    buy(s, workspace, big, 100)  # real time may rank on the threshold of minutes ago, when no one had bought
    buy(s, workspace, small, 10)
    membership.on_change(s, workspace, {big: {"purchase"}, small: {"purchase"}}, utcnow() + timedelta(minutes=10))
    assert members(s, top) == {big} == membership.matching(s, workspace, top.rule, [big, small])


PRESET_DATA = {  # contact -> what happened to it; each preset below finds exactly its contacts
    "dormant": [("purchase", 120, {})],
    "low_engagement": [("email_sent", 10, {"campaign_id": "c9"}), ("email_opened", 5, {"campaign_id": "c9"})],
    "loyal": [("purchase", 30, {}), ("purchase", 20, {}), ("purchase", 10, {})],
    "whale": [("purchase", 2, {"total": 1000})],
    "reader": [("email_opened", 40 + i, {"campaign_id": f"r{i}"}) for i in range(10)],
    "cart": [("cart_abandoned", 0.1, {"total": 50})],
    "replenish": [("purchase", 27, {"items": [{"sku": "D3", "category": "vitamins", "price": 20}]})],
    "clicker": [("email_clicked", 3, {"campaign_id": "c1", "url": "https://shop.example/sale"})],
    "other_clicker": [("email_clicked", 3, {"campaign_id": "c1", "url": "https://shop.example/other"})],
    "newbie": [], "birthday": [],
}
PRESETS = {"dormant": ({}, {"dormant"}), "low_engagement": ({}, {"low_engagement"}), "loyal": ({}, {"loyal"}),
           "vip": ({}, {"whale"}), "new": ({}, {"newbie"}), "opened_never_bought": ({}, {"reader"}),
           "abandoned_cart": ({}, {"cart"}), "replenishment_due": ({}, {"replenish"}),
           "birthday_this_month": ({}, {"birthday"}),
           "clicked_link": ({"campaign_id": "c1", "url": "https://shop.example/sale"}, {"clicker"})}


def test_every_preset_finds_its_contacts(ws):
    workspace, s = ws
    assert set(PRESETS) == set(segments.PRESETS)
    catalogue.create_category(s, workspace.id, {"key": "vitamins", "name": "Vitamins", "consumable": True,
                                                "usage_days": 30})
    this_month = utcnow().astimezone(ZoneInfo(workspace.timezone)).month
    who = {name: person(s, workspace.id, None if name == "newbie" else 400,
                        **({"birthday": date(1990, this_month, 1).isoformat()} if name == "birthday" else {}))
           for name in PRESET_DATA}
    for name, happened in PRESET_DATA.items():
        for kind, days_ago, props in happened:
            if kind == "purchase":
                buy(s, workspace, who[name], days_ago=days_ago, **{"total": 10.0, **props})
            else:
                record(s, workspace, who[name], kind, days_ago, **props)
    expect = reference.Reference(reference.load(s, workspace.id), utcnow())
    for key, (params, names) in PRESETS.items():
        segment = segments.create_from_preset(s, workspace, key, params=params)
        wanted = {who[name] for name in names}
        assert (key, members(s, segment)) == (key, wanted)
        assert expect.members(segment.rule) == wanted, key
    by_campaign = segments.create_from_preset(s, workspace, "clicked_link", name="Any link",
                                              params={"campaign_id": "c1"})
    assert members(s, by_campaign) == {who["clicker"], who["other_clicker"]}


def test_a_workspace_never_sees_another_workspaces_contacts(database, workspace, other_workspace):
    rule = {"any": [{"field": "city", "op": "eq", "value": "Haifa"}, {"tag": "hot"}, {"event": "purchase"},
                    {"stat": "total_revenue", "op": "top_percent", "value": 50}]}
    found: dict[int, tuple[Segment, set[int]]] = {}
    with database.session() as s:
        for ws_id, spent in ((workspace.id, (100, 50)), (other_workspace.id, (10_000, 5_000))):
            ws = s.get_one(Workspace, ws_id)
            hot = groups.create(s, ws_id, "tag", "hot")
            ids = {person(s, ws_id, city="Haifa"), person(s, ws_id)}
            groups.add_contacts(s, ws_id, "tag", hot.id, ids)
            for cid, total in zip(sorted(ids), spent, strict=True):
                buy(s, ws, cid, total)
            found[ws_id] = (segments.create_segment(s, ws, "Everyone here", rule), ids)
    with database.session() as s:
        ws, other = s.get_one(Workspace, workspace.id), s.get_one(Workspace, other_workspace.id)
        (ours, mine), (theirs, yours) = found[ws.id], found[other.id]
        assert members(s, s.merge(ours)) == mine and members(s, s.merge(theirs)) == yours
        top = {"stat": "total_revenue", "op": "top_percent", "value": 50}
        assert membership.matching(s, ws, top, mine | yours) == {min(mine)}  # ranked among its own buyers
        assert membership.count(s, ws, rule) == 2 and set(membership.sample(s, ws, rule)) == mine
        assert membership.matching(s, ws, rule, yours) == set()
        assert membership.on_change(s, ws, {cid: {"purchase"} for cid in yours}) == membership.Moves(0, 0)
        with pytest.raises(ValidationError, match="no segment"):
            segments.checked_rule(s, ws, {"segment": theirs.id})
    membership.refresh_all(database)
    with database.session() as s:
        assert members(s, s.merge(ours)) == mine and members(s, s.merge(theirs)) == yours


def test_a_sample_is_the_newest_matching_contacts(ws):
    workspace, s = ws
    ids = [person(s, workspace.id, city="Haifa") for _ in range(4)]
    person(s, workspace.id, city="Akko")
    assert membership.sample(s, workspace, {"field": "city", "op": "eq", "value": "Haifa"}, limit=3) == ids[:0:-1]


def test_rules_on_different_properties_never_share_compiled_sql(ws):
    workspace, s = ws
    cid = person(s, workspace.id)
    record(s, workspace, cid, "page_view", url="https://shop.example/vitamins", title="Home")

    def viewed(prop: str) -> int:
        return membership.count(s, workspace, {"event": "page_view", "where": [
            {"prop": prop, "op": "contains", "value": "vitamins"}]})

    # Asked in turn in one process, so a statement cache keyed without the property would mix them up.
    assert [viewed("url"), viewed("title"), viewed("url")] == [1, 0, 1]
