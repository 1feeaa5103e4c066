"""Request and response bodies of the segments API (the CLI prints the same shapes with --json).

A rule travels as plain JSON and is checked by `rules.parse_rule` and the compiler, not here, so
the API, the UI and the CLI report a bad rule alike: by its JSON path (`rule: $.all[1].within_days`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from kesher.db.base import MAX_ID
from kesher.segments.explain import Finding
from kesher.segments.service import PRESETS

EXAMPLE_RULE = {"all": [
    {"field": "city", "op": "in", "value": ["חיפה", "תל אביב"]},
    {"event": "purchase", "where": [{"prop": "category", "op": "eq", "value": "vitamins"}],
     "within_days": 90, "count": {"op": "gte", "value": 2}},
    {"not": {"event": "email_opened", "within_days": 60}},
]}
RuleJson = Annotated[Any, WithJsonSchema({
    "type": "object", "description": "A segment rule: `all`, `any`, `not` over leaves (docs/segments.md).",
    "examples": [EXAMPLE_RULE]})]
SAMPLE_LIMIT = 100


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# Segments ---------------------------------------------------------------------------------------


class SegmentIn(_In):
    """A segment from a rule, or from a preset (with its params)."""

    name: str | None = Field(None, description="Required with a rule; with a preset, default: the preset's name in "
                                               "the workspace's language.", examples=["קונים חוזרים בחיפה"])
    description: str | None = None
    rule: RuleJson = None
    preset: str | None = Field(None, description="A preset key (GET /segments/presets) instead of a rule.",
                               json_schema_extra={"enum": list(PRESETS)})
    params: dict[str, Any] = Field(default_factory=dict, description="The preset's parameters, e.g. clicked_link: "
                                                                     "campaign_id and url.")

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str | None) -> str | None:
        if value is not None and value not in PRESETS:
            raise ValueError(f"must be one of {', '.join(PRESETS)}")
        return value


class SegmentPatch(_In):
    """Only what is sent changes; a new rule re-evaluates the members at once."""

    name: str | None = None
    description: str | None = None
    rule: RuleJson = None


class SegmentOut(_Out):
    id: int
    name: str
    description: str
    rule: dict[str, Any]
    preset: str | None
    member_count: int = Field(description="Contacts stored as members now.")
    refreshed_at: datetime | None = Field(description="The last full re-evaluation (events move members in between).")
    created_at: datetime
    updated_at: datetime


class RefreshOut(BaseModel):
    id: int
    entered: int = Field(description="Contacts that came in with this refresh.")
    exited: int = Field(description="Contacts that left with this refresh.")
    member_count: int
    refreshed_at: datetime | None


class InLanguages(BaseModel):
    en: str
    he: str


class PresetOut(BaseModel):
    key: str
    name: InLanguages
    description: InLanguages
    params: list[str] = Field(description="Parameters the preset takes (POST /segments `params`).")
    rule: dict[str, Any] | None = Field(description="The rule it gives in this workspace, with its thresholds; null "
                                                    "where it needs params.")


class ContactSegmentOut(BaseModel):
    id: int
    name: str
    entered_at: datetime


# Preview and explain ------------------------------------------------------------------------------


class PreviewIn(_In):
    rule: RuleJson
    limit: int = Field(20, ge=1, le=SAMPLE_LIMIT, description="How many matching contacts to show.")


class SampleContact(BaseModel):
    id: int
    name: str | None = Field(description="Full name, else email, else phone, else external id.")
    email: str | None
    phone: str | None


class PreviewOut(BaseModel):
    count: int = Field(description="Contacts matching the rule now.")
    sample: list[SampleContact] = Field(description="Some of them, newest first.")


class ExplainIn(_In):
    rule: RuleJson
    contact_id: int = Field(ge=1, le=MAX_ID)


class FindingOut(BaseModel):
    """One node of the rule for one contact: whether it holds, and the facts behind a leaf."""

    path: str = Field(examples=["$.all[1]"])
    kind: str = Field(description="all, any, not, or the leaf: field, event, stat, list, tag, segment, consent, "
                                  "campaigns, stage, replenishment_due.")
    rule: dict[str, Any]
    matched: bool
    evidence: dict[str, Any] = Field(description="A leaf's facts: the field's value, the matching events, the rollup, "
                                                 "when the contact joined the list, its consent, its last campaigns.")
    children: list[FindingOut]


class ExplainOut(BaseModel):
    contact_id: int
    segment_id: int | None
    matched: bool = Field(description="Whether the rule matches the contact now.")
    member: bool | None = Field(description="Whether the contact is stored as a member of the segment (null for a "
                                            "rule that is not saved). It differs from `matched` until the next "
                                            "refresh when only time moved the answer.")
    explanation: FindingOut

    @classmethod
    def of(cls, finding: Finding, contact_id: int, segment_id: int | None, member: bool | None) -> ExplainOut:
        return cls(contact_id=contact_id, segment_id=segment_id, matched=finding.matched, member=member,
                   explanation=FindingOut.model_validate(finding.as_json()))
