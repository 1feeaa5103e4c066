"""Reports that come back by mail: delivery status notifications (bounces) and feedback-loop complaints.

`start_bounce_listener` runs an SMTP server on `bounce_port` for the bounce domain's MX (or a relay
forwarding `bounces+*@` to it). Each message is read as:

- an ARF report (RFC 5965, `multipart/report; report-type=feedback-report`): a complaint, unless
  its Feedback-Type is `not-spam`;
- otherwise a bounce. flufl.bounce finds the recipients that failed, in RFC 3464 DSNs and in the
  looser formats of older MTAs; the DSN's own `Status:` then tells how: 5.x.x is a hard bounce,
  4.x.x (a server that gave up after temporary failures) a soft one. A DSN with `Action: delayed`
  (the server is still trying) is a warning, not a bounce, and changes nothing.

The report finds its message by the signed address it was sent to (`bounces+<token>@`), else by the
Message-ID or Return-Path of the original it quotes. A report that names no message is accepted
and dropped: refusing it would only make its sender bounce the bounce.
"""

from __future__ import annotations

import asyncio
import email
import logging
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr
from typing import Any

from aiosmtpd.controller import Controller
from flufl.bounce import all_failures

from kesher.channels.bounces import Report, record_report
from kesher.config import Settings
from kesher.db import Database

log = logging.getLogger("kesher.bounces")

MAX_REPORT_BYTES = 10 * 1024 * 1024
NOT_A_COMPLAINT = ("not-spam",)


def _original_headers(message: Message) -> Message | None:
    """The headers of the original message a report quotes (message/rfc822 or text/rfc822-headers)."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822" and part.is_multipart():
            original = part.get_payload(0)
            return original if isinstance(original, Message) else None
        if kind == "text/rfc822-headers":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                return HeaderParser().parsestr(payload.decode("utf-8", "replace"))
    return None


def _references(original: Message | None) -> list[str]:
    if original is None:
        return []
    return [str(value) for name in ("Message-ID", "Return-Path") for value in original.get_all(name, [])]


def _field(block: Message, name: str) -> str:
    return " ".join(str(block.get(name, "")).split())


def _recipient(value: str) -> str:
    """`rfc822; dana@example.com` -> `dana@example.com`."""
    return parseaddr(value.partition(";")[2] if ";" in value else value)[1].strip()


def _statuses(message: Message) -> dict[str, tuple[str, str]]:
    """Each failed recipient of the DSN's delivery-status part: its Status and Diagnostic-Code."""
    found: dict[str, tuple[str, str]] = {}
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status" or not part.is_multipart():
            continue
        for block in part.get_payload():
            recipient = _recipient(_field(block, "Final-Recipient") or _field(block, "Original-Recipient"))
            if recipient:
                found[recipient.lower()] = (_field(block, "Status"), _field(block, "Diagnostic-Code"))
    return found


def _complaints(message: Message) -> list[Report]:
    report = next((p for p in message.walk() if p.get_content_type() == "message/feedback-report"), None)
    fields = report.get_payload(0) if report is not None and report.is_multipart() else None
    if not isinstance(fields, Message) or _field(fields, "Feedback-Type").lower() in NOT_A_COMPLAINT:
        return []
    original = _original_headers(message)
    recipients = [_recipient(value) for value in fields.get_all("Original-Rcpt-To", [])]
    if not recipients and original is not None:
        recipients = [address for _, address in getaddresses(original.get_all("To", []))]
    reason = f"feedback loop: {_field(fields, 'Feedback-Type') or 'abuse'}"
    references = [*map(str, fields.get_all("Original-Mail-From", [])), *_references(original)]
    return [Report("complaint", address, reason=reason, references=references) for address in recipients or [""]]


def read_reports(raw: bytes) -> list[Report]:
    """The bounces or complaints a mail reports; [] for anything else (an auto-reply, a delay warning)."""
    message = email.message_from_bytes(raw)  # compat32 Messages: what flufl.bounce reads
    if message.get_content_type() == "multipart/report" and \
            str(message.get_param("report-type", "")).lower() == "feedback-report":
        return _complaints(message)
    _, failed = all_failures(message)
    statuses = _statuses(message)
    references = _references(_original_headers(message))
    reports = []
    for raw_address in sorted(failed):
        address = raw_address.decode("ascii", "replace")
        status, diagnostic = statuses.get(address.lower(), ("", ""))
        reports.append(Report("soft" if status.startswith("4") else "hard", address,
                              reason=diagnostic or status or "the receiving server gave up", references=references))
    return reports


class ReceiveReports:
    """aiosmtpd handler: every report is applied in one transaction of its own."""

    def __init__(self, database: Database, secret: str) -> None:
        self.database, self.secret = database, secret

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        content = envelope.original_content or envelope.content
        try:
            await asyncio.to_thread(self.receive, list(envelope.rcpt_tos), content)
        except Exception:
            log.exception("could not record a bounce report")
            return "451 4.3.0 could not record the report; try again later"
        return "250 2.0.0 report received"

    def receive(self, recipients: list[str], content: bytes) -> None:
        """Apply the mail's reports; the address it was sent to (`bounces+<token>@`) names the message first.
        A mail to `unsubscribe+<token>@` (the mailto of List-Unsubscribe) unsubscribes that message's contact."""
        if any(r.lower().startswith("unsubscribe+") for r in recipients):
            self.unsubscribe(recipients)
            return
        reports = read_reports(content)
        with self.database.session() as session:
            for report in reports:
                report.references = [*recipients, *report.references]
                source = "feedback_loop" if report.kind == "complaint" else "dsn"
                if record_report(session, report, self.secret, source=source) is None:
                    log.info("a %s report about %r names no message sent by Kesher; dropped", report.kind,
                             report.address)

    def unsubscribe(self, recipients: list[str]) -> None:
        from kesher.channels import outbox
        from kesher.contacts.service import contact_detail
        from kesher.messages import preferences
        from kesher.messages.tracking import BadToken, Tracking

        tokens = Tracking("", self.secret)
        with self.database.session() as session:
            for address in recipients:
                try:
                    message = outbox.find(session, tokens.read_unsubscribe_address(address))
                except BadToken:
                    log.info("an unsubscribe mail to %r carries no valid token; ignored", address)
                    continue
                if message is not None:
                    detail = contact_detail(session, message.workspace_id, message.contact_id)
                    preferences.unsubscribe(session, message, detail, source="unsubscribe_mail")


def start_bounce_listener(settings: Settings, database: Database, *, hostname: str = "0.0.0.0") -> Controller:
    """Listen for reports on `bounce_port` (all interfaces by default: reports come from other servers)."""
    controller = Controller(ReceiveReports(database, settings.secret_key), hostname=hostname,
                            port=settings.bounce_port, data_size_limit=MAX_REPORT_BYTES,
                            server_hostname=settings.bounce_domain or None)
    controller.start()
    log.info("listening for bounces and complaints on %s:%s", hostname, settings.bounce_port)
    return controller
