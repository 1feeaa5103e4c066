"""Campaigns: create and edit, check, schedule or send, pause, resume, cancel, and follow progress.

Sending itself is `campaigns.sending` (worker side); A/B decisions are `campaigns.abtest`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from kesher.accounts.models import Workspace
from kesher.accounts.service import audit
from kesher.campaigns import audience
from kesher.campaigns.models import Campaign, Variant
from kesher.campaigns.schemas import CampaignIn, CampaignPatch, Progress, VariantIn
from kesher.channels import outbox, senders
from kesher.contacts import groups
from kesher.db.base import utcnow
from kesher.errors import Conflict, NotFound, ValidationError
from kesher.messages import checks
from kesher.messages.context import sample_context
from kesher.messages.render import Content, Renderer
from kesher.policy import gate
from kesher.segments import service as segments

LABELS = "ABCDE"
EDITABLE = ("draft", "scheduled", "paused")


def local_to_utc(workspace: Workspace, value: datetime | None) -> datetime | None:
    """A time as given: with its zone, or in the workspace's timezone; None stays None."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(workspace.timezone or "Asia/Jerusalem"))
    return value.astimezone(ZoneInfo("UTC"))


def _check_refs(session: Session, workspace: Workspace, sender_id: int | None, spec: dict[str, list[int]]) -> None:
    if sender_id is not None:
        senders.get_sender(session, workspace.id, sender_id)
    for key in ("lists", "exclude_lists"):
        for list_id in spec.get(key, []):
            try:
                groups.get(session, workspace.id, "list", list_id)
            except NotFound:
                raise ValidationError("no list {id} in this workspace", f"audience.{key}", id=list_id) from None
    for key in ("segments", "exclude_segments"):
        for segment_id in spec.get(key, []):
            try:
                segments.get_segment(session, workspace.id, segment_id)
            except NotFound:
                raise ValidationError("no segment {id} in this workspace", f"audience.{key}", id=segment_id) from None


def _compile(variants: list[VariantIn], language: str) -> None:
    """Every variant's subject, HTML and text compile in the sandbox; an error names the variant's field."""
    for i, v in enumerate(variants):
        try:
            Renderer(Content(subject=v.subject, html=v.html, text=v.text, preheader=v.preheader, language=language))
        except ValidationError as exc:
            raise exc.located(f"variants[{i}].{exc.field or 'html'}") from None


def _set_variants(session: Session, workspace: Workspace, campaign: Campaign, variants: list[VariantIn]) -> None:
    session.execute(delete(Variant).where(Variant.campaign_id == campaign.id))
    for label, v in zip(LABELS, variants, strict=False):
        session.add(Variant(campaign_id=campaign.id, workspace_id=workspace.id, label=label, subject=v.subject,
                            preheader=v.preheader, from_name=v.from_name, html=v.html, text=v.text,
                            send_at=local_to_utc(workspace, v.send_at)))
    session.flush()


def _check_ab(ab: dict[str, Any], variants: int) -> None:
    if ab and variants < 2:
        raise ValidationError("an A/B test needs at least two variants", "variants")


def create_campaign(session: Session, workspace: Workspace, data: CampaignIn, *, actor: str = "system") -> Campaign:
    spec = audience.clean(data.audience.model_dump())
    _check_refs(session, workspace, data.sender_id, spec)
    _compile(data.variants, data.language or workspace.language)
    ab = data.ab.model_dump() if data.ab else {}
    _check_ab(ab, len(data.variants))
    campaign = Campaign(workspace_id=workspace.id, name=data.name, sender_id=data.sender_id, advertising=data.advertising,
                        audience=spec, rate_per_second=data.rate_per_second,
                        window_limit=data.window.limit if data.window else None,
                        window_seconds=data.window.seconds if data.window else None, utm=data.utm, ab=ab)
    session.add(campaign)
    session.flush()
    _set_variants(session, workspace, campaign, data.variants)
    audit(session, workspace.id, actor, "campaign.created", "campaign", campaign.id, {"name": data.name})
    return campaign


