"""The compiled SQL, the one-contact evaluation and a plain-Python reference agree on any rule and data.

Hypothesis draws a small workspace (contacts, memberships, consent, custom fields, purchases with
lines, campaigns and other events), stores it through the real services, and draws rules over the
whole language; values come from pools close to the data, so comparisons and windows hit edges.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from kesher.accounts import service as accounts
from kesher.accounts.models import Workspace
from kesher.contacts import fields, groups
from kesher.contacts import service as contacts
from kesher.contacts.models import Contact
from kesher.db import Database
from kesher.errors import ValidationError
from kesher.events import catalogue, lifecycle
from kesher.events.ingest import ingest
from kesher.segments import membership
from kesher.segments import rules as R
from kesher.segments import service as segments
from kesher.segments.compiler import STATS, compiler
from kesher.segments.models import Segment, SegmentMember
from tests.segments import reference

NOW = datetime(2026, 6, 15, 9, tzinfo=UTC)
# Events, join dates and the times rules name share one grid, which holds the workspace's midnights
# (21:00 UTC in summer) and the edges of the windows rules draw, so equalities and edges do happen.
STEP = timedelta(hours=3)
DAY = 8  # steps
LISTS, TAGS = ["Newsletter", "VIP list"], ["hot", "cold"]
CATEGORIES = {"vitamins": (True, 30), "absorbent": (True, 10), "walkers": (False, None)}
CAMPAIGNS = ["c1", "c2", "c3", "c4"]
MISSING_ID = 2**62  # an id no row has


def at(step: int) -> datetime:
    """A moment on the grid: step 1600 is NOW, 0 is 200 days before it."""
    return NOW + (step - 200 * DAY) * STEP


# Pools of values, shared by the data and the rules -------------------------------------------

CITIES = ["Haifa", "haifa", "HAIFA port", "חיפה", "תל אביב", "Tel Aviv", "a_b%", "ab"]
NAMES = ["Dana", "dan", "נועה"]
BIRTHDAYS = ["1990-05-17", "1985-06-01", "2000-02-29", "1975-12-31", "1990-06-30"]
SCORES = [0, 1.5, 3, 10, -2]
RENEWALS = ["2026-06-14", "2026-06-15", "2026-01-01", "2027-03-03"]
NOTES = ["50% off", "a_b", "Hello World", "שלום"]
PRICES = [0.5, 2.25, 10, 19.5, 100]  # binary fractions: line amounts add up exactly in any order
TOTALS = [19.99, 10.01, 0.1, 100]  # cents: money must be compared exactly
MONEY = [0, 0.1, 10.01, 19.99, 20, 20.1, 39.98, 100, 119.99, 200]
URLS = ["https://shop.example/sale", "https://shop.example/other"]
TIMES = [at(i).isoformat() for i in (0, 800, 1400, 1520, 1593, 1600)] + ["2026-06-01", "2026-06-14T12:00:00"]
ODD = {"text": [5], "number": ["3"], "date": ["not a date"], "datetime": ["yesterday"], "boolean": ["yes"]}


# Data ------------------------------------------------------------------------------------------

def maybe(values: list[Any]) -> st.SearchStrategy[Any]:
    return st.sampled_from([None, *values])


A_CONTACT = st.fixed_dictionaries({
    "city": maybe(CITIES), "first_name": maybe(NAMES), "gender": maybe(["female", "male"]),
    "birthday": maybe(BIRTHDAYS),
    "fields": st.fixed_dictionaries({"score": maybe(SCORES), "renewal": maybe(RENEWALS),
                                     "vip": maybe([True, False]), "tier": maybe(["gold", "silver"]),
                                     "note": maybe(NOTES)}),
    "consent": st.dictionaries(st.sampled_from(["email", "sms"]),
                               st.sampled_from(["granted", "pending", "denied", "unsubscribed"])),
    "joined": st.integers(0, 200 * DAY),
    "lists": st.sets(st.sampled_from(LISTS)),
    "tags": st.sets(st.sampled_from(TAGS)),
})

AN_ITEM = st.fixed_dictionaries({
    "sku": st.sampled_from(["A", "B", "C"]), "name": st.sampled_from(["Vitamin D", "pads", "Walker"]),
    "category": st.sampled_from([*CATEGORIES, ""]), "price": st.sampled_from(PRICES), "quantity": st.integers(1, 3)})
WINDOW_EDGES = [200 * DAY - round(days * DAY) + nudge for days in (0.25, 1, 7, 30, 90) for nudge in (-1, 0, 1)]
A_TIME = st.integers(160 * DAY, 210 * DAY) | st.sampled_from(WINDOW_EDGES) | st.integers(0, 210 * DAY)


@st.composite
def an_event(draw: st.DrawFn, contacts: int) -> tuple[int, dict[str, Any]]:
    kind = draw(st.sampled_from(["purchase", "purchase", "purchase", "refund", "email_sent", "email_opened",
                                 "email_clicked", "page_view", "cart_abandoned", "custom:quiz"]))
    props: dict[str, Any] = {}
    if kind == "purchase":
        props = {"order_id": draw(st.sampled_from(["o1", "o2"])),
                 "items": draw(st.lists(AN_ITEM, min_size=draw(st.sampled_from([0, 1, 1])), max_size=3))}
        total = draw(maybe(TOTALS))
        if total is not None:
            props["total"] = total
        if draw(st.booleans()):
            props["campaign_id"] = draw(st.sampled_from(CAMPAIGNS))
    elif kind == "refund":
        props = {"order_id": "o1", "amount": draw(st.sampled_from([5, 0.1, 19.99]))}
    elif kind.startswith("email_"):
        campaign = draw(maybe(CAMPAIGNS))
        props = {} if campaign is None else {"campaign_id": campaign}
        if kind == "email_clicked":
            props["url"] = draw(st.sampled_from(URLS))
    elif kind in ("page_view", "cart_abandoned"):
        props = {"url": draw(st.sampled_from(URLS))}
        if kind == "cart_abandoned":
            props["total"] = draw(st.sampled_from([50, 19.99]))
    else:
        props = draw(st.fixed_dictionaries({}, optional={
            "score": st.sampled_from([0, 3, 5, "5", 2.5]), "answer": st.sampled_from(["yes", "no", "Yes"]),
            "passed": st.booleans()}))
    return draw(st.integers(0, contacts - 1)), {"type": kind, "ts": at(draw(A_TIME)).isoformat(), "properties": props}


def campaign_events(campaign: str, sent: int, fates: list[str], ids: list[int]) -> list[dict[str, Any]]:
    """A campaign sent at step `sent`: each contact's fate says whether it got it, opened it, clicked it."""
    events = []
    for cid, fate in zip(ids, fates, strict=False):
        for kind, delay in (("email_sent", 0), ("email_opened", 1), ("email_clicked", 2)):
            if kind.split("_")[1] in fate:
                events.append({"type": kind, "contact": {"id": cid}, "ts": at(sent + delay).isoformat(),
                               "properties": {"campaign_id": campaign}})
    return events


