"""A plain-Python evaluator of segment rules, used only by tests to check the SQL compiler.

It reads one workspace with simple SELECTs and decides every leaf for every contact in Python,
following the semantics compiler.py documents. Stats, campaign receipts and category purchases
are recomputed from the raw events and purchase lines, so an agreement also says the rollups
are right; only what the lifecycle job derives (stage, loyalty, RFM, engagement) is read from
the rollup rows. Money is compared in minor units, with the rule's value scaled exactly.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from kesher.accounts.models import Workspace
from kesher.contacts.models import (Consent, Contact, ContactList, ContactTag, CustomField, FieldValue, ListMembership,
                                    Tag)
from kesher.contacts.normalize import parse_date
from kesher.errors import ValidationError
from kesher.events.models import Category, ContactRollup, Event, PurchaseItem
from kesher.events.rollups import SYSTEM_TYPES
from kesher.events.schemas import SITE_ACTIONS
from kesher.segments import rules as R
from kesher.segments.models import Segment

Test = Callable[[Any], bool]

KIND_OPS: dict[str, tuple[str, ...]] = {
    "text": R.COMPARE + R.SETS + R.TEXT + R.PRESENCE,
    "number": R.COMPARE + R.SETS + R.PRESENCE,
    "date": R.COMPARE + R.SETS + R.PRESENCE + R.TIME + R.CALENDAR,
    "datetime": R.COMPARE + R.PRESENCE + R.TIME + R.CALENDAR,
    "boolean": ("eq", "ne", "is_set", "is_not_set"),
}
NEGATED = {"ne": "eq", "not_in": "in", "is_not_set": "is_set"}
BUILTIN = {"email": "text", "phone": "text", "external_id": "text", "first_name": "text", "last_name": "text",
           "gender": "text", "birthday": "date", "city": "text", "language": "text", "timezone": "text",
           "source": "text", "created_at": "datetime", "updated_at": "datetime"}
CUSTOM_KIND = {"text": "text", "choice": "text", "number": "number", "date": "date", "boolean": "boolean"}
VALUE_COLUMN = {"text": "value_text", "choice": "value_text", "number": "value_number", "date": "value_date",
                "boolean": "value_bool"}
LINE_PROPS = {"category": ("category", "text"), "sku": ("sku", "text"), "product": ("name", "text"),
              "name": ("name", "text"), "price": ("price", "number"), "quantity": ("quantity", "number")}
MONEY_PROP = {"purchase": "total", "refund": "amount"}
# name: (type, kept in minor units)
STAT_TYPES: dict[str, tuple[str, bool]] = {
    "total_revenue": ("number", True), "refunds": ("number", True), "gross_revenue": ("number", True),
    "average_order_value": ("number", True), "purchase_count": ("number", False), "sent_count": ("number", False),
    "open_count": ("number", False), "click_count": ("number", False), "open_rate": ("number", False),
    "click_rate": ("number", False), "days_between_purchases": ("number", False),
    "last_open_at": ("datetime", False), "last_click_at": ("datetime", False),
    "last_purchase_at": ("datetime", False), "first_purchase_at": ("datetime", False),
    "last_visit_at": ("datetime", False), "last_event_at": ("datetime", False),
    "engagement_score": ("number", False), "rfm_recency": ("number", False), "rfm_frequency": ("number", False),
    "rfm_monetary": ("number", False), "loyalty": ("text", False),
}
DERIVED = ("stage", "loyalty", "engagement_score", "rfm_recency", "rfm_frequency", "rfm_monetary")


class Invalid(Exception):
    """The rule cannot be evaluated here; `path` is the JSON path of the leaf at fault."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


@dataclass(frozen=True)
class RawEvent:
    id: int
    contact_id: int
    type: str
    ts: datetime
    amount_minor: int | None
    properties: dict[str, Any]


@dataclass(frozen=True)
class Line:
    event_id: int
    contact_id: int
    ts: datetime
    sku: str
    name: str
    category: str
    price: float
    quantity: float


