"""The local mail sink: an SMTP server on `smtp_port` that keeps every mail in `caught_mails` instead
of delivering it, so a demo or a development setup can send real campaigns and look at them in the UI.

It accepts any sender and recipient, with no authentication: listen on 127.0.0.1 only (the default
`smtp_host`), never on a public address.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import select
from sqlalchemy.orm import Session

from kesher.channels.models import CaughtMail
from kesher.config import Settings
from kesher.db import Database
from kesher.errors import NotFound, ValidationError

log = logging.getLogger("kesher.sink")

MAX_PAGE = 200
SUBJECT_LIMIT = 1000
MAX_MESSAGE_BYTES = 25 * 1024 * 1024


class CatchMail:
    """aiosmtpd handler: each mail becomes one `caught_mails` row."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        content = envelope.original_content or envelope.content
        try:
            # The database is not async: the write runs in a thread, so the server keeps answering.
            await asyncio.to_thread(self._store, envelope.mail_from or "", list(envelope.rcpt_tos), content)
        except Exception:
            log.exception("the mail sink could not store a mail")
            return "451 4.3.0 the mail sink could not store the mail; try again"
        return "250 2.0.0 caught"

    def _store(self, mail_from: str, recipients: list[str], content: bytes) -> None:
        subject = str(BytesParser(policy=policy.default).parsebytes(content, headersonly=True)["subject"] or "")
        with self.database.session() as session:
            session.add(CaughtMail(mail_from=mail_from[:320], recipients=recipients,
                                   subject=subject[:SUBJECT_LIMIT], message=content))


def start_sink(settings: Settings, database: Database) -> Controller:
    """Start the sink on `smtp_host`:`smtp_port` in a thread of its own; `.stop()` the result to end it."""
    controller = Controller(CatchMail(database), hostname=settings.smtp_host, port=settings.smtp_port,
                            data_size_limit=MAX_MESSAGE_BYTES, server_hostname="kesher-mail-sink")
    controller.start()
    log.info("mail sink listening on %s:%s", settings.smtp_host, settings.smtp_port)
    return controller


# What the UI shows ---------------------------------------------------------------------------------


@dataclass
class Mail:
    """A caught mail as a page shows it: the headers people read and the two bodies."""

    id: int
    received_at: datetime
    mail_from: str
    recipients: list[str]
    subject: str
    sender: str  # the From header
    to: str  # the To header
    text: str | None
    html: str | None
    headers: list[tuple[str, str]]
    raw: bytes


def recent_mails(session: Session, limit: int = 50, before_id: int | None = None) -> list[CaughtMail]:
    """The newest caught mails first; `before_id` (the last id of a page) gives the next page."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationError("must be between 1 and {most}", "limit", most=MAX_PAGE)
    stmt = select(CaughtMail)
    if before_id is not None:
        stmt = stmt.where(CaughtMail.id < before_id)
    return list(session.scalars(stmt.order_by(CaughtMail.id.desc()).limit(limit)))


def _part(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    try:
        return str(part.get_content())
    except (LookupError, ValueError):  # an unknown charset or a broken encoding: show what can be read
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else None


def get_mail(session: Session, mail_id: int) -> Mail:
    row = session.get(CaughtMail, mail_id)
    if row is None:
        raise NotFound("no caught mail {id}", "id", id=mail_id)
    message = BytesParser(policy=policy.default).parsebytes(row.message)
    assert isinstance(message, EmailMessage)
    return Mail(id=row.id, received_at=row.received_at, mail_from=row.mail_from, recipients=list(row.recipients),
                subject=str(message["subject"] or ""), sender=str(message["from"] or ""), to=str(message["to"] or ""),
                text=_part(message, "plain"), html=_part(message, "html"),
                headers=[(name, str(value)) for name, value in message.items()], raw=row.message)
