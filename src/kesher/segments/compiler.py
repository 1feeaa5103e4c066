"""One compiler from a segment rule to SQLAlchemy Core, for SQLite and PostgreSQL alike.

A rule becomes one boolean expression over `contacts` LEFT JOIN `contact_rollups`. Each leaf is
planned on its own: rollups answer stats, stages, campaign history and "did X (in the last N
days)" for opens, clicks and purchases; indexed event lookups answer other time windows,
property filters and counts; custom fields, lists, tags and consent use
their own indexed tables. Every leaf is two-valued (never NULL), so `not` means what it says:
a contact with no city is "not in Haifa".

The same expression serves a whole workspace (a count, a refresh) and a few contacts (real
time, "why is this contact in?"): a `Scope` narrows every subquery to those contacts, so a
one-contact evaluation reads a handful of index entries.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (BigInteger, Boolean, Date, Float, Integer, Select, String, Table, and_, any_, bindparam, case, cast,
                        exists, false, func, literal, not_, or_, select)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement, FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.sql.util import find_tables

from kesher.accounts.models import Workspace
from kesher.contacts.models import Consent, Contact, ContactList, ContactTag, CustomField, FieldValue, ListMembership, Tag
from kesher.contacts.normalize import parse_date
from kesher.db.base import UTCDateTime
from kesher.db.upsert import one_of
from kesher.errors import NotFound, ValidationError
from kesher.events import rollups
from kesher.events.lifecycle import epoch_seconds
from kesher.events.models import CampaignReceipt, Category, CategoryStat, ContactRollup, Event, PurchaseItem
from kesher.events.schemas import SITE_ACTIONS
from kesher.segments import rules as R

CONTACTS = typing.cast(Table, Contact.__table__)
ROLLUPS = typing.cast(Table, ContactRollup.__table__)
EVENTS = typing.cast(Table, Event.__table__)
ITEMS = typing.cast(Table, PurchaseItem.__table__)
RECEIPTS = typing.cast(Table, CampaignReceipt.__table__)
CATEGORY_STATS = typing.cast(Table, CategoryStat.__table__)
CATEGORIES = typing.cast(Table, Category.__table__)
FIELD_VALUES = typing.cast(Table, FieldValue.__table__)
c, r = CONTACTS.c, ROLLUPS.c
Which = Callable[[Any], ColumnElement[bool]]
SCOPE_IDS = "scope_ids"
RANK_TTL = timedelta(minutes=5)
# (database, workspace, stat, percent) -> (threshold, when computed): the real-time path reuses the
# last threshold for a few minutes (`Compiler.reuse_ranks`); every other evaluation computes it afresh.
_thresholds: dict[tuple[str, int, str, float], tuple[Any, datetime]] = {}


# Dialect-neutral SQL pieces ------------------------------------------------------------------


class month_of(FunctionElement[int]):  # noqa: N801 - named like the SQL functions it stands beside
    """The month (1-12) of a date or timestamp."""

    type = Integer()
    inherit_cache = True


@compiles(month_of, "sqlite")
def _month_sqlite(element: month_of, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(cast(func.strftime("%m", *element.clauses), Integer), **kw)


@compiles(month_of, "postgresql")
def _month_postgresql(element: month_of, compiler: SQLCompiler, **kw: Any) -> str:
    # A timestamp's month in UTC, as SQLite stores it, whatever the server's time zone.
    value = compiler.process(element.clauses, **kw)
    column = list(element.clauses)[0]
    if isinstance(getattr(column, "type", None), UTCDateTime):
        value = f"({value} AT TIME ZONE 'UTC')"
    return f"CAST(EXTRACT(MONTH FROM {value}) AS INTEGER)"


class moment_at(FunctionElement[datetime]):  # noqa: N801
    """The moment `seconds` (an integer) after the epoch, as the database stores timestamps.

    Comparing a timestamp column with it can use the column's index; `epoch_seconds(column)` cannot.
    """

    type = UTCDateTime()
    inherit_cache = True


@compiles(moment_at, "sqlite")
def _moment_sqlite(element: moment_at, compiler: SQLCompiler, **kw: Any) -> str:
    # The text SQLAlchemy stores for a UTC datetime, which compares as the moments do.
    return f"strftime('%Y-%m-%d %H:%M:%S.000000', {compiler.process(element.clauses, **kw)}, 'unixepoch')"


@compiles(moment_at, "postgresql")
def _moment_postgresql(element: moment_at, compiler: SQLCompiler, **kw: Any) -> str:
    return f"to_timestamp({compiler.process(element.clauses, **kw)})"


class json_prop(FunctionElement[Any]):  # noqa: N801
    """A top-level property of a JSON column, only where it has the kind asked for, else NULL.

    `json_prop(col, name, "number")` is a number only where the stored JSON value is a number, so a
    text value never breaks (PostgreSQL) or skews (SQLite) a numeric comparison.
    """

    inherit_cache = True
    # The property and its kind are part of the statement: without them in the cache key, a rule on
    # another property would reuse the first one's compiled SQL.
    _traverse_internals = [*FunctionElement._traverse_internals, ("name", InternalTraversal.dp_string),
                           ("kind", InternalTraversal.dp_string)]

    def __init__(self, column: Any, name: str, kind: str) -> None:
        self.name, self.kind = name, kind
        self.type = {"number": Float(), "text": String(), "bool": Boolean()}[kind]
        super().__init__(column)


@compiles(json_prop, "sqlite")
def _json_sqlite(element: json_prop, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    path = compiler.process(literal('$."' + element.name.replace('"', '""') + '"'), **kw)
    kinds = {"number": "'integer', 'real'", "text": "'text'", "bool": "'true', 'false'"}[element.kind]
    return f"(CASE WHEN json_type({column}, {path}) IN ({kinds}) THEN json_extract({column}, {path}) END)"


@compiles(json_prop, "postgresql")
def _json_postgresql(element: json_prop, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    name = compiler.process(literal(element.name), **kw)
    kind, sql_type = {"number": ("number", "DOUBLE PRECISION"), "text": ("string", "TEXT"),
                      "bool": ("boolean", "BOOLEAN")}[element.kind]
    return (f"(CASE WHEN jsonb_typeof({column} -> {name}) = '{kind}' "
            f"THEN CAST({column} ->> {name} AS {sql_type}) END)")


# What can be asked of a contact ---------------------------------------------------------------

# type: text, number, date, datetime, boolean
BUILTIN_FIELDS: dict[str, tuple[Any, str]] = {
    "email": (c.email, "text"), "phone": (c.phone, "text"), "external_id": (c.external_id, "text"),
    "first_name": (c.first_name, "text"), "last_name": (c.last_name, "text"), "gender": (c.gender, "text"),
    "birthday": (c.birthday, "date"), "city": (c.city, "text"), "language": (c.language, "text"),
    "timezone": (c.timezone, "text"), "source": (c.source, "text"), "created_at": (c.created_at, "datetime"),
    "updated_at": (c.updated_at, "datetime"),
}


@dataclass(frozen=True)
class Stat:
    """A rollup a rule can compare: its SQL, its type, the events that move it and its zero."""

    sql: Callable[[], ColumnElement[Any]]
    type: str
    moved_by: tuple[str, ...]  # event types; "*" any; () only the periodic refresh
    scale: float = 1.0  # stored value = shown value x scale (money is kept in agorot)


@dataclass(frozen=True, eq=False)
class _Counter:
    """A rollup column (or a difference of two) in which NULL, no rollup row yet, means 0: its SQL is
    `coalesce(column, 0)`. Compared bare, its index serves (ix_contact_rollups_ws_net_revenue for one)."""

    column: Any

    def __call__(self) -> ColumnElement[Any]:
        return func.coalesce(self.column, 0)


def _money(column: Any) -> Callable[[], ColumnElement[Any]]:
    return _Counter(column)


def _average_order() -> ColumnElement[Any]:
    return case((r.purchase_count > 0, cast(r.revenue_minor, Float) / r.purchase_count), else_=None)


def _days_between_purchases() -> ColumnElement[Any]:
    span = cast(epoch_seconds(r.last_purchase_at) - epoch_seconds(r.first_purchase_at), Float)
    return case((r.purchase_count > 1, span / (86_400.0 * (r.purchase_count - 1))), else_=None)


def _rate(part: Any) -> Callable[[], ColumnElement[Any]]:
    return lambda: case((r.sent_count > 0, 100.0 * cast(part, Float) / r.sent_count), else_=None)


PURCHASE = ("purchase",)
STATS: dict[str, Stat] = {
    # Revenue less refunds, as the rollups API and the contact card call it; gross is before refunds.
    "total_revenue": Stat(_Counter(r.revenue_minor - r.refunds_minor), "number", ("purchase", "refund"), 100.0),
    "gross_revenue": Stat(_money(r.revenue_minor), "number", PURCHASE, 100.0),
    "refunds": Stat(_money(r.refunds_minor), "number", ("refund",), 100.0),
    "average_order_value": Stat(_average_order, "number", PURCHASE, 100.0),
    "purchase_count": Stat(_money(r.purchase_count), "number", PURCHASE),
    "sent_count": Stat(_money(r.sent_count), "number", ("email_sent",)),
    "open_count": Stat(_money(r.open_count), "number", ("email_opened",)),
    "click_count": Stat(_money(r.click_count), "number", ("email_clicked",)),
    "open_rate": Stat(_rate(r.open_count), "number", ("email_sent", "email_opened")),
    "click_rate": Stat(_rate(r.click_count), "number", ("email_sent", "email_clicked")),
    "days_between_purchases": Stat(_days_between_purchases, "number", PURCHASE),
    "last_open_at": Stat(lambda: r.last_open_at, "datetime", ("email_opened",)),
    "last_click_at": Stat(lambda: r.last_click_at, "datetime", ("email_clicked",)),
    "last_purchase_at": Stat(lambda: r.last_purchase_at, "datetime", PURCHASE),
    "first_purchase_at": Stat(lambda: r.first_purchase_at, "datetime", PURCHASE),
    "last_visit_at": Stat(lambda: r.last_visit_at, "datetime", tuple(sorted(SITE_ACTIONS))),
    "last_event_at": Stat(lambda: r.last_event_at, "datetime", ("*",)),
    "engagement_score": Stat(lambda: r.engagement_score, "number", ()),
    "rfm_recency": Stat(lambda: r.rfm_recency, "number", ()),
    "rfm_frequency": Stat(lambda: r.rfm_frequency, "number", ()),
    "rfm_monetary": Stat(lambda: r.rfm_monetary, "number", ()),
    "loyalty": Stat(lambda: r.loyalty, "text", PURCHASE),
}

# Purchase properties that live on each line (purchase_items) rather than on the order.
ITEM_PROPS = {"category": ("category", "text"), "sku": ("sku", "text"), "product": ("name", "text"),
              "name": ("name", "text"), "price": ("price", "number"), "quantity": ("quantity", "number")}
MONEY_PROPS = {"purchase": "total", "refund": "amount"}
# The rollup holding the time of a contact's latest event of a type: the latest of exactly that type.
LATEST = {rollup.types[0]: r[rollup.column] for rollup in rollups.ROLLUPS
          if rollup.kind == "latest" and len(rollup.types) == 1}
OPS_BY_TYPE = {
    "text": set(R.COMPARE + R.SETS + R.TEXT + R.PRESENCE),
    "number": set(R.COMPARE + R.SETS + R.PRESENCE + R.RANK),
    "date": set(R.COMPARE + R.SETS + R.PRESENCE + R.TIME + R.CALENDAR),
    "datetime": set(R.COMPARE + R.PRESENCE + R.TIME + R.CALENDAR),
    "boolean": {"eq", "ne", "is_set", "is_not_set"},
}
NEGATIONS = {"ne": "eq", "not_in": "in", "is_not_set": "is_set"}


# Where a compilation applies --------------------------------------------------------------------


@dataclass
class Scope:
    """The contacts a compiled rule is asked about: the workspace's all, a few ids, or an id range."""

    which: Which | None = None

    @classmethod
    def ids(cls, session: Session, contact_ids: list[int]) -> Scope:
        return cls(lambda column: one_of(session, column, contact_ids))

    @classmethod
    def id_range(cls, after: int, upto: int) -> Scope:
        return cls(lambda column: and_(column > after, column <= upto))

    @classmethod
    def parameter(cls, session: Session) -> Scope:
        """The contacts given at execution as the parameter SCOPE_IDS, so one statement serves any contacts."""
        if session.get_bind().dialect.name == "postgresql":
            return cls(lambda column: column == any_(bindparam(SCOPE_IDS, type_=ARRAY(BigInteger))))
        return cls(lambda column: column.in_(bindparam(SCOPE_IDS, expanding=True)))

    def narrow(self, column: Any) -> list[ColumnElement[bool]]:
        return [] if self.which is None else [self.which(column)]