@dataclass(frozen=True)
class Receipt:
    campaign_id: str
    sent_at: datetime | None
    first_open_at: datetime | None
    first_click_at: datetime | None


@dataclass
class World:
    """One workspace's rows, as plain Python."""

    zone: ZoneInfo
    contacts: dict[int, dict[str, Any]]
    derived: dict[int, dict[str, Any]]  # what the lifecycle job wrote on each rollup row
    events: list[RawEvent]
    lines: list[Line]
    groups: dict[str, dict[int, tuple[str, set[int]]]]  # "list"/"tag" -> id -> (name, members)
    consents: dict[tuple[int, str], str]
    fields: dict[str, tuple[int, str]]  # key -> (id, type)
    values: dict[tuple[int, int], Any]  # (contact, field) -> typed value
    categories: dict[str, tuple[bool, int | None]]  # key -> (consumable, usage days)
    segments: dict[int, Any]
    stats: dict[int, dict[str, Any]] = field(default_factory=dict)
    receipts: dict[int, list[Receipt]] = field(default_factory=dict)
    last_in_category: dict[tuple[int, str], datetime] = field(default_factory=dict)


def load(session: Session, workspace_id: int) -> World:
    """Everything a rule can ask about, read with one plain SELECT per table."""
    ws = session.get_one(Workspace, workspace_id)
    contacts = {row.id: {name: getattr(row, name) for name in BUILTIN}
                for row in session.scalars(select(Contact).where(Contact.workspace_id == workspace_id))}
    derived = {row.contact_id: {name: getattr(row, name) for name in DERIVED}
               for row in session.scalars(select(ContactRollup).where(ContactRollup.workspace_id == workspace_id))}
    events = [RawEvent(e.id, e.contact_id, e.type, e.ts, e.amount_minor, e.properties) for e in session.scalars(
        select(Event).where(Event.workspace_id == workspace_id, Event.contact_id.is_not(None)).order_by(Event.id))]
    lines = [Line(i.event_id, i.contact_id, i.ts, i.sku, i.name, i.category, i.price, i.quantity)
             for i in session.scalars(select(PurchaseItem).where(PurchaseItem.workspace_id == workspace_id,
                                                                  PurchaseItem.contact_id.is_not(None))
                                      .order_by(PurchaseItem.id))]
    groups: dict[str, dict[int, tuple[str, set[int]]]] = {}
    for kind, model, member, key in (("list", ContactList, ListMembership, "list_id"),
                                     ("tag", Tag, ContactTag, "tag_id")):
        found = {g.id: (g.name, set())
                 for g in session.scalars(select(model).where(model.workspace_id == workspace_id))}
        for row in session.scalars(select(member).where(member.workspace_id == workspace_id)):
            found[getattr(row, key)][1].add(row.contact_id)
        groups[kind] = found
    fields = {f.key: (f.id, f.type) for f in session.scalars(
        select(CustomField).where(CustomField.workspace_id == workspace_id))}
    types = {fid: kind for fid, kind in fields.values()}
    world = World(
        zone=ZoneInfo(ws.timezone or "Asia/Jerusalem"), contacts=contacts,
        derived=derived, events=events, lines=lines, groups=groups,
        consents={(c.contact_id, c.channel): c.status for c in session.scalars(
            select(Consent).where(Consent.workspace_id == workspace_id))},
        fields=fields,
        values={(v.contact_id, v.field_id): getattr(v, VALUE_COLUMN[types[v.field_id]]) for v in session.scalars(
            select(FieldValue).where(FieldValue.workspace_id == workspace_id))},
        categories={c.key: (c.consumable, c.usage_days) for c in session.scalars(
            select(Category).where(Category.workspace_id == workspace_id))},
        segments={s.id: s.rule for s in session.scalars(select(Segment).where(Segment.workspace_id == workspace_id))},
    )
    _derive(world)
    return world


def _latest(times: Iterable[datetime]) -> datetime | None:
    return max(times, default=None)


