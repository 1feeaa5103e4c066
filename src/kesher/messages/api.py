"""The templates JSON API (mounted at /api/v1): saved templates, previews, pre-send checks.

Routes only translate: JSON in through the schemas, `messages.service` does the work in the
caller's workspace. A template that does not compile is a `ValidationError` naming its part
(`subject`, `preheader`, `html`, `text`) with the line, rendered as problem+json.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from kesher.contacts.api import CONFLICT, NO_CONTENT
from kesher.db.base import MAX_ID
from kesher.messages import checks, service
from kesher.messages.schemas import (ChecksIn, ChecksOut, FindingOut, PreviewIn, PreviewOut, TemplateIn, TemplateOut,
                                     TemplatePatch)
from kesher.web.deps import ApiCaller, DbSession, api_caller
from kesher.web.problems import API_ERRORS

router = APIRouter(tags=["templates"], responses=API_ERRORS)
Caller = Annotated[ApiCaller, Depends(api_caller)]
TemplateId = Annotated[int, Path(ge=1, le=MAX_ID, description="A template id")]


@router.get("/templates", summary="All saved templates, by name")
def all_templates(caller: Caller, session: DbSession) -> list[TemplateOut]:
    return [TemplateOut.model_validate(t) for t in service.list_templates(session, caller.workspace_id)]


@router.post("/templates", summary="Save a template", status_code=status.HTTP_201_CREATED, responses=CONFLICT,
             description="The subject, preheader, HTML and text must compile in the template sandbox, with merge "
                         "tags naming built-in or custom fields; otherwise nothing is saved and the problem names "
                         "the part and the line.")
def create_template(body: TemplateIn, caller: Caller, session: DbSession) -> TemplateOut:
    template = service.create_template(session, caller.workspace_id, body.model_dump(), actor=caller.actor)
    return TemplateOut.model_validate(template)


@router.post("/templates/preview", summary="Render content for a contact or a sample contact",
             description="Nothing is saved or sent. Links are left as written (no click tracking).")
def preview(body: PreviewIn, caller: Caller, session: DbSession) -> PreviewOut:
    sender = body.sender.model_dump() if body.sender is not None else None
    rendered = service.preview(session, caller.workspace_id, body.content(), body.contact_id, sender=sender)
    return PreviewOut.of(rendered)


@router.post("/templates/checks", summary="Pre-send checks of content: deliverability, links and the law",
             description="Renders the content (for `contact_id` or a sample contact) and checks it. Errors forbid "
                         "sending: for advertising, a subject starting with \"פרסומת\", the sender's name and "
                         "address, and an unsubscribe link.")
def run_checks(body: ChecksIn, caller: Caller, session: DbSession) -> ChecksOut:
    findings = service.run_checks(session, caller.workspace_id, body.content(), advertising=body.advertising,
                                  sender_name=body.sender_name, sender_email=body.sender_email,
                                  sender_address=body.sender_address, online=body.online, contact_id=body.contact_id)
    return ChecksOut(sendable=not checks.blocking(findings), findings=[FindingOut.of(f) for f in findings])


@router.get("/templates/{template_id}", summary="A saved template")
def get_template(template_id: TemplateId, caller: Caller, session: DbSession) -> TemplateOut:
    return TemplateOut.model_validate(service.get_template(session, caller.workspace_id, template_id))


@router.patch("/templates/{template_id}", summary="Change a template", responses=CONFLICT,
              description="Only the fields sent change; the whole template must still compile.")
def update_template(template_id: TemplateId, body: TemplatePatch, caller: Caller, session: DbSession) -> TemplateOut:
    template = service.update_template(session, caller.workspace_id, template_id, body.changes(), actor=caller.actor)
    return TemplateOut.model_validate(template)


@router.delete("/templates/{template_id}", summary="Delete a template (campaigns made from it keep their copy)",
               status_code=NO_CONTENT, response_class=Response)
def delete_template(template_id: TemplateId, caller: Caller, session: DbSession) -> None:
    service.delete_template(session, caller.workspace_id, template_id, actor=caller.actor)
