"""What a contact asked for through the links of a message: to unsubscribe, which channels and topics
to get, and whether to get less mail.

The link's token names an outbox message; the workspace, the contact and the address always come
from that message's row, never from the request.

Topics are the lists a workspace offers as such (`groups.topic_ids`; marketers choose them through
the lists API and the lists page). A contact's choice is kept twice, on purpose: in
`contact_preferences.topics` (what they asked for, and when) and as membership of those lists,
which campaigns and segments read. The policy gate reads `wants_less` to give such contacts a
lower cap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kesher.accounts.models import Workspace
from kesher.channels.models import OutboxMessage
from kesher.contacts import groups
from kesher.contacts.inputs import CHANNELS
from kesher.contacts.models import ContactList
from kesher.contacts.service import ContactDetail, contact_detail, set_consent
from kesher.db.base import utcnow
from kesher.db.upsert import lookup
from kesher.errors import ValidationError
from kesher.events.ingest import ingest
from kesher.policy.models import ContactPreference

ADDRESS_FIELD = {"email": "email", "sms": "phone", "whatsapp": "phone"}


@dataclass(frozen=True)
class Preferences:
    """A contact's wishes; the defaults stand for a contact who never said anything."""

    less_mail: bool = False
    topics: frozenset[int] = frozenset()


def topic_lists(session: Session, workspace: Workspace) -> list[ContactList]:
    """The lists the workspace offers as topics, in the order its settings give them."""
    ids = groups.topic_ids(workspace)
    if not ids:
        return []
    found = {lst.id: lst for lst in session.scalars(
        select(ContactList).where(ContactList.workspace_id == workspace.id, ContactList.id.in_(ids)))}
    return [found[i] for i in ids if i in found]


def get_preferences(session: Session, contact_id: int) -> Preferences:
    row = session.get(ContactPreference, contact_id)
    if row is None:
        return Preferences()
    return Preferences(row.less_mail, frozenset(row.topics or ()))


def save_preferences(
    session: Session, workspace: Workspace, contact_id: int, *, less_mail: bool, topics: Iterable[int],
    actor: str = "preference_page",
) -> Preferences:
    """Store the contact's wishes, and make their membership of each topic list follow them.

    `topics` are the topic lists chosen; every topic list not in it is left. Lists that are not
    topics are never touched. A list that is not one of the workspace's topics is refused.
    """
    member_of = {lst.id for lst in contact_detail(session, workspace.id, contact_id).lists}
    offered = topic_lists(session, workspace)
    chosen = set(topics)
    unknown = chosen - {t.id for t in offered}
    if unknown:
        raise ValidationError("lists {ids} are not topics of this workspace", "topics", ids=sorted(unknown))
    row = session.get(ContactPreference, contact_id)
    if row is None:
        row = ContactPreference(contact_id=contact_id, workspace_id=workspace.id)
        session.add(row)
    row.less_mail, row.topics, row.updated_at = less_mail, sorted(chosen), utcnow()
    for topic in offered:
        if topic.id in chosen and topic.id not in member_of:
            groups.add_contacts(session, workspace.id, "list", topic.id, [contact_id], actor=actor)
        elif topic.id not in chosen and topic.id in member_of:
            groups.remove_contacts(session, workspace.id, "list", topic.id, [contact_id], actor=actor)
    session.flush()
    return Preferences(less_mail, frozenset(chosen))


def wants_less(session: Session, contact_ids: Iterable[int]) -> set[int]:
    """The contacts among `contact_ids` who asked for less mail."""
    rows = lookup(session, ContactPreference.contact_id, set(contact_ids), [ContactPreference.contact_id],
                  ContactPreference.less_mail.is_(True))
    return {row[0] for row in rows}


# Through a message's links ----------------------------------------------------------------------


def record_message_event(session: Session, message: OutboxMessage, event_type: str, properties: dict[str, Any],
                         idempotency_key: str | None = None) -> None:
    """Store an event of the message's contact about this message (opened, clicked, unsubscribed)."""
    about: dict[str, Any] = {}
    if message.campaign_id is not None:
        about["campaign_id"] = str(message.campaign_id)
    if message.message_id:
        about["message_id"] = message.message_id
    event = {"type": event_type, "contact": {"id": message.contact_id}, "properties": {**about, **properties},
             "idempotency_key": idempotency_key}
    result = ingest(session, session.get_one(Workspace, message.workspace_id), [event], source="email")
    if result.errors:
        error = result.errors[0]
        raise ValidationError("the event was not recorded: {detail}", error.field, detail=error.message)


def unsubscribe(session: Session, message: OutboxMessage, detail: ContactDetail, *, source: str,
                ip: str | None = None, text_shown: str | None = None) -> bool:
    """Withdraw the contact's consent on the message's channel and record one `unsubscribed` event.

    Returns False, changing nothing, when they are unsubscribed already: a link followed twice,
    or a one-click POST and a click on the page, unsubscribe once.
    """
    consent = detail.consent.get(message.channel)
    if consent is not None and consent.status == "unsubscribed":
        return False
    _withdraw(session, message, detail, message.channel, source=source, ip=ip, text_shown=text_shown)
    return True


def _withdraw(session: Session, message: OutboxMessage, detail: ContactDetail, channel: str, *, source: str,
              ip: str | None, text_shown: str | None) -> None:
    consent = detail.consent.get(channel)
    # Two requests racing from the same consent share this key, so the event is stored once.
    key = f"unsubscribed:{message.id}:{channel}:{consent.changed_at.isoformat() if consent else ''}"
    set_consent(session, message.workspace_id, message.contact_id, channel, "unsubscribed", source=source,
                ip=ip, text_shown=text_shown)
    record_message_event(session, message, "unsubscribed", {"channel": channel}, key)


@dataclass(frozen=True)
class ChannelChoice:
    channel: str
    subscribed: bool


def channel_choices(message: OutboxMessage, detail: ContactDetail) -> list[ChannelChoice]:
    """The channels the contact may change through this message's link.

    Any channel they consent to, which they may withdraw; and the message's own channel, which they
    may also take back up, since the link proves they hold the address it went to. Consent the
    contact never gave on another channel cannot be granted here.
    """
    choices = []
    for channel in CHANNELS:
        consent = detail.consent.get(channel)
        subscribed = consent is not None and consent.status == "granted"
        if subscribed or _holds_address(message, detail, channel):
            choices.append(ChannelChoice(channel, subscribed))
    return choices


def _holds_address(message: OutboxMessage, detail: ContactDetail, channel: str) -> bool:
    address = getattr(detail.contact, ADDRESS_FIELD[channel])
    return channel == message.channel and bool(address) and address.lower() == message.address.lower()


def save_channels(session: Session, message: OutboxMessage, detail: ContactDetail, chosen: Iterable[str], *,
                  ip: str | None = None, text_shown: str | None = None) -> None:
    """Grant or withdraw consent on the channels `channel_choices` offers, as the contact ticked them."""
    wanted = set(chosen)
    for choice in channel_choices(message, detail):
        if choice.channel in wanted and not choice.subscribed:
            set_consent(session, message.workspace_id, message.contact_id, choice.channel, "granted",
                        source="preference_page", ip=ip, text_shown=text_shown)
        elif choice.channel not in wanted and choice.subscribed:
            _withdraw(session, message, detail, choice.channel, source="preference_page", ip=ip, text_shown=text_shown)
