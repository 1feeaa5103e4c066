"""Tables of the campaigns package."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kesher.db.base import Base, BigId, JSONData, UTCDateTime, utcnow

# draft -> scheduled -> sending <-> paused -> sent; an A/B test waits in `testing` between its test
# share and the rest; any state before `sent` can become `cancelled`.
STATUSES = ("draft", "scheduled", "sending", "paused", "testing", "sent", "cancelled")


def _ws() -> Mapped[int]:
    return mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (Index("ix_campaigns_ws_status", "workspace_id", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = _ws()
    name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(10), default="email")
    status: Mapped[str] = mapped_column(String(12), default="draft")
    sender_id: Mapped[int | None] = mapped_column(ForeignKey("senders.id", ondelete="RESTRICT"))
    # Advertising (the default) must carry "פרסומת", the sender and an opt-out (amendment 40).
    advertising: Mapped[bool] = mapped_column(Boolean, default=True)
    # {"lists": [ids], "segments": [ids], "exclude_lists": [ids], "exclude_segments": [ids]}
    audience: Mapped[dict[str, Any]] = mapped_column(JSONData, default=dict)
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rate_per_second: Mapped[float | None] = mapped_column(Float)
    window_limit: Mapped[int | None] = mapped_column(Integer)
    window_seconds: Mapped[int | None] = mapped_column(Integer)
    # UTM parameters added to every link, e.g. {"utm_source": "kesher", "utm_campaign": "spring"}; {} = none.
    utm: Mapped[dict[str, str]] = mapped_column(JSONData, default=dict)
    # A/B test: {"test_share": 0.2, "metric": "open_rate", "wait_hours": 4, "winner": "B",
    # "decided_at": ..., "report": {...}}; {} = no test.
    ab: Mapped[dict[str, Any]] = mapped_column(JSONData, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Variant(Base):
    """What a campaign sends; a campaign has one (A), or several in an A/B test."""

    __tablename__ = "campaign_variants"
    __table_args__ = (UniqueConstraint("campaign_id", "label"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    workspace_id: Mapped[int] = _ws()
    label: Mapped[str] = mapped_column(String(10))
    subject: Mapped[str] = mapped_column(String(500), default="")
    preheader: Mapped[str] = mapped_column(String(500), default="")
    from_name: Mapped[str | None] = mapped_column(String(200))
    html: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str | None] = mapped_column(Text)
    # Send-time tests: when this variant's share goes out (None = with the campaign).
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
