"""The segment rule language: a JSON tree of combinators and leaves, validated with Pydantic.

    {"all": [
      {"field": "city", "op": "in", "value": ["חיפה", "תל אביב"]},
      {"event": "purchase", "where": [{"prop": "category", "op": "eq", "value": "vitamins"}],
       "within_days": 90, "count": {"op": "gte", "value": 2}},
      {"not": {"event": "email_opened", "within_days": 60}},
      {"stat": "total_revenue", "op": "gte", "value": 200}
    ]}

Combinators: `all`, `any`, `not`. Leaves: `field`, `event`, `stat`, `list`, `tag`, `segment`,
`consent`, `campaigns`, `stage` and `replenishment_due`. `parse_rule` turns JSON into the
model; a bad node is reported with its JSON path (`$.all[1].within_days`) and what is wrong.
docs/segments.md describes every leaf and operator for users.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal, Union

from pydantic import (AwareDatetime, BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError as PydanticError,
                      ValidationInfo, field_validator, model_validator)

from kesher.contacts.inputs import CHANNELS, CONSENT_STATUSES
from kesher.errors import ValidationError

MAX_DEPTH = 12
MAX_LEAVES = 100
MAX_DAYS = 3650

COMPARE = ("eq", "ne", "lt", "lte", "gt", "gte")
SETS = ("in", "not_in")
TEXT = ("contains", "starts_with")
PRESENCE = ("is_set", "is_not_set")
TIME = ("before", "after", "within_last_days", "more_than_days_ago")
CALENDAR = ("in_month",)  # birthday this month: value 1-12, or 0 for the current month
RANK = ("top_percent",)  # VIP: among the top N% of the workspace by this stat
OPERATORS = COMPARE + SETS + TEXT + PRESENCE + TIME + CALENDAR + RANK
Op = Literal["eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in", "contains", "starts_with", "is_set",
             "is_not_set", "before", "after", "within_last_days", "more_than_days_ago", "in_month", "top_percent"]
CountOp = Literal["eq", "ne", "lt", "lte", "gt", "gte"]
Scalar = Union[bool, int, float, str]  # noqa: UP007 - a plain union reads best in the JSON schema
Days = Annotated[int | float, Field(gt=0, le=MAX_DAYS)]  # 90 stays 90, 0.5 is half a day
STAGES = ("new", "active", "loyal", "at_risk", "dormant", "lost")

# Names people write for the canonical event types (the architecture's examples use the short ones).
EVENT_ALIASES = {"email_open": "email_opened", "email_click": "email_clicked", "email_sent_to": "email_sent",
                 "email_bounce": "email_bounced", "email_complaint": "email_complained", "open": "email_opened",
                 "click": "email_clicked", "order": "purchase", "cart_abandon": "cart_abandoned",
                 "unsubscribe": "unsubscribed"}


class Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _check_value(op: str, value: Any) -> Any:
    """The shape each operator needs; the compiler then types the value for the column it meets."""
    if op in PRESENCE:
        if value is not None:
            raise ValueError(f"{op} takes no value")
        return None
    if value is None:
        raise ValueError(f"{op} needs a value")
    if op in SETS:
        if not isinstance(value, list) or not value:
            raise ValueError(f"{op} needs a non-empty list of values")
        if len(value) > 1000:
            raise ValueError(f"{op} takes at most 1,000 values")
        if any(isinstance(v, (list, dict)) or v is None for v in value):
            raise ValueError(f"{op} takes plain values (text, numbers, dates)")
        return value
    if isinstance(value, (list, dict)):
        raise ValueError(f"{op} takes one value, not a list")
    if op in ("within_last_days", "more_than_days_ago"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_DAYS:
            raise ValueError(f"{op} takes a number of days between 0 and {MAX_DAYS}")
    if op == "in_month" and (isinstance(value, bool) or value not in range(13)):
        raise ValueError("in_month takes a month 1-12, or 0 for the current month")
    if op == "top_percent" and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 100):
        raise ValueError("top_percent takes a percentage above 0 and up to 100")
    if op in TEXT and not isinstance(value, str):
        raise ValueError(f"{op} takes text")
    return value


class Comparison(Node):
    op: Op
    value: Scalar | list[Scalar] | None = Field(default=None, validate_default=True)

    @field_validator("value", mode="before")
    @classmethod
    def _plain(cls, value: Any) -> Any:
        if isinstance(value, dict):
            raise ValueError("takes a plain value (text, a number, true/false, a date) or a list of them")
        return value

    @field_validator("value", mode="after")
    @classmethod
    def _value_fits_op(cls, value: Any, info: ValidationInfo) -> Any:
        op = info.data.get("op")
        return value if op is None else _check_value(op, value)


class FieldLeaf(Comparison):
    """A contact field: built-in (city, birthday, created_at...) or a custom field by its key."""

    field: Annotated[str, Field(min_length=1, max_length=64)]


class StatLeaf(Comparison):
    """A per-contact rollup: total_revenue, purchase_count, last_open_at, engagement_score..."""

    stat: Annotated[str, Field(min_length=1, max_length=64)]


class PropFilter(Comparison):
    prop: Annotated[str, Field(min_length=1, max_length=100)]

    @model_validator(mode="after")
    def _no_rank(self) -> PropFilter:
        if self.op in RANK + CALENDAR:
            raise ValueError(f"{self.op} does not apply to event properties")
        return self


class CountCondition(Node):
    op: CountOp = "gte"
    value: Annotated[int, Field(ge=0, le=1_000_000)] = 1


class SumCondition(Node):
    prop: Annotated[str, Field(min_length=1, max_length=100)] = "total"
    op: CountOp = "gte"
    value: float


class EventLeaf(Node):
    """Did the contact do (or get) something: how many times, or for how much, in a window."""

    event: Annotated[str, Field(min_length=1, max_length=80)]
    where: Annotated[list[PropFilter], Field(max_length=20)] = []
    within_days: Days | None = None
    between: tuple[AwareDatetime | date, AwareDatetime | date] | None = None
    count: CountCondition | None = None
    sum: SumCondition | None = None

    @field_validator("event")
    @classmethod
    def _canonical(cls, value: str) -> str:
        return EVENT_ALIASES.get(value, value)

    @model_validator(mode="after")
    def _one_window_one_measure(self) -> EventLeaf:
        if self.within_days is not None and self.between is not None:
            raise ValueError("give within_days or between, not both")
        if self.count is not None and self.sum is not None:
            raise ValueError("give count or sum, not both")
        if self.between is not None and _start(self.between[0]) >= _start(self.between[1], end=True):
            raise ValueError("between: the first time must come before the second")
        return self


def _start(value: date | datetime, end: bool = False) -> tuple[int, ...]:
    # Dates compare by day; a date as the end of `between` includes that whole day.
    if isinstance(value, datetime):
        return value.timetuple()[:6]
    return (value.year, value.month, value.day + (1 if end else 0), 0, 0, 0)


class ListLeaf(Node):
    """A member of a static list, by name or id."""

    list: Annotated[str, Field(min_length=1, max_length=200)] | int


class TagLeaf(Node):
    tag: Annotated[str, Field(min_length=1, max_length=100)] | int


class SegmentLeaf(Node):
    """Matches another segment's rule (evaluated now, not its stored membership)."""

    segment: Annotated[int, Field(ge=1)]


