"""The events JSON API (mounted at /api/v1): send events, explore them, read a contact's rollups.

Routes only translate: the batch goes to `ingest`, queries to `events.service`, in the caller's
workspace. Errors are `KesherError`s, rendered as problem+json.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from kesher.accounts.models import Workspace
from kesher.contacts.api import Region
from kesher.events import service
from kesher.events.ingest import ingest
from kesher.db.base import MAX_ID
from kesher.events.schemas import MAX_EVENTS, EventsBatch, IngestResult
from kesher.web.deps import ApiCaller, DbSession, api_caller
from kesher.web.problems import API_ERRORS


router = APIRouter(tags=["events"], responses=API_ERRORS)
Caller = Annotated[ApiCaller, Depends(api_caller)]

EXAMPLE = {"events": [
    {"type": "purchase", "contact": {"email": "dana@example.co.il"}, "ts": "2026-03-01T09:30:00+02:00",
     "idempotency_key": "order-1001",
     "properties": {"order_id": "1001", "items": [
         {"sku": "VIT-D", "name": "ויטמין D", "category": "vitamins", "price": 49.9, "quantity": 2}]}},
    {"type": "email_opened", "contact": {"id": 42}, "properties": {"campaign_id": "spring-sale"}},
    {"type": "page_view", "anonymous_id": "v-7f3a", "properties": {"url": "https://shop.example/vitamins"}},
]}


# Answers ----------------------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class EventOut(_Out):
    id: int
    type: str
    contact_id: int | None
    anonymous_id: str | None
    ts: datetime
    received_at: datetime
    source: str
    idempotency_key: str | None
    properties: dict[str, Any]


class EventPage(BaseModel):
    data: list[EventOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class CategoryOut(_Out):
    category: str
    purchase_count: int
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None


class CampaignReceiptOut(_Out):
    campaign_id: str
    sent_at: datetime | None
    first_open_at: datetime | None
    first_click_at: datetime | None


class RollupsOut(_Out):
    contact_id: int
    sent_count: int
    open_count: int
    click_count: int
    purchase_count: int
    revenue_minor: int = Field(description="Purchases in agorot (1/100 ILS).")
    refunds_minor: int = Field(description="Refunds in agorot.")
    total_revenue: float = Field(description="Purchases less refunds, in ILS.")
    avg_order_value: float | None = Field(description="Purchases / purchase count, in ILS; null before the first.")
    avg_days_between_purchases: float | None = Field(description="(last - first purchase) / (count - 1), in days; "
                                                                 "null until the second purchase.")
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None
    last_open_at: datetime | None
    last_click_at: datetime | None
    last_visit_at: datetime | None
    last_event_at: datetime | None
    stage: str | None
    stage_changed_at: datetime | None
    loyalty: str | None
    rfm_recency: int | None
    rfm_frequency: int | None
    rfm_monetary: int | None
    engagement_score: float | None
    categories: list[CategoryOut] = Field(description="Purchases per product category, latest first.")
    last_campaigns: list[CampaignReceiptOut] = Field(description="The last 3 campaigns sent, newest first.")

    @classmethod
    def of(cls, stats: service.ContactStats) -> RollupsOut:
        derived = {"total_revenue": stats.total_revenue, "avg_order_value": stats.avg_order_value,
                   "avg_days_between_purchases": stats.avg_days_between_purchases,
                   "categories": [CategoryOut.model_validate(c) for c in stats.categories],
                   "last_campaigns": [CampaignReceiptOut.model_validate(r) for r in stats.last_campaigns]}
        columns = {name: getattr(stats.rollup, name) for name in cls.model_fields if name not in derived}
        return cls(**columns, **derived)


# Routes -----------------------------------------------------------------------------------------


@router.post(
    "/events", summary="Send events: purchases, email activity, site visits, custom events",
    description=f"""Up to {MAX_EVENTS:,} events a call. Each event is checked on its own: a bad one is
reported in `errors` by its index (0-based) and the field at fault, and never stops the others.

- `contact` names a contact by `id`, `email`, `phone` or `external_id`. An unknown email, phone or
  external id creates the contact, unless the workspace turned `events_create_contacts` off. A
  visitor not yet known is named by `anonymous_id` instead.
- `ts` is when it happened, with a time zone (default: now).
- `idempotency_key`: an event whose key this workspace has already seen is counted in
  `duplicates` and stored once, so a retried call never counts twice.
- `properties` are checked by type (see docs/events.md); `custom:<name>` takes any.

The answer is `200` whenever the batch itself is well formed, even if some events failed.
A batch of more than {MAX_EVENTS:,} events is refused whole (`422`, field `events`).""",
)
def post_events(
    body: Annotated[EventsBatch, Body(openapi_examples={"mixed": {"summary": "A purchase, an open, a visit",
                                                                   "value": EXAMPLE}})],
    caller: Caller, session: DbSession, region: Region,
) -> IngestResult:
    workspace = session.get_one(Workspace, caller.workspace_id)
    return ingest(session, workspace, body.events, source="api", region=region)


@router.get("/events", summary="Explore events, newest first, a page at a time")
def list_events(
    caller: Caller, session: DbSession,
    type: Annotated[str | None, Query(max_length=80, description="Only this event type, e.g. `purchase`")] = None,
    contact_id: Annotated[int | None, Query(ge=1, le=MAX_ID,
                                            description="Only this contact's events (its timeline)")] = None,
    since: Annotated[datetime | None, Query(description="From this time on (ISO 8601 with a zone)")] = None,
    until: Annotated[datetime | None, Query(description="Before this time (ISO 8601 with a zone)")] = None,
    properties: Annotated[list[str], Query(
        alias="property", description="`name=value`: a top-level property equal to the value, compared as text "
                                      "(e.g. `campaign_id=c1`); repeat to require several")] = [],
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> EventPage:
    flt = service.EventFilter(type=type, contact_id=contact_id, since=since, until=until,
                              properties=dict(service.parse_property_filter(p) for p in properties))
    rows, next_cursor = service.find_events(session, caller.workspace_id, flt, cursor=cursor, limit=limit)
    return EventPage(data=[EventOut.model_validate(e) for e in rows], next_cursor=next_cursor)


@router.get("/contacts/{contact_id}/rollups", summary="A contact's aggregates: revenue, purchases, opens, stage",
            description="Kept current as events arrive. Money is in ILS, or in agorot where the name ends in "
                        "`_minor`.")
def contact_rollups(
    contact_id: Annotated[int, Path(ge=1, le=MAX_ID, description="A contact id")], caller: Caller, session: DbSession,
) -> RollupsOut:
    return RollupsOut.of(service.contact_stats(session, caller.workspace_id, contact_id))
