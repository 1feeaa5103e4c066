"""Test sends: a campaign's variant, rendered as a contact, to a few addresses, outside the outbox.

They are not campaign messages: no tracking, no events, no effect on the figures or on anyone's
frequency cap; '[TEST]' goes before the subject so nobody mistakes one for the real thing.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.orm import Session

from kesher.accounts.models import Workspace
from kesher.campaigns import service
from kesher.campaigns.models import Campaign
from kesher.campaigns.sending import base_url
from kesher.channels import senders
from kesher.channels.email import build_message
from kesher.channels.smtp import Outgoing, SmtpPool
from kesher.config import Settings
from kesher.contacts.normalize import normalize_email
from kesher.errors import ValidationError
from kesher.messages.context import contexts, sample_context
from kesher.messages.render import Renderer


def test_send(session: Session, settings: Settings, workspace: Workspace, campaign: Campaign, emails: list[str], *,
              contact_id: int | None = None, variant: str = "A") -> list[str]:
    """Send the variant to `emails`; returns the addresses the SMTP server accepted."""
    addresses = []
    for i, email in enumerate(emails):
        try:
            address = normalize_email(email)
        except ValidationError as exc:
            raise exc.located(f"emails[{i}]") from None
        if address:
            addresses.append(address)
    chosen = [v for v in service.variants_of(session, campaign.id) if v.label == variant]
    if not chosen:
        raise ValidationError("the campaign has no variant {variant!r}", "variant", variant=variant)
    if campaign.sender_id is None:
        raise ValidationError("choose a sender identity first", "sender_id")
    sender = senders.get_sender(session, workspace.id, campaign.sender_id)
    if contact_id is not None:
        context = contexts(session, workspace.id, [contact_id]).get(contact_id)
        if context is None:
            raise ValidationError("no contact {id} in this workspace", "contact_id", id=contact_id)
    else:
        context = sample_context(workspace.language)
    v = chosen[0]
    base = base_url(settings)
    context = {**context, "sender": {"name": v.from_name or sender.name, "email": sender.email,
                                     "address": sender.address},
               "unsubscribe_url": f"{base}/u/test", "preferences_url": f"{base}/p/test"}
    rendered = Renderer(service.content_of(campaign, v, workspace.language)).render(context)
    domain = sender.email.rsplit("@", 1)[1]
    dkim = senders.dkim_key(sender)
    outgoing = [Outgoing(i, sender.email, to, build_message(
        subject=f"[TEST] {rendered.subject}", html=rendered.html, text=rendered.text, from_name=v.from_name or sender.name,
        from_email=sender.email, reply_to=sender.reply_to, to=to, message_id=f"<kesher.test.{campaign.id}.{i}@{domain}>",
        list_unsubscribe_mailto=f"mailto:{sender.email}?subject=unsubscribe", list_unsubscribe_url=f"{base}/u/test",
        feedback_id=f"{campaign.id}:{workspace.id}:test:kesher", dkim=dkim)) for i, to in enumerate(addresses)]

    async def deliver() -> list[str]:
        async def everything(ids: list[int]) -> set[int]:
            return set(ids)

        async with SmtpPool(settings.smtp_host, settings.smtp_port, security=settings.smtp_security,
                            username=settings.smtp_username, password=settings.smtp_password, connections=1,
                            timeout=settings.smtp_timeout) as pool:
            outcomes = await pool.deliver(outgoing, everything)
        return [addresses[o.id] for o in outcomes if o.status == "sent" and (o.code is None or o.code < 400)]

    return asyncio.run(deliver())
