"""UI routes of segments: the list and its presets, the rule builder with a live count, a segment's
members, a contact's segments with "why?", and campaign links whose clickers become a segment.

The builder keeps the rule as JSON in the page (the API's rule language) and posts it with the
form; without JavaScript that JSON is the form.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.orm import Session

from kesher.accounts.models import Workspace
from kesher.contacts import service as contacts
from kesher.contacts.views import PageRoute
from kesher.errors import Conflict, KesherError, ValidationError
from kesher.events.service import clicked_links
from kesher.segments import explain, membership, service
from kesher.segments.models import Segment
from kesher.segments.rules import dump_rule, parse_rule
from kesher.segments.service import PRESETS
from kesher.segments.why import reason
from kesher.segments.wording import Names, RuleProblem, builder_data, readable, rule_problem
from kesher.web.deps import UiContext, csrf_protect, transaction, ui_context
from kesher.web.i18n import _, ngettext
from kesher.web.pages import is_partial, redirect, render

PAGE_SIZE = 50
SAMPLE = 10
EMPTY_RULE: dict[str, Any] = {"all": []}

router = APIRouter(dependencies=[Depends(csrf_protect)], route_class=PageRoute, include_in_schema=False)


def _rule_from_form(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise ValidationError("is not valid JSON", "rule: $") from None


def preset_names() -> dict[str, str]:
    # Translated here, not in a template: a template would %-format the text, and "10%" is no placeholder.
    return {key: _(preset.name) for key, preset in PRESETS.items()}


def _name_problem(exc: KesherError) -> str:
    if exc.status == 409:
        return _("That name is taken.")
    if exc.field == "description":
        return _("The description is too long: at most %(limit)s characters.") % {"limit": service.DESCRIPTION_LIMIT}
    return _("A name is required, at most %(limit)s characters.") % {"limit": service.NAME_LIMIT}


# The segments and their presets -------------------------------------------------------------------


def _index(request: Request, ctx: UiContext, session: Session, error: str = "", status_code: int = 200) -> HTMLResponse:
    ws = ctx.workspace.id
    return render(request, "segments/index.html", ctx, status_code=status_code,
                  segments=service.list_segments(session, ws),
                  presets=[(p, _(p.name), _(p.description)) for p in PRESETS.values()], preset_names=preset_names(),
                  error=error,
                  campaigns=sorted({link.campaign_id for link in clicked_links(session, ws)}))


@router.get("/segments", response_class=HTMLResponse)
def segments_page(
    request: Request, ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> HTMLResponse:
    return _index(request, ctx, session)


def _free_name(session: Session, workspace: Workspace, name: str, rule: dict[str, Any]) -> tuple[str, Segment | None]:
    """`name`, or `name (2)`... when taken; or the segment of that name with this very rule, to open it again."""
    taken = {s.name: s for s in service.list_segments(session, workspace.id)}
    wanted = service.checked_rule(session, workspace, rule)
    candidate, n = name[:service.NAME_LIMIT], 1
    while candidate in taken:
        if taken[candidate].rule == wanted:
            return candidate, taken[candidate]
        n += 1
        suffix = f" ({n})"
        candidate = name[:service.NAME_LIMIT - len(suffix)] + suffix
    return candidate, None


@router.post("/segments/presets/{key}")
def create_preset_segment(
    request: Request, key: str, campaign_id: str = Form(""), url: str = Form(""), name: str = Form(""),
    ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> Response:
    """A segment from a preset, opened at once; clicking again opens the same segment."""
    preset = PRESETS.get(key)
    if preset is None:
        return render(request, "not_found.html", None, status_code=404)
    params = {"campaign_id": campaign_id, "url": url.strip() or None} if preset.params else None
    try:
        rule = service.preset_rule(ctx.workspace, key, params)
        chosen, existing = _free_name(session, ctx.workspace, " ".join(name.split()) or _(preset.name), rule)
        if existing is not None:
            return redirect(f"/segments/{existing.id}")
        segment = service.create_from_preset(session, ctx.workspace, key, name=chosen, params=params, actor=ctx.actor)
    except ValidationError as exc:
        session.rollback()
        message = (_("Choose the campaign whose clickers you want.") if (exc.field or "").startswith("params")
                   else _name_problem(exc))
        return _index(request, ctx, session, message, 422)
    return redirect(f"/segments/{segment.id}")


# The builder ----------------------------------------------------------------------------------------


def _builder(
    request: Request, ctx: UiContext, session: Session, *, segment: Segment | None, values: dict[str, str],
    errors: dict[str, str] | None = None, problem: RuleProblem | None = None, status_code: int = 200,
) -> HTMLResponse:
    return render(request, "segments/builder.html", ctx, status_code=status_code, segment=segment, values=values,
                  errors=errors or {}, problem=problem,
                  vocabulary=builder_data(session, ctx.workspace, segment.id if segment else None))


@router.get("/segments/new", response_class=HTMLResponse)
def new_segment_page(
    request: Request, preset: str = "", campaign_id: str = "", url: str = "", ctx: UiContext = Depends(ui_context),
    session: Session = transaction,
) -> HTMLResponse:
    """An empty builder, or one holding a preset's rule to adjust before saving."""
    values = {"name": "", "description": "", "rule": json.dumps(EMPTY_RULE), "preset": ""}
    chosen = PRESETS.get(preset)
    if chosen is not None:
        params = {"campaign_id": campaign_id, "url": url or None} if chosen.params else None
        try:
            rule = service.preset_rule(ctx.workspace, preset, params)
        except ValidationError:
            return _index(request, ctx, session, _("Choose the campaign whose clickers you want."), 422)
        values = {"name": _(chosen.name), "description": _(chosen.description),
                  "rule": json.dumps(rule, ensure_ascii=False), "preset": preset}
    return _builder(request, ctx, session, segment=None, values=values)


