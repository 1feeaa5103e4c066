"""Where each contact stands: lifecycle stage, loyalty, RFM quintiles and engagement score.

All four live on the contact's rollup row and are derived from the rollups, the contact's join
date and its campaign receipts, as of a moment `now`. Every number below is a workspace setting
(`workspace.settings["lifecycle"]`, see `Thresholds`); the defaults are in brackets.

Stages, first match wins (lost > dormant > new > loyal > at_risk > active):

- lost: no open, click, purchase or site action in `lost_days` [365], and joined before that;
- dormant: idle on email, or idle in the shop. Idle on email: none of the last
  `dormant_no_click_campaigns` [3] campaigns clicked (it takes that many campaigns received to
  tell), no click in `dormant_no_click_days` [not used] when set, and no open in
  `dormant_no_open_days` [60]. Idle in the shop: purchased or visited the site once, but neither
  in `dormant_no_purchase_or_visit_days` [90]; a subscriber who never bought is not idle there;
- new: joined within `new_days` [30];
- loyal: at least `loyal_purchases` [3] purchases;
- at_risk: sent a campaign once and no open in `at_risk_no_open_days` [30]; or two purchases or
  more, the last longer ago than `at_risk_interval_factor` [1.5] x their average interval;
- active: everyone else.

"No X in N days" counts from the join date when X never happened, so nobody is judged on time
before they joined. Only campaigns (receipts with a send time) count as email received.

Loyalty: strong with `loyalty_strong_purchases` [6] purchases and one within
`loyalty_strong_days` [60]; medium with [3] and one within [120]; weak with [1]; else none.

RFM, over the workspace's purchasers only (others get NULL): each of recency (the latest
purchase ranks highest), frequency (purchases) and monetary (revenue less refunds) is
1 + floor(5 x (rank - 1) / purchasers), rank ascending; equal values share a quintile, where
NTILE(5) would split them between two.

Engagement, 0-100: a campaign sent in the last `engagement_days` [90] weighs d = 1 - age / window
(1 today, 0 at the window's edge). Email part = sum(d x (open_w x opened + click_w x clicked)) /
sum(d); site part = visit_w x d(last visit). Score = 100 x (email + site) / (open_w + click_w +
visit_w), leaving open_w + click_w out when no campaign was sent in the window, so a contact we
did not email is scored on visits alone. Weights [1, 2, 1].
"""

from __future__ import annotations

import logging
import typing
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticError
from sqlalchemy import (BigInteger, Float, Select, String, Table, and_, any_, bindparam, case, cast, extract, func,
                        literal, null, or_, select, update)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement, FunctionElement, Subquery

from kesher.accounts.models import Workspace
from kesher.contacts.models import Contact
from kesher.db import Database, utcnow
from kesher.db.base import UTCDateTime
from kesher.db.upsert import (dialect_insert, generic_plans, in_json_array, insert_new, one_of, same_workspace,
                               value_array)
from kesher.errors import NotFound, ValidationError
from kesher.events.models import CampaignReceipt, ContactRollup, Event
from kesher.events.rollups import CONTACT_KINDS, RECENT_CAMPAIGNS, ZERO

log = logging.getLogger("kesher.lifecycle")

CONTACTS = typing.cast(Table, Contact.__table__)
CONTACT_ROLLUPS = typing.cast(Table, ContactRollup.__table__)
RECEIPTS = typing.cast(Table, CampaignReceipt.__table__)
CHUNK = 50_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Which = Callable[[Any], ColumnElement[bool]]  # picks contacts by their id column

Days = Annotated[int, Field(ge=1, le=3650)]
Count = Annotated[int, Field(ge=1, le=100_000)]
Weight = Annotated[float, Field(gt=0, le=100)]


