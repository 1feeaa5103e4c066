"""Sender identities: the name and address a campaign goes out under, its postal address, its DKIM key.

The DKIM private key never leaves this module except as a `DkimKey` for signing; what a person
sees of it is the DNS record to publish (`v=DKIM1; k=rsa; p=...`).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kesher.accounts.service import audit
from kesher.channels.email import DkimKey
from kesher.channels.models import Sender
from kesher.contacts.normalize import clean_text, normalize_email
from kesher.errors import Conflict, NotFound, ValidationError

NAME_LIMIT, ADDRESS_LIMIT = 200, 500
DKIM_KEY_BITS = 2048
# One or more DNS labels (`k1`, `2026.mail`), lower case, as the `senders.dkim_selector` column holds them.
SELECTOR = re.compile(r"^(?=.{1,63}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
UNCHANGED: Any = object()


@dataclass(frozen=True)
class DkimRecord:
    """The DNS TXT record that publishes a sender's DKIM public key."""

    name: str  # <selector>._domainkey.<domain>
    value: str  # v=DKIM1; k=rsa; p=...
    type: str = "TXT"


def _email(value: Any, field: str) -> str:
    try:
        address = normalize_email(value)
    except ValidationError as exc:
        raise exc.located(field) from None
    if address is None:
        raise ValidationError("must not be empty", field)
    return address


def _name(value: Any) -> str:
    name = clean_text(value, "name")
    if name is None:
        raise ValidationError("a sender needs a name, the one recipients see", "name")
    if len(name) > NAME_LIMIT:
        raise ValidationError("is {length} characters long; at most {limit} are allowed", "name", length=len(name),
                              limit=NAME_LIMIT)
    return name


def _postal_address(value: Any) -> str:
    address = clean_text(value, "address") or ""
    if len(address) > ADDRESS_LIMIT:
        raise ValidationError("is {length} characters long; at most {limit} are allowed", "address",
                              length=len(address), limit=ADDRESS_LIMIT)
    return address


def _email_free(session: Session, workspace_id: int, email: str, sender_id: int | None = None) -> None:
    other = session.scalar(select(Sender.id).where(Sender.workspace_id == workspace_id, Sender.email == email))
    if other is not None and other != sender_id:
        raise Conflict("a sender with {email} exists", "email", email=email)


def list_senders(session: Session, workspace_id: int) -> list[Sender]:
    return list(session.scalars(select(Sender).where(Sender.workspace_id == workspace_id).order_by(Sender.name,
                                                                                                 Sender.id)))


def get_sender(session: Session, workspace_id: int, sender_id: int) -> Sender:
    sender = session.scalar(select(Sender).where(Sender.workspace_id == workspace_id, Sender.id == sender_id))
    if sender is None:
        raise NotFound("no sender {id}", "id", id=sender_id)
    return sender


def create_sender(session: Session, workspace_id: int, *, name: Any, email: Any, reply_to: Any = None,
                  address: Any = "", actor: str = "system") -> Sender:
    """A new sender identity; `address` is the postal address advertising must show (amendment 40)."""
    clean_email = _email(email, "email")
    sender = Sender(workspace_id=workspace_id, name=_name(name), email=clean_email,
                    reply_to=_email(reply_to, "reply_to") if reply_to else None, address=_postal_address(address))
    _email_free(session, workspace_id, clean_email)
    session.add(sender)
    session.flush()
    audit(session, workspace_id, actor, "sender.created", "sender", sender.id, {"email": clean_email})
    return sender


def update_sender(session: Session, workspace_id: int, sender_id: int, *, name: Any = UNCHANGED,
                  email: Any = UNCHANGED, reply_to: Any = UNCHANGED, address: Any = UNCHANGED,
                  actor: str = "system") -> Sender:
    """Change what is given; `reply_to` None or blank removes it. An email at another domain drops
    the DKIM key, which signs for the old domain only."""
    sender = get_sender(session, workspace_id, sender_id)
    new: dict[str, Any] = {}
    if name is not UNCHANGED:
        new["name"] = _name(name)
    if email is not UNCHANGED:
        new["email"] = _email(email, "email")
        _email_free(session, workspace_id, new["email"], sender.id)
    if reply_to is not UNCHANGED:
        new["reply_to"] = _email(reply_to, "reply_to") if reply_to else None
    if address is not UNCHANGED:
        new["address"] = _postal_address(address)
    changes = {key: value for key, value in new.items() if getattr(sender, key) != value}
    old_domain = _domain(sender.email)
    for key, value in changes.items():
        setattr(sender, key, value)
    if _domain(sender.email) != old_domain and sender.dkim_private_key:
        sender.dkim_selector = sender.dkim_private_key = None
        changes["dkim"] = "removed"
    if changes:
        session.flush()
        audit(session, workspace_id, actor, "sender.updated", "sender", sender.id, changes)
    return sender


def delete_sender(session: Session, workspace_id: int, sender_id: int, *, actor: str = "system") -> None:
    sender = get_sender(session, workspace_id, sender_id)
    try:
        with session.begin_nested():
            session.delete(sender)
            session.flush()
    except IntegrityError:
        # Campaigns keep their sender (the foreign key restricts): what went out under it stays explainable.
        raise Conflict("campaigns use this sender; give them another sender first", "id") from None
    audit(session, workspace_id, actor, "sender.deleted", "sender", sender_id, {"email": sender.email})


def _domain(email: str) -> str:
    return email.rpartition("@")[2]


def generate_dkim_key(session: Session, workspace_id: int, sender_id: int, selector: str, *,
                      actor: str = "system") -> DkimRecord:
    """A new RSA-2048 DKIM key for the sender (replacing any earlier one) and the DNS record to publish.

    Mail is signed with the new key at once, so publish the record before sending: until it is
    in DNS, receivers find no key (or the old one) under the selector and the signature fails.
    """
    selector = (selector or "").strip().lower()
    if not SELECTOR.match(selector):
        raise ValidationError("must be a DNS name such as k1 or 2026.mail: letters, digits and inner dashes, "
                              "63 characters at most", "selector")
    sender = get_sender(session, workspace_id, sender_id)
    key = rsa.generate_private_key(public_exponent=65537, key_size=DKIM_KEY_BITS)
    sender.dkim_selector = selector
    sender.dkim_private_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()).decode("ascii")
    session.flush()
    audit(session, workspace_id, actor, "sender.dkim_key_created", "sender", sender.id, {"selector": selector})
    record = dkim_record(sender)
    assert record is not None
    return record


def dkim_record(sender: Sender) -> DkimRecord | None:
    """The DNS record of the sender's DKIM key, or None when it has no key."""
    if not (sender.dkim_selector and sender.dkim_private_key):
        return None
    key = serialization.load_pem_private_key(sender.dkim_private_key.encode("ascii"), password=None)
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return DkimRecord(name=f"{sender.dkim_selector}._domainkey.{_domain(sender.email)}",
                      value=f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode('ascii')}")


def dkim_key(sender: Sender) -> DkimKey | None:
    """What `email.build_message` signs with, or None when the sender has no key."""
    if not (sender.dkim_selector and sender.dkim_private_key):
        return None
    return DkimKey(domain=_domain(sender.email), selector=sender.dkim_selector, private_key_pem=sender.dkim_private_key)