def update_campaign(session: Session, workspace: Workspace, campaign_id: int, patch: CampaignPatch, *,
                    actor: str = "system") -> Campaign:
    campaign = get_campaign(session, workspace.id, campaign_id)
    if campaign.status not in EDITABLE:
        raise Conflict("a campaign that is {status} cannot be changed", "status", status=campaign.status)
    given = patch.model_fields_set
    if "audience" in given and patch.audience is not None:
        spec = audience.clean(patch.audience.model_dump())
        _check_refs(session, workspace, None, spec)
        if campaign.status == "paused":
            raise Conflict("the audience of a campaign already sending cannot change; cancel it and send a new one",
                           "audience")
        campaign.audience = spec
    if "sender_id" in given and patch.sender_id is not None:
        _check_refs(session, workspace, patch.sender_id, {})
        campaign.sender_id = patch.sender_id
    ab = (patch.ab.model_dump() if patch.ab else {}) if "ab" in given else campaign.ab
    new_variants = patch.variants if "variants" in given and patch.variants is not None else None
    _check_ab(ab, len(new_variants) if new_variants is not None else len(variants_of(session, campaign.id)))
    if new_variants is not None:
        _compile(new_variants, workspace.language)
        _set_variants(session, workspace, campaign, new_variants)
    campaign.ab = ab
    for name in ("name", "advertising", "rate_per_second"):
        if name in given and (getattr(patch, name) is not None or name == "rate_per_second"):
            setattr(campaign, name, getattr(patch, name))
    if "window" in given:
        campaign.window_limit = patch.window.limit if patch.window else None
        campaign.window_seconds = patch.window.seconds if patch.window else None
    if "utm" in given:
        campaign.utm = patch.utm or {}
    campaign.updated_at = utcnow()
    session.flush()
    audit(session, workspace.id, actor, "campaign.updated", "campaign", campaign.id, {"fields": sorted(given)})
    return campaign