class Thresholds(BaseModel):
    """The lifecycle settings of a workspace; see the module's docstring for what each one does."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    new_days: Days = 30
    loyal_purchases: Count = 3
    at_risk_no_open_days: Days = 30
    at_risk_interval_factor: Annotated[float, Field(ge=1, le=100)] = 1.5
    dormant_no_open_days: Days = 60
    dormant_no_click_campaigns: Annotated[int, Field(ge=1, le=100)] | None = 3
    dormant_no_click_days: Days | None = None
    dormant_no_purchase_or_visit_days: Days = 90
    lost_days: Days = 365
    loyalty_strong_purchases: Count = 6
    loyalty_strong_days: Days = 60
    loyalty_medium_purchases: Count = 3
    loyalty_medium_days: Days = 120
    loyalty_weak_purchases: Count = 1
    engagement_days: Days = 90
    engagement_open_weight: Weight = 1.0
    engagement_click_weight: Weight = 2.0
    engagement_visit_weight: Weight = 1.0


# The two ways marketers commonly define dormant; pass one to `set_thresholds`.
DORMANT_PRESETS: dict[str, dict[str, Any]] = {
    "strict": {"dormant_no_open_days": 60, "dormant_no_click_campaigns": 3, "dormant_no_click_days": None,
               "dormant_no_purchase_or_visit_days": 90},
    "lenient": {"dormant_no_open_days": 60, "dormant_no_click_campaigns": None, "dormant_no_click_days": 182,
                "dormant_no_purchase_or_visit_days": 365},
}


def parse_thresholds(data: Any) -> Thresholds:
    """Thresholds from stored or submitted settings; a bad value names its field: `lifecycle.<name>`."""
    try:
        t = Thresholds.model_validate(data)
    except PydanticError as exc:
        err = exc.errors()[0]
        raise ValidationError("is not valid: {detail}", ".".join(["lifecycle", *(str(p) for p in err["loc"][:1])]),
                              detail=err["msg"]) from None
    rules = (
        (t.at_risk_no_open_days < t.dormant_no_open_days, "at_risk_no_open_days",
         "must be fewer than dormant_no_open_days: at risk comes before dormant"),
        (t.dormant_no_open_days < t.lost_days, "dormant_no_open_days", "must be fewer than lost_days"),
        (t.dormant_no_purchase_or_visit_days <= t.lost_days, "dormant_no_purchase_or_visit_days",
         "must not be more than lost_days"),
        (t.dormant_no_click_campaigns is not None or t.dormant_no_click_days is not None, "dormant_no_click_campaigns",
         "set it or dormant_no_click_days: dormant on email means no longer clicking"),
        (t.loyalty_weak_purchases <= t.loyalty_medium_purchases <= t.loyalty_strong_purchases,
         "loyalty_medium_purchases", "must lie between loyalty_weak_purchases and loyalty_strong_purchases"),
        (t.loyalty_strong_days <= t.loyalty_medium_days, "loyalty_strong_days",
         "must not be more than loyalty_medium_days"),
    )
    for ok, field, message in rules:
        if not ok:
            raise ValidationError(message, f"lifecycle.{field}")
    return t


def get_thresholds(workspace: Workspace) -> Thresholds:
    return parse_thresholds((workspace.settings or {}).get("lifecycle", {}))


def set_thresholds(session: Session, workspace: Workspace, data: dict[str, Any]) -> Thresholds:
    """Change some thresholds; the others keep their values. Stages move at the next refresh.

    Only values ever set are stored, so the others follow the defaults of future versions.
    """
    if not isinstance(data, dict):
        raise ValidationError("must be an object of thresholds", "lifecycle")
    settings = workspace.settings or {}
    thresholds = parse_thresholds({**settings.get("lifecycle", {}), **data})
    workspace.settings = {**settings, "lifecycle": thresholds.model_dump(exclude_unset=True)}
    session.flush()
    return thresholds


# One contact, in Python ------------------------------------------------------------------------


@dataclass(frozen=True)
class ContactFacts:
    """What the stage of one contact depends on; `campaigns` are (sent_at, clicked), newest first."""

    created_at: datetime
    last_open_at: datetime | None = None
    last_click_at: datetime | None = None
    last_purchase_at: datetime | None = None
    first_purchase_at: datetime | None = None
    last_visit_at: datetime | None = None
    purchase_count: int = 0
    campaigns: tuple[tuple[datetime, bool], ...] = ()


def _seconds(at: datetime) -> int:
    return (at - EPOCH) // timedelta(seconds=1)


def _overdue(purchases: int, last: datetime | None, first: datetime | None, now: datetime, factor: float) -> bool:
    """The last purchase is longer ago than `factor` times the average interval between purchases.

    Multiplied out in whole seconds, exactly as the SQL does, so the two agree to the second.
    """
    if purchases < 2 or last is None or first is None:
        return False
    elapsed, span = _seconds(now) - _seconds(last), _seconds(last) - _seconds(first)
    return elapsed * (purchases - 1) > factor * span


def stage_of(f: ContactFacts, t: Thresholds, now: datetime) -> str:
    """The stage of one contact; `stage_sql` computes the same for many."""

    def cutoff(days: int) -> datetime:
        return now - timedelta(days=days)

    def idle(at: datetime | None, days: int) -> bool:
        return (at or f.created_at) <= cutoff(days)

    def none_since(at: datetime | None, days: int) -> bool:
        return at is None or at <= cutoff(days)

    activity = (f.last_open_at, f.last_click_at, f.last_purchase_at, f.last_visit_at)
    if f.created_at <= cutoff(t.lost_days) and all(none_since(at, t.lost_days) for at in activity):
        return "lost"
    n = t.dormant_no_click_campaigns
    email_idle = (bool(f.campaigns) and idle(f.last_open_at, t.dormant_no_open_days)
                  and (n is None or (len(f.campaigns) >= n and not any(clicked for _, clicked in f.campaigns[:n])))
                  and (t.dormant_no_click_days is None or idle(f.last_click_at, t.dormant_no_click_days)))
    shop_days = t.dormant_no_purchase_or_visit_days
    shop_idle = ((f.last_purchase_at or f.last_visit_at) is not None
                 and none_since(f.last_purchase_at, shop_days) and none_since(f.last_visit_at, shop_days))
    if email_idle or shop_idle:
        return "dormant"
    if f.created_at > cutoff(t.new_days):
        return "new"
    if f.purchase_count >= t.loyal_purchases:
        return "loyal"
    if (f.campaigns and idle(f.last_open_at, t.at_risk_no_open_days)) or _overdue(
            f.purchase_count, f.last_purchase_at, f.first_purchase_at, now, t.at_risk_interval_factor):
        return "at_risk"
    return "active"


def loyalty_of(f: ContactFacts, t: Thresholds, now: datetime) -> str | None:
    def bought_within(days: int) -> bool:
        return f.last_purchase_at is not None and f.last_purchase_at > now - timedelta(days=days)

    if f.purchase_count >= t.loyalty_strong_purchases and bought_within(t.loyalty_strong_days):
        return "strong"
    if f.purchase_count >= t.loyalty_medium_purchases and bought_within(t.loyalty_medium_days):
        return "medium"
    return "weak" if f.purchase_count >= t.loyalty_weak_purchases else None


def contact_facts(session: Session, contact_id: int, t: Thresholds) -> ContactFacts:
    c, r, rc = CONTACTS.c, CONTACT_ROLLUPS.c, RECEIPTS.c
    created = session.scalar(select(c.created_at).where(c.id == contact_id))
    if created is None:
        raise NotFound("no contact {id}", "contact_id", id=contact_id)
    columns = ("last_open_at", "last_click_at", "last_purchase_at", "first_purchase_at", "last_visit_at",
               "purchase_count")
    rollup = session.execute(select(*(r[name] for name in columns)).where(r.contact_id == contact_id)).first()
    campaigns = session.execute(
        select(rc.sent_at, rc.first_click_at.is_not(None))
        .where(rc.contact_id == contact_id, rc.sent_at.is_not(None))
        .order_by(rc.sent_at.desc(), rc.campaign_id.desc()).limit(t.dormant_no_click_campaigns or 1)).all()
    return ContactFacts(created, **(rollup._asdict() if rollup else {}),
                        campaigns=tuple((sent, bool(clicked)) for sent, clicked in campaigns))


# Many contacts, in SQL ------------------------------------------------------------------------


class epoch_seconds(FunctionElement[int]):  # noqa: N801 - named like the SQL functions it stands beside
    """Whole seconds since 1970 of a timestamp, on SQLite and PostgreSQL alike."""

    type = BigInteger()
    inherit_cache = True


@compiles(epoch_seconds, "sqlite")
def _epoch_sqlite(element: epoch_seconds, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(cast(func.strftime("%s", *element.clauses), BigInteger), **kw)


@compiles(epoch_seconds, "postgresql")
def _epoch_postgresql(element: epoch_seconds, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(cast(func.floor(extract("epoch", *element.clauses)), BigInteger), **kw)


def _unclicked_of_last(n: int) -> ColumnElement[int]:
    """How many of the contact's last `n` campaigns went unclicked; `n` only if it received `n` or more."""
    rc = RECEIPTS.c
    last = (select(rc.first_click_at).where(rc.contact_id == CONTACTS.c.id, rc.sent_at.is_not(None))
            .order_by(rc.sent_at.desc(), rc.campaign_id.desc()).limit(n).correlate(CONTACTS).subquery())
    return select(func.count()).select_from(last).where(last.c.first_click_at.is_(None)).scalar_subquery()


