"""Tables of the channels package: sender identities, the outbox, and mails the local sink caught."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kesher.db.base import Base, BigId, JSONData, UTCDateTime, utcnow

# What can happen to a message in the outbox. `sending` is a claim by one worker, with a deadline;
# `sent` is written before the message is finally handed over (see docs/architecture.md, "Exactly once").
STATUSES = ("queued", "sending", "sent", "failed", "skipped", "cancelled")


def _ws() -> Mapped[int]:
    return mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))


class Sender(Base):
    """A sender identity: the From a campaign goes out under, with its DKIM key."""

    __tablename__ = "senders"
    __table_args__ = (UniqueConstraint("workspace_id", "email"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = _ws()
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    reply_to: Mapped[str | None] = mapped_column(String(320))
    # The postal address advertising must name (Israeli Communications Law, amendment 40).
    address: Mapped[str] = mapped_column(String(500), default="")
    dkim_selector: Mapped[str | None] = mapped_column(String(63))
    dkim_private_key: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxMessage(Base):
    """One message to one contact on one channel; `key` makes it exist, and so be sent, once."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("workspace_id", "key"),
        # Every query names a campaign or a contact. An index led by the status alone would tempt SQLite,
        # without statistics, to read every message sent to count a few contacts' (migration 0012).
        Index("ix_outbox_campaign_status_due", "campaign_id", "status", "not_before"),
        Index("ix_outbox_campaign_sent", "campaign_id", "sent_at"),
        Index("ix_outbox_contact_sent", "contact_id", "sent_at"),
        # Sent and failed messages whose event is not stored yet: found without reading the sent ones.
        Index("ix_outbox_campaign_unrecorded", "campaign_id", "recorded", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = _ws()
    key: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(10))
    campaign_id: Mapped[int | None] = mapped_column(BigInteger)
    variant: Mapped[str | None] = mapped_column(String(20))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(12), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message_id: Mapped[str | None] = mapped_column(String(250))
    error: Mapped[str] = mapped_column(String(1000), default="")
    # Whether the `email_sent` (or failure) event of this message is stored; a crash between the two
    # leaves it False, and the next pass records it.
    recorded: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CaughtMail(Base):
    """A mail the local sink received (`make demo`, development): shown in the UI instead of delivered."""

    __tablename__ = "caught_mails"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    mail_from: Mapped[str] = mapped_column(String(320))
    recipients: Mapped[list[str]] = mapped_column(JSONData, default=list)
    subject: Mapped[str] = mapped_column(String(1000), default="")
    message: Mapped[bytes] = mapped_column(LargeBinary)
