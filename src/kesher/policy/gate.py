"""The one policy gate: who may be sent a message on a channel, how often, and when.

Every sender of messages (campaigns now; automations later) asks here, so a rule holds for all:

- **consent**: only contacts whose consent on the channel is `granted`;
- **suppression**: never an address on the workspace's suppression list (bounces, complaints, manual);
- **frequency cap**: at most `cap_messages` marketing messages in `cap_days` per contact and channel,
  fewer (`less_mail_messages` in `less_mail_days`) for contacts who asked for less mail; a message
  over the cap is skipped, not delayed, since a broadcast a week late is a different message;
- **quiet hours**: no message on a quiet channel between `quiet_start` and `quiet_end`, nor over
  Shabbat (Friday 15:00 to Saturday 20:00, when `shabbat` is on), in the workspace's timezone; such a
  message waits for the next allowed moment.

The settings live in `workspace.settings["policy"]`; missing keys take the defaults below.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError as PydanticError
from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from kesher.accounts.models import Workspace
from kesher.channels import outbox
from kesher.contacts.models import Contact
from kesher.contacts.service import consent_is
from kesher.contacts.suppression import suppressed
from kesher.db.upsert import one_of, same_workspace
from kesher.errors import ValidationError
from kesher.messages.preferences import wants_less

ADDRESS = {"email": Contact.email, "sms": Contact.phone, "whatsapp": Contact.phone}
SHABBAT_START = (4, time(15, 0))  # Friday (Monday = 0)
SHABBAT_END = (5, time(20, 0))  # Saturday night, after it ends all year round


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cap_messages: Annotated[int, Field(ge=1, le=1000)] | None = 2
    cap_days: Annotated[int, Field(ge=1, le=365)] = 1
    less_mail_messages: Annotated[int, Field(ge=1, le=1000)] = 1
    less_mail_days: Annotated[int, Field(ge=1, le=365)] = 7
    quiet_start: time = time(22, 0)
    quiet_end: time = time(8, 0)
    quiet_channels: list[str] = ["sms", "whatsapp"]
    shabbat: bool = False


def get_policy(workspace: Workspace) -> Policy:
    return parse_policy((workspace.settings or {}).get("policy", {}))


def parse_policy(data: Any) -> Policy:
    try:
        return Policy.model_validate(data)
    except PydanticError as exc:
        err = exc.errors()[0]
        raise ValidationError("is not valid: {detail}", ".".join(["policy", *(str(p) for p in err["loc"][:1])]),
                              detail=err["msg"]) from None


def set_policy(session: Session, workspace: Workspace, data: dict[str, Any]) -> Policy:
    """Change some policy settings; the others keep their values (only values ever set are stored)."""
    if not isinstance(data, dict):
        raise ValidationError("must be an object of policy settings", "policy")
    settings = workspace.settings or {}
    policy = parse_policy({**settings.get("policy", {}), **data})
    workspace.settings = {**settings, "policy": policy.model_dump(mode="json", exclude_unset=True)}
    session.flush()
    return policy


def reachable(workspace_id: int, channel: str) -> list[ColumnElement[bool]]:
    """Conditions on `contacts` for those a message on `channel` may go to at all."""
    return [Contact.workspace_id == workspace_id, *_may_receive(workspace_id, channel)]


def reachable_among(session: Session, workspace_id: int, channel: str, contact_ids: list[int]) -> set[int]:
    """Those of `contact_ids` a message on `channel` may go to at all, found by their ids."""
    if not contact_ids:
        return set()
    return set(session.scalars(select(Contact.id).where(
        one_of(session, Contact.id, contact_ids), same_workspace(session, Contact.workspace_id, workspace_id),
        *_may_receive(workspace_id, channel))))


def _may_receive(workspace_id: int, channel: str) -> list[ColumnElement[bool]]:
    address = ADDRESS[channel]
    return [address.is_not(None), consent_is(channel, "granted"), ~suppressed(workspace_id, channel, address)]


def over_cap(session: Session, workspace: Workspace, channel: str, contact_ids: list[int], now: datetime,
             policy: Policy | None = None) -> set[int]:
    """The contacts among `contact_ids` that one more message on `channel` would put over their cap."""
    policy = policy or get_policy(workspace)
    if policy.cap_messages is None or not contact_ids:
        return set()
    sent = outbox.sent_counts(session, channel, contact_ids, now - timedelta(days=policy.cap_days))
    over = {cid for cid, n in sent.items() if n >= policy.cap_messages}
    less = wants_less(session, [cid for cid in contact_ids if cid not in over])
    if less:
        recent = outbox.sent_counts(session, channel, list(less), now - timedelta(days=policy.less_mail_days))
        over |= {cid for cid, n in recent.items() if n >= policy.less_mail_messages}
    return over


def next_allowed(workspace: Workspace, channel: str, now: datetime, policy: Policy | None = None) -> datetime:
    """`now` if a message on `channel` may go out now, else the first moment it may (aware UTC)."""
    policy = policy or get_policy(workspace)
    zone = ZoneInfo(workspace.timezone or "Asia/Jerusalem")
    local = now.astimezone(zone)
    for _ in range(3):  # quiet hours may end inside Shabbat and Shabbat inside quiet hours
        moved = _after_quiet_hours(policy, channel, local)
        moved = _after_shabbat(policy, moved)
        if moved == local:
            break
        local = moved
    return local.astimezone(now.tzinfo)


def _after_quiet_hours(policy: Policy, channel: str, local: datetime) -> datetime:
    if channel not in policy.quiet_channels or policy.quiet_start == policy.quiet_end:
        return local
    t, start, end = local.timetz().replace(tzinfo=None), policy.quiet_start, policy.quiet_end
    quiet = (start <= t or t < end) if start > end else (start <= t < end)
    if not quiet:
        return local
    day = local.date() if t < end else local.date() + timedelta(days=1)
    return datetime.combine(day, end, local.tzinfo)


def _after_shabbat(policy: Policy, local: datetime) -> datetime:
    if not policy.shabbat:
        return local
    start_day, start_time = SHABBAT_START
    end_day, end_time = SHABBAT_END
    weekday, t = local.weekday(), local.timetz().replace(tzinfo=None)
    inside = (weekday == start_day and t >= start_time) or (weekday == end_day and t < end_time)
    if not inside:
        return local
    saturday = local.date() + timedelta(days=(end_day - weekday) % 7)
    return datetime.combine(saturday, end_time, local.tzinfo)
