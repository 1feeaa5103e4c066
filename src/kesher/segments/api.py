"""The segments JSON API (mounted at /api/v1): segments, presets, previews, members, explanations.

Routes only translate: JSON in through the schemas, the segments services do the work in the
caller's workspace, JSON out. A bad rule is the services' `ValidationError`, naming its JSON path
(`rule: $.all[1].within_days`), rendered as problem+json.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status
from sqlalchemy.orm import Session

from kesher.accounts.models import Workspace
from kesher.contacts import service as contacts
from kesher.contacts.api import CONFLICT, NO_CONTENT, ContactId, contact_page
from kesher.contacts.models import Contact
from kesher.contacts.schemas import ContactPage
from kesher.db.base import MAX_ID
from kesher.errors import NotFound, ValidationError
from kesher.segments import membership, service
from kesher.segments import rules as R
from kesher.segments.explain import explain
from kesher.segments.schemas import (ContactSegmentOut, ExplainIn, ExplainOut, InLanguages, PresetOut, PreviewIn,
                                     PreviewOut, RefreshOut, SampleContact, SegmentIn, SegmentOut, SegmentPatch)
from kesher.web.deps import ApiCaller, DbSession, api_caller
from kesher.web.i18n import translations
from kesher.web.problems import API_ERRORS

router = APIRouter(tags=["segments"], responses=API_ERRORS)
Caller = Annotated[ApiCaller, Depends(api_caller)]
SegmentId = Annotated[int, Path(ge=1, le=MAX_ID, description="A segment id")]


def _workspace(session: Session, caller: ApiCaller) -> Workspace:
    return session.get_one(Workspace, caller.workspace_id)


def _contact(session: Session, caller: ApiCaller, contact_id: int) -> None:
    """404 naming `contact_id` unless the contact is the caller's."""
    try:
        contacts.get_contact(session, caller.workspace_id, contact_id)
    except NotFound as exc:
        raise exc.located("contact_id") from None


# Segments ---------------------------------------------------------------------------------------


@router.get("/segments", summary="All segments, by name, with their member counts")
def all_segments(caller: Caller, session: DbSession) -> list[SegmentOut]:
    return [SegmentOut.model_validate(s) for s in service.list_segments(session, caller.workspace_id)]


@router.post(
    "/segments", summary="Save a segment from a rule or a preset", status_code=status.HTTP_201_CREATED,
    responses=CONFLICT,
    description="Send `name` and `rule`, or `preset` (and its `params`). The rule is checked against the "
                "workspace (its fields, lists, tags and segments must exist) and the members are computed "
                "before the answer, so `member_count` is already right.",
)
def create_segment(body: SegmentIn, caller: Caller, session: DbSession) -> SegmentOut:
    workspace = _workspace(session, caller)
    sent = body.model_fields_set
    if body.preset is None:
        if "rule" not in sent:
            raise ValidationError("give a rule, or a preset to start from", "rule")
        if body.params:
            raise ValidationError("params go with a preset", "params")
        if body.name is None:
            raise ValidationError("a segment needs a name", "name")
        segment = service.create_segment(session, workspace, body.name, body.rule,
                                         description=body.description or "", actor=caller.actor)
    else:
        if "rule" in sent:
            raise ValidationError("give a rule or a preset, not both", "rule")
        segment = service.create_from_preset(session, workspace, body.preset, name=body.name, params=body.params,
                                             actor=caller.actor)
        if body.description is not None:
            segment = service.update_segment(session, workspace, segment.id, description=body.description,
                                             actor=caller.actor)
    return SegmentOut.model_validate(segment)


@router.get("/segments/presets", summary="The presets a segment can start from, with the rule each gives here")
def all_presets(caller: Caller, session: DbSession) -> list[PresetOut]:
    workspace = _workspace(session, caller)
    english, hebrew = translations("en"), translations("he")
    return [PresetOut(key=p.key, name=InLanguages(en=english.gettext(p.name), he=hebrew.gettext(p.name)),
                      description=InLanguages(en=english.gettext(p.description), he=hebrew.gettext(p.description)),
                      params=list(p.params), rule=None if p.params else service.preset_rule(workspace, p.key))
            for p in service.PRESETS.values()]


@router.post("/segments/preview", summary="How many contacts a rule matches now, and some of them",
             description="Nothing is saved. Use it to try a rule before saving it as a segment.")