def _none_clicked_of_last(n: int, recent: Any) -> ColumnElement[bool]:
    """The contact received `n` campaigns or more and clicked none of the last `n`; read from the
    rollup's letters (c clicked, b opened and clicked), or the receipts when it keeps fewer than `n`."""
    if n > RECENT_CAMPAIGNS:
        return _unclicked_of_last(n) == n
    unclicked = func.replace(func.replace(func.substr(recent, 1, n), "c", ""), "b", "")
    return and_(func.length(recent) >= n, func.length(unclicked) == n)


def _cutoff(now: datetime | None, days: int) -> Any:
    """`days` before `now`; with no `now`, the parameter `cutoff_<days>` that `moment_params` fills."""
    return now - timedelta(days=days) if now is not None else bindparam(f"cutoff_{days}", type_=UTCDateTime())


def _now_seconds(now: datetime | None) -> Any:
    return literal(_seconds(now), BigInteger) if now is not None else bindparam("now_seconds", type_=BigInteger())


def moment_params(t: Thresholds, now: datetime) -> dict[str, Any]:
    """The parameters a statement built with no `now` (`_changes`) takes for the moment `now`."""
    days = {value for name, value in t if name.endswith("_days") and value is not None}
    return {"now_seconds": _seconds(now), **{f"cutoff_{d}": now - timedelta(days=d) for d in days}}


