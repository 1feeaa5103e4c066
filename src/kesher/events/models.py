"""Tables of the events package.

`events` keeps everything a contact did or was sent. The rollup tables hold only order-free
aggregates of them (sums, earliest, latest, "ever"), so applying events one batch at a time,
in any order, gives exactly what a rebuild from the events gives.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from kesher.db.base import Base, BigId, JSONData, UTCDateTime, utcnow


def _ws() -> Mapped[int]:
    return mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("workspace_id", "idempotency_key"),
        Index("ix_events_contact_type_ts", "contact_id", "type", "ts"),
        # With contact_id in it, "who did X since T" is answered from the index alone (segments).
        Index("ix_events_ws_type_ts", "workspace_id", "type", "ts", "contact_id"),
        Index("ix_events_ws_ts", "workspace_id", "ts"),  # the explorer, newest first
        # Only anonymous visitors' events have an anonymous id; the rest stay out of its index.
        Index("ix_events_ws_anonymous", "workspace_id", "anonymous_id",
              sqlite_where=text("anonymous_id IS NOT NULL"), postgresql_where=text("anonymous_id IS NOT NULL")),
        # "Who opened or clicked campaign C" (segments, campaign reports): that campaign's events only.
        Index("ix_events_ws_campaign_type", "workspace_id", "campaign_id", "type", "contact_id",
              sqlite_where=text("campaign_id IS NOT NULL"), postgresql_where=text("campaign_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = _ws()
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    anonymous_id: Mapped[str | None] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(80))
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(50), default="api")
    # Typed copies of the properties reports and segments read most: the money of a purchase or
    # refund in minor units (agorot; whole numbers add up exactly in any order), and the campaign
    # an email event belongs to.
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    campaign_id: Mapped[str | None] = mapped_column(String(100))
    properties: Mapped[dict[str, Any]] = mapped_column(JSONData, default=dict)


class PurchaseItem(Base):
    """One line of a purchase, kept apart so category and product questions are plain SQL."""

    __tablename__ = "purchase_items"
    __table_args__ = (
        Index("ix_purchase_items_contact_category", "contact_id", "category", "ts"),
        Index("ix_purchase_items_ws_sku", "workspace_id", "sku"),
        # Covering "who bought category X N times since T" (counting orders, so event_id too).
        Index("ix_purchase_items_ws_category_ts", "workspace_id", "category", "ts", "contact_id", "event_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[int] = _ws()
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    sku: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(300), default="")
    category: Mapped[str] = mapped_column(String(100), default="")
    price: Mapped[float] = mapped_column(Float, default=0.0)
    quantity: Mapped[float] = mapped_column(Float, default=1.0)


class ContactRollup(Base):
    """Per-contact aggregates kept current at ingest; averages are derived from these at read time."""

    __tablename__ = "contact_rollups"
    __table_args__ = (
        Index("ix_contact_rollups_ws_revenue", "workspace_id", "revenue_minor"),
        # Revenue less refunds as segments compare and rank it (the top 10% by revenue).
        Index("ix_contact_rollups_ws_net_revenue", "workspace_id", text("(revenue_minor - refunds_minor)")),
        # "3+ purchases", "opened 10+": segments on counts start from these instead of every contact.
        Index("ix_contact_rollups_ws_purchases", "workspace_id", "purchase_count"),
        Index("ix_contact_rollups_ws_opens", "workspace_id", "open_count"),
    )

    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True)
    workspace_id: Mapped[int] = _ws()
    last_open_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_click_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_purchase_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_purchase_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_visit_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_count: Mapped[int] = mapped_column(Integer, default=0)
    open_count: Mapped[int] = mapped_column(Integer, default=0)
    click_count: Mapped[int] = mapped_column(Integer, default=0)
    purchase_count: Mapped[int] = mapped_column(Integer, default=0)
    revenue_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    refunds_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    # The contact's last RECENT_CAMPAIGNS campaigns, newest first, one letter each: b opened and
    # clicked, o opened, c clicked, - neither. Derived from campaign_receipts whenever they change,
    # so "no click in the last 3 campaigns" reads one column instead of ranking receipts.
    recent_campaigns: Mapped[str | None] = mapped_column(String(20))
    # Lifecycle: kept by the lifecycle job and at ingest from the aggregates above.
    stage: Mapped[str | None] = mapped_column(String(20), index=True)
    stage_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    loyalty: Mapped[str | None] = mapped_column(String(10))
    rfm_recency: Mapped[int | None] = mapped_column(Integer)
    rfm_frequency: Mapped[int | None] = mapped_column(Integer)
    rfm_monetary: Mapped[int | None] = mapped_column(Integer)
    engagement_score: Mapped[float | None] = mapped_column(Float)


class CategoryStat(Base):
    """Per-contact, per-category purchases: how many, first and last."""

    __tablename__ = "contact_category_stats"
    __table_args__ = (Index("ix_category_stats_ws_category", "workspace_id", "category", "last_purchase_at"),)

    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True)
    category: Mapped[str] = mapped_column(String(100), primary_key=True)
    workspace_id: Mapped[int] = _ws()
    purchase_count: Mapped[int] = mapped_column(Integer, default=0)
    first_purchase_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_purchase_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CampaignReceipt(Base):
    """One campaign as one contact received it: when it was sent, first opened and first clicked."""

    __tablename__ = "campaign_receipts"
    __table_args__ = (Index("ix_campaign_receipts_contact_sent", "contact_id", "sent_at"),)

    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    workspace_id: Mapped[int] = _ws()
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_open_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_click_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Category(Base):
    __tablename__ = "product_categories"
    __table_args__ = (UniqueConstraint("workspace_id", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = _ws()
    key: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    consumable: Mapped[bool] = mapped_column(Boolean, default=False)
    usage_days: Mapped[int | None] = mapped_column(Integer)
    technical: Mapped[bool] = mapped_column(Boolean, default=False)


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (UniqueConstraint("workspace_id", "sku"), Index("ix_products_ws_category", "workspace_id", "category"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = _ws()
    sku: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(300))
    category: Mapped[str] = mapped_column(String(100), default="")
    price: Mapped[float | None] = mapped_column(Float)
    consumable: Mapped[bool | None] = mapped_column(Boolean)  # None: as its category says
    usage_days: Mapped[int | None] = mapped_column(Integer)
    technical: Mapped[bool | None] = mapped_column(Boolean)
    margin: Mapped[float | None] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(50), default="manual")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StoreConnection(Base):
    """A WooCommerce or Shopify store that posts order webhooks, with the secret that signs them."""

    __tablename__ = "store_connections"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = _ws()
    platform: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    secret: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_received_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TrackingSite(Base):
    """A website that sends behaviour with a public write key, from the origins listed here only."""

    __tablename__ = "tracking_sites"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workspace_id: Mapped[int] = _ws()
    name: Mapped[str] = mapped_column(String(200))
    write_key: Mapped[str] = mapped_column(String(64), unique=True)
    allowed_origins: Mapped[list[str]] = mapped_column(JSONData, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