@dataclass
class Compiler:
    """Compiles rules of one workspace, as of `now`, for the contacts in `scope`."""

    session: Session
    workspace: Workspace
    now: datetime
    scope: Scope = field(default_factory=Scope)
    reuse_ranks: bool = False
    ranked_at: datetime | None = None  # when the oldest top-percent threshold compiled in was computed
    _fields: dict[str, CustomField] | None = None
    _moments: dict[str, Callable[[datetime], Any]] = field(default_factory=dict)
    # Segments being compiled (a segment leaf inlines another's rule): one met again refers to itself.
    inside: list[int] = field(default_factory=list)

    @property
    def postgres(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.workspace.timezone or "Asia/Jerusalem")

    def compile(self, rule: Any, path: str = "$") -> ColumnElement[bool]:
        if isinstance(rule, R.AllOf):
            return and_(*(self.compile(child, f"{path}.all[{i}]") for i, child in enumerate(rule.all)))
        if isinstance(rule, R.AnyOf):
            return or_(*(self.compile(child, f"{path}.any[{i}]") for i, child in enumerate(rule.any)))
        if isinstance(rule, R.NotOf):
            return not_(self.compile(rule.not_, f"{path}.not"))
        try:
            return self.leaf(rule, path)
        except _Bad as exc:
            raise ValidationError(exc.template, f"rule: {path}{exc.where}", **exc.params) from None

    def leaf(self, rule: Any, path: str) -> ColumnElement[bool]:
        method = {R.FieldLeaf: self.field_leaf, R.EventLeaf: self.event_leaf, R.StatLeaf: self.stat_leaf,
                  R.ListLeaf: self.list_leaf, R.TagLeaf: self.tag_leaf, R.SegmentLeaf: self.segment_leaf,
                  R.ConsentLeaf: self.consent_leaf, R.CampaignsLeaf: self.campaigns_leaf,
                  R.StageLeaf: self.stage_leaf, R.ReplenishmentLeaf: self.replenishment_leaf}[type(rule)]
        return method(rule)  # type: ignore[operator]

    # The query around a compiled rule --------------------------------------------------------

    def members(self, rule: Any) -> Select[Any]:
        """SELECT contacts.id of the contacts in scope that match `rule`.

        The rollups are joined only for a rule that reads them: SQLite keeps an unused LEFT JOIN
        in a count, one lookup for every contact of the workspace.
        """
        matches = self.compile(rule)
        source = CONTACTS.outerjoin(ROLLUPS, r.contact_id == c.id) \
            if ROLLUPS in find_tables(matches, check_columns=True) else CONTACTS
        return select(c.id).select_from(source).where(c.workspace_id == self.workspace.id, *self.scope.narrow(c.id),
                                                      matches)

    # Leaves ----------------------------------------------------------------------------------

    def field_leaf(self, leaf: R.FieldLeaf) -> ColumnElement[bool]:
        if leaf.field in BUILTIN_FIELDS:
            column, kind = BUILTIN_FIELDS[leaf.field]
            return self.compare(column, kind, leaf.op, leaf.value)
        custom = self.custom_fields().get(leaf.field)
        if custom is None:
            raise _Bad("no field {name!r}: neither a contact field nor a custom field of this workspace", ".field",
                       name=leaf.field)
        kind = {"choice": "text", "boolean": "boolean"}.get(custom.type, custom.type)
        column = FIELD_VALUES.c[{"text": "value_text", "number": "value_number", "date": "value_date",
                                 "boolean": "value_bool"}[kind]]
        positive, negate = NEGATIONS.get(leaf.op, leaf.op), leaf.op in NEGATIONS
        if positive not in OPS_BY_TYPE[kind] or positive in R.RANK:  # ranking is for stats (`compare` has no SQL for it)
            raise _Bad("{op} does not apply to a {type} field", ".op", op=leaf.op, type=custom.type)
        holders = (select(FIELD_VALUES.c.contact_id)
                   .where(FIELD_VALUES.c.field_id == custom.id, *self.scope.narrow(FIELD_VALUES.c.contact_id),
                          self.compare(column, kind, positive, leaf.value)))
        return self.in_set(holders, negate)

    def stat_leaf(self, leaf: R.StatLeaf) -> ColumnElement[bool]:
        stat = STATS.get(leaf.stat)
        if stat is None:
            raise _Bad("no stat {name!r}; stats are: {stats}", ".stat", name=leaf.stat, stats=", ".join(STATS))
        if leaf.op == "top_percent":
            if stat.type != "number":
                raise _Bad("top_percent ranks numbers; {stat} is a {type}", ".op", stat=leaf.stat, type=stat.type)
            return self.top_percent(leaf.stat, stat, float(leaf.value))  # type: ignore[arg-type]
        value = leaf.value
        if stat.scale != 1 and value is not None:
            value = self.scaled(value, stat.scale)
        column = stat.sql()
        if isinstance(stat.sql, _Counter) and _fails_at_zero(leaf.op, value):
            # Then `column op value` is false at NULL exactly as at 0: compared bare, the column's
            # index serves it and the database can start from the rollups instead of every contact.
            column = stat.sql.column
        return self.compare(column, stat.type, leaf.op, value)

    def top_percent(self, name: str, stat: Stat, percent: float) -> ColumnElement[bool]:
        """Among the top `percent`% of the workspace's contacts with a positive value; ties go in."""
        # Only positive values take part, so a counter compares bare: its index counts and ranks.
        column = stat.sql.column if isinstance(stat.sql, _Counter) else stat.sql()
        key = (str(self.session.get_bind().url), self.workspace.id, name, percent)
        known = _thresholds.get(key)
        if self.reuse_ranks and known is not None and abs(self.now - known[1]) < RANK_TTL:
            threshold, computed = known
        else:
            positive = select(column.label("v")).select_from(ROLLUPS).where(r.workspace_id == self.workspace.id,
                                                                             column > 0)
            holders = self.session.scalar(select(func.count()).select_from(positive.subquery())) or 0
            rank = min(holders, max(1, math.ceil(holders * percent / 100 - 1e-9)))
            threshold = self.session.scalar(positive.order_by(column.desc()).offset(rank - 1).limit(1)) \
                if holders else None
            computed = self.now
            _thresholds[key] = (threshold, computed)
        self.ranked_at = computed if self.ranked_at is None else min(self.ranked_at, computed)
        if threshold is None:
            return false()
        return and_(column.is_not(None), column > 0, column >= threshold)

    def stage_leaf(self, leaf: R.StageLeaf) -> ColumnElement[bool]:
        stages = [leaf.stage] if isinstance(leaf.stage, str) else list(leaf.stage)
        return and_(r.stage.is_not(None), r.stage.in_(stages))

    def list_leaf(self, leaf: R.ListLeaf) -> ColumnElement[bool]:
        list_id = self.named(ContactList, leaf.list, "list")
        lm = typing.cast(Table, ListMembership.__table__).c
        return self.in_set(select(lm.contact_id).where(lm.list_id == list_id, *self.scope.narrow(lm.contact_id)))

    def tag_leaf(self, leaf: R.TagLeaf) -> ColumnElement[bool]:
        tag_id = self.named(Tag, leaf.tag, "tag")
        ct = typing.cast(Table, ContactTag.__table__).c
        return self.in_set(select(ct.contact_id).where(ct.tag_id == tag_id, *self.scope.narrow(ct.contact_id)))

    def consent_leaf(self, leaf: R.ConsentLeaf) -> ColumnElement[bool]:
        cs = typing.cast(Table, Consent.__table__).c
        return self.in_set(select(cs.contact_id).where(cs.workspace_id == self.workspace.id, cs.channel == leaf.consent,
                                                       cs.status == leaf.status, *self.scope.narrow(cs.contact_id)))

    def segment_leaf(self, leaf: R.SegmentLeaf) -> ColumnElement[bool]:
        from kesher.segments.models import Segment

        segment = self.session.get(Segment, leaf.segment)
        if segment is None or segment.workspace_id != self.workspace.id:
            raise _Bad("no segment {id} in this workspace", ".segment", id=leaf.segment)
        if segment.id in self.inside:
            raise _Bad("segment {id} refers back to itself", ".segment", id=segment.id)
        self.inside.append(segment.id)
        try:
            return self.compile(R.parse_rule(segment.rule), f"(segment {segment.id})")
        finally:
            self.inside.pop()

    def campaigns_leaf(self, leaf: R.CampaignsLeaf) -> ColumnElement[bool]:
        """Read from the rollup's `recent_campaigns` letters (newest first): b opened+clicked, o, c, -."""
        recent, n = r.recent_campaigns, leaf.campaigns
        last = func.substr(recent, 1, n)
        letters = ("c", "b") if leaf.action == "clicked" else ("o", "b")
        acted = n - func.length(func.replace(func.replace(last, letters[0], ""), letters[1], ""))
        return and_(recent.is_not(None), func.length(recent) >= n, _compare_count(acted, leaf.op, leaf.value))

    def replenishment_leaf(self, leaf: R.ReplenishmentLeaf) -> ColumnElement[bool]:
        cs, cat = CATEGORY_STATS.c, CATEGORIES.c
        days = leaf.replenishment_due
        now = self.at(lambda moment: int(moment.timestamp()), BigInteger())
        until = self.at(lambda moment: int(moment.timestamp()) + days * 86_400, BigInteger())
        # Runs out (the last purchase's whole second plus the usage period) between now and until,
        # asked of the last purchase itself, so that the (category, last purchase) index finds it.
        usage = cat.usage_days * 86_400
        due = (select(cs.contact_id)
               .join(CATEGORIES, and_(cat.workspace_id == cs.workspace_id, cat.key == cs.category))
               .where(cs.workspace_id == self.workspace.id, cat.consumable.is_(True), cat.usage_days.is_not(None),
                      cs.last_purchase_at >= moment_at(now - usage), cs.last_purchase_at < moment_at(until - usage + 1),
                      *([cs.category == leaf.category] if leaf.category else []), *self.scope.narrow(cs.contact_id)))
        return self.in_set(due)

    def event_leaf(self, leaf: R.EventLeaf) -> ColumnElement[bool]:
        latest = LATEST.get(leaf.event)
        if latest is not None and not leaf.where and leaf.sum is None and leaf.between is None \
                and (leaf.count is None or (leaf.count.op, leaf.count.value) in (("gte", 1), ("gt", 0))):
            # "Did X (within N days)" is "the latest X is (after N days ago)": one rollup per contact
            # answers it, where the events would need every X of the window read.
            if leaf.within_days is None:
                return latest.is_not(None)
            days = leaf.within_days
            return and_(latest.is_not(None),  # two-valued: no such event is false, not NULL
                        latest >= self.at(lambda moment: moment - timedelta(days=days), UTCDateTime()))
        e = EVENTS.c
        item_filters = [f for f in leaf.where if leaf.event == "purchase" and f.prop in ITEM_PROPS]
        order_filters = [f for f in leaf.where if f not in item_filters]
        conditions = [e.workspace_id == self.workspace.id, e.type == leaf.event, e.contact_id.is_not(None),
                      *self.window(e.ts, leaf), *self.scope.narrow(e.contact_id)]
        for flt in order_filters:
            conditions.append(self.property_filter(leaf.event, flt, f".where[{leaf.where.index(flt)}]"))
        count_op, count_value = ("gte", 1) if leaf.count is None else (leaf.count.op, leaf.count.value)
        if item_filters:
            pi = ITEMS.c
            line_conditions = [pi.workspace_id == self.workspace.id, pi.contact_id.is_not(None),
                               *self.window(pi.ts, leaf), *self.scope.narrow(pi.contact_id)]
            for flt in item_filters:
                column, kind = ITEM_PROPS[flt.prop]
                where = f".where[{leaf.where.index(flt)}]"
                line_conditions.append(self.checked_compare(pi[column], kind, flt.op, flt.value, where))
            if order_filters:
                line_conditions.append(pi.event_id.in_(select(e.id).where(*conditions)))
            contact, counted = pi.contact_id, func.count(pi.event_id.distinct())
            source = select(contact).where(*line_conditions)
            summed = pi.price * pi.quantity
        else:
            contact, counted = e.contact_id, func.count()
            source = select(contact).where(*conditions)
            summed = None
        if leaf.sum is not None:
            amount = self.sum_expression(leaf, summed)
            measure, op, value = func.coalesce(func.sum(amount), 0), leaf.sum.op, leaf.sum.value
            if amount is EVENTS.c.amount_minor:  # money adds up exactly in agorot, and is compared in them
                value = self.scaled(value, 100.0, ".sum.value")
        else:
            measure, op, value = counted, count_op, count_value
        if _holds_at_zero(op, value):
            failing = source.group_by(contact).having(not_(_compare_count(measure, op, value)))
            return self.in_set(failing, negate=True)
        if leaf.sum is None and (op, value) in (("gte", 1), ("gt", 0)):
            return self.in_set(source)
        return self.in_set(source.group_by(contact).having(_compare_count(measure, op, value)))

    # Pieces ----------------------------------------------------------------------------------

    def sum_expression(self, leaf: R.EventLeaf, line_amount: Any) -> Any:
        assert leaf.sum is not None
        prop = leaf.sum.prop
        if line_amount is not None and prop in ("total", "amount"):
            return line_amount
        if MONEY_PROPS.get(leaf.event) == prop:
            return EVENTS.c.amount_minor
        if line_amount is not None and prop in ITEM_PROPS and ITEM_PROPS[prop][1] == "number":
            return ITEMS.c[ITEM_PROPS[prop][0]]
        if line_amount is not None:
            raise _Bad("cannot add up {prop!r} together with filters on purchase lines; sum total, price or quantity",
                       ".sum.prop", prop=prop)
        return json_prop(EVENTS.c.properties, prop, "number")

    def property_filter(self, event_type: str, flt: R.PropFilter, where: str) -> ColumnElement[bool]:
        e = EVENTS.c
        if flt.prop == "campaign_id":
            return self.checked_compare(e.campaign_id, "text", flt.op, _text(flt.value), where)
        if MONEY_PROPS.get(event_type) == flt.prop:
            value = flt.value if flt.op in R.PRESENCE else self.scaled(flt.value, 100.0, where + ".value")
            return self.checked_compare(e.amount_minor, "number", flt.op, value, where)
        sample = flt.value[0] if isinstance(flt.value, list) else flt.value
        if isinstance(sample, bool):
            kind = "boolean"
        elif isinstance(sample, (int, float)):
            kind = "number"
        else:
            kind = "text"
        if flt.op in R.PRESENCE:
            present = json_prop(e.properties, flt.prop, "text").is_not(None) | \
                json_prop(e.properties, flt.prop, "number").is_not(None) | \
                json_prop(e.properties, flt.prop, "bool").is_not(None)
            return present if flt.op == "is_set" else not_(present)
        column = json_prop(e.properties, flt.prop, {"boolean": "bool"}.get(kind, kind))
        return self.checked_compare(column, kind, flt.op, flt.value, where)

    def window(self, ts: Any, leaf: R.EventLeaf) -> list[ColumnElement[bool]]:
        if leaf.within_days is not None:
            days = leaf.within_days
            return [ts >= self.at(lambda moment: moment - timedelta(days=days), UTCDateTime())]
        if leaf.between is not None:
            start, end = leaf.between
            return [ts >= self.moment(start), ts < self.moment(end, end=True)]
        return []

    def moment(self, value: date | datetime, end: bool = False) -> datetime:
        """A datetime as given; a date as the start of that day (or of the next, as an end) in the workspace's zone."""
        if isinstance(value, datetime):
            return value.astimezone(UTC)
        day = value + timedelta(days=1) if end else value
        return datetime.combine(day, time(), self.zone).astimezone(UTC)

    def checked_compare(self, column: Any, kind: str, op: str, value: Any, where: str) -> ColumnElement[bool]:
        try:
            return self.compare(column, kind, op, value)
        except _Bad as exc:
            raise _Bad(exc.template, where + exc.where, **exc.params) from None

    def compare(self, column: Any, kind: str, op: str, value: Any) -> ColumnElement[bool]:
        """`column op value`, true or false and never NULL: a missing value matches only ne, not_in, is_not_set."""
        if op in NEGATIONS:
            return not_(self.compare(column, kind, NEGATIONS[op], value))
        if op not in OPS_BY_TYPE[kind]:
            raise _Bad("{op} does not apply to a {type} value", ".op", op=op, type=kind)
        present = column.is_not(None)
        if op == "is_set":
            return present
        if op == "in_month":
            zone = self.zone
            month = value or self.at(lambda moment: moment.astimezone(zone).month, Integer())
            return and_(present, month_of(column) == month)
        if op in ("within_last_days", "more_than_days_ago"):
            days, zone = float(value), self.zone
            bound: Any = (self.at(lambda moment: moment - timedelta(days=days), UTCDateTime()) if kind == "datetime"
                          else self.at(lambda moment: (moment - timedelta(days=days)).astimezone(zone).date(), Date()))
            return and_(present, column >= bound) if op == "within_last_days" else and_(present, column < bound)
        if op in ("in",):
            return and_(present, column.in_([self.typed(kind, v) for v in value]))
        typed = self.typed(kind, value)
        if op in ("contains", "starts_with"):
            pattern = str(typed).lower()
            like = (func.lower(column).contains(pattern, autoescape=True) if op == "contains"
                    else func.lower(column).startswith(pattern, autoescape=True))
            return and_(present, like)
        sql_op = {"eq": "__eq__", "lt": "__lt__", "lte": "__le__", "gt": "__gt__", "gte": "__ge__",
                  "before": "__lt__", "after": "__gt__"}[op]
        return and_(present, getattr(column, sql_op)(typed))

    def at(self, compute: Callable[[datetime], Any], type_: Any) -> Any:
        """A value that depends on the time of evaluation, as a named parameter: `compute(now)`.

        It is bound to this compilation's `now`; a statement kept for later runs gets fresh values
        from `moments(now)` at each execution.
        """
        name = f"moment_{len(self._moments)}"
        self._moments[name] = compute
        return bindparam(name, compute(self.now), type_=type_)

    def moments(self, now: datetime) -> dict[str, Any]:
        return {name: compute(now) for name, compute in self._moments.items()}

    def typed(self, kind: str, value: Any) -> Any:
        """A rule's value as the column's type; a value that cannot be one is the rule's error."""
        if kind == "text":
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise _Bad("needs text", ".value")
            return str(value)
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _Bad("needs a number", ".value")
            return value
        if kind == "boolean":
            if not isinstance(value, bool):
                raise _Bad("needs true or false", ".value")
            return value
        if kind == "date":
            try:
                parsed = parse_date(str(value), "value")
            except ValidationError:
                parsed = None
            if parsed is None:
                raise _Bad("needs a date, e.g. 2026-03-31", ".value")
            return parsed
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            raise _Bad("needs a date or a time, e.g. 2026-03-31 or 2026-03-31T09:00:00+02:00", ".value") from None
        if len(str(value)) == 10:  # a plain date: the start of that day where the workspace is
            return datetime.combine(moment.date(), time(), self.zone).astimezone(UTC)
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=self.zone).astimezone(UTC)

    def scaled(self, value: Any, scale: float, where: str = ".value") -> Any:
        def one(v: Any) -> Any:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise _Bad("needs a number", where)
            # As written, not as a binary float: 19.99 x 100 is 1999, which the agorot stored equal.
            return float(Decimal(str(v)) * Decimal(str(scale)))
        return [one(v) for v in value] if isinstance(value, list) else one(value)

    def in_set(self, contacts: Select[Any], negate: bool = False) -> ColumnElement[bool]:
        """contacts.id is (or is not) one of the ids the subquery selects.

        PostgreSQL plans NOT IN over a large subquery row by row once it outgrows work_mem, so the
        negative form there is NOT EXISTS, which it turns into an anti-join.
        """
        if not negate:
            return c.id.in_(contacts)
        if self.postgres:
            inner = contacts.subquery()
            return ~exists(select(literal(1)).select_from(inner).where(inner.c[0] == c.id))
        return c.id.not_in(contacts)

    def named(self, model: Any, ref: str | int, what: str) -> int:
        column = model.id if isinstance(ref, int) else model.name
        found = self.session.scalar(select(model.id).where(model.workspace_id == self.workspace.id, column == ref))
        if found is None:
            missing = {"list": "no list {ref!r} in this workspace", "tag": "no tag {ref!r} in this workspace"}[what]
            raise _Bad(missing, f".{what}", ref=ref)
        return int(found)

    def custom_fields(self) -> dict[str, CustomField]:
        if self._fields is None:
            self._fields = {f.key: f for f in self.session.scalars(
                select(CustomField).where(CustomField.workspace_id == self.workspace.id))}
        return self._fields