def stage_sql(t: Thresholds, now: datetime | None) -> ColumnElement[str]:
    """The stage of each row of `contacts LEFT JOIN contact_rollups`, as one CASE; see `stage_of`.

    With `now` None, the moment is left to parameters (see `moment_params`).
    """
    c, r = CONTACTS.c, CONTACT_ROLLUPS.c

    def cutoff(days: int) -> Any:
        return _cutoff(now, days)

    def idle(column: Any, days: int) -> ColumnElement[bool]:
        return func.coalesce(column, c.created_at) <= cutoff(days)

    def none_since(column: Any, days: int) -> ColumnElement[bool]:
        return or_(column.is_(None), column <= cutoff(days))

    purchases = func.coalesce(r.purchase_count, 0)
    # The rollup's `recent_campaigns` letters (newest first; NULL before the first campaign) are kept
    # from the receipts whenever they change: read instead of the receipts, for each contact.
    recent = r.recent_campaigns
    emailed = recent.is_not(None)
    lost = and_(c.created_at <= cutoff(t.lost_days),
                *(none_since(column, t.lost_days) for column in
                  (r.last_open_at, r.last_click_at, r.last_purchase_at, r.last_visit_at)))
    n = t.dormant_no_click_campaigns
    email_idle = and_(
        emailed if n is None else _none_clicked_of_last(n, recent),
        idle(r.last_open_at, t.dormant_no_open_days),
        *([] if t.dormant_no_click_days is None else [idle(r.last_click_at, t.dormant_no_click_days)]))
    shop_days = t.dormant_no_purchase_or_visit_days
    shop_idle = and_(or_(r.last_purchase_at.is_not(None), r.last_visit_at.is_not(None)),
                     none_since(r.last_purchase_at, shop_days), none_since(r.last_visit_at, shop_days))
    last, first = epoch_seconds(r.last_purchase_at), epoch_seconds(r.first_purchase_at)
    overdue = and_(purchases >= 2, (_now_seconds(now) - last) * (purchases - 1)
                   > literal(t.at_risk_interval_factor, Float) * (last - first))
    at_risk = or_(and_(emailed, idle(r.last_open_at, t.at_risk_no_open_days)), overdue)
    return case((lost, "lost"), (or_(email_idle, shop_idle), "dormant"), (c.created_at > cutoff(t.new_days), "new"),
                (purchases >= t.loyal_purchases, "loyal"), (at_risk, "at_risk"), else_="active")


