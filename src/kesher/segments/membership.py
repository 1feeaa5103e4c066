"""Who is in each segment, kept current: in real time as events arrive, and by a periodic refresh.

Real time: `on_change` re-evaluates, for the contacts an ingest batch touched, only the segments
whose rule those event types can change, in one query, and writes the difference. The periodic
refresh (`refresh_all`, hourly by default, or `refresh` on demand) re-evaluates whole segments,
which is what moves time-based conditions ("no open in 60 days") and top percentages.

Every entry and exit is stored as a `segment_entered` / `segment_exited` event; membership rows
are inserted with ON CONFLICT DO NOTHING and deleted with RETURNING, so two processes that
evaluate the same contact at once record each move once.
"""

from __future__ import annotations

import functools
import logging
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (BigInteger, Table, Text, and_, bindparam, case, cast, delete, except_, exists, func, insert,
                        literal, or_, select, union_all, update)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from kesher.accounts.models import Workspace
from kesher.db import Database, utcnow
from kesher.db.base import UTCDateTime
from kesher.db.upsert import dialect_insert, insert_new, one_of, refresh_statistics
from kesher.errors import ValidationError
from kesher.events.models import CategoryStat, Event, PurchaseItem
from kesher.segments import rules as R
from kesher.segments.compiler import CONTACTS, RANK_TTL, ROLLUPS, SCOPE_IDS, Scope, compiler, moved_by
from kesher.segments.models import Segment, SegmentMember

log = logging.getLogger("kesher.segments")

MEMBERS = typing.cast(Table, SegmentMember.__table__)
# The tables segment plans read, with whether a sample of each index will do (the big event tables).
STATISTICS = [(typing.cast(Table, t), sampled) for t, sampled in (
    (CONTACTS, False), (ROLLUPS, False), (CategoryStat.__table__, False), (SegmentMember.__table__, False),
    (Event.__table__, True), (PurchaseItem.__table__, True))]
EVENTS = typing.cast(Table, Event.__table__)
BATCH = 10_000


# Asking ---------------------------------------------------------------------------------------


def matching(session: Session, workspace: Workspace, rule: Any, contact_ids: Iterable[int],
             now: datetime | None = None) -> set[int]:
    """Which of these contacts match the rule now."""
    ids = sorted(set(contact_ids))
    if not ids:
        return set()
    comp = compiler(session, workspace, now or utcnow(), Scope.ids(session, ids))
    return set(session.scalars(comp.members(R.parse_rule(rule))))


def count(session: Session, workspace: Workspace, rule: Any, now: datetime | None = None) -> int:
    """How many of the workspace's contacts match the rule now."""
    members = compiler(session, workspace, now or utcnow()).members(R.parse_rule(rule)).subquery()
    return session.scalar(select(func.count()).select_from(members)) or 0


def sample(session: Session, workspace: Workspace, rule: Any, limit: int = 20, now: datetime | None = None) -> list[int]:
    """Ids of up to `limit` matching contacts, newest first."""
    members = compiler(session, workspace, now or utcnow()).members(R.parse_rule(rule))
    return list(session.scalars(members.order_by(CONTACTS.c.id.desc()).limit(limit)))


# Recording moves -------------------------------------------------------------------------------


@dataclass
class Moves:
    entered: int = 0
    exited: int = 0

    def __iadd__(self, other: Moves) -> Moves:
        self.entered += other.entered
        self.exited += other.exited
        return self


def _move_events(segment: Segment | SegmentRef, kind: str, contact_ids: Iterable[int], now: datetime) -> list[dict[str, Any]]:
    props = {"segment_id": str(segment.id), "segment": segment.name}
    return [{"workspace_id": segment.workspace_id, "contact_id": cid, "type": f"segment_{kind}", "ts": now,
             "received_at": now, "source": "segments", "properties": props} for cid in contact_ids]


def _enter(session: Session, segment: Segment | SegmentRef, contact_ids: list[int], now: datetime) -> list[int]:
    """Make these contacts members, with their events; returns those that were not members."""
    pairs = [(segment.id, cid) for cid in contact_ids]
    entered, _ = _record(session, segment.workspace_id, {segment.id: segment}, pairs, [], now)
    return sorted(entered.get(segment.id, ()))