def preview(body: PreviewIn, caller: Caller, session: DbSession) -> PreviewOut:
    workspace = _workspace(session, caller)
    total = membership.count(session, workspace, body.rule)
    ids = membership.sample(session, workspace, body.rule, limit=body.limit)
    return PreviewOut(count=total, sample=_sample(session, caller.workspace_id, ids))


def _sample(session: Session, workspace_id: int, ids: list[int]) -> list[SampleContact]:
    if not ids:
        return []
    names = contacts.display_names(session, workspace_id, ids)
    rows, _ = contacts.search(session, workspace_id, contacts.ContactFilter(where=[Contact.id.in_(ids)]),
                              limit=len(ids))
    return [SampleContact(id=c.id, name=names.get(c.id), email=c.email, phone=c.phone) for c in rows]


@router.post("/segments/explain", summary="Why a rule matches a contact or not, condition by condition")
def explain_rule(body: ExplainIn, caller: Caller, session: DbSession) -> ExplainOut:
    _contact(session, caller, body.contact_id)
    finding = explain(session, _workspace(session, caller), body.rule, body.contact_id)
    return ExplainOut.of(finding, body.contact_id, None, None)


@router.get("/segments/{segment_id}", summary="A segment with its rule and member count")
def get_segment(segment_id: SegmentId, caller: Caller, session: DbSession) -> SegmentOut:
    return SegmentOut.model_validate(service.get_segment(session, caller.workspace_id, segment_id))


@router.patch("/segments/{segment_id}", summary="Rename a segment, describe it or change its rule",
              responses=CONFLICT)
def update_segment(segment_id: SegmentId, body: SegmentPatch, caller: Caller, session: DbSession) -> SegmentOut:
    # A rule sent as null is checked like any other (and refused), not read as "unchanged".
    rule = R.parse_rule(body.rule) if "rule" in body.model_fields_set else None
    segment = service.update_segment(session, _workspace(session, caller), segment_id, name=body.name,
                                     description=body.description, rule=rule, actor=caller.actor)
    return SegmentOut.model_validate(segment)


@router.delete("/segments/{segment_id}", summary="Delete a segment (its contacts stay)", status_code=NO_CONTENT,
               response_class=Response, responses=CONFLICT)
def delete_segment(segment_id: SegmentId, caller: Caller, session: DbSession) -> None:
    service.delete_segment(session, caller.workspace_id, segment_id, actor=caller.actor)


@router.post("/segments/{segment_id}/refresh", summary="Re-evaluate a segment now; who entered and who left",
             description="Events move members as they arrive; a refresh also moves those whom only time moved "
                         "(\"no open in 60 days\"). The worker refreshes every segment hourly.")
def refresh_segment(segment_id: SegmentId, caller: Caller, session: DbSession) -> RefreshOut:
    segment = service.get_segment(session, caller.workspace_id, segment_id)
    moves = membership.refresh(session, segment)
    session.refresh(segment)
    return RefreshOut(id=segment.id, entered=moves.entered, exited=moves.exited, member_count=segment.member_count,
                      refreshed_at=segment.refreshed_at)


@router.get("/segments/{segment_id}/members", summary="The segment's stored members, newest first, a page at a time")
def segment_members(
    segment_id: SegmentId, caller: Caller, session: DbSession,
    limit: Annotated[int, Query(ge=1, le=contacts.MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> ContactPage:
    segment = service.get_segment(session, caller.workspace_id, segment_id)
    flt = contacts.ContactFilter(where=[membership.members_of(segment.id)])
    return contact_page(session, caller.workspace_id, flt, cursor, limit)


@router.get("/segments/{segment_id}/explain/{contact_id}",
            summary="Why a contact is in the segment or not, condition by condition")
def explain_member(segment_id: SegmentId, contact_id: ContactId, caller: Caller, session: DbSession) -> ExplainOut:
    segment = service.get_segment(session, caller.workspace_id, segment_id)
    _contact(session, caller, contact_id)
    finding = explain(session, _workspace(session, caller), segment.rule, contact_id)
    member = any(s.id == segment.id for s, _ in service.segments_of_contact(session, caller.workspace_id, contact_id))
    return ExplainOut.of(finding, contact_id, segment.id, member)


@router.get("/contacts/{contact_id}/segments", summary="The segments a contact is in, with when it entered each")
def contact_segments(contact_id: ContactId, caller: Caller, session: DbSession) -> list[ContactSegmentOut]:
    contacts.get_contact(session, caller.workspace_id, contact_id)
    return [ContactSegmentOut(id=s.id, name=s.name, entered_at=entered)
            for s, entered in service.segments_of_contact(session, caller.workspace_id, contact_id)]