def loyalty_sql(t: Thresholds, now: datetime | None) -> ColumnElement[str | None]:
    """The loyalty of each contact_rollups row (NULL where there is none); see `loyalty_of`."""
    r = CONTACT_ROLLUPS.c

    def bought_within(days: int) -> ColumnElement[bool]:
        return r.last_purchase_at > _cutoff(now, days)

    return case((and_(r.purchase_count >= t.loyalty_strong_purchases, bought_within(t.loyalty_strong_days)), "strong"),
                (and_(r.purchase_count >= t.loyalty_medium_purchases, bought_within(t.loyalty_medium_days)), "medium"),
                (r.purchase_count >= t.loyalty_weak_purchases, "weak"), else_=null())


def engagement_scores(t: Thresholds, now: datetime, workspace_id: int, which: Which) -> Subquery:
    """(contact_id, score) of some contact_rollups rows: their receipts in the window, grouped once."""
    r, rc = CONTACT_ROLLUPS.alias("scored"), RECEIPTS.c
    window = float(t.engagement_days * 86_400)
    start = now - timedelta(days=t.engagement_days)

    def weight(column: Any) -> ColumnElement[float]:  # 1 now, 0 at the start of the window
        age = literal(_seconds(now), BigInteger) - epoch_seconds(column)
        return case((column >= now, 1.0), else_=1.0 - cast(age, Float) / window)

    w_open, w_click, w_visit = t.engagement_open_weight, t.engagement_click_weight, t.engagement_visit_weight
    visit = case((r.c.last_visit_at > start, weight(r.c.last_visit_at)), else_=0.0)
    actions = (case((rc.first_open_at.is_not(None), w_open), else_=0.0)
               + case((rc.first_click_at.is_not(None), w_click), else_=0.0))
    email = func.coalesce(func.sum(weight(rc.sent_at) * actions) / func.sum(weight(rc.sent_at)), 0.0)
    scale = case((func.count(rc.sent_at) > 0, w_open + w_click), else_=0.0) + w_visit
    return (select(r.c.contact_id, (100.0 * (email + w_visit * visit) / scale).label("score"))
            .select_from(r.outerjoin(RECEIPTS, and_(rc.contact_id == r.c.contact_id, rc.sent_at > start)))
            .where(r.c.workspace_id == workspace_id, which(r.c.contact_id))
            .group_by(r.c.contact_id, r.c.last_visit_at).subquery())


# Refreshing ------------------------------------------------------------------------------------

def _between(after: int, upto: int) -> Which:
    return lambda column: and_(column > after, column <= upto)


def _ids(session: Session, ids: list[int]) -> Which:
    return lambda column: one_of(session, column, ids)


def id_ranges(session: Session, workspace_id: int, size: int = CHUNK) -> list[tuple[int, int]]:
    """The workspace's contact ids as keyset chunks (after, upto] of `size` ids each."""
    c = CONTACTS.c
    ranges: list[tuple[int, int]] = []
    after = 0
    while True:
        upto = session.scalar(select(c.id).where(c.workspace_id == workspace_id, c.id > after)
                              .order_by(c.id).offset(size - 1).limit(1))
        if upto is None:
            upto = session.scalar(select(func.max(c.id)).where(c.workspace_id == workspace_id, c.id > after))
            return ranges if upto is None else [*ranges, (after, upto)]
        ranges.append((after, upto))
        after = upto


def _changes(t: Thresholds, now: datetime | None, *where: Any) -> Select[Any]:
    """The contacts (`where`) whose stage or loyalty differs from the stored one: id, whether a
    rollup row is stored, the stored and the new stage and loyalty."""
    c, r = CONTACTS.c, CONTACT_ROLLUPS.c
    rows = (select(c.id, r.contact_id.label("stored"), r.stage, stage_sql(t, now).label("new_stage"), r.loyalty,
                   loyalty_sql(t, now).label("new_loyalty"))
            .select_from(CONTACTS.outerjoin(CONTACT_ROLLUPS, r.contact_id == c.id)).where(*where).subquery())
    return select(rows).where(or_(rows.c.stage.is_distinct_from(rows.c.new_stage),
                                  rows.c.loyalty.is_distinct_from(rows.c.new_loyalty)))