def get_campaign(session: Session, workspace_id: int, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or campaign.workspace_id != workspace_id:
        raise NotFound("no campaign {id} in this workspace", "campaign_id", id=campaign_id)
    return campaign


def list_campaigns(session: Session, workspace_id: int) -> list[Campaign]:
    return list(session.scalars(select(Campaign).where(Campaign.workspace_id == workspace_id)
                                .order_by(Campaign.created_at.desc(), Campaign.id.desc())))


def variants_of(session: Session, campaign_id: int) -> list[Variant]:
    return list(session.scalars(select(Variant).where(Variant.campaign_id == campaign_id).order_by(Variant.label)))


def delete_campaign(session: Session, workspace_id: int, campaign_id: int, *, actor: str = "system") -> None:
    campaign = get_campaign(session, workspace_id, campaign_id)
    if campaign.status not in ("draft", "scheduled"):
        raise Conflict("a campaign that is {status} is kept for its reports; only drafts can be deleted",
                       "status", status=campaign.status)
    audit(session, workspace_id, actor, "campaign.deleted", "campaign", campaign.id, {"name": campaign.name})
    session.delete(campaign)
    session.flush()


def content_of(campaign: Campaign, variant: Variant, language: str) -> Content:
    return Content(subject=variant.subject, html=variant.html, text=variant.text, preheader=variant.preheader,
                   language=language)


def findings(session: Session, workspace: Workspace, campaign: Campaign, *,
             online: bool = False) -> list[tuple[str, checks.Finding]]:
    """The pre-send checks of every variant, rendered for a sample contact."""
    sender = senders.get_sender(session, workspace.id, campaign.sender_id) if campaign.sender_id else None
    found: list[tuple[str, checks.Finding]] = []
    for variant in variants_of(session, campaign.id):
        content = content_of(campaign, variant, workspace.language)
        context = sample_context(workspace.language)
        context["sender"] = {"name": variant.from_name or (sender.name if sender else ""),
                             "email": sender.email if sender else "", "address": sender.address if sender else ""}
        context["unsubscribe_url"] = "https://example.invalid/u/sample"
        context["preferences_url"] = "https://example.invalid/p/sample"
        rendered = Renderer(content).render(context)
        for finding in checks.check(content, rendered, advertising=campaign.advertising,
                                    sender_name=context["sender"]["name"], sender_email=context["sender"]["email"],
                                    sender_address=context["sender"]["address"], online=online):
            found.append((variant.label, finding))
    if sender is None:
        found.append(("", checks.Finding("no_sender", "error", "Choose a sender identity", {}, "sender_id")))
    return found


def _refuse_blocking(found: list[tuple[str, checks.Finding]]) -> None:
    for label, finding in found:
        if finding.level == "error":
            where = f"variants[{LABELS.index(label)}].{finding.field}" if label else finding.field
            template = finding.message  # a message id with {placeholders}, filled from the finding's params
            raise ValidationError(template, where, **finding.params)


def send(session: Session, workspace: Workspace, campaign_id: int, *, send_at: datetime | None = None,
         now: datetime | None = None, actor: str = "system") -> Campaign:
    """Send now, or schedule for `send_at`; refused while a check that forbids sending fails."""
    now = now or utcnow()
    campaign = get_campaign(session, workspace.id, campaign_id)
    if campaign.status not in ("draft", "scheduled"):
        raise Conflict("the campaign is {status}; only a draft or a scheduled campaign can be sent", "status",
                       status=campaign.status)
    _refuse_blocking(findings(session, workspace, campaign))
    at = local_to_utc(workspace, send_at)
    if audience.count(session, workspace.id, campaign.channel, campaign.audience) == 0:
        raise ValidationError("nobody in the audience can be sent to (consent, suppression, address)", "audience")
    campaign.send_at = at
    if at is not None and at > now:
        campaign.status = "scheduled"
        audit(session, workspace.id, actor, "campaign.scheduled", "campaign", campaign.id, {"send_at": at.isoformat()})
    else:
        begin(session, workspace, campaign, now)
        audit(session, workspace.id, actor, "campaign.sent", "campaign", campaign.id, {})
    session.flush()
    return campaign


def begin(session: Session, workspace: Workspace, campaign: Campaign, now: datetime) -> int:
    """Write the campaign's messages to the outbox and mark it sending; returns how many were written."""
    due = gate.next_allowed(workspace, campaign.channel, now)
    variants = variants_of(session, campaign.id)
    planned = [(v.label, max(v.send_at or due, due)) for v in variants]
    share = campaign.ab.get("test_share") if campaign.ab else None
    written = audience.materialize(session, campaign, variants=planned if share else planned[:1],
                                   test_share=share, not_before=due)
    campaign.status, campaign.started_at = "sending", campaign.started_at or now
    session.flush()
    return written


def pause(session: Session, workspace: Workspace, campaign_id: int, *, actor: str = "system") -> Campaign:
    """Stop sending: messages already claimed by a worker are not sent; nobody is skipped on resume."""
    campaign = get_campaign(session, workspace.id, campaign_id)
    if campaign.status not in ("sending", "scheduled"):
        raise Conflict("the campaign is {status}; only a sending or scheduled campaign can be paused", "status",
                       status=campaign.status)
    campaign.status = "paused"
    audit(session, workspace.id, actor, "campaign.paused", "campaign", campaign.id, {})
    session.flush()
    return campaign


def resume(session: Session, workspace: Workspace, campaign_id: int, *, now: datetime | None = None,
           actor: str = "system") -> Campaign:
    now = now or utcnow()
    campaign = get_campaign(session, workspace.id, campaign_id)
    if campaign.status != "paused":
        raise Conflict("the campaign is {status}; only a paused campaign can be resumed", "status",
                       status=campaign.status)
    if campaign.started_at is None:
        campaign.status = "scheduled" if campaign.send_at and campaign.send_at > now else "draft"
        if campaign.status == "draft":
            begin(session, workspace, campaign, now)
    else:
        campaign.status = "testing" if _testing(campaign, session) else "sending"
    audit(session, workspace.id, actor, "campaign.resumed", "campaign", campaign.id, {})
    session.flush()
    return campaign


def _testing(campaign: Campaign, session: Session) -> bool:
    left = outbox.counts(session, campaign.id)
    return bool(campaign.ab) and not campaign.ab.get("winner") and not left.get("queued") and not left.get("sending")


def cancel(session: Session, workspace: Workspace, campaign_id: int, *, actor: str = "system") -> Campaign:
    campaign = get_campaign(session, workspace.id, campaign_id)
    if campaign.status in ("sent", "cancelled"):
        raise Conflict("the campaign is already {status}", "status", status=campaign.status)
    cancelled = outbox.cancel(session, campaign.id)
    campaign.status, campaign.finished_at = "cancelled", utcnow()
    audit(session, workspace.id, actor, "campaign.cancelled", "campaign", campaign.id, {"messages": cancelled})
    session.flush()
    return campaign


def finish_if_done(session: Session, campaign: Campaign, now: datetime) -> bool:
    """A sending campaign with nothing left to send is sent, or waits for its test's decision."""
    left = outbox.counts(session, campaign.id)
    if campaign.status != "sending" or left.get("queued") or left.get("sending"):
        return False
    if campaign.ab and not campaign.ab.get("winner"):
        campaign.status = "testing"
        campaign.ab = {**campaign.ab, "test_sent_at": now.isoformat()}
    else:
        campaign.status, campaign.finished_at = "sent", now
    session.flush()
    return True


def progress(session: Session, campaign: Campaign) -> Progress:
    counts = outbox.counts(session, campaign.id)
    return Progress(campaign_id=campaign.id, status=campaign.status, total=sum(counts.values()),
                    queued=counts.get("queued", 0), sending=counts.get("sending", 0), sent=counts.get("sent", 0),
                    failed=counts.get("failed", 0), skipped=counts.get("skipped", 0),
                    cancelled=counts.get("cancelled", 0),
                    by_variant={k or "-": v for k, v in outbox.variant_counts(session, campaign.id).items()})