def _derive(world: World) -> None:
    """Per-contact stats, campaign receipts and last purchase per category, from the raw rows."""
    mine: dict[int, list[RawEvent]] = defaultdict(list)
    for e in world.events:
        mine[e.contact_id].append(e)
    for cid in world.contacts:
        evs = mine[cid]

        def of(*types: str, evs: list[RawEvent] = evs) -> list[RawEvent]:
            return [e for e in evs if e.type in types]

        purchases = of("purchase")
        revenue = sum(e.amount_minor or 0 for e in purchases)
        refunds = sum(e.amount_minor or 0 for e in of("refund"))
        sent, opens, clicks = len(of("email_sent")), len(of("email_opened")), len(of("email_clicked"))
        first = min((e.ts for e in purchases), default=None)
        last = _latest(e.ts for e in purchases)
        count = len(purchases)
        span = None if count < 2 or first is None or last is None else \
            float(math.floor(last.timestamp()) - math.floor(first.timestamp())) / (86_400.0 * (count - 1))
        world.stats[cid] = {
            "total_revenue": revenue - refunds, "refunds": refunds, "gross_revenue": revenue,
            "average_order_value": float(revenue) / count if count else None, "purchase_count": count,
            "sent_count": sent, "open_count": opens, "click_count": clicks,
            "open_rate": 100.0 * opens / sent if sent else None, "click_rate": 100.0 * clicks / sent if sent else None,
            "days_between_purchases": span,
            "last_open_at": _latest(e.ts for e in of("email_opened")),
            "last_click_at": _latest(e.ts for e in of("email_clicked")),
            "last_purchase_at": last, "first_purchase_at": first,
            "last_visit_at": _latest(e.ts for e in of(*SITE_ACTIONS)),
            "last_event_at": _latest(e.ts for e in evs if e.type not in SYSTEM_TYPES),
            **{name: world.derived.get(cid, {}).get(name) for name in DERIVED},
        }
        receipts: dict[str, dict[str, datetime]] = defaultdict(dict)
        for e in of("email_sent", "email_opened", "email_clicked"):
            campaign = e.properties.get("campaign_id")
            if campaign:
                at = receipts[campaign]
                at[e.type] = min(at.get(e.type, e.ts), e.ts)
        world.receipts[cid] = [Receipt(campaign, at.get("email_sent"), at.get("email_opened"), at.get("email_clicked"))
                               for campaign, at in receipts.items()]
    for line in world.lines:
        if line.category:
            key = (line.contact_id, line.category)
            world.last_in_category[key] = max(world.last_in_category.get(key, line.ts), line.ts)


