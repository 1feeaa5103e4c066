"""Who a campaign goes to: its lists and segments, minus exclusions, through the policy gate.

The audience becomes outbox rows in one INSERT ... SELECT, whatever its size; the key of each row
(campaign + contact) is what keeps a contact from getting the campaign twice, also when the rest of
an A/B test's audience is written after the test.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Select, String, and_, case, func, literal, or_, select
from sqlalchemy.orm import Session

from kesher.campaigns.models import Campaign
from kesher.channels import outbox
from kesher.contacts import groups
from kesher.contacts.models import Contact
from kesher.errors import ValidationError
from kesher.policy import gate
from kesher.segments import membership

KEYS = ("lists", "segments", "exclude_lists", "exclude_segments")
BUCKETS = 10_000


def clean(audience: Any) -> dict[str, list[int]]:
    """An audience as stored: the four id lists, each of whole numbers; at least one list or segment."""
    if not isinstance(audience, dict):
        raise ValidationError("must be an object with lists, segments, exclude_lists, exclude_segments", "audience")
    unknown = set(audience) - set(KEYS)
    if unknown:
        raise ValidationError("unknown key {key!r}; use {keys}", "audience", key=sorted(unknown)[0],
                              keys=", ".join(KEYS))
    cleaned: dict[str, list[int]] = {}
    for key in KEYS:
        ids = audience.get(key) or []
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise ValidationError("must be a list of ids", f"audience.{key}")
        cleaned[key] = sorted(set(ids))
    if not cleaned["lists"] and not cleaned["segments"]:
        raise ValidationError("choose at least one list or segment", "audience")
    return cleaned


def conditions(workspace_id: int, channel: str, audience: dict[str, list[int]]) -> list[Any]:
    """Conditions on `contacts` for the campaign's audience as it stands now."""
    included = []
    if audience.get("lists"):
        included.append(groups.members_of("list", audience["lists"]))
    if audience.get("segments"):
        included.append(membership.members_of(*audience["segments"]))
    where = [*gate.reachable(workspace_id, channel), or_(*included)]
    if audience.get("exclude_lists"):
        where.append(~groups.members_of("list", audience["exclude_lists"]))
    if audience.get("exclude_segments"):
        where.append(~membership.members_of(*audience["exclude_segments"]))
    return where


def count(session: Session, workspace_id: int, channel: str, audience: dict[str, list[int]]) -> int:
    return int(session.scalar(select(func.count()).select_from(Contact)
                              .where(*conditions(workspace_id, channel, audience))) or 0)


def bucket(campaign_id: int) -> Any:
    """A contact's place, 0 to BUCKETS - 1, in this campaign's random-looking but repeatable order."""
    return ((Contact.id + campaign_id * 7919) * 2654435761) % BUCKETS


def materialize(session: Session, campaign: Campaign, *, variants: list[tuple[str, datetime]],
                test_share: float | None, not_before: datetime) -> int:
    """Write the campaign's messages to the outbox; returns how many were new.

    Without a test, every contact gets `variants[0]`. With a test share, that share of the audience
    is split evenly between the variants (each due at its own time) and the rest is left for
    `materialize_rest` once the winner is known.
    """
    where = conditions(campaign.workspace_id, campaign.channel, campaign.audience)
    place = bucket(campaign.id)
    if test_share is None:
        variant: Any = literal(variants[0][0])
        due: Any = literal(variants[0][1], outbox.OUTBOX.c.not_before.type)
    else:
        where.append(place < int(round(test_share * BUCKETS)))
        k = len(variants)
        variant = case(*[(place % k == i, literal(label)) for i, (label, _) in enumerate(variants)])
        due = case(*[(place % k == i, literal(at, outbox.OUTBOX.c.not_before.type))
                     for i, (_, at) in enumerate(variants)])
    return outbox.enqueue(session, _rows(campaign, variant, due, where))


def materialize_rest(session: Session, campaign: Campaign, winner: str, not_before: datetime) -> int:
    """After a test: the winner to everyone of the audience (as it stands now) who has no message yet."""
    where = conditions(campaign.workspace_id, campaign.channel, campaign.audience)
    return outbox.enqueue(session, _rows(campaign, literal(winner), literal(not_before, outbox.OUTBOX.c.not_before.type),
                                         where))


def _rows(campaign: Campaign, variant: Any, due: Any, where: list[Any]) -> Select[Any]:
    address = gate.ADDRESS[campaign.channel]
    key = literal(f"campaign:{campaign.id}:") + func.cast(Contact.id, String)
    return select(
        literal(campaign.workspace_id, Integer).label("workspace_id"), key.label("key"),
        literal(campaign.channel).label("channel"), literal(campaign.id, Integer).label("campaign_id"),
        variant.label("variant"), Contact.id.label("contact_id"), address.label("address"),
        literal("queued").label("status"), due.label("not_before"),
    ).where(and_(*where))


__all__ = ["clean", "conditions", "count", "materialize", "materialize_rest"]
