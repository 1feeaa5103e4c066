"""Bounces, complaints and deliveries: from a report to its message, to one event, to a suppressed address.

A report finds its outbox row by the message's envelope sender, `bounces+<token>@domain` (VERP),
where DSNs are sent and which feedback-loop reports quote as Return-Path. The token is the outbox
id and an HMAC of it under the secret key, so a forged or altered one reads as no reference at all.
A provider's webhook, whose signature has been checked, may also name the message by its
Message-ID (`outbox.message_id`): a DSN by mail may not, since anyone can send one.

`apply_bounce` is the one rule for what a bounce or complaint does, whichever way it arrived
(a DSN, a provider's webhook, a 5xx at SMTP time):

- it is stored as an `email_bounced` (bounce_type hard or soft) or `email_complained` event, with
  an idempotency key, so a report delivered twice counts once and changes nothing the second time;
- a hard bounce suppresses the address (reason `hard_bounce`);
- a complaint suppresses it (`complaint`) and records the contact's email consent as `unsubscribed`;
- the third soft bounce in a row (no delivery, open or click of the contact since the first of
  them) suppresses it (`soft_bounces`).

A provider's report that a message was delivered goes the same way to `apply_delivery`: one
`email_delivered` event for the message's contact and campaign, counted once, which ends a run of
soft bounces and changes neither suppressions nor consent. It counts only for a message Kesher sent.
"""

from __future__ import annotations

import base64
import hmac
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Literal

from sqlalchemy.orm import Session

from kesher.accounts.models import Workspace
from kesher.accounts.service import get_workspace
from kesher.channels.models import OutboxMessage
from kesher.contacts import service as contacts
from kesher.contacts.models import Contact
from kesher.contacts.suppression import normalize_address, suppress
from kesher.errors import ValidationError
from kesher.events.ingest import ingest
from kesher.events.service import EventFilter, find_events
from kesher.messages.tracking import HmacKey

log = logging.getLogger("kesher.bounces")

Kind = Literal["hard", "soft", "complaint"]
ReportKind = Kind | Literal["delivered"]
SOFT_BOUNCES_IN_A_ROW = 3
# Events that show mail reaches the contact, and so break a run of soft bounces.
REACHED = ("email_delivered", "email_opened", "email_clicked")
# Lower case only: some mail systems lower-case the local part of the address a DSN goes to.
TOKEN = re.compile(r"(\d{1,19})\.([a-z2-7]{16})")
OUTBOX_MESSAGE_ID = re.compile(r"^<?kesher\.(\d{1,19})@[^>]+>?$")  # outbox.message_id: <kesher.<id>@domain>
REASON_LIMIT = 2000


# Signed references to an outbox row ------------------------------------------------------------


def message_token(outbox_id: int, secret: str) -> str:
    """`<outbox id>.<16 base32 letters of its HMAC-SHA256>`: lower case, safe in any local part."""
    digest = _outbox_key(secret).mac(f"kesher-outbox:{outbox_id}".encode())
    return f"{outbox_id}.{base64.b32encode(digest[:10]).decode('ascii').lower()}"


@lru_cache(maxsize=8)
def _outbox_key(secret: str) -> HmacKey:
    # Made once per secret: every message sent makes a token, and preparing the key was half its cost.
    return HmacKey(secret.encode())


def read_token(token: str, secret: str) -> int | None:
    """The outbox id of `token`, or None when it is not a token or its signature is wrong."""
    match = TOKEN.fullmatch(token.lower())
    if match is None:
        return None
    outbox_id = int(match.group(1))
    return outbox_id if hmac.compare_digest(match.group(0), message_token(outbox_id, secret)) else None


def bounce_address(outbox_id: int, domain: str, secret: str) -> str:
    """The envelope sender (Return-Path) of a message: DSNs about it come back here."""
    return f"bounces+{message_token(outbox_id, secret)}@{domain}"