def _scaled(value: Any) -> float:
    """A rule's amount in minor units, exactly as written (19.99 is 1999, not 1998.9999999999998)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("needs a number")
    return float(Decimal(str(value)) * 100)


def _json(kind: str, value: Any) -> Any:
    """A stored JSON property, only where it is of the kind asked for."""
    if kind == "text":
        return value if isinstance(value, str) else None
    if kind == "number":
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return value if isinstance(value, bool) else None


def _measure(measure: Any, op: str, value: Any) -> bool:
    return {"eq": measure == value, "ne": measure != value, "lt": measure < value, "lte": measure <= value,
            "gt": measure > value, "gte": measure >= value}[op]


@dataclass
class Reference:
    """Evaluates rules against a loaded workspace as of `now`."""

    world: World
    now: datetime
    _stack: list[int] = field(default_factory=list)

    def members(self, rule: Any) -> set[int]:
        """The ids of the contacts matching `rule` (a parsed rule or its JSON); Invalid if it cannot be asked."""
        return self.evaluate(R.parse_rule(rule), "$")

    def evaluate(self, rule: Any, path: str) -> set[int]:
        everyone = set(self.world.contacts)
        if isinstance(rule, R.AllOf):
            found = [self.evaluate(child, f"{path}.all[{i}]") for i, child in enumerate(rule.all)]
            return set.intersection(*found)
        if isinstance(rule, R.AnyOf):
            return set().union(*(self.evaluate(child, f"{path}.any[{i}]") for i, child in enumerate(rule.any)))
        if isinstance(rule, R.NotOf):
            return everyone - self.evaluate(rule.not_, f"{path}.not")
        try:
            holds = self.leaf(rule)
        except ValueError:
            raise Invalid(path) from None
        return {cid for cid in everyone if holds(cid)}

    def leaf(self, rule: Any) -> Test:
        """A predicate on a contact id; ValueError where the compiler must refuse the leaf."""
        if isinstance(rule, R.SegmentLeaf):
            return self.segment(rule)
        method = {R.FieldLeaf: self.field, R.EventLeaf: self.event, R.StatLeaf: self.stat, R.ListLeaf: self.group,
                  R.TagLeaf: self.group, R.ConsentLeaf: self.consent, R.CampaignsLeaf: self.campaigns,
                  R.StageLeaf: self.stage, R.ReplenishmentLeaf: self.replenishment}[type(rule)]
        return method(rule)  # type: ignore[operator]

    # Comparing one value ---------------------------------------------------------------------

    def test(self, kind: str, op: str, value: Any) -> Test:
        """Whether a stored value (None: missing) passes `op value`; a missing one passes only the negations."""
        if op in NEGATED:
            positive = self.test(kind, NEGATED[op], value)
            return lambda v: not positive(v)
        if op not in KIND_OPS[kind]:
            raise ValueError(f"{op} on {kind}")
        if op == "is_set":
            return lambda v: v is not None
        if op == "in_month":  # a stored time by its month in UTC, as the database reads it
            month = value or self.now.astimezone(self.world.zone).month
            return lambda v: v is not None and v.month == month
        if op in ("within_last_days", "more_than_days_ago"):
            cutoff = self.now - timedelta(days=float(value))
            bound = cutoff if kind == "datetime" else cutoff.astimezone(self.world.zone).date()
            if op == "within_last_days":
                return lambda v: v is not None and v >= bound
            return lambda v: v is not None and v < bound
        if op == "in":
            options = [self.typed(kind, v) for v in value]
            return lambda v: v is not None and v in options
        typed = self.typed(kind, value)
        if op == "contains":
            return lambda v: v is not None and str(typed).lower() in v.lower()
        if op == "starts_with":
            return lambda v: v is not None and v.lower().startswith(str(typed).lower())
        compare = {"eq": lambda v: v == typed, "lt": lambda v: v < typed, "lte": lambda v: v <= typed,
                   "gt": lambda v: v > typed, "gte": lambda v: v >= typed, "before": lambda v: v < typed,
                   "after": lambda v: v > typed}[op]
        return lambda v: v is not None and compare(v)

    def typed(self, kind: str, value: Any) -> Any:
        if kind == "text":
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise ValueError("needs text")
            return str(value)
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError("needs a number")
            return value
        if kind == "boolean":
            if not isinstance(value, bool):
                raise ValueError("needs true or false")
            return value
        if kind == "date":
            try:
                parsed = parse_date(str(value), "value")
            except ValidationError:
                parsed = None
            if parsed is None:
                raise ValueError("needs a date")
            return parsed
        moment = datetime.fromisoformat(str(value))  # a ValueError is the rule's error, as wanted
        if len(str(value)) == 10:
            return datetime.combine(moment.date(), time(), self.world.zone).astimezone(UTC)
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=self.world.zone).astimezone(UTC)

    # Leaves ----------------------------------------------------------------------------------

    def field(self, leaf: R.FieldLeaf) -> Test:
        if leaf.field in BUILTIN:
            check = self.test(BUILTIN[leaf.field], leaf.op, leaf.value)
            return lambda cid: check(self.world.contacts[cid][leaf.field])
        if leaf.field not in self.world.fields:
            raise ValueError(f"no field {leaf.field}")
        field_id, field_type = self.world.fields[leaf.field]
        check = self.test(CUSTOM_KIND[field_type], leaf.op, leaf.value)
        return lambda cid: check(self.world.values.get((cid, field_id)))

    def stat(self, leaf: R.StatLeaf) -> Test:
        if leaf.stat not in STAT_TYPES:
            raise ValueError(f"no stat {leaf.stat}")
        kind, money = STAT_TYPES[leaf.stat]
        stats = self.world.stats
        if leaf.op == "top_percent":
            if kind != "number":
                raise ValueError("top_percent ranks numbers only")
            return self.top_percent(leaf.stat, float(leaf.value))  # type: ignore[arg-type]
        value = leaf.value
        if money and value is not None:
            value = [_scaled(v) for v in value] if isinstance(value, list) else _scaled(value)
        check = self.test(kind, leaf.op, value)
        return lambda cid: check(stats[cid][leaf.stat])

    def top_percent(self, stat: str, percent: float) -> Test:
        values = sorted((s[stat] for s in self.world.stats.values() if s[stat] is not None and s[stat] > 0),
                        reverse=True)
        if not values:
            return lambda cid: False
        rank = min(len(values), max(1, math.ceil(len(values) * percent / 100 - 1e-9)))
        threshold = values[rank - 1]
        return lambda cid: (v := self.world.stats[cid][stat]) is not None and v > 0 and v >= threshold

    def group(self, leaf: R.ListLeaf | R.TagLeaf) -> Test:
        kind, ref = ("list", leaf.list) if isinstance(leaf, R.ListLeaf) else ("tag", leaf.tag)
        groups = self.world.groups[kind]
        found = [members for gid, (name, members) in groups.items() if (gid if isinstance(ref, int) else name) == ref]
        if not found:
            raise ValueError(f"no {kind} {ref}")
        return lambda cid: cid in found[0]

    def consent(self, leaf: R.ConsentLeaf) -> Test:
        return lambda cid: self.world.consents.get((cid, leaf.consent)) == leaf.status

    def stage(self, leaf: R.StageLeaf) -> Test:
        stages = {leaf.stage} if isinstance(leaf.stage, str) else set(leaf.stage)
        return lambda cid: self.world.stats[cid]["stage"] in stages

    def campaigns(self, leaf: R.CampaignsLeaf) -> Test:
        def holds(cid: int) -> bool:
            received = sorted((r for r in self.world.receipts[cid] if r.sent_at is not None),
                              key=lambda r: (r.sent_at, r.campaign_id), reverse=True)[:leaf.campaigns]
            if len(received) < leaf.campaigns:
                return False
            acted = sum(1 for r in received if (r.first_click_at if leaf.action == "clicked" else r.first_open_at))
            return _measure(acted, leaf.op, leaf.value)
        return holds

    def replenishment(self, leaf: R.ReplenishmentLeaf) -> Test:
        now = int(self.now.timestamp())
        due: set[int] = set()
        for (cid, category), last in self.world.last_in_category.items():
            consumable, usage_days = self.world.categories.get(category, (False, None))
            if not consumable or usage_days is None or (leaf.category and category != leaf.category):
                continue
            runs_out = math.floor(last.timestamp()) + usage_days * 86_400
            if now <= runs_out <= now + leaf.replenishment_due * 86_400:
                due.add(cid)
        return lambda cid: cid in due

    def segment(self, leaf: R.SegmentLeaf) -> Test:
        if leaf.segment not in self.world.segments or leaf.segment in self._stack:
            raise ValueError(f"segment {leaf.segment}")
        self._stack.append(leaf.segment)
        try:
            inside = self.evaluate(R.parse_rule(self.world.segments[leaf.segment]), f"(segment {leaf.segment})")
        finally:
            self._stack.pop()
        return lambda cid: cid in inside

    def event(self, leaf: R.EventLeaf) -> Test:
        line_filters = [f for f in leaf.where if leaf.event == "purchase" and f.prop in LINE_PROPS]
        event_tests = [self.property_test(leaf.event, f) for f in leaf.where if f not in line_filters]
        line_tests = [self.line_test(f) for f in line_filters]
        within = self.window(leaf)
        events = [e for e in self.world.events
                  if e.type == leaf.event and within(e.ts) and all(t(e) for t in event_tests)]
        count: dict[int, int] = defaultdict(int)
        if line_filters:
            kept = {e.id for e in events}
            lines = [ln for ln in self.world.lines
                     if within(ln.ts) and all(t(ln) for t in line_tests) and (not event_tests or ln.event_id in kept)]
            for contact_id, _ in {(ln.contact_id, ln.event_id) for ln in lines}:
                count[contact_id] += 1
            rows: list[Any] = lines
        else:
            for e in events:
                count[e.contact_id] += 1
            rows = events
        if leaf.sum is None:
            op, value = ("gte", 1) if leaf.count is None else (leaf.count.op, leaf.count.value)
            return lambda cid: _measure(count[cid], op, value)
        get, minor = self.amount(leaf.event, leaf.sum.prop, bool(line_filters))
        total: dict[int, Any] = defaultdict(int)
        for row in rows:
            got = get(row)
            if got is not None:
                total[row.contact_id] += got
        sum_op, target = leaf.sum.op, _scaled(leaf.sum.value) if minor else leaf.sum.value
        return lambda cid: _measure(total[cid], sum_op, target)

    @staticmethod
    def amount(event_type: str, prop: str, by_line: bool) -> tuple[Callable[[Any], Any], bool]:
        """What a sum adds up per matching row (a line, or an event), and whether that is money in minor units."""
        if by_line and prop in ("total", "amount"):
            return (lambda ln: ln.price * ln.quantity), False
        if MONEY_PROP.get(event_type) == prop:
            return (lambda e: e.amount_minor), True
        if by_line and prop in LINE_PROPS and LINE_PROPS[prop][1] == "number":
            column = LINE_PROPS[prop][0]
            return (lambda ln: getattr(ln, column)), False
        if by_line:
            raise ValueError(f"cannot add up {prop} by line")
        return (lambda e: _json("number", e.properties.get(prop))), False

    def line_test(self, flt: R.PropFilter) -> Test:
        column, kind = LINE_PROPS[flt.prop]
        check = self.test(kind, flt.op, flt.value)
        return lambda ln: check(getattr(ln, column))

    def property_test(self, event_type: str, flt: R.PropFilter) -> Test:
        if flt.prop == "campaign_id":
            value = [str(v) for v in flt.value] if isinstance(flt.value, list) else \
                (None if flt.value is None else str(flt.value))
            check = self.test("text", flt.op, value)
            return lambda e: check(_json("text", e.properties.get("campaign_id")))
        if MONEY_PROP.get(event_type) == flt.prop:
            value = flt.value
            if flt.op not in R.PRESENCE:
                value = [_scaled(v) for v in value] if isinstance(value, list) else _scaled(value)
            check = self.test("number", flt.op, value)
            return lambda e: check(e.amount_minor)
        if flt.op in R.PRESENCE:
            wanted = flt.op == "is_set"
            return lambda e: any(_json(k, e.properties.get(flt.prop)) is not None
                                 for k in ("text", "number", "bool")) == wanted
        sample = flt.value[0] if isinstance(flt.value, list) else flt.value
        kind = "boolean" if isinstance(sample, bool) else "number" if isinstance(sample, (int, float)) else "text"
        check = self.test(kind, flt.op, flt.value)
        return lambda e: check(_json({"boolean": "bool"}.get(kind, kind), e.properties.get(flt.prop)))

    def window(self, leaf: R.EventLeaf) -> Test:
        if leaf.within_days is not None:
            since = self.now - timedelta(days=leaf.within_days)
            return lambda ts: ts >= since
        if leaf.between is not None:
            start, end = self.moment(leaf.between[0]), self.moment(leaf.between[1], end=True)
            return lambda ts: start <= ts < end
        return lambda ts: True

    def moment(self, value: date | datetime, end: bool = False) -> datetime:
        if isinstance(value, datetime):
            return value.astimezone(UTC)
        day = value + timedelta(days=1) if end else value
        return datetime.combine(day, time(), self.world.zone).astimezone(UTC)


def members(session: Session, workspace_id: int, rule: Any, now: datetime) -> set[int]:
    """The contacts of the workspace matching `rule` as of `now`, decided in Python."""
    return Reference(load(session, workspace_id), now).members(rule)