def _exit(session: Session, segment: Segment | SegmentRef, contact_ids: list[int], now: datetime) -> list[int]:
    """Take these contacts out, with their events; returns those that were members."""
    pairs = [(segment.id, cid) for cid in contact_ids]
    _, exited = _record(session, segment.workspace_id, {segment.id: segment}, [], pairs, now)
    return sorted(exited.get(segment.id, ()))


SEGMENTS = typing.cast(Table, Segment.__table__)


def _recount(session: Session, segment: Segment | SegmentRef) -> None:
    members = select(func.count()).select_from(MEMBERS).where(MEMBERS.c.segment_id == segment.id).scalar_subquery()
    session.execute(update(SEGMENTS).where(SEGMENTS.c.id == segment.id).values(member_count=members)
                    .execution_options(synchronize_session=False))


def _add_to_counts(session: Session, deltas: dict[int, int]) -> None:
    """member_count += delta for each segment, in one statement sent once."""
    if deltas:
        stmt = (update(SEGMENTS).where(SEGMENTS.c.id == bindparam("segment"))
                .values(member_count=SEGMENTS.c.member_count + bindparam("delta")))
        session.connection().execute(stmt, [{"segment": sid, "delta": d} for sid, d in sorted(deltas.items())])


# Real time -------------------------------------------------------------------------------------


def dynamic_segments(session: Session, workspace_id: int) -> list[Segment]:
    return list(session.scalars(select(Segment).where(Segment.workspace_id == workspace_id).order_by(Segment.id)))


@dataclass(frozen=True)
class SegmentRef:
    """What recording a move needs of a segment; plain data, so plans can outlive a session."""

    id: int
    workspace_id: int
    name: str


@dataclass(frozen=True)
class _Known:
    ref: SegmentRef
    rule: Any
    moved_by: frozenset[str]


# The real-time path compiles a workspace's rules once, not once an event: plans are keyed by the
# workspace's segment versions and the segments asked; contacts and times are parameters.
_plans: dict[tuple[Any, ...], Any] = {}
_known: dict[tuple[Any, ...], list[_Known]] = {}
PLAN_CACHE = 512


def _segments_now(session: Session, workspace: Workspace) -> tuple[tuple[Any, ...], list[_Known]]:
    """The workspace's rules as this process compiled them, unless its segments changed since."""
    if workspace not in session:  # loaded elsewhere, its version may be old: this session's own row
        workspace = session.get_one(Workspace, workspace.id)
    key = (str(session.get_bind().url), workspace.id, workspace.segments_stamp)
    if key not in _known:
        known = []
        for segment in dynamic_segments(session, workspace.id):
            try:
                rule = R.parse_rule(segment.rule)
                kinds = frozenset(moved_by(session, rule, workspace.id))
            except Exception:  # a rule broken by a deleted list or field must not stop ingest
                log.exception("segment %s: rule cannot be evaluated; left as it is", segment.id)
                continue
            known.append(_Known(SegmentRef(segment.id, segment.workspace_id, segment.name), rule, kinds))
        if len(_known) > PLAN_CACHE:
            _known.clear()
        _known[key] = known
    return key, _known[key]


def _plan(session: Session, workspace: Workspace, key: tuple[Any, ...], asked: list[_Known], now: datetime) -> Any:
    """One SELECT for the contacts in SCOPE_IDS: the contact id, then per asked segment whether the
    contact matches now and whether it is stored as a member; with the compiler that made it (for
    the time-dependent parameters) and the segments it could compile."""
    plan_key = (key, tuple(k.ref.id for k in asked))
    kept = _plans.get(plan_key)
    # A top-percent threshold is compiled in as a value: the plan lasts only as long as that may be reused.
    if kept is None or (kept[1].ranked_at is not None and abs(now - kept[1].ranked_at) >= RANK_TTL):
        comp = compiler(session, workspace, now, Scope.parameter(session))
        comp.reuse_ranks = True
        compiled = []
        for k in asked:
            try:
                compiled.append((k, comp.compile(k.rule)))
            except ValidationError:  # e.g. a list it names was renamed: skipped, its members kept, never ingest
                log.exception("segment %s: rule cannot be evaluated; its members are left as they are", k.ref.id)
        c, r, m = CONTACTS.c, ROLLUPS.c, MEMBERS.c
        columns = []
        for i, (k, test) in enumerate(compiled):
            held = exists().where(m.segment_id == k.ref.id, m.contact_id == c.id)
            columns += [case((test, 1), else_=0).label(f"s{i}"), case((held, 1), else_=0).label(f"m{i}")]
        if len(_plans) > PLAN_CACHE:
            _plans.clear()
        _plans[plan_key] = (select(c.id, *columns).select_from(CONTACTS.outerjoin(ROLLUPS, r.contact_id == c.id))
                            .where(c.workspace_id == workspace.id, *comp.scope.narrow(c.id)), comp,
                            [k for k, _ in compiled])
    return _plans[plan_key]