FATES = st.sampled_from(["", "sent", "sent", "sent opened", "sent opened clicked", "sent clicked", "opened"])
SEGMENT_RULES = [
    {"field": "city", "op": "eq", "value": "Haifa"},
    {"event": "purchase", "count": {"op": "gte", "value": 2}},
    {"any": [{"tag": "hot"}, {"stat": "open_count", "op": "gte", "value": 1}]},
    {"not": {"consent": "email"}},
    {"stat": "total_revenue", "op": "top_percent", "value": 50},
]


@st.composite
def a_workspace(draw: st.DrawFn) -> dict[str, Any]:
    people = draw(st.lists(A_CONTACT, min_size=2, max_size=5))
    blasts = draw(st.lists(st.tuples(st.integers(140 * DAY, 200 * DAY), st.lists(FATES, min_size=5, max_size=5)),
                           max_size=len(CAMPAIGNS)))
    return {"contacts": people, "events": draw(st.lists(an_event(len(people)), min_size=4, max_size=25)),
            "campaigns": blasts, "segments": draw(st.lists(st.sampled_from(SEGMENT_RULES), min_size=2, max_size=2)),
            "nested": draw(st.booleans())}


_made: dict[str, dict[str, int]] = {}  # database URL -> ids of what every example shares


def shared(database: Database) -> dict[str, int]:
    """What does not change between examples, made once per database: the workspace with its fields,
    lists, tags and categories, and a neighbour with the same names, whose data must never leak in."""
    if database.url in _made:
        return _made[database.url]
    with database.session() as s:
        ws = accounts.create_workspace(s, "Segments property")
        for key, kind in (("score", "number"), ("renewal", "date"), ("vip", "boolean"), ("note", "text")):
            fields.create_field(s, ws.id, key, key.title(), kind)
        fields.create_field(s, ws.id, "tier", "Tier", "choice", ["gold", "silver"])
        refs = {"workspace": ws.id, **{f"#{name}": groups.create(s, ws.id, "list", name).id for name in LISTS},
                **{f"#{name}": groups.create(s, ws.id, "tag", name).id for name in TAGS}, "#9": MISSING_ID}
        for key, (consumable, days) in CATEGORIES.items():
            catalogue.create_category(s, ws.id, {"key": key, "name": key.title(), "consumable": consumable,
                                                 "usage_days": days})
        other = accounts.create_workspace(s, "Segments neighbour")
        stranger = contacts.save_contact(s, other.id, {"email": "p0@example.com", "city": "Haifa"}).contact_id
        groups.add_contacts(s, other.id, "tag", groups.create(s, other.id, "tag", "hot").id, [stranger])
        catalogue.create_category(s, other.id, {"key": "vitamins", "name": "V", "consumable": True, "usage_days": 30})
        assert ingest(s, other, [
            {"type": "purchase", "contact": {"id": stranger}, "ts": at(199 * DAY).isoformat(),
             "properties": {"order_id": "x", "items": [{"sku": "A", "category": "vitamins", "price": 500}]}},
            *campaign_events("c1", 190 * DAY, ["sent opened clicked"], [stranger])]).errors == []
        refs["#2"] = segments.create_segment(s, other, "Theirs", {"tag": "hot"}).id
    _made[database.url] = refs
    return refs