def read_bounce_address(address: str, secret: str) -> int | None:
    local = address.strip().strip("<>").rpartition("@")[0].lower()
    if not local.startswith("bounces+"):
        return None
    return read_token(local.removeprefix("bounces+"), secret)


def outbox_id_of(references: list[str], secret: str, *, message_ids: bool = False) -> int | None:
    """The outbox row named by the first valid reference: a signed bounce address, or (when the
    report's own signature was checked, `message_ids`) a Message-ID as `outbox.message_id` writes it."""
    for reference in references:
        outbox_id = read_bounce_address(reference, secret)
        if outbox_id is None and message_ids and (match := OUTBOX_MESSAGE_ID.match(reference.strip())):
            outbox_id = int(match.group(1))
        if outbox_id is not None:
            return outbox_id
    return None


# What a report says -----------------------------------------------------------------------------


@dataclass
class Report:
    """One bounce or complaint, as a DSN, an ARF report or a provider's webhook gives it, or one
    delivery, as a provider's webhook gives it."""

    kind: ReportKind
    address: str  # the recipient it is about, as the report names it ("" when unknown)
    reason: str = ""
    references: list[str] = field(default_factory=list)  # bounce addresses (and Message-IDs) it names
    ts: datetime | None = None
    key: str = ""  # the report's own id (a provider's event id): counts it once when no message is found


@dataclass
class Applied:
    """What `apply_bounce` or `apply_delivery` did: the event (new, a replay, or none for an address
    no contact holds), and the suppression it caused, if any."""

    event: Literal["recorded", "duplicate", "no_contact"]
    suppressed: str | None = None


def apply_bounce(
    session: Session, workspace: Workspace, contact_id: int | None, address: str, kind: Kind, *, key: str,
    reason: str = "", campaign_id: int | str | None = None, message_id: str | None = None, ts: datetime | None = None,
    source: str = "email",
) -> Applied:
    """Record a bounce or complaint once (`key` is its idempotency key) and suppress the address when
    the rule says so. `contact_id` None: found by `address`; an address no contact holds is still
    suppressed after a hard bounce or complaint."""
    if contact_id is None:
        contact_id = _contact_by_email(session, workspace.id, address)
    if contact_id is not None:
        properties = _message_properties(campaign_id, message_id)
        if kind != "complaint":
            properties["bounce_type"] = kind
            if reason:
                properties["reason"] = reason[:REASON_LIMIT]
        if not _record_event(session, workspace, "email_complained" if kind == "complaint" else "email_bounced",
                             contact_id, properties, key=key, ts=ts, source=source):
            return Applied("duplicate")
    reason_code = {"hard": "hard_bounce", "complaint": "complaint"}.get(kind)
    if kind == "soft" and contact_id is not None and _soft_bounces_in_a_row(session, workspace.id, contact_id):
        reason_code = "soft_bounces"
    event: Literal["recorded", "no_contact"] = "recorded" if contact_id is not None else "no_contact"
    if reason_code is None:
        return Applied(event)
    try:
        suppress(session, workspace.id, "email", address, reason_code, note=reason[:200], actor=source)
    except ValidationError:
        log.warning("a %s report names %r, which is not an email address; nothing suppressed", kind, address)
        return Applied(event)
    if kind == "complaint" and contact_id is not None:
        contacts.set_consent(session, workspace.id, contact_id, "email", "unsubscribed", source=f"complaint:{source}")
    return Applied(event, suppressed=reason_code)


def apply_delivery(session: Session, workspace: Workspace, message: OutboxMessage, *, ts: datetime | None = None,
                   source: str = "email") -> Applied:
    """Record once that `message` reached its recipient's mail server, as an `email_delivered` event of its
    contact. Keyed by message, like a bounce: the same delivery reported twice, or by two routes, counts once."""
    properties = _message_properties(message.campaign_id, message.message_id)
    recorded = _record_event(session, workspace, "email_delivered", message.contact_id, properties,
                             key=f"delivered:{message.id}", ts=ts, source=source)
    return Applied("recorded" if recorded else "duplicate")