def on_change(session: Session, workspace: Workspace, touched: dict[int, set[str]], now: datetime | None = None) -> Moves:
    """Re-evaluate the segments that these changes can move, for the contacts they touched.

    `touched` maps a contact id to the event types it just received ("@contact" for a change to
    the contact itself). One query answers, for every affected segment and touched contact, both
    whether it matches and whether it is stored as a member; it is built once per version of the
    workspace's segments, with the contacts and the time as parameters.
    """
    moves = Moves()
    if not touched:
        return moves
    now = now or utcnow()
    key, known = _segments_now(session, workspace)
    affected: list[tuple[_Known, set[int]]] = []
    for k in known:
        ids = {cid for cid, types in touched.items() if "*" in k.moved_by or k.moved_by & types}
        if ids:
            affected.append((k, ids))
    if not affected:
        return moves
    ids = sorted(set().union(*(found for _, found in affected)))
    plan, comp, evaluated = _plan(session, workspace, key, [k for k, _ in affected], now)
    affected = [(k, asked) for k, asked in affected if k in evaluated]
    rows = session.execute(plan, {SCOPE_IDS: ids, **comp.moments(now)}).all()
    # The moves of all the segments are written together, one statement each for the new members,
    # the members gone, their events and the counts: the real-time path pays a round trip a statement.
    joining: list[tuple[int, int]] = []
    leaving: list[tuple[int, int]] = []
    for i, (k, asked) in enumerate(affected):
        inside = {row[0] for row in rows if row[2 * i + 1] and row[0] in asked}
        was = {row[0] for row in rows if row[2 * i + 2] and row[0] in asked}
        joining += [(k.ref.id, cid) for cid in sorted(inside - was)]
        leaving += [(k.ref.id, cid) for cid in sorted(was - inside)]
    if not joining and not leaving:
        return moves
    entered, exited = _record(session, workspace.id, {k.ref.id: k.ref for k, _ in affected}, joining, leaving, now)
    return Moves(sum(map(len, entered.values())), sum(map(len, exited.values())))


def _record(session: Session, workspace_id: int, refs: dict[int, Segment | SegmentRef], joining: list[tuple[int, int]],
            leaving: list[tuple[int, int]], now: datetime) -> tuple[dict[int, set[int]], dict[int, set[int]]]:
    """Write these (segment, contact) moves: memberships, their events and the segments' counts.

    Returns the contacts that did move, by segment: a move another process recorded first is
    neither logged nor counted again. On PostgreSQL it is one statement (the real-time path pays
    a round trip a statement); SQLite, in the process, takes one statement for each part.
    """
    if session.get_bind().dialect.name == "postgresql":
        return _moves_in_one(session, workspace_id, joining, leaving, now)
    entered, exited = _enter_all(session, refs, joining, now), _exit_all(session, leaving)
    events: list[dict[str, Any]] = []
    deltas: dict[int, int] = {}
    for kind, done, sign in (("entered", entered, 1), ("exited", exited, -1)):
        for segment_id, contact_ids in sorted(done.items()):
            events += _move_events(refs[segment_id], kind, sorted(contact_ids), now)
            deltas[segment_id] = deltas.get(segment_id, 0) + sign * len(contact_ids)
    insert_new(session, EVENTS, events)
    _add_to_counts(session, {sid: d for sid, d in deltas.items() if d})
    return entered, exited


def _moves_in_one(session: Session, workspace_id: int, joining: list[tuple[int, int]],
                  leaving: list[tuple[int, int]], now: datetime) -> tuple[dict[int, set[int]], dict[int, set[int]]]:
    """The members added and removed, their events and the new counts in one PostgreSQL statement."""
    params: dict[str, Any] = {"moves_workspace": workspace_id, "moves_at": now}
    for name, pairs in (("joining", joining), ("leaving", leaving)):
        params[f"{name}_segments"] = [sid for sid, _ in pairs]
        params[f"{name}_contacts"] = [cid for _, cid in pairs]
    rows = session.execute(_moves_statement(), params).all()
    return (_by_segment((sid, cid) for sid, cid, sign in rows if sign > 0),
            _by_segment((sid, cid) for sid, cid, sign in rows if sign < 0))