class ConsentLeaf(Node):
    consent: Literal["email", "sms", "whatsapp"]
    status: Literal["granted", "pending", "denied", "unsubscribed"] = "granted"


class CampaignsLeaf(Node):
    """Of the last N campaigns sent to the contact, how many it opened or clicked.

    It takes N campaigns received to tell: a contact sent fewer never matches.
    """

    campaigns: Annotated[int, Field(ge=1, le=20)]  # events.rollups.RECENT_CAMPAIGNS
    action: Literal["opened", "clicked"] = "clicked"
    op: CountOp = "eq"
    value: Annotated[int, Field(ge=0, le=100)] = 0


class StageLeaf(Node):
    stage: Literal["new", "active", "loyal", "at_risk", "dormant", "lost"] | Annotated[
        list[Literal["new", "active", "loyal", "at_risk", "dormant", "lost"]], Field(min_length=1)]


class ReplenishmentLeaf(Node):
    """Bought in a consumable category whose usage period (the category's) runs out within N days."""

    replenishment_due: Annotated[int, Field(ge=0, le=365)]
    category: Annotated[str, Field(min_length=1, max_length=100)] | None = None


class AllOf(Node):
    all: Annotated[list[Rule], Field(min_length=1, max_length=MAX_LEAVES)]


class AnyOf(Node):
    any: Annotated[list[Rule], Field(min_length=1, max_length=MAX_LEAVES)]


class NotOf(Node):
    not_: Rule = Field(alias="not")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


LEAF_KEYS = ("all", "any", "not", "field", "event", "stat", "list", "tag", "segment", "consent", "campaigns", "stage",
             "replenishment_due")


def _kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return type(value).__name__
    if not isinstance(value, dict):
        return None
    keys = [k for k in LEAF_KEYS if k in value]
    return {"all": "AllOf", "any": "AnyOf", "not": "NotOf", "field": "FieldLeaf", "event": "EventLeaf",
            "stat": "StatLeaf", "list": "ListLeaf", "tag": "TagLeaf", "segment": "SegmentLeaf",
            "consent": "ConsentLeaf", "campaigns": "CampaignsLeaf", "stage": "StageLeaf",
            "replenishment_due": "ReplenishmentLeaf"}[keys[0]] if len(keys) == 1 else None


