"""Request and response bodies of the templates API.

Shapes only: the values (names, languages, whether a template compiles) are checked by
`messages.service`, so the API and other callers report the same mistake alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kesher.db.base import MAX_ID
from kesher.messages.checks import Finding
from kesher.messages.render import Content, Rendered
from kesher.segments.schemas import InLanguages

EXAMPLE_HTML = '<h1>שלום [[שם פרטי|חבר/ה]]</h1>\n<p>המבצע של החודש מחכה לך.</p>\n{{ products.best_sellers(3) }}'


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def changes(self) -> dict[str, Any]:
        """Only what the caller sent, so fields left out stay as stored."""
        return self.model_dump(exclude_unset=True)


class ContentIn(_In):
    """A message's content: Jinja templates (sandboxed) with merge tags like [[שם פרטי]]."""

    subject: str = Field("", examples=["פרסומת: [[שם פרטי]], ההטבות של החודש"])
    preheader: str = Field("", description="The preview line mail programs show after the subject.")
    html: str = Field(description="A body fragment (put into the layout) or a whole HTML document.",
                      examples=[EXAMPLE_HTML])
    text: str | None = Field(None, description="The plain-text part; null: made from the HTML.")
    language: str = Field("he", description="he (right to left) or en.", examples=["he"])

    def content(self) -> Content:
        return Content(subject=self.subject, html=self.html, text=self.text, preheader=self.preheader,
                       language=self.language)


class TemplateIn(ContentIn):
    name: str = Field(examples=["ניוזלטר חודשי"])


class TemplatePatch(_In):
    name: str | None = None
    subject: str | None = None
    preheader: str | None = None
    html: str | None = None
    text: str | None = None
    language: str | None = None


class TemplateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    subject: str
    preheader: str
    html: str
    text: str | None
    language: str
    created_at: datetime
    updated_at: datetime


class Sender(_In):
    name: str = ""
    email: str = ""
    address: str = Field("", description="The postal address an advertising message must show.")


class PreviewIn(ContentIn):
    contact_id: int | None = Field(None, ge=1, le=MAX_ID, description="Render for this contact; null: a sample one.")
    sender: Sender | None = Field(None, description="Shown in the footer; default: a sample sender.")


class PreviewOut(BaseModel):
    subject: str
    html: str
    text: str
    links: list[str] = Field(description="The message's http(s) links, in order, each once.")

    @classmethod
    def of(cls, rendered: Rendered) -> PreviewOut:
        return cls(subject=rendered.subject, html=rendered.html, text=rendered.text, links=rendered.links)


class ChecksIn(ContentIn):
    advertising: bool = Field(True, description="Advertising must carry \"פרסומת\", the sender and an opt-out "
                                                "(Communications Law, section 30A).")
    sender_name: str = ""
    sender_email: str = ""
    sender_address: str = ""
    online: bool = Field(False, description="Also ask every link whether it answers (slower).")
    contact_id: int | None = Field(None, ge=1, le=MAX_ID, description="Render for this contact; null: a sample one.")


class FindingOut(BaseModel):
    code: str = Field(examples=["subject_not_marked"])
    level: str = Field(description="error (forbids sending), warning or advice.")
    field: str = Field(description="The part at fault: subject, html, text, sender_name, sender_email, "
                                   "sender_address.")
    message: str = Field(description="In English, with its values filled in.")
    text: InLanguages = Field(description="The message in each language.")
    params: dict[str, Any]

    @classmethod
    def of(cls, finding: Finding) -> FindingOut:
        return cls(code=finding.code, level=finding.level, field=finding.field,
                   message=finding.message.format(**finding.params), params=finding.params,
                   text=InLanguages(en=finding.text("en"), he=finding.text("he")))


class ChecksOut(BaseModel):
    sendable: bool = Field(description="False while any finding is an error.")
    findings: list[FindingOut] = Field(description="Errors first, then warnings, then advice.")