@functools.cache
def _moves_statement() -> Any:
    """Each part is a data-modifying WITH query over the (segment, contact) pairs, sent as two arrays
    each; the events and counts are written from what the INSERT and DELETE returned. Built once:
    building and keying it costs more than running it."""
    m, s = MEMBERS.c, SEGMENTS.c
    # Named unlike any column: a parameter named as a column of the UPDATE's table would be set on it.
    now = bindparam("moves_at", type_=UTCDateTime)
    workspace_id = bindparam("moves_workspace", type_=BigInteger)

    def pairs(name: str) -> Any:
        return (func.unnest(bindparam(f"{name}_segments", type_=ARRAY(BigInteger)),
                            bindparam(f"{name}_contacts", type_=ARRAY(BigInteger)))
                .table_valued("segment_id", "contact_id").render_derived(name=name))

    join, leave = pairs("joining"), pairs("leaving")
    joined = (postgresql.insert(MEMBERS)
              .from_select(["segment_id", "contact_id", "workspace_id", "entered_at"],
                           select(join.c.segment_id, join.c.contact_id, workspace_id, now))
              .on_conflict_do_nothing(index_elements=["segment_id", "contact_id"])
              .returning(m.segment_id, m.contact_id).cte("joined"))
    left = (delete(MEMBERS).where(m.segment_id == leave.c.segment_id, m.contact_id == leave.c.contact_id)
            .returning(m.segment_id, m.contact_id).cte("left"))
    moved = union_all(select(joined.c.segment_id, joined.c.contact_id, literal(1).label("sign")),
                      select(left.c.segment_id, left.c.contact_id, literal(-1).label("sign"))).cte("moved")
    kind = case((moved.c.sign == 1, literal("segment_entered")), else_=literal("segment_exited"))
    props = func.jsonb_build_object("segment_id", cast(moved.c.segment_id, Text), "segment", s.name)
    logged = (insert(EVENTS)
              .from_select(["workspace_id", "contact_id", "type", "ts", "received_at", "source", "properties"],
                           select(workspace_id, moved.c.contact_id, kind, now, now, literal("segments"), props)
                           .join_from(moved, SEGMENTS, s.id == moved.c.segment_id)
                           .order_by(moved.c.segment_id, moved.c.sign.desc(), moved.c.contact_id))
              .cte("logged"))
    deltas = (select(moved.c.segment_id, func.sum(moved.c.sign).label("delta"))
              .group_by(moved.c.segment_id).subquery("deltas"))
    counted = (update(SEGMENTS).where(s.id == deltas.c.segment_id, deltas.c.delta != 0)
               .values(member_count=s.member_count + deltas.c.delta).cte("counted"))
    return select(moved.c.segment_id, moved.c.contact_id, moved.c.sign).add_cte(logged, counted)


def _enter_all(session: Session, refs: dict[int, Segment | SegmentRef], pairs: list[tuple[int, int]],
               now: datetime) -> dict[int, set[int]]:
    """(segment, contact) memberships in one statement; the contacts that were not members, by segment."""
    if not pairs:
        return {}
    # Rows as parameters, not VALUES in the statement: one statement for any number, compiled once.
    stmt = (dialect_insert(session, MEMBERS).on_conflict_do_nothing(index_elements=["segment_id", "contact_id"])
            .returning(MEMBERS.c.segment_id, MEMBERS.c.contact_id))
    rows = [{"segment_id": sid, "contact_id": cid, "workspace_id": refs[sid].workspace_id, "entered_at": now}
            for sid, cid in pairs]
    return _by_segment(session.connection().execute(stmt, rows).all())


