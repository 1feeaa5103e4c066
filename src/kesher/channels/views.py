"""UI routes of channels: sender identities with their DKIM keys, the keys of the providers' bounce
webhooks, and the mailbox of the local mail sink.

The sink (`make demo`) catches every mail instead of delivering it. Caught mails carry no
workspace, so a workspace sees the caught mails sent From one of its own sender identities.
"""

from __future__ import annotations

from email import policy
from email.parser import BytesParser
from email.utils import parseaddr
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from kesher.channels import providers, senders, sink
from kesher.channels.hooks import webhook_urls
from kesher.channels.models import CaughtMail, Sender
from kesher.contacts.views import PageRoute
from kesher.db.base import MAX_ID
from kesher.errors import Conflict, KesherError, NotFound
from kesher.web.deps import UiContext, csrf_protect, transaction, ui_context
from kesher.web.i18n import _
from kesher.web.pages import redirect, render

router = APIRouter(dependencies=[Depends(csrf_protect)], route_class=PageRoute, include_in_schema=False)

SENDER_FIELDS = ("name", "email", "reply_to", "address")
DEFAULT_SELECTOR = "kesher"
TXT_STRING = 255
MAILBOX_PAGE = 50
MAILBOX_SCAN = 2000  # caught mails read at most per page, looking for the workspace's own
# The headers a marketer checks before a campaign goes out, in this order.
HEADERS_THAT_MATTER = ("From", "To", "Reply-To", "Date", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post",
                       "Feedback-ID")


def _id(value: int) -> int:
    if not 1 <= value <= MAX_ID:
        raise NotFound("no row {id}", "id", id=value)
    return value


# Sender identities ----------------------------------------------------------------------------------


def _sender_problem(exc: KesherError) -> dict[str, str]:
    field = exc.field if exc.field in (*SENDER_FIELDS, "selector") else "email"
    if isinstance(exc, Conflict):
        if field == "email":
            return {"email": _("A sender identity with this email exists.")}
        return {"": _("Campaigns use this sender identity; give them another one first.")}
    return {field: {
        "name": _("A name is required, at most 200 characters."),
        "email": _("Enter a valid email address."),
        "reply_to": _("Enter a valid email address, or leave it blank."),
        "address": _("At most 500 characters."),
        "selector": _("A selector is a DNS name such as k1 or 2026.mail: letters, digits and inner dashes, "
                      "at most 63 characters."),
    }[field]}


def _senders_page(request: Request, ctx: UiContext, session: Session, values: dict[str, str] | None = None,
                  errors: dict[str, str] | None = None, status_code: int = 200, *,
                  hook_errors: dict[str, str] | None = None, hooks_saved: bool = False) -> HTMLResponse:
    identities = senders.list_senders(session, ctx.workspace.id)
    return render(request, "senders/index.html", ctx, status_code=status_code, senders=identities,
                  dkim={s.id: senders.dkim_record(s) for s in identities}, values=values or {}, errors=errors or {},
                  hook_keys=providers.webhook_keys(ctx.workspace), hook_urls=webhook_urls(request, ctx.workspace.slug),
                  hook_errors=hook_errors or {}, hooks_saved=hooks_saved)


@router.get("/senders", response_class=HTMLResponse)
def senders_page(request: Request, ctx: UiContext = Depends(ui_context), session: Session = transaction) -> HTMLResponse:
    return _senders_page(request, ctx, session)


