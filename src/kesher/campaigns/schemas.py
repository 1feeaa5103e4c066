"""What the API and the CLI take and give for campaigns."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kesher.db.base import MAX_ID

Id = Annotated[int, Field(ge=1, le=MAX_ID)]
METRICS = ("open_rate", "click_rate", "revenue")


class Audience(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lists: list[Id] = []
    segments: list[Id] = []
    exclude_lists: list[Id] = []
    exclude_segments: list[Id] = []


class VariantIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    subject: Annotated[str, Field(min_length=1, max_length=500)]
    preheader: Annotated[str, Field(max_length=500)] = ""
    from_name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    html: Annotated[str, Field(min_length=1, max_length=1_000_000)]
    text: Annotated[str, Field(max_length=1_000_000)] | None = None
    # A send-time test: this variant's share goes out then (a time with its zone, or local to the workspace).
    send_at: datetime | None = None


class Window(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: Annotated[int, Field(ge=1, le=10_000_000)]
    seconds: Annotated[int, Field(ge=1, le=31 * 86400)]


class AbTest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    test_share: Annotated[float, Field(gt=0, lt=1)] = 0.2
    metric: Literal["open_rate", "click_rate", "revenue"] = "open_rate"
    wait_hours: Annotated[float, Field(gt=0, le=24 * 14)] = 4


class CampaignIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    sender_id: Id
    advertising: bool = True
    audience: Audience
    variants: Annotated[list[VariantIn], Field(min_length=1, max_length=5)]
    rate_per_second: Annotated[float, Field(gt=0, le=100_000)] | None = None
    window: Window | None = None
    utm: dict[str, Annotated[str, Field(max_length=200)]] = {}
    ab: AbTest | None = None
    language: Literal["he", "en"] | None = None

    @field_validator("utm")
    @classmethod
    def _utm(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not key.startswith("utm_"):
                raise ValueError(f"{key!r} is not a UTM parameter (utm_source, utm_medium, utm_campaign, ...)")
        return value


class CampaignPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    sender_id: Id | None = None
    advertising: bool | None = None
    audience: Audience | None = None
    variants: Annotated[list[VariantIn], Field(min_length=1, max_length=5)] | None = None
    rate_per_second: Annotated[float, Field(gt=0, le=100_000)] | None = None
    window: Window | None = None
    utm: dict[str, Annotated[str, Field(max_length=200)]] | None = None
    ab: AbTest | None = None


class SendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # None: now. A time without a zone is in the workspace's timezone.
    send_at: datetime | None = None


class TestSendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    emails: Annotated[list[str], Field(min_length=1, max_length=10)]
    contact_id: Id | None = None
    variant: str = "A"


class VariantOut(BaseModel):
    label: str
    subject: str
    preheader: str
    from_name: str | None
    html: str
    text: str | None
    send_at: datetime | None


class CampaignOut(BaseModel):
    id: int
    name: str
    channel: str
    status: str
    sender_id: int | None
    advertising: bool
    audience: dict[str, Any]
    send_at: datetime | None
    rate_per_second: float | None
    window: Window | None
    utm: dict[str, str]
    ab: dict[str, Any]
    variants: list[VariantOut]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class Progress(BaseModel):
    campaign_id: int
    status: str
    total: int
    queued: int
    sending: int
    sent: int
    failed: int
    skipped: int
    cancelled: int
    by_variant: dict[str, int]


class FindingOut(BaseModel):
    variant: str
    code: str
    level: str
    message: str
    field: str
