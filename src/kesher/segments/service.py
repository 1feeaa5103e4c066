"""Segments: create, change, delete, and the presets a marketer starts from.

A segment is saved only with a rule that compiles for its workspace (its fields, lists, tags
and segments exist), and its members are computed as it is saved, so it is never shown empty
or stale. Membership then follows events (`membership.on_change`) and the periodic refresh.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kesher.accounts.models import Workspace
from kesher.accounts.service import audit
from kesher.db.base import utcnow
from kesher.db.upsert import one_of
from kesher.errors import Conflict, NotFound, ValidationError
from kesher.events.lifecycle import get_thresholds
from kesher.segments import membership
from kesher.segments import rules as R
from kesher.segments.compiler import compiler
from kesher.segments.models import Segment, SegmentMember

NAME_LIMIT, DESCRIPTION_LIMIT = 200, 1000


def N_(message: str) -> str:  # noqa: N802 - the name Babel looks for: marks a text for translation where it is shown
    return message


# Presets -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preset:
    key: str
    name: str  # an English msgid; shown translated
    description: str
    rule: Callable[[Workspace, dict[str, Any]], dict[str, Any]]
    params: tuple[str, ...] = ()


def _loyal(ws: Workspace, _: dict[str, Any]) -> dict[str, Any]:
    return {"stat": "purchase_count", "op": "gte", "value": get_thresholds(ws).loyal_purchases}


def _new(ws: Workspace, _: dict[str, Any]) -> dict[str, Any]:
    return {"field": "created_at", "op": "within_last_days", "value": get_thresholds(ws).new_days}


def _clicked_link(_: Workspace, params: dict[str, Any]) -> dict[str, Any]:
    campaign, url = params.get("campaign_id"), params.get("url")
    if not isinstance(campaign, str) or not campaign.strip():
        raise ValidationError("name the campaign whose clickers you want", "params.campaign_id")
    where = [{"prop": "campaign_id", "op": "eq", "value": campaign.strip()}]
    if url is not None:
        if not isinstance(url, str) or not url.strip():
            raise ValidationError("must be the link's address", "params.url")
        where.append({"prop": "url", "op": "eq", "value": url.strip()})
    return {"event": "email_clicked", "where": where}


PRESETS: dict[str, Preset] = {p.key: p for p in (
    Preset("dormant", N_("Dormant"), N_("Contacts in the dormant stage, by the workspace's lifecycle thresholds."),
           lambda ws, _: {"stage": "dormant"}),
    Preset("low_engagement", N_("Low engagement"), N_("Opened an email in the last 30 days but clicked none."),
           lambda ws, _: {"all": [{"event": "email_opened", "within_days": 30},
                                  {"not": {"event": "email_clicked", "within_days": 30}}]}),
    Preset("loyal", N_("Loyal customers"), N_("At least as many purchases as the loyal threshold (3 by default)."),
           _loyal),
    Preset("vip", N_("VIP"), N_("The top 10% of customers by revenue."),
           lambda ws, _: {"stat": "total_revenue", "op": "top_percent", "value": 10}),
    Preset("new", N_("New contacts"), N_("Joined within the new-contact period (30 days by default)."), _new),
    Preset("opened_never_bought", N_("Opened 10+ and never bought"),
           N_("Opened at least 10 emails and never made a purchase."),
           lambda ws, _: {"all": [{"stat": "open_count", "op": "gte", "value": 10},
                                  {"stat": "purchase_count", "op": "eq", "value": 0}]}),
    Preset("abandoned_cart", N_("Abandoned a cart in the last 24 hours"), N_("Left a cart in the last 24 hours."),
           lambda ws, _: {"event": "cart_abandoned", "within_days": 1}),
    Preset("replenishment_due", N_("Replenishment due"),
           N_("Bought a consumable whose usage period ends within 5 days."),
           lambda ws, _: {"replenishment_due": 5}),
    Preset("birthday_this_month", N_("Birthday this month"), N_("Contacts whose birthday falls in the current month."),
           lambda ws, _: {"field": "birthday", "op": "in_month", "value": 0}),
    Preset("clicked_link", N_("Clicked a campaign link"), N_("Clicked link L of campaign C."), _clicked_link,
           ("campaign_id", "url")),
)}


def preset_rule(workspace: Workspace, key: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    preset = PRESETS.get(key)
    if preset is None:
        raise NotFound("no preset {key!r}; presets are: {presets}", "preset", key=key, presets=", ".join(PRESETS))
    return preset.rule(workspace, params or {})


# Segments ----------------------------------------------------------------------------------------


def _clean(name: str | None, description: str | None) -> tuple[str | None, str | None]:
    if name is not None:
        name = " ".join(name.split())
        if not name:
            raise ValidationError("must not be empty", "name")
        if len(name) > NAME_LIMIT:
            raise ValidationError("is longer than {limit} characters", "name", limit=NAME_LIMIT)
    if description is not None:
        description = description.strip()
        if len(description) > DESCRIPTION_LIMIT:
            raise ValidationError("is longer than {limit} characters", "description", limit=DESCRIPTION_LIMIT)
    return name, description


def checked_rule(session: Session, workspace: Workspace, rule: Any, segment_id: int | None = None) -> dict[str, Any]:
    """The rule as stored, once it parses and compiles for this workspace (its names all exist)."""
    parsed = R.parse_rule(rule)
    comp = compiler(session, workspace, utcnow())
    # Compiled as if inside this segment, so a reference back to it, direct or through others, is refused.
    comp.inside = [] if segment_id is None else [segment_id]
    comp.compile(parsed)
    return R.dump_rule(parsed)


def _name_free(session: Session, workspace_id: int, name: str, segment_id: int | None = None) -> None:
    taken = session.scalar(select(Segment.id).where(Segment.workspace_id == workspace_id, Segment.name == name))
    if taken is not None and taken != segment_id:
        raise Conflict("a segment named {name!r} exists", "name", name=name)


def _changed(workspace: Workspace) -> None:
    """Mark the workspace's segments as changed, for the real-time path's compiled rules."""
    workspace.segments_stamp = secrets.randbits(62)


def create_segment(session: Session, workspace: Workspace, name: str, rule: Any, *, description: str = "",
                   preset: str | None = None, actor: str = "system") -> Segment:
    clean_name, clean_description = _clean(name, description)
    assert clean_name is not None
    stored = checked_rule(session, workspace, rule)
    _name_free(session, workspace.id, clean_name)
    segment = Segment(workspace_id=workspace.id, name=clean_name, description=clean_description or "", rule=stored,
                      preset=preset)
    session.add(segment)
    _changed(workspace)
    session.flush()
    membership.refresh(session, segment)
    session.refresh(segment)
    audit(session, workspace.id, actor, "segment.created", "segment", segment.id, {"name": clean_name, "rule": stored})
    return segment


def create_from_preset(session: Session, workspace: Workspace, key: str, *, name: str | None = None,
                       params: dict[str, Any] | None = None, actor: str = "system") -> Segment:
    from kesher.web.i18n import translations

    rule = preset_rule(workspace, key, params)
    preset = PRESETS[key]
    language = translations(workspace.language or "he")
    return create_segment(session, workspace, name or language.gettext(preset.name), rule,
                          description=language.gettext(preset.description), preset=key, actor=actor)


def get_segment(session: Session, workspace_id: int, segment_id: int) -> Segment:
    segment = session.scalar(select(Segment).where(Segment.workspace_id == workspace_id, Segment.id == segment_id))
    if segment is None:
        raise NotFound("no segment {id}", "id", id=segment_id)
    return segment


def list_segments(session: Session, workspace_id: int) -> list[Segment]:
    return list(session.scalars(select(Segment).where(Segment.workspace_id == workspace_id).order_by(Segment.name)))


def update_segment(session: Session, workspace: Workspace, segment_id: int, *, name: str | None = None,
                   description: str | None = None, rule: Any = None, actor: str = "system") -> Segment:
    segment = get_segment(session, workspace.id, segment_id)
    clean_name, clean_description = _clean(name, description)
    changes: dict[str, Any] = {}
    if clean_name is not None and clean_name != segment.name:
        _name_free(session, workspace.id, clean_name, segment.id)
        changes["name"] = segment.name = clean_name
    if clean_description is not None and clean_description != segment.description:
        changes["description"] = segment.description = clean_description
    if rule is not None:
        stored = checked_rule(session, workspace, rule, segment.id)
        if stored != segment.rule:
            changes["rule"] = segment.rule = stored
    if changes:
        segment.updated_at = utcnow()
        _changed(workspace)
        session.flush()
        if "rule" in changes:
            membership.refresh(session, segment)
            session.refresh(segment)
        audit(session, workspace.id, actor, "segment.updated", "segment", segment.id, changes)
    return segment


def delete_segment(session: Session, workspace_id: int, segment_id: int, *, actor: str = "system") -> None:
    segment = get_segment(session, workspace_id, segment_id)
    users = [s.name for s in list_segments(session, workspace_id)
             if s.id != segment.id and any(isinstance(node, R.SegmentLeaf) and node.segment == segment.id
                                           for _, node in R.walk(R.parse_rule(s.rule)))]
    if users:
        raise Conflict("segment {names} uses this segment; change it first", "id", names=", ".join(users))
    session.delete(segment)
    _changed(session.get_one(Workspace, workspace_id))
    session.flush()
    audit(session, workspace_id, actor, "segment.deleted", "segment", segment_id, {"name": segment.name})


def segments_using(session: Session, workspace_id: int, kind: str, ref_id: int | None, name: str) -> list[str]:
    """Names of the segments whose rule reads this list, tag or custom field (`kind`: list, tag, field).

    With `ref_id` None, only rules that name it count (what a rename would break).
    """
    def reads(node: Any) -> bool:
        if kind == "list" and isinstance(node, R.ListLeaf):
            return node.list in (ref_id, name)
        if kind == "tag" and isinstance(node, R.TagLeaf):
            return node.tag in (ref_id, name)
        return kind == "field" and isinstance(node, R.FieldLeaf) and node.field == name
    return [s.name for s in list_segments(session, workspace_id)
            if any(reads(node) for _, node in R.walk(R.parse_rule(s.rule)))]


def refuse_if_used(session: Session, workspace_id: int, kind: str, ref_id: int | None, name: str) -> None:
    users = segments_using(session, workspace_id, kind, ref_id, name)
    if users:
        names = ", ".join(users)
        if ref_id is None:
            renamed = {"list": "segment {names} names this list; change the segment first",
                       "tag": "segment {names} names this tag; change the segment first",
                       "field": "segment {names} names this field; change the segment first"}[kind]
            raise Conflict(renamed, "name", names=names)
        raise Conflict("used by segment {names}; change the segment first", "id", names=names)


def segments_of_contact(session: Session, workspace_id: int, contact_id: int) -> list[tuple[Segment, Any]]:
    """The segments a contact is in, with when it entered each, by name."""
    rows = session.execute(select(Segment, SegmentMember.entered_at)
                           .join(SegmentMember, SegmentMember.segment_id == Segment.id)
                           .where(Segment.workspace_id == workspace_id, SegmentMember.contact_id == contact_id)
                           .order_by(Segment.name))
    return [(segment, entered_at) for segment, entered_at in rows]


def segment_names(session: Session, workspace_id: int, contact_ids: list[int]) -> dict[int, set[str]]:
    """The names of the segments each of many contacts is in now, in one query (message personalisation)."""
    if not contact_ids:
        return {}
    names: dict[int, set[str]] = {}
    stmt = (select(SegmentMember.contact_id, Segment.name).join(Segment, Segment.id == SegmentMember.segment_id)
            .where(Segment.workspace_id == workspace_id, one_of(session, SegmentMember.contact_id, contact_ids)))
    for contact_id, name in session.execute(stmt):
        names.setdefault(contact_id, set()).add(name)
    return names


def member_total(session: Session, segment_id: int) -> int:
    return session.scalar(select(func.count()).select_from(SegmentMember).where(SegmentMember.segment_id == segment_id)) or 0