class _Bad(Exception):
    """A rule that does not compile: a text with `{placeholders}` filled from `params`, and where it went wrong."""

    def __init__(self, message: str, where: str = "", /, **params: Any) -> None:
        self.template, self.where, self.params = message, where, params
        self.message = message.format(**params) if params else message
        super().__init__(self.message)


def _text(value: Any) -> Any:
    return [str(v) for v in value] if isinstance(value, list) else (None if value is None else str(value))


def _compare_count(measure: Any, op: str, value: float) -> ColumnElement[bool]:
    return {"eq": measure == value, "ne": measure != value, "lt": measure < value, "lte": measure <= value,
            "gt": measure > value, "gte": measure >= value}[op]


def _fails_at_zero(op: str, value: Any) -> bool:
    """Whether `compare` with this positive operator is false for 0 (so for a missing value too)."""
    values = value if isinstance(value, list) else [value]
    if op not in ("eq", "lt", "lte", "gt", "gte", "in") or \
            not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return False
    return 0 not in values if op == "in" else not _holds_at_zero(op, value)


def _holds_at_zero(op: str, value: float) -> bool:
    """Whether a contact with no matching events (count 0, sum 0) satisfies `measure op value`."""
    return {"eq": 0 == value, "ne": 0 != value, "lt": 0 < value, "lte": 0 <= value, "gt": 0 > value,
            "gte": 0 >= value}[op]