def _message_properties(campaign_id: int | str | None, message_id: str | None) -> dict[str, str]:
    properties: dict[str, str] = {}
    if campaign_id is not None:
        properties["campaign_id"] = str(campaign_id)
    if message_id:
        properties["message_id"] = message_id[:500]
    return properties


def _record_event(session: Session, workspace: Workspace, event_type: str, contact_id: int,
                  properties: dict[str, str], *, key: str, ts: datetime | None, source: str) -> bool:
    """Ingest one event of the contact under the idempotency key `key`; False when it was stored already."""
    result = ingest(session, workspace, [{"type": event_type, "contact": {"id": contact_id}, "ts": ts,
                                          "idempotency_key": key[:200], "properties": properties}], source=source)
    if result.errors:
        error = result.errors[0]
        raise ValidationError("the event was not recorded: {detail}", error.field, detail=error.message)
    return result.accepted > 0


def _contact_by_email(session: Session, workspace_id: int, address: str) -> int | None:
    try:
        email = normalize_address("email", address)
    except ValidationError:
        return None
    found, _ = contacts.search(session, workspace_id, contacts.ContactFilter(where=[Contact.email == email]), limit=1)
    return found[0].id if found else None


def _soft_bounces_in_a_row(session: Session, workspace_id: int, contact_id: int) -> bool:
    """Whether the contact's last SOFT_BOUNCES_IN_A_ROW bounces are soft ones with nothing reaching it since."""
    reached = [events[0].ts for kind in REACHED
               if (events := find_events(session, workspace_id, EventFilter(type=kind, contact_id=contact_id),
                                         limit=1)[0])]
    bounces, _ = find_events(session, workspace_id, EventFilter(type="email_bounced", contact_id=contact_id,
                                                                since=max(reached, default=None)),
                             limit=SOFT_BOUNCES_IN_A_ROW)
    return len(bounces) == SOFT_BOUNCES_IN_A_ROW and all(e.properties.get("bounce_type") == "soft" for e in bounces)


def record_report(session: Session, report: Report, secret: str, *, source: str,
                  workspace: Workspace | None = None) -> Applied | None:
    """Apply a report to the message it names, or (in a known workspace) a bounce or complaint to the
    contact holding its address. None when it leads nowhere: no message of this workspace, and (for a
    bounce or complaint) no workspace to look in."""
    row = _message(session, report.references, secret, workspace)
    if report.kind == "delivered":
        # Mail the provider sent for anyone else says nothing about Kesher's messages or their contacts.
        if row is None:
            return None
        return apply_delivery(session, workspace or get_workspace(session, row.workspace_id), row, ts=report.ts,
                              source=source)
    if row is not None:
        workspace = workspace or get_workspace(session, row.workspace_id)
        kind = "complaint" if report.kind == "complaint" else f"bounce:{report.kind}"
        # Keyed by message: the same bounce reported twice, or by a DSN and a webhook, counts once.
        return apply_bounce(session, workspace, row.contact_id, row.address, report.kind, key=f"{kind}:{row.id}",
                            reason=report.reason, campaign_id=row.campaign_id, message_id=row.message_id,
                            ts=report.ts, source=source)
    if workspace is None or not report.address or not report.key:
        return None
    return apply_bounce(session, workspace, None, report.address, report.kind, key=f"{source}:{report.key}",
                        reason=report.reason, ts=report.ts, source=source)


def _message(session: Session, references: list[str], secret: str, workspace: Workspace | None) -> OutboxMessage | None:
    # Only the webhooks name a workspace, and they come signed by their provider.
    outbox_id = outbox_id_of(references, secret, message_ids=workspace is not None)
    row = session.get(OutboxMessage, outbox_id) if outbox_id is not None else None
    if row is None or (workspace is not None and row.workspace_id != workspace.id):
        return None
    return row