@router.post("/senders", response_class=HTMLResponse)
def create_sender(
    request: Request, name: str = Form(""), email: str = Form(""), reply_to: str = Form(""), address: str = Form(""),
    ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> Response:
    values = {"name": name, "email": email, "reply_to": reply_to, "address": address}
    try:
        sender = senders.create_sender(session, ctx.workspace.id, name=name, email=email, reply_to=reply_to or None,
                                       address=address, actor=ctx.actor)
    except KesherError as exc:
        session.rollback()
        return _senders_page(request, ctx, session, values, _sender_problem(exc), exc.status)
    return redirect(f"/senders/{sender.id}")


@router.post("/senders/webhooks", response_class=HTMLResponse)
def save_webhook_keys(
    request: Request, sendgrid_public_key: str = Form(""), clear_sendgrid: bool = Form(False),
    mailgun_signing_key: str = Form(""), clear_mailgun: bool = Form(False),
    ses_confirm_subscriptions: bool = Form(False), ctx: UiContext = Depends(ui_context),
    session: Session = transaction,
) -> Response:
    """A blank key field keeps the stored key (it is never shown again); its Remove box removes it."""
    changes: dict[str, Any] = {"ses_confirm_subscriptions": ses_confirm_subscriptions}
    if clear_sendgrid or sendgrid_public_key.strip():
        changes["sendgrid_public_key"] = None if clear_sendgrid else sendgrid_public_key
    if clear_mailgun or mailgun_signing_key.strip():
        changes["mailgun_signing_key"] = None if clear_mailgun else mailgun_signing_key
    try:
        providers.set_webhook_keys(session, ctx.workspace, actor=ctx.actor, **changes)
    except KesherError as exc:
        session.rollback()
        message = _("This is not a SendGrid verification key (an EC public key, base64 or PEM).") \
            if exc.field == "sendgrid_public_key" else exc.text()
        return _senders_page(request, ctx, session, hook_errors={exc.field or "": message}, status_code=exc.status)
    return _senders_page(request, ctx, session, hooks_saved=True)


def zone_line(record: senders.DkimRecord) -> str:
    """The record as a zone-file line, its value cut into quoted strings of at most 255 characters
    (the limit of one DNS string), for DNS hosts that take the record that way."""
    value = record.value
    strings = " ".join(f'"{value[i:i + TXT_STRING]}"' for i in range(0, len(value), TXT_STRING))
    return f"{record.name}. IN {record.type} ( {strings} )"


def _sender_page(request: Request, ctx: UiContext, session: Session, sender: Sender, *,
                 values: dict[str, str] | None = None, errors: dict[str, str] | None = None,
                 status_code: int = 200) -> HTMLResponse:
    shown = values or {"name": sender.name, "email": sender.email, "reply_to": sender.reply_to or "",
                       "address": sender.address, "selector": sender.dkim_selector or DEFAULT_SELECTOR}
    record = senders.dkim_record(sender)
    return render(request, "senders/detail.html", ctx, status_code=status_code, sender=sender, values=shown,
                  errors=errors or {}, record=record, zone=zone_line(record) if record else "",
                  saved=request.query_params.get("saved") == "1")


@router.get("/senders/{sender_id}", response_class=HTMLResponse)
def sender_page(request: Request, sender_id: int, ctx: UiContext = Depends(ui_context),
                session: Session = transaction) -> HTMLResponse:
    return _sender_page(request, ctx, session, senders.get_sender(session, ctx.workspace.id, _id(sender_id)))


@router.post("/senders/{sender_id}", response_class=HTMLResponse)
def update_sender(
    request: Request, sender_id: int, name: str = Form(""), email: str = Form(""), reply_to: str = Form(""),
    address: str = Form(""), ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> Response:
    sender = senders.get_sender(session, ctx.workspace.id, _id(sender_id))
    values = {"name": name, "email": email, "reply_to": reply_to, "address": address,
              "selector": sender.dkim_selector or DEFAULT_SELECTOR}
    try:
        senders.update_sender(session, ctx.workspace.id, sender.id, name=name, email=email, reply_to=reply_to or None,
                              address=address, actor=ctx.actor)
    except KesherError as exc:
        session.rollback()
        return _sender_page(request, ctx, session, sender, values=values, errors=_sender_problem(exc),
                            status_code=exc.status)
    return redirect(f"/senders/{sender.id}?saved=1")


@router.post("/senders/{sender_id}/dkim", response_class=HTMLResponse)
def generate_dkim_key(
    request: Request, sender_id: int, selector: str = Form(""), ctx: UiContext = Depends(ui_context),
    session: Session = transaction,
) -> Response:
    """A new DKIM key; the page then shows the DNS TXT record to publish."""
    sender = senders.get_sender(session, ctx.workspace.id, _id(sender_id))
    try:
        senders.generate_dkim_key(session, ctx.workspace.id, sender.id, selector, actor=ctx.actor)
    except KesherError as exc:
        session.rollback()
        values = {"name": sender.name, "email": sender.email, "reply_to": sender.reply_to or "",
                  "address": sender.address, "selector": selector}
        return _sender_page(request, ctx, session, sender, values=values, errors=_sender_problem(exc),
                            status_code=exc.status)
    return redirect(f"/senders/{sender.id}#dkim")


@router.post("/senders/{sender_id}/delete", response_class=HTMLResponse)
def delete_sender(request: Request, sender_id: int, ctx: UiContext = Depends(ui_context),
                  session: Session = transaction) -> Response:
    sender = senders.get_sender(session, ctx.workspace.id, _id(sender_id))
    try:
        senders.delete_sender(session, ctx.workspace.id, sender.id, actor=ctx.actor)
    except Conflict as exc:
        session.rollback()
        return _sender_page(request, ctx, session, sender, errors=_sender_problem(exc), status_code=exc.status)
    return redirect("/senders")


# The mailbox of the local mail sink ----------------------------------------------------------------


def _from_address(row: CaughtMail) -> str:
    headers = BytesParser(policy=policy.default).parsebytes(row.message, headersonly=True)
    return parseaddr(str(headers["from"] or ""))[1].lower()


def _own_addresses(session: Session, workspace_id: int) -> set[str]:
    return {s.email.lower() for s in senders.list_senders(session, workspace_id)}


def own_mails(session: Session, workspace_id: int, before: int | None) -> tuple[list[tuple[CaughtMail, str]], int | None]:
    """A page of the workspace's caught mails, newest first, each with its From address; and the id the
    next page starts before (None at the end)."""
    own = _own_addresses(session, workspace_id)
    found: list[tuple[CaughtMail, str]] = []
    cursor, scanned = before, 0
    while own and scanned < MAILBOX_SCAN:
        rows = sink.recent_mails(session, sink.MAX_PAGE, cursor)
        for row in rows:
            cursor, scanned = row.id, scanned + 1
            sender = _from_address(row)
            if sender in own:
                found.append((row, sender))
            if len(found) == MAILBOX_PAGE:
                return found, cursor if sink.recent_mails(session, 1, cursor) else None
        if len(rows) < sink.MAX_PAGE:
            return found, None
    return found, cursor if own else None


@router.get("/mailbox", response_class=HTMLResponse)
def mailbox_page(request: Request, before: str = "", ctx: UiContext = Depends(ui_context),
                 session: Session = transaction) -> HTMLResponse:
    start = int(before) if before.isdigit() and 1 <= int(before) <= MAX_ID else None  # a mangled one: the newest
    mails, next_before = own_mails(session, ctx.workspace.id, start)
    settings = request.app.state.settings
    return render(request, "mailbox/index.html", ctx, mails=mails, next_before=next_before, first_page=start is None,
                  sink_on=settings.mail_sink, smtp=f"{settings.smtp_host}:{settings.smtp_port}")


def _dkim_summary(mail: sink.Mail) -> dict[str, str] | None:
    """The DKIM-Signature's domain and selector, or None when the mail is not signed."""
    value = next((v for k, v in mail.headers if k.lower() == "dkim-signature"), None)
    if value is None:
        return None
    tags = dict(part.strip().split("=", 1) for part in value.split(";") if "=" in part)
    return {"d": "".join(tags.get("d", "").split()), "s": "".join(tags.get("s", "").split())}


@router.get("/mailbox/{mail_id}", response_class=HTMLResponse)
def mail_page(request: Request, mail_id: int, ctx: UiContext = Depends(ui_context),
              session: Session = transaction) -> HTMLResponse:
    mail = sink.get_mail(session, _id(mail_id))
    if parseaddr(mail.sender)[1].lower() not in _own_addresses(session, ctx.workspace.id):
        raise NotFound("no caught mail {id}", "id", id=mail_id)
    shown: list[tuple[str, Any]] = []
    for name in HEADERS_THAT_MATTER:
        values = [v for k, v in mail.headers if k.lower() == name.lower()]
        shown.append((name, values[0] if values else None))
    return render(request, "mailbox/mail.html", ctx, mail=mail, shown=shown, dkim=_dkim_summary(mail))
