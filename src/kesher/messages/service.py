"""Saved templates, previews and pre-send checks, one workspace at a time.

A template is saved only when its subject, preheader, HTML and text all compile in the sandbox
against the workspace's own custom fields, so a bad one is refused with the field and the reason
and nothing is stored. Campaigns copy a template's content; deleting a template touches no campaign.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kesher.accounts.service import audit
from kesher.contacts.fields import list_fields
from kesher.db.base import utcnow
from kesher.errors import Conflict, NotFound, ValidationError
from kesher.messages import checks
from kesher.messages.context import contexts, sample_context, shop_data
from kesher.messages.models import Template
from kesher.messages.render import Content, Rendered, Renderer
from kesher.messages.templates import merge_fields
from kesher.web.i18n import LANGUAGES

NAME_LIMIT, LINE_LIMIT, SOURCE_LIMIT = 200, 500, 512 * 1024


def _name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not " ".join(value.split()):
        raise ValidationError("must not be empty", field)
    name = " ".join(value.split())
    if len(name) > NAME_LIMIT:
        raise ValidationError("is longer than {limit:,} characters", field, limit=NAME_LIMIT)
    return name


def _source(limit: int, nullable: bool = False) -> Callable[[Any, str], str | None]:
    def check(value: Any, field: str) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise ValidationError("must be text", field)
        if len(value) > limit:
            raise ValidationError("is longer than {limit:,} characters", field, limit=limit)
        return value
    return check


def _language(value: Any, field: str) -> str:
    if value not in LANGUAGES:
        raise ValidationError("must be one of {choices}", field, choices=", ".join(LANGUAGES))
    return str(value)


FIELDS: dict[str, Callable[[Any, str], Any]] = {
    "name": _name, "subject": _source(LINE_LIMIT), "preheader": _source(LINE_LIMIT), "html": _source(SOURCE_LIMIT),
    "text": _source(SOURCE_LIMIT, nullable=True), "language": _language,
}


def _checked(data: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ValidationError("is not a field of a template", unknown[0])
    return {name: FIELDS[name](value, name) for name, value in data.items()}


def renderer(session: Session, workspace_id: int, content: Content) -> Renderer:
    """A renderer that knows the workspace's custom fields, so a merge tag naming none of them is refused."""
    return Renderer(content, fields=merge_fields(list_fields(session, workspace_id)))


def content_of(template: Template) -> Content:
    return Content(subject=template.subject, html=template.html, text=template.text, preheader=template.preheader,
                   language=template.language)


def _name_free(session: Session, workspace_id: int, name: str, template_id: int | None = None) -> None:
    taken = session.scalar(select(Template.id).where(Template.workspace_id == workspace_id, Template.name == name))
    if taken is not None and taken != template_id:
        raise Conflict("a template named {name!r} exists", "name", name=name)


def create_template(session: Session, workspace_id: int, data: Mapping[str, Any], *, actor: str = "system") -> Template:
    """A new template from `name` and `html` (required), `subject`, `preheader`, `text` and `language`."""
    values = {"subject": "", "preheader": "", "text": None, "language": "he", **_checked(data)}
    for required in ("name", "html"):
        if required not in values:
            raise ValidationError("is required", required)
    renderer(session, workspace_id, Content(**{k: values[k] for k in ("subject", "html", "text", "preheader",
                                                                         "language")}))
    _name_free(session, workspace_id, values["name"])
    now = utcnow()
    template = Template(workspace_id=workspace_id, created_at=now, updated_at=now, **values)
    session.add(template)
    session.flush()
    audit(session, workspace_id, actor, "template.created", "template", template.id, {"name": template.name})
    return template


def list_templates(session: Session, workspace_id: int) -> list[Template]:
    return list(session.scalars(select(Template).where(Template.workspace_id == workspace_id).order_by(Template.name)))


def get_template(session: Session, workspace_id: int, template_id: int) -> Template:
    template = session.scalar(select(Template).where(Template.workspace_id == workspace_id,
                                                     Template.id == template_id))
    if template is None:
        raise NotFound("no template {id}", "id", id=template_id)
    return template


def update_template(session: Session, workspace_id: int, template_id: int, changes: Mapping[str, Any], *,
                    actor: str = "system") -> Template:
    """Change the fields in `changes`; the whole template must still compile, or nothing changes."""
    template = get_template(session, workspace_id, template_id)
    values = _checked(changes)
    merged = {**{k: getattr(template, k) for k in FIELDS}, **values}
    renderer(session, workspace_id, Content(**{k: merged[k] for k in ("subject", "html", "text", "preheader",
                                                                         "language")}))
    if "name" in values:
        _name_free(session, workspace_id, values["name"], template.id)
    changed = sorted(k for k, v in values.items() if getattr(template, k) != v)
    for key in changed:
        setattr(template, key, values[key])
    if changed:
        template.updated_at = utcnow()
        audit(session, workspace_id, actor, "template.updated", "template", template.id, {"fields": changed})
    return template


def delete_template(session: Session, workspace_id: int, template_id: int, *, actor: str = "system") -> None:
    template = get_template(session, workspace_id, template_id)
    session.delete(template)
    audit(session, workspace_id, actor, "template.deleted", "template", template_id, {"name": template.name})


def _context(session: Session, workspace_id: int, language: str, contact_id: int | None,
             sender: Mapping[str, str] | None) -> dict[str, Any]:
    """A contact's context (or the sample one) with the sample's links and, when given, the sender."""
    context = sample_context(language)
    if contact_id is not None:
        found = contexts(session, workspace_id, [contact_id], shop=shop_data(session, workspace_id))
        if contact_id not in found:
            raise NotFound("no contact {id}", "contact_id", id=contact_id)
        context.update(found[contact_id])
    if sender is not None:
        context["sender"] = dict(sender)
    return context


def preview(session: Session, workspace_id: int, content: Content, contact_id: int | None = None, *,
            sender: Mapping[str, str] | None = None) -> Rendered:
    """The message as `contact_id` would get it, or as the sample contact would; links left as written."""
    return renderer(session, workspace_id, content).render(
        _context(session, workspace_id, content.language, contact_id, sender))


def run_checks(session: Session, workspace_id: int, content: Content, *, advertising: bool, sender_name: str,
               sender_email: str, sender_address: str, online: bool = False,
               contact_id: int | None = None) -> list[checks.Finding]:
    """The pre-send checks of content rendered for `contact_id` or the sample contact, from this sender."""
    sender = {"name": sender_name, "email": sender_email, "address": sender_address}
    rendered = preview(session, workspace_id, content, contact_id, sender=sender)
    return checks.check(content, rendered, advertising=advertising, sender_name=sender_name,
                        sender_email=sender_email, sender_address=sender_address, online=online)