@lru_cache(maxsize=64)
def _changes_of_ids(dialect: str, t: Thresholds) -> Select[Any]:
    """`_changes` of the contacts named by the parameter `ids`, built once per database and thresholds.

    Ingest refreshes the contacts of every call this way. Building the CASE and SQLAlchemy's
    cache key of it anew each time had cost more than running it: half of the lifecycle step.
    The workspace and the moment are parameters too (`workspace_id`, `moment_params`). It is
    planned with the ids known: PostgreSQL's generic plan of it reads every contact of the
    workspace and compares each with the whole array (0.8 s for 2,000 ids among 30,000 contacts,
    against 7 ms), so it must not run under `generic_plans`.
    """
    c = CONTACTS.c
    workspace = bindparam("workspace_id", type_=BigInteger())
    if dialect == "sqlite":  # as `same_workspace` and `one_of` have it
        mine, ids = c.workspace_id + 0 == workspace, in_json_array(c.id, bindparam("ids", type_=String()))
    else:
        mine, ids = c.workspace_id == workspace, c.id == any_(bindparam("ids", type_=ARRAY(BigInteger())))
    return _changes(t, None, mine, ids)


def _refresh_chunk(session: Session, workspace_id: int, t: Thresholds, now: datetime, which: Which | list[int]) -> int:
    """Stage and loyalty of some contacts; returns how many changed stage.

    One SELECT reads the contacts whose stage or loyalty differs from the stored one; they are then
    written in one UPDATE per kind of change, each only where the stored stage is still the one
    read, so a concurrent refresh never records a move that did not happen.
    """
    r = CONTACT_ROLLUPS.c
    if isinstance(which, list):
        dialect = session.get_bind().dialect.name
        params = {"ids": value_array(dialect, which), "workspace_id": workspace_id, **moment_params(t, now)}
        changed = session.execute(_changes_of_ids(dialect, t), params).all()
    else:
        c = CONTACTS.c
        changed = session.execute(_changes(t, now, same_workspace(session, c.workspace_id, workspace_id),
                                           which(c.id))).all()
    groups: dict[tuple[str | None, str, str | None], list[int]] = defaultdict(list)
    for row in changed:
        groups[(row.stage, row.new_stage, row.new_loyalty)].append(row.id)
    moves: list[tuple[int, str | None, str]] = []
    # The writes check foreign keys of rollup rows this transaction made: one generic plan for those checks.
    with generic_plans(session):
        _create_rollups(session, workspace_id, [row.id for row in changed if row.stored is None])
        for (old, new, loyalty), ids in groups.items():
            values = {"loyalty": loyalty} if old == new else {"loyalty": loyalty, "stage": new, "stage_changed_at": now}
            # The stage is compared through coalesce, which no index holds, so the rows are found by
            # their ids. On `stage IS NULL` PostgreSQL took the stage index, estimating one row, and
            # every contact's first stage leaves a dead entry there under NULL until a vacuum; on a
            # stage it would read every contact at that stage to find these few.
            written = session.scalars(update(CONTACT_ROLLUPS)
                                      .where(one_of(session, r.contact_id, ids), func.coalesce(r.stage, "") == (old or ""))
                                      .values(values).returning(r.contact_id)).all()
            if old != new:
                moves += [(cid, old, new) for cid in written]
        # Written straight, not through ingest: a stage change is not something the contact did, and
        # the rollups leave it out (rollups.SYSTEM_TYPES).
        insert_new(session, typing.cast(Table, Event.__table__), [
            {"workspace_id": workspace_id, "contact_id": cid, "type": "stage_changed", "ts": now, "received_at": now,
             "source": "lifecycle", "properties": {"from": old, "to": new}} for cid, old, new in sorted(moves)])
    return len(moves)


def _create_rollups(session: Session, workspace_id: int, ids: list[int]) -> None:
    """Blank rollup rows (no stage yet) for contacts that have none: they never had an event."""
    if not ids:
        return
    c = CONTACTS.c
    zero = {column: literal(ZERO[kind]) for column, kind in CONTACT_KINDS.items() if kind in ("count", "sum")}
    rows = select(c.id, c.workspace_id, *zero.values()).where(same_workspace(session, c.workspace_id, workspace_id),
                                                               _ids(session, ids)(c.id))
    session.execute(dialect_insert(session, CONTACT_ROLLUPS)
                    .from_select(["contact_id", "workspace_id", *zero], rows)
                    .on_conflict_do_nothing(index_elements=["contact_id"]))