def compiler(session: Session, workspace: Workspace | int, now: datetime, scope: Scope | None = None) -> Compiler:
    if isinstance(workspace, int):
        found = session.get(Workspace, workspace)
        if found is None:
            raise NotFound("no such workspace", "workspace")
        workspace = found
    return Compiler(session, workspace, now, scope or Scope())


def moved_by(session: Session, rule: Any, workspace_id: int, _seen: frozenset[int] = frozenset()) -> set[str]:
    """The event types whose arrival can change whether a contact matches `rule` ("*": any).

    "@contact" stands for changes to the contact itself (fields, lists, tags, consent). Leaves
    that only time moves (engagement, RFM, a top percentage) have none: the periodic refresh
    keeps them current.
    """
    from kesher.segments.models import Segment

    found: set[str] = set()
    for _, node in R.walk(rule):
        if isinstance(node, R.EventLeaf):
            found.add(node.event)
        elif isinstance(node, R.StatLeaf) and node.stat in STATS:
            found.update(STATS[node.stat].moved_by if node.op != "top_percent" else ())
        elif isinstance(node, R.StageLeaf):
            found.add("*")
        elif isinstance(node, R.CampaignsLeaf):
            found.update(("email_sent", "email_opened", "email_clicked"))
        elif isinstance(node, R.ReplenishmentLeaf):
            found.add("purchase")
        elif isinstance(node, (R.FieldLeaf, R.ListLeaf, R.TagLeaf, R.ConsentLeaf)):
            found.add("@contact")
        elif isinstance(node, R.SegmentLeaf) and node.segment not in _seen:
            other = session.get(Segment, node.segment)
            if other is not None and other.workspace_id == workspace_id:
                found |= moved_by(session, R.parse_rule(other.rule), workspace_id, _seen | {node.segment})
    return found


__all__ = ["BUILTIN_FIELDS", "STATS", "Compiler", "Scope", "compiler", "moved_by"]