def fill(s: Session, ws: Workspace, refs: dict[str, int], data: dict[str, Any]) -> None:
    """The drawn contacts, memberships, segments and events, stored through the real services."""
    ids = []
    for i, person in enumerate(data["contacts"]):
        given = {k: person[k] for k in ("city", "first_name", "gender", "birthday") if person[k] is not None}
        cid = contacts.save_contact(s, ws.id, {"email": f"p{i}@example.com", **given, "fields": person["fields"],
                                               "consent": person["consent"]}).contact_id
        joined = NOW - person["joined"] * STEP
        s.execute(update(Contact).where(Contact.id == cid).values(created_at=joined, updated_at=joined))
        ids.append(cid)
    for kind, names in (("list", LISTS), ("tag", TAGS)):
        for name in names:
            members = [cid for cid, person in zip(ids, data["contacts"], strict=True) if name in person[f"{kind}s"]]
            if members:
                groups.add_contacts(s, ws.id, kind, refs[f"#{name}"], members)
    first = segments.create_segment(s, ws, "First", data["segments"][0])
    second = {"all": [{"segment": first.id}, data["segments"][1]]} if data["nested"] else data["segments"][1]
    refs["#0"], refs["#1"] = first.id, segments.create_segment(s, ws, "Second", second).id
    raw = [{**event, "contact": {"id": ids[who]}} for who, event in data["events"]]
    for campaign, (sent, fates) in zip(CAMPAIGNS, data["campaigns"], strict=False):
        raw += campaign_events(campaign, sent, fates, ids)
    for batch in (raw[: len(raw) // 2], raw[len(raw) // 2:]):  # two batches: real time sees earlier events
        assert ingest(s, ws, batch).errors == []
    lifecycle.update_engagement(s, ws, NOW)
    lifecycle.update_rfm(s, ws.id)


def clear(s: Session, workspace_id: int) -> None:
    """Back to the shared state: contacts go with all that hangs on them (events, rollups, memberships).

    Segments are deleted past the service here, so the workspace's segments stamp is changed as the
    service would change it."""
    s.execute(delete(Segment).where(Segment.workspace_id == workspace_id))
    s.execute(update(Workspace).where(Workspace.id == workspace_id).values(segments_stamp=Workspace.segments_stamp + 1))
    s.execute(delete(Contact).where(Contact.workspace_id == workspace_id))


# Rules -----------------------------------------------------------------------------------------

NEGATIONS = ("ne", "not_in", "is_not_set")


def value_for(kind: str, op: str, pool: list[Any]) -> st.SearchStrategy[Any]:
    """A value of the shape `op` takes (or the rule would not parse), mostly from the pool of the thing compared."""
    values = st.sampled_from([*pool, *ODD[kind]])
    if op in R.PRESENCE:
        return st.none()
    if op in R.SETS:
        return st.lists(values, min_size=1, max_size=3)
    if op in ("within_last_days", "more_than_days_ago"):
        return st.sampled_from([1, 7, 30, 0.5, 365, 3650])
    if op == "in_month":
        return st.integers(0, 12)
    if op == "top_percent":
        return st.sampled_from([10, 50, 100, 33.3])
    if op in R.TEXT:  # pieces of the texts, in either case
        texts = [v for v in pool if isinstance(v, str)] or ["1"]
        return st.sampled_from(texts).flatmap(lambda v: st.sampled_from([v, v[:3], v[1:4], v.upper(), v.lower()]))
    return values


@st.composite
def a_comparison(draw: st.DrawFn, kind: str, pool: list[Any], extra: tuple[str, ...] = (),
                 leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """An op that applies to `kind` (now and then any op, which the compiler must refuse cleanly) and its value."""
    fitting = (*reference.KIND_OPS[kind], *extra,
               *(n for n in NEGATIONS if reference.NEGATED[n] in reference.KIND_OPS[kind]))
    ops = R.OPERATORS if draw(st.integers(0, 9)) == 0 else fitting
    op = draw(st.sampled_from([o for o in ops if o not in leave_out]))
    return {"op": op, "value": draw(value_for(kind, op, pool))}


FIELDS = {"city": ("text", CITIES), "first_name": ("text", NAMES), "gender": ("text", ["female", "male", "other"]),
          "email": ("text", ["p0@example.com", "p1@example.com", "example"]), "language": ("text", ["he", "en"]),
          "birthday": ("date", [*BIRTHDAYS, "17/05/1990"]), "created_at": ("datetime", TIMES),
          "updated_at": ("datetime", TIMES), "score": ("number", SCORES), "renewal": ("date", RENEWALS),
          "vip": ("boolean", [True, False]), "tier": ("text", ["gold", "silver", "bronze"]), "note": ("text", NOTES),
          "shoe_size": ("text", ["42"])}
COUNTS = [0, 1, 2, 3, 5]
STAT_VALUES = {"gross_revenue": MONEY, "refunds": MONEY, "total_revenue": [-5, *MONEY], "average_order_value": MONEY,
               "open_rate": [0, 50, 100, 200], "click_rate": [0, 50, 100], "days_between_purchases": [0, 1, 7.5, 30],
               "engagement_score": [0, 10, 50, 100], "loyalty": ["weak", "medium", "strong", "Weak"]}


@st.composite
def a_field(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from(sorted(FIELDS)))
    return {"field": name, **draw(a_comparison(*FIELDS[name]))}


@st.composite
def a_stat(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from([*sorted(reference.STAT_TYPES), "lifetime_value"]))
    kind = reference.STAT_TYPES.get(name, ("number", False))[0]
    pool = TIMES if kind == "datetime" else STAT_VALUES.get(name, COUNTS)
    return {"stat": name, **draw(a_comparison(kind, pool, ("top_percent",) if kind == "number" else ()))}


PROPS: dict[str, dict[str, tuple[str, list[Any]]]] = {  # each event type's properties: kind and pool
    "purchase": {"category": ("text", [*CATEGORIES, "", "vita"]), "sku": ("text", ["A", "B", "a"]),
                 "name": ("text", ["Vitamin D", "pads"]), "product": ("text", ["Walker", "vitamin"]),
                 "price": ("number", PRICES), "quantity": ("number", [1, 2, 3]), "total": ("number", MONEY),
                 "order_id": ("text", ["o1", "o2"]), "campaign_id": ("text", CAMPAIGNS),
                 "currency": ("text", ["ILS", "USD"])},
    "refund": {"amount": ("number", [5, 0.1, 19.99, 20]), "order_id": ("text", ["o1"])},
    "email_sent": {"campaign_id": ("text", CAMPAIGNS)}, "email_opened": {"campaign_id": ("text", CAMPAIGNS)},
    "email_clicked": {"campaign_id": ("text", CAMPAIGNS), "url": ("text", URLS)},
    "page_view": {"url": ("text", URLS)}, "cart_abandoned": {"total": ("number", [50, 19.99]), "url": ("text", URLS)},
    "custom:quiz": {"score": ("number", [0, 3, 5, 2.5]), "answer": ("text", ["yes", "no", "Yes"]),
                    "passed": ("boolean", [True, False]), "missing": ("text", ["x"])},
}
SUMS = {"purchase": {"total": MONEY, "amount": MONEY, "price": [0.5, 10, 19.5, 20], "quantity": [1, 2, 3, 5],
                     "order_id": [1]},
        "refund": {"amount": [0, 0.1, 5, 5.1, 19.99], "total": [0]}, "cart_abandoned": {"total": [0, 50, 69.99]},
        "custom:quiz": {"score": [0, 3, 5, 8], "answer": [1]}}
BOUNDS = ["2026-01-01", "2026-03-15T10:00:00+02:00", "2026-05-31", "2026-06-14T00:00:00Z", "2026-06-15",
          "2026-06-20T12:00:00+03:00"]  # in time order, so any earlier one with a later one is a valid `between`
COUNT_OPS = st.sampled_from(["eq", "ne", "lt", "lte", "gt", "gte"])


@st.composite
def a_filter(draw: st.DrawFn, event: str) -> dict[str, Any]:
    prop, (kind, pool) = draw(st.sampled_from(sorted(PROPS[event].items())))
    return {"prop": prop, **draw(a_comparison(kind, pool, leave_out=R.RANK + R.CALENDAR))}


@st.composite
def an_event_leaf(draw: st.DrawFn) -> dict[str, Any]:
    event = draw(st.sampled_from([*PROPS, "purchase", "purchase", "open", "order"]))
    canonical = R.EVENT_ALIASES.get(event, event)
    leaf: dict[str, Any] = {"event": event}
    if draw(st.integers(0, 2)) == 0:
        leaf["where"] = draw(st.lists(a_filter(canonical), min_size=1, max_size=2))
    window = draw(st.sampled_from(["none", "none", "within", "between"]))
    if window == "within":
        leaf["within_days"] = draw(st.sampled_from([1, 7, 30, 90, 0.25, 365]))
    elif window == "between":
        first = draw(st.integers(0, len(BOUNDS) - 2))
        leaf["between"] = [BOUNDS[first], BOUNDS[draw(st.integers(first + 1, len(BOUNDS) - 1))]]
    measure = draw(st.sampled_from(["none", "count", "sum"] if canonical in SUMS else ["none", "count"]))
    if measure == "count":
        leaf["count"] = {"op": draw(COUNT_OPS), "value": draw(st.integers(0, 3))}
    elif measure == "sum":
        prop = draw(st.sampled_from(sorted(SUMS[canonical])))
        leaf["sum"] = {"prop": prop, "op": draw(COUNT_OPS), "value": draw(st.sampled_from(SUMS[canonical][prop]))}
    return leaf


LEAVES = st.one_of(
    a_field(), a_stat(), an_event_leaf(), an_event_leaf(),
    st.builds(lambda ref: {"list": ref}, st.sampled_from([*LISTS, "Nope", "#Newsletter", "#VIP list"])),
    st.builds(lambda ref: {"tag": ref}, st.sampled_from([*TAGS, "Hot", "#hot"])),
    st.builds(lambda ref: {"segment": ref}, st.sampled_from(["#0", "#1", "#1", "#2", "#9"])),
    st.builds(lambda channel, status: {"consent": channel, "status": status},
              st.sampled_from(["email", "sms", "whatsapp"]), st.sampled_from(["granted", "pending", "denied"])),
    st.builds(lambda n, action, op, value: {"campaigns": n, "action": action, "op": op, "value": value},
              st.integers(1, 4), st.sampled_from(["opened", "clicked"]), COUNT_OPS, st.integers(0, 3)),
    st.builds(lambda stage: {"stage": stage},
              st.sampled_from(R.STAGES) | st.lists(st.sampled_from(R.STAGES), min_size=1, max_size=3)),
    st.builds(lambda days, category: {"replenishment_due": days} | ({"category": category} if category else {}),
              st.sampled_from([0, 5, 10, 30, 45]), st.sampled_from([None, *CATEGORIES, "unknown"])),
)
RULES = st.recursive(LEAVES, lambda children: st.one_of(
    st.builds(lambda rules: {"all": rules}, st.lists(children, min_size=1, max_size=3)),
    st.builds(lambda rules: {"any": rules}, st.lists(children, min_size=1, max_size=3)),
    st.builds(lambda rule: {"not": rule}, children)), max_leaves=6)


def resolve(rule: Any, refs: dict[str, int]) -> Any:
    """`"#name"` placeholders replaced by the ids of the workspace's lists, tags and segments."""
    if isinstance(rule, dict):
        return {k: refs[v] if k in ("list", "tag", "segment") and str(v).startswith("#") else resolve(v, refs)
                for k, v in rule.items()}
    if isinstance(rule, list):
        return [resolve(v, refs) for v in rule]
    return rule


# The properties --------------------------------------------------------------------------------


@settings(max_examples=16, deadline=None, derandomize=True, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=a_workspace(), drawn=st.lists(RULES, min_size=8, max_size=12))
def test_sql_one_contact_and_reference_agree(database, data, drawn):
    refs = dict(shared(database))
    try:
        with database.session() as s:
            fill(s, s.get_one(Workspace, refs["workspace"]), refs, data)
        with database.session() as s:
            ws = s.get_one(Workspace, refs["workspace"])
            expect = reference.Reference(reference.load(s, ws.id), NOW)
            stored_members_agree(s, ws, expect)
            everyone = sorted(expect.world.contacts)
            for raw in drawn:
                rule = resolve(raw, refs)
                R.parse_rule(rule)  # the strategy draws only rules that parse
                try:
                    wanted = expect.members(rule)
                except reference.Invalid as bad:
                    with pytest.raises(ValidationError) as refused:
                        membership.count(s, ws, rule, NOW)
                    assert refused.value.field.startswith(f"rule: {bad.path}"), (rule, refused.value)
                    continue
                assert set(s.scalars(compiler(s, ws, NOW).members(R.parse_rule(rule)))) == wanted, rule
                assert membership.count(s, ws, rule, NOW) == len(wanted), rule
                assert {cid for cid in everyone if membership.matching(s, ws, rule, [cid], NOW)} == wanted, rule
                assert membership.matching(s, ws, rule, everyone, NOW) == wanted, rule
    finally:
        with database.session() as s:
            clear(s, refs["workspace"])


def stored_members_agree(s: Session, ws: Workspace, expect: reference.Reference) -> None:
    """Real time kept each segment right as the events came in (a top percentage waits for the refresh);
    a refresh then makes every one right, and a second refresh has nothing to do."""
    def stored(segment: Segment) -> set[int]:
        return set(s.scalars(select(SegmentMember.contact_id).where(SegmentMember.segment_id == segment.id)))

    ours = list(s.scalars(select(Segment).where(Segment.workspace_id == ws.id).order_by(Segment.id)))
    ranked: set[int] = set()
    for segment in ours:  # the second may refer to the first
        if any((isinstance(node, R.StatLeaf) and node.op == "top_percent")
               or (isinstance(node, R.SegmentLeaf) and node.segment in ranked)
               for _, node in R.walk(R.parse_rule(segment.rule))):
            ranked.add(segment.id)
        else:
            assert stored(segment) == expect.members(segment.rule), segment.rule
    membership.refresh_workspace(s, ws, NOW)
    for segment in ours:
        s.refresh(segment)
        assert stored(segment) == expect.members(segment.rule), segment.rule
        assert segment.member_count == len(stored(segment))
    assert membership.refresh_workspace(s, ws, NOW) == membership.Moves(0, 0)


def test_the_reference_knows_every_stat():
    assert {name: stat.type for name, stat in STATS.items()} == {k: v[0] for k, v in reference.STAT_TYPES.items()}


def test_money_is_compared_as_written(database, workspace):
    """19.99 is 1999 agorot, not 1998.9999999999998 of them, and three purchases of 0.10 add up to 0.30."""
    with database.session() as s:
        ws = s.get_one(Workspace, workspace.id)
        one = contacts.save_contact(s, ws.id, {"email": "one@example.com"}).contact_id
        three = contacts.save_contact(s, ws.id, {"email": "three@example.com"}).contact_id
        assert ingest(s, ws, [{"type": kind, "contact": {"id": cid}, "ts": at(step).isoformat(), "properties": props}
                              for kind, cid, step, props in [
                                  ("purchase", one, 1590, {"order_id": "a", "total": 19.99}),
                                  ("refund", one, 1595, {"order_id": "a", "amount": 10.01}),
                                  *(("purchase", three, 1590 + i, {"order_id": f"b{i}", "total": 0.1})
                                    for i in range(3))]
                              ]).errors == []
        cases = [
            ({"event": "purchase", "where": [{"prop": "total", "op": "eq", "value": 19.99}]}, {one}),
            ({"event": "refund", "where": [{"prop": "amount", "op": "in", "value": [10.01, 5]}]}, {one}),
            ({"stat": "gross_revenue", "op": "eq", "value": 19.99}, {one}),
            ({"stat": "total_revenue", "op": "eq", "value": 9.98}, {one}),
            ({"stat": "gross_revenue", "op": "eq", "value": 0.3}, {three}),
            ({"stat": "average_order_value", "op": "eq", "value": 0.1}, {three}),
            ({"event": "purchase", "sum": {"prop": "total", "op": "eq", "value": 0.3}}, {three}),
            ({"event": "purchase", "sum": {"op": "lte", "value": 0.3}}, {three}),
        ]
        for rule, wanted in cases:
            assert set(s.scalars(compiler(s, ws, NOW).members(R.parse_rule(rule)))) == wanted, rule
            assert reference.members(s, ws.id, rule, NOW) == wanted, rule


def test_windows_and_times_include_their_edges(database, workspace):
    """An event exactly N days old is within N days; dates are whole days where the workspace is."""
    zone = ZoneInfo(workspace.timezone)
    times = {"early": NOW - timedelta(days=30, seconds=1), "edge": NOW - timedelta(days=30),
             "midnight": datetime(2026, 6, 14, tzinfo=zone), "late": datetime(2026, 6, 14, 23, 59, 59, 999999, zone),
             "next": datetime(2026, 6, 15, tzinfo=zone)}
    birthdays = {"early": "1990-05-17", "next": "1990-07-01"}
    july = datetime(2026, 7, 1, tzinfo=zone)  # 30 June, 21:00 UTC: already July where the workspace is
    cases = [
        ({"event": "purchase", "within_days": 30}, {"edge", "midnight", "late", "next"}, NOW),
        ({"event": "purchase", "between": ["2026-06-14", "2026-06-14"]}, {"midnight", "late"}, NOW),
        ({"event": "purchase", "between": [times["edge"].isoformat(), "2026-06-14T00:00:00+03:00"]}, {"edge"}, NOW),
        ({"stat": "last_purchase_at", "op": "more_than_days_ago", "value": 30}, {"early"}, NOW),
        ({"stat": "last_purchase_at", "op": "before", "value": "2026-06-14"}, {"early", "edge"}, NOW),
        ({"stat": "last_purchase_at", "op": "eq", "value": "2026-06-14T00:00:00+03:00"}, {"midnight"}, NOW),
        ({"stat": "last_purchase_at", "op": "after", "value": "2026-06-14T23:59:59.999999"}, {"next"}, NOW),
        ({"field": "birthday", "op": "eq", "value": "17/05/1990"}, {"early"}, NOW),
        ({"field": "birthday", "op": "in_month", "value": 0}, {"next"}, july),
    ]
    with database.session() as s:
        ws = s.get_one(Workspace, workspace.id)
        who = {}
        for name, ts in times.items():
            who[name] = contacts.save_contact(s, ws.id, {"email": f"{name}@example.com",
                                                         "birthday": birthdays.get(name, "1990-06-30")}).contact_id
            assert ingest(s, ws, [{"type": "purchase", "contact": {"id": who[name]}, "ts": ts.isoformat(),
                                   "properties": {"order_id": name, "total": 1}}]).errors == []
        for rule, names, now in cases:
            wanted = {who[name] for name in names}
            assert set(s.scalars(compiler(s, ws, now).members(R.parse_rule(rule)))) == wanted, rule
            assert reference.members(s, ws.id, rule, now) == wanted, rule
