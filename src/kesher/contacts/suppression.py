"""The suppression list: addresses no message may go to on a channel, whoever holds them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from kesher.accounts.service import audit
from kesher.contacts.models import CHANNELS, Suppression
from kesher.contacts.normalize import normalize_email, normalize_phone
from kesher.db.upsert import insert_ignore
from kesher.errors import NotFound, ValidationError

REASONS = ("manual", "unsubscribed", "hard_bounce", "soft_bounces", "complaint", "invalid")


def normalize_address(channel: str, address: str, region: str = "IL") -> str:
    if channel not in CHANNELS:
        raise ValidationError("must be one of {choices}", "channel", choices=", ".join(CHANNELS))
    try:
        value = normalize_email(address) if channel == "email" else normalize_phone(address, region)
    except ValidationError as exc:
        raise exc.located("address") from None
    if value is None:
        raise ValidationError("must not be empty", "address")
    return value


def suppress(
    session: Session, workspace_id: int, channel: str, address: str, reason: str = "manual", *, note: str = "",
    actor: str = "system", region: str = "IL",
) -> Suppression:
    if reason not in REASONS:
        raise ValidationError("must be one of {choices}", "reason", choices=", ".join(REASONS))
    value = normalize_address(channel, address, region)
    insert_ignore(session, Suppression.__table__,
                  [{"workspace_id": workspace_id, "channel": channel, "address": value, "reason": reason, "note": note}],
                  ("workspace_id", "channel", "address"))
    row = session.scalars(select(Suppression).where(
        Suppression.workspace_id == workspace_id, Suppression.channel == channel, Suppression.address == value)).one()
    audit(session, workspace_id, actor, "suppression.added", "suppression", row.id, {"channel": channel, "reason": reason})
    return row


def is_suppressed(session: Session, workspace_id: int, channel: str, address: str) -> bool:
    return session.scalar(select(Suppression.id).where(
        Suppression.workspace_id == workspace_id, Suppression.channel == channel, Suppression.address == address)) is not None


def suppressed(workspace_id: int, channel: str, address: Any) -> Any:
    """A condition: `address` (a column or value, normalised) is suppressed on `channel`."""
    return exists().where(Suppression.workspace_id == workspace_id, Suppression.channel == channel,
                          Suppression.address == address)


def list_suppressions(
    session: Session, workspace_id: int, channel: str | None = None, *, after_id: int = 0, limit: int = 100,
) -> list[Suppression]:
    stmt = select(Suppression).where(Suppression.workspace_id == workspace_id, Suppression.id > after_id)
    if channel:
        stmt = stmt.where(Suppression.channel == channel)
    return list(session.scalars(stmt.order_by(Suppression.id).limit(limit)))


def unsuppress(session: Session, workspace_id: int, suppression_id: int, *, actor: str = "system") -> None:
    row = session.scalar(select(Suppression).where(Suppression.workspace_id == workspace_id, Suppression.id == suppression_id))
    if row is None:
        raise NotFound("no suppression {id}", "id", id=suppression_id)
    audit(session, workspace_id, actor, "suppression.removed", "suppression", row.id, {"channel": row.channel})
    session.delete(row)
    session.flush()