def refresh(session: Session, workspace: Workspace, contact_ids: Iterable[int] | None = None,
            now: datetime | None = None, *, chunk_size: int = CHUNK) -> int:
    """Recompute stage and loyalty of the given contacts, or of all the workspace's, in chunks.

    Each change of stage records a `stage_changed` event ({from, to}) and its time. Returns the
    number of contacts that changed stage.
    """
    now = now or utcnow()
    t = get_thresholds(workspace)
    if contact_ids is None:
        return sum(_refresh_chunk(session, workspace.id, t, now, _between(after, upto))
                   for after, upto in id_ranges(session, workspace.id, chunk_size))
    ids = sorted(set(contact_ids))
    parts = (ids[i:i + chunk_size] for i in range(0, len(ids), chunk_size))
    return sum(_refresh_chunk(session, workspace.id, t, now, part) for part in parts)


def _update_engagement(session: Session, workspace_id: int, t: Thresholds, now: datetime, which: Which) -> None:
    r = CONTACT_ROLLUPS.c
    scores = engagement_scores(t, now, workspace_id, which)
    session.execute(update(CONTACT_ROLLUPS)
                    .where(r.contact_id == scores.c.contact_id, r.engagement_score.is_distinct_from(scores.c.score))
                    .values(engagement_score=scores.c.score))


def update_engagement(session: Session, workspace: Workspace, now: datetime | None = None, *,
                      chunk_size: int = CHUNK) -> None:
    """The engagement score of every contact of the workspace that has a rollup row."""
    now = now or utcnow()
    t = get_thresholds(workspace)
    for after, upto in id_ranges(session, workspace.id, chunk_size):
        _update_engagement(session, workspace.id, t, now, _between(after, upto))


def update_rfm(session: Session, workspace_id: int) -> None:
    """RFM quintiles of the workspace's purchasers, with window functions; NULL for everyone else."""
    r = CONTACT_ROLLUPS.c
    buyers = CONTACT_ROLLUPS.alias("buyers")
    purchasers = func.count().over()

    def quintile(value: Any) -> ColumnElement[int]:
        return 1 + (func.rank().over(order_by=value) - 1) * 5 // purchasers

    ranked = (select(buyers.c.contact_id, quintile(buyers.c.last_purchase_at).label("recency"),
                     quintile(buyers.c.purchase_count).label("frequency"),
                     quintile(buyers.c.revenue_minor - buyers.c.refunds_minor).label("monetary"))
              .where(buyers.c.workspace_id == workspace_id, buyers.c.purchase_count > 0).subquery())
    session.execute(update(CONTACT_ROLLUPS)
                    .where(r.contact_id == ranked.c.contact_id,
                           or_(r.rfm_recency.is_distinct_from(ranked.c.recency),
                               r.rfm_frequency.is_distinct_from(ranked.c.frequency),
                               r.rfm_monetary.is_distinct_from(ranked.c.monetary)))
                    .values(rfm_recency=ranked.c.recency, rfm_frequency=ranked.c.frequency,
                            rfm_monetary=ranked.c.monetary))
    session.execute(update(CONTACT_ROLLUPS)
                    .where(r.workspace_id == workspace_id, r.purchase_count == 0,
                           or_(r.rfm_recency.is_not(None), r.rfm_frequency.is_not(None), r.rfm_monetary.is_not(None)))
                    .values(rfm_recency=None, rfm_frequency=None, rfm_monetary=None))


def refresh_all(db: Database, now: datetime | None = None, *, chunk_size: int = CHUNK,
                workspace_id: int | None = None) -> int:
    """The periodic job: stage, loyalty, engagement and RFM of every contact of every workspace (or of one).

    One transaction per chunk of contacts, so ingest never waits long for the job. Returns the
    number of contacts that changed stage.
    """
    now = now or utcnow()
    with db.session() as session:
        chosen = select(Workspace).order_by(Workspace.id)
        if workspace_id is not None:
            chosen = chosen.where(Workspace.id == workspace_id)
        workspaces = list(session.scalars(chosen))
    moved = 0
    for workspace in workspaces:
        try:
            t = get_thresholds(workspace)
        except ValidationError:
            log.exception("workspace %s: lifecycle settings are invalid; its stages are left as they are", workspace.id)
            continue
        with db.session() as session:
            ranges = id_ranges(session, workspace.id, chunk_size)
        for after, upto in ranges:
            with db.session() as session:
                moved += _refresh_chunk(session, workspace.id, t, now, _between(after, upto))
                _update_engagement(session, workspace.id, t, now, _between(after, upto))
        with db.session() as session:
            update_rfm(session, workspace.id)
    return moved