def _exit_all(session: Session, pairs: list[tuple[int, int]]) -> dict[int, set[int]]:
    """Remove (segment, contact) memberships, several segments a statement (each with its contacts as
    one array on PostgreSQL); the contacts that were members, by segment."""
    rows: list[Any] = []
    groups = sorted(_by_segment(pairs).items())
    while groups:
        taken, size = [], 0  # up to BATCH contacts a statement: SQLite takes some 32,000 parameters
        while groups and (not taken or size + len(groups[0][1]) <= BATCH):
            segment_id, contact_ids = groups.pop(0)
            taken.append(and_(MEMBERS.c.segment_id == segment_id,
                              one_of(session, MEMBERS.c.contact_id, sorted(contact_ids))))
            size += len(contact_ids)
        stmt = delete(MEMBERS).where(or_(*taken)).returning(MEMBERS.c.segment_id, MEMBERS.c.contact_id)
        rows += session.connection().execute(stmt).all()
    return _by_segment(rows)


def _by_segment(rows: Iterable[Any]) -> dict[int, set[int]]:
    found: dict[int, set[int]] = {}
    for segment_id, contact_id in rows:
        found.setdefault(segment_id, set()).add(contact_id)
    return found


def contacts_changed(session: Session, workspace_id: int, contact_ids: Iterable[int]) -> Moves:
    """Contacts whose own data (fields, lists, tags, consent) changed: re-evaluate the segments that read it."""
    ids = set(contact_ids)
    if not ids:
        return Moves()
    return on_change(session, session.get_one(Workspace, workspace_id), {cid: {"@contact"} for cid in ids})


# Whole segments --------------------------------------------------------------------------------


def refresh(session: Session, segment: Segment, now: datetime | None = None) -> Moves:
    """Re-evaluate a whole segment and record who entered and who left.

    The database computes the difference (EXCEPT both ways); only the ids that moved come back,
    and they are written in batches.
    """
    now = now or utcnow()
    workspace = session.get_one(Workspace, segment.workspace_id)
    wanted = compiler(session, workspace, now).members(R.parse_rule(segment.rule))
    held = select(MEMBERS.c.contact_id).where(MEMBERS.c.segment_id == segment.id)
    moves = Moves()
    moves.entered = _apply_difference(session, segment, except_(wanted, held), "entered", now)
    moves.exited = _apply_difference(session, segment, except_(held, wanted), "exited", now)
    _recount(session, segment)
    session.execute(update(Segment).where(Segment.id == segment.id).values(refreshed_at=now)
                    .execution_options(synchronize_session=False))
    return moves


def _apply_difference(session: Session, segment: Segment | SegmentRef, difference: Any, kind: str, now: datetime) -> int:
    # The moved ids are read in full before writing, as a cursor left open across writes is not
    # portable between the two databases; that is some 40 bytes per contact that moved.
    ids = list(session.scalars(difference))
    write = _enter if kind == "entered" else _exit
    done = 0
    for start in range(0, len(ids), BATCH):
        done += len(write(session, segment, ids[start:start + BATCH], now))
    return done


def refresh_workspace(session: Session, workspace: Workspace, now: datetime | None = None) -> Moves:
    moves = Moves()
    for segment in dynamic_segments(session, workspace.id):
        moves += refresh(session, segment, now)
    return moves


def refresh_all(db: Database, now: datetime | None = None, *, workspace_id: int | None = None) -> Moves:
    """The periodic job: every segment of every workspace (or of one), one transaction per segment.

    A segment whose rule no longer compiles (say, its list was deleted) is logged and skipped,
    keeping its members, so one broken rule never stops the others.
    """
    now = now or utcnow()
    with db.session() as session:
        for table, sampled in STATISTICS:  # segment plans depend on them; SQLite keeps none unless asked
            refresh_statistics(session, table, sampled=sampled)
    with db.session() as session:
        chosen = select(Segment.id).order_by(Segment.id)
        if workspace_id is not None:
            chosen = chosen.where(Segment.workspace_id == workspace_id)
        targets = list(session.scalars(chosen))
    moves = Moves()
    for segment_id in targets:
        try:
            with db.session() as session:
                segment = session.get(Segment, segment_id)
                if segment is not None:
                    moves += refresh(session, segment, now)
        except Exception:
            log.exception("segment %s: refresh failed; its members are left as they were", segment_id)
    return moves


def members_of(*segment_ids: int) -> Any:
    """`contacts.id IN (members of any of the segments)`, for filters, exports and campaign audiences."""
    return CONTACTS.c.id.in_(select(MEMBERS.c.contact_id).where(MEMBERS.c.segment_id.in_(segment_ids)))


__all__ = ["Moves", "contacts_changed", "count", "matching", "members_of", "on_change", "refresh", "refresh_all", "sample"]