def _save(
    request: Request, ctx: UiContext, session: Session, segment: Segment | None, values: dict[str, str],
) -> Response:
    try:
        rule = _rule_from_form(values["rule"])
        if segment is None:
            preset = values.get("preset") if values.get("preset") in PRESETS else None
            segment = service.create_segment(session, ctx.workspace, values["name"], rule,
                                             description=values["description"], preset=preset, actor=ctx.actor)
        else:
            service.update_segment(session, ctx.workspace, segment.id, name=values["name"],
                                   description=values["description"], rule=rule, actor=ctx.actor)
    except (ValidationError, Conflict) as exc:
        session.rollback()
        if (exc.field or "").startswith("rule"):
            return _builder(request, ctx, session, segment=segment, values=values, problem=rule_problem(exc),
                            status_code=422)
        return _builder(request, ctx, session, segment=segment, values=values,
                        errors={exc.field or "name": _name_problem(exc)}, status_code=exc.status)
    return redirect(f"/segments/{segment.id}")


@router.post("/segments", response_class=HTMLResponse)
def create_segment(
    request: Request, name: str = Form(""), description: str = Form(""), rule: str = Form(""), preset: str = Form(""),
    ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> Response:
    values = {"name": name, "description": description, "rule": rule, "preset": preset}
    return _save(request, ctx, session, None, values)


@router.post("/segments/preview")
def preview(
    rule: str = Form(""), segment_id: str = Form(""), ctx: UiContext = Depends(ui_context),
    session: Session = transaction,
) -> JSONResponse:
    """How many contacts the rule being built matches, with a few of them; or where the rule is wrong."""
    ws = ctx.workspace
    try:
        checked = service.checked_rule(session, ws, _rule_from_form(rule),
                                       int(segment_id) if segment_id.isdigit() else None)
        total = membership.count(session, ws, checked)
        ids = membership.sample(session, ws, checked, limit=SAMPLE)
    except ValidationError as exc:
        problem = rule_problem(exc)
        return JSONResponse({"ok": False, "path": problem.path, "message": problem.message})
    names = contacts.display_names(session, ws.id, ids)
    return JSONResponse({
        "ok": True, "count": total,
        "text": ngettext("%(num)s contact matches", "%(num)s contacts match", total) % {"num": f"{total:,}"},
        "sample": [{"id": cid, "url": f"/contacts/{cid}", "name": names.get(cid) or _("Contact #%(id)s") % {"id": cid}}
                   for cid in ids],
    })


@router.get("/segments/links", response_class=HTMLResponse)
def campaign_links_page(
    request: Request, ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> HTMLResponse:
    """Every link clicked in each campaign, with clicks and clickers, and a button that makes the clickers a segment."""
    campaigns: dict[str, list[Any]] = {}
    for link in clicked_links(session, ctx.workspace.id):
        campaigns.setdefault(link.campaign_id, []).append(link)
    return render(request, "segments/links.html", ctx, campaigns=list(campaigns.items()))


# One segment ---------------------------------------------------------------------------------------


def _members(session: Session, workspace_id: int, segment_id: int, cursor: str,
             back: str) -> dict[str, Any]:
    """A keyset page of the segment's members, paged like the contacts table."""
    flt = contacts.ContactFilter(where=[membership.members_of(segment_id)])
    try:
        rows, next_cursor = contacts.search(session, workspace_id, flt, cursor=cursor or None, limit=PAGE_SIZE)
    except ValidationError:
        cursor, back = "", ""
        rows, next_cursor = contacts.search(session, workspace_id, flt, limit=PAGE_SIZE)
    trail = [b for b in back.split(".") if b] if cursor else []
    return {
        "members": rows,
        "next_query": urlencode({"cursor": next_cursor, "back": ".".join([*trail, cursor or "-"])})
        if next_cursor else None,
        "prev_query": urlencode({"cursor": "" if trail[-1] == "-" else trail[-1], "back": ".".join(trail[:-1])})
        if trail else None,
    }


@router.get("/segments/{segment_id}", response_class=HTMLResponse)
def segment_page(
    request: Request, segment_id: int, cursor: str = "", back: str = "", entered: str = "", exited: str = "",
    ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> HTMLResponse:
    ws = ctx.workspace.id
    segment = service.get_segment(session, ws, segment_id)
    data = _members(session, ws, segment.id, cursor, back)
    if is_partial(request) and request.headers.get("HX-Target") == "results":
        response = render(request, "segments/_members.html", ctx, segment=segment, **data)
    else:
        moved = (int(entered), int(exited)) if entered.isdigit() and exited.isdigit() else None
        response = render(request, "segments/detail.html", ctx, segment=segment, moved=moved,
                          preset_names=preset_names(), rule=readable(segment.rule, Names.load(session, ws)), **data)
    response.headers["Vary"] = "HX-Request"
    return response


@router.get("/segments/{segment_id}/edit", response_class=HTMLResponse)
def edit_segment_page(
    request: Request, segment_id: int, ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> HTMLResponse:
    segment = service.get_segment(session, ctx.workspace.id, segment_id)
    values = {"name": segment.name, "description": segment.description,
              "rule": json.dumps(dump_rule(parse_rule(segment.rule)), ensure_ascii=False)}
    return _builder(request, ctx, session, segment=segment, values=values)


@router.post("/segments/{segment_id}", response_class=HTMLResponse)
def update_segment(
    request: Request, segment_id: int, name: str = Form(""), description: str = Form(""), rule: str = Form(""),
    ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> Response:
    segment = service.get_segment(session, ctx.workspace.id, segment_id)
    return _save(request, ctx, session, segment, {"name": name, "description": description, "rule": rule})


@router.post("/segments/{segment_id}/refresh")
def refresh_segment(
    segment_id: int, ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> Response:
    moves = membership.refresh(session, service.get_segment(session, ctx.workspace.id, segment_id))
    return redirect(f"/segments/{segment_id}?entered={moves.entered}&exited={moves.exited}")


@router.post("/segments/{segment_id}/delete", response_class=HTMLResponse)
def delete_segment(
    request: Request, segment_id: int, ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> Response:
    try:
        service.delete_segment(session, ctx.workspace.id, segment_id, actor=ctx.actor)
    except Conflict as exc:
        session.rollback()
        message = _("Another segment uses this one, so it cannot be deleted; change that segment first.")
        return _index(request, ctx, session, f"{message} ({exc.text()})", exc.status)
    return redirect("/segments")


# A contact's segments ------------------------------------------------------------------------------


@router.get("/contacts/{contact_id}/segments", response_class=HTMLResponse)
def contact_segments(
    request: Request, contact_id: int, ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> HTMLResponse:
    """The card's Segments section: the segments the contact is in, and "why?" for any segment."""
    ws = ctx.workspace.id
    contact = contacts.get_contact(session, ws, contact_id)
    data = {"contact": contact, "memberships": service.segments_of_contact(session, ws, contact.id),
            "segments": service.list_segments(session, ws)}
    template = "segments/_contact.html" if is_partial(request) else "segments/contact.html"
    response = render(request, template, ctx, **data)
    response.headers["Vary"] = "HX-Request"
    return response


@router.get("/contacts/{contact_id}/segments/why", response_class=HTMLResponse)
def why(
    request: Request, contact_id: int, segment: int = 0, ctx: UiContext = Depends(ui_context),
    session: Session = transaction,
) -> HTMLResponse:
    """Each condition of the segment's rule for this contact: in words, holds or not, and the evidence."""
    ws = ctx.workspace
    contact = contacts.get_contact(session, ws.id, contact_id)
    chosen = service.get_segment(session, ws.id, segment)
    problem = ""
    tree = None
    try:
        tree = reason(explain.explain(session, ws, chosen.rule, contact.id).as_json(), Names.load(session, ws.id),
                      ws.timezone)
    except ValidationError as exc:
        problem = rule_problem(exc).message
    template = "segments/_why.html" if is_partial(request) else "segments/why.html"
    response = render(request, template, ctx, contact=contact, segment=chosen, tree=tree, problem=problem,
                      member=chosen.id in {s.id for s, _at in service.segments_of_contact(session, ws.id, contact.id)})
    response.headers["Vary"] = "HX-Request"
    return response