Rule = Annotated[
    Annotated[AllOf, Tag("AllOf")] | Annotated[AnyOf, Tag("AnyOf")] | Annotated[NotOf, Tag("NotOf")]
    | Annotated[FieldLeaf, Tag("FieldLeaf")] | Annotated[EventLeaf, Tag("EventLeaf")]
    | Annotated[StatLeaf, Tag("StatLeaf")] | Annotated[ListLeaf, Tag("ListLeaf")] | Annotated[TagLeaf, Tag("TagLeaf")]
    | Annotated[SegmentLeaf, Tag("SegmentLeaf")] | Annotated[ConsentLeaf, Tag("ConsentLeaf")]
    | Annotated[CampaignsLeaf, Tag("CampaignsLeaf")] | Annotated[StageLeaf, Tag("StageLeaf")]
    | Annotated[ReplenishmentLeaf, Tag("ReplenishmentLeaf")],
    Discriminator(_kind, custom_error_type="rule_node", custom_error_message=(
        "must be an object with exactly one of: " + ", ".join(LEAF_KEYS)),
        custom_error_context={"discriminator": "kind"}),
]
Leaf = (FieldLeaf | EventLeaf | StatLeaf | ListLeaf | TagLeaf | SegmentLeaf | ConsentLeaf | CampaignsLeaf | StageLeaf
        | ReplenishmentLeaf)

for _model in (AllOf, AnyOf, NotOf):
    _model.model_rebuild()


class _Root(BaseModel):
    rule: Rule


_TAGS = {"AllOf", "AnyOf", "NotOf", "FieldLeaf", "EventLeaf", "StatLeaf", "ListLeaf", "TagLeaf", "SegmentLeaf",
         "ConsentLeaf", "CampaignsLeaf", "StageLeaf", "ReplenishmentLeaf"}


_FIELDS = {"all", "any", "not", "field", "op", "value", "event", "where", "prop", "within_days", "between", "count",
           "sum", "stat", "list", "tag", "segment", "consent", "status", "campaigns", "action", "stage",
           "replenishment_due", "category"}


def json_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """`$.all[1].within_days` for pydantic's ('all', 1, 'EventLeaf', 'within_days')."""
    path = "$"
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part not in _FIELDS:  # pydantic's names for union members: constrained-str, datetime, ...
            continue
        else:
            path += f".{part}"
    return path


def _message(err: Any) -> str:
    return str(err["ctx"]["error"]) if err["type"] == "value_error" else str(err["msg"])


def parse_rule(data: Any, field: str = "rule") -> Rule:
    """The rule in `data`, or ValidationError naming the bad node (`rule: $.all[1].count.op`)."""
    if isinstance(data, BaseModel):
        return data  # type: ignore[return-value]
    try:
        rule = _Root.model_validate({"rule": data}).rule
    except PydanticError as exc:
        errors = sorted(exc.errors(), key=lambda e: len(e["loc"]))
        err = errors[0]
        path = json_path(err["loc"][1:])
        if err["type"] == "extra_forbidden" and not path.endswith(f".{err['loc'][-1]}"):
            path += f".{err['loc'][-1]}"  # the unknown key itself names the spot
        raise ValidationError(_message(err), f"{field}: {path}") from None
    depth, leaves = _size(rule)
    if depth > MAX_DEPTH:
        raise ValidationError("nests deeper than {limit} levels", f"{field}: $", limit=MAX_DEPTH)
    if leaves > MAX_LEAVES:
        raise ValidationError("has more than {limit} conditions", f"{field}: $", limit=MAX_LEAVES)
    return rule


def _size(rule: Any) -> tuple[int, int]:
    children = children_of(rule)
    if not children:
        return 1, 1
    sizes = [_size(child) for child in children]
    return 1 + max(d for d, _ in sizes), sum(n for _, n in sizes)


def children_of(rule: Any) -> list[Any]:
    if isinstance(rule, AllOf):
        return list(rule.all)
    if isinstance(rule, AnyOf):
        return list(rule.any)
    if isinstance(rule, NotOf):
        return [rule.not_]
    return []


def walk(rule: Any, path: str = "$") -> Any:
    """Every node with its JSON path, depth first."""
    yield path, rule
    if isinstance(rule, AllOf):
        for i, child in enumerate(rule.all):
            yield from walk(child, f"{path}.all[{i}]")
    elif isinstance(rule, AnyOf):
        for i, child in enumerate(rule.any):
            yield from walk(child, f"{path}.any[{i}]")
    elif isinstance(rule, NotOf):
        yield from walk(rule.not_, f"{path}.not")


def dump_rule(rule: Any) -> dict[str, Any]:
    """The rule as JSON-ready data, in the form people write it: its kind first, defaults left out."""
    return _kind_first(rule.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True))


def _kind_first(data: Any) -> Any:
    if isinstance(data, list):
        return [_kind_first(item) for item in data]
    if not isinstance(data, dict):
        return data
    first = [k for k in (*LEAF_KEYS, "prop") if k in data][:1]
    out = {k: _kind_first(data[k]) for k in [*first, *(k for k in data if k not in first)]}
    # Defaults that carry the meaning stay written: {"campaigns": 3} alone would hide "no click".
    for key in ("count", "sum"):
        if isinstance(out.get(key), dict):
            out[key] = {"op": "gte", **out[key]} if key == "sum" else {"op": "gte", "value": 1, **out[key]}
    if "campaigns" in out:
        out = {"campaigns": out["campaigns"], "action": "clicked", "op": "eq", "value": 0, **out}
    return out


__all__ = ["CHANNELS", "CONSENT_STATUSES", "OPERATORS", "STAGES", "Leaf", "Rule", "children_of", "dump_rule",
           "json_path", "parse_rule", "walk"]
