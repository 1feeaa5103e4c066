"""The campaigns JSON API (mounted at /api/v1): campaigns, their checks, sending and progress."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response, status
from sqlalchemy import event
from sqlalchemy.orm import Session

from kesher.accounts.models import Workspace
from kesher.campaigns import abtest, service
from kesher.campaigns import report as reports
from kesher.campaigns.models import Campaign
from kesher.campaigns.tasks import start_pass
from kesher.campaigns.schemas import (CampaignIn, CampaignOut, CampaignPatch, FindingOut, Progress, SendIn,
                                      TestSendIn, VariantOut, Window)
from kesher.campaigns.testsend import test_send
from kesher.config import Settings
from kesher.db.base import MAX_ID
from kesher.web.deps import ApiCaller, DbSession, api_caller
from kesher.web.problems import API_ERRORS

router = APIRouter(tags=["campaigns"], responses=API_ERRORS)
Caller = Annotated[ApiCaller, Depends(api_caller)]
CampaignId = Annotated[int, Path(ge=1, le=MAX_ID, description="A campaign id")]


def _workspace(session: Session, caller: ApiCaller) -> Workspace:
    return session.get_one(Workspace, caller.workspace_id)


def campaign_out(session: Session, campaign: Campaign) -> CampaignOut:
    window = (Window(limit=campaign.window_limit, seconds=campaign.window_seconds)
              if campaign.window_limit and campaign.window_seconds else None)
    variants = [VariantOut(label=v.label, subject=v.subject, preheader=v.preheader, from_name=v.from_name, html=v.html,
                           text=v.text, send_at=v.send_at) for v in service.variants_of(session, campaign.id)]
    return CampaignOut(id=campaign.id, name=campaign.name, channel=campaign.channel, status=campaign.status,
                       sender_id=campaign.sender_id, advertising=campaign.advertising, audience=campaign.audience,
                       send_at=campaign.send_at, rate_per_second=campaign.rate_per_second, window=window,
                       utm=campaign.utm or {}, ab=campaign.ab or {}, variants=variants,
                       created_at=campaign.created_at, started_at=campaign.started_at,
                       finished_at=campaign.finished_at)


def start_pass_after_commit(session: Session, settings: Settings, campaign: Campaign) -> None:
    """Once the transaction has committed, queue a sending pass (the worker's clock would start one too)."""
    url, campaign_id = session.get_bind().url.render_as_string(hide_password=False), campaign.id
    if campaign.status != "sending":
        return

    def _enqueue(_session: Session) -> None:
        start_pass(settings, campaign_id, url)

    event.listen(session, "after_commit", _enqueue, once=True)


@router.get("/campaigns", summary="All campaigns, newest first")
def all_campaigns(caller: Caller, session: DbSession) -> list[CampaignOut]:
    return [campaign_out(session, c) for c in service.list_campaigns(session, caller.workspace_id)]


@router.post("/campaigns", summary="Create a draft campaign", status_code=status.HTTP_201_CREATED,
             description="Variants are checked in the template sandbox at once; a bad one is refused with the "
                         "variant's field (`variants[1].html`). Two or more variants with `ab` make an A/B test.")
def create_campaign(body: CampaignIn, caller: Caller, session: DbSession) -> CampaignOut:
    campaign = service.create_campaign(session, _workspace(session, caller), body, actor=caller.actor)
    return campaign_out(session, campaign)


@router.get("/campaigns/{campaign_id}", summary="One campaign")
def get_campaign(campaign_id: CampaignId, caller: Caller, session: DbSession) -> CampaignOut:
    return campaign_out(session, service.get_campaign(session, caller.workspace_id, campaign_id))


@router.patch("/campaigns/{campaign_id}", summary="Change a draft, scheduled or paused campaign")
def update_campaign(campaign_id: CampaignId, body: CampaignPatch, caller: Caller, session: DbSession) -> CampaignOut:
    campaign = service.update_campaign(session, _workspace(session, caller), campaign_id, body, actor=caller.actor)
    return campaign_out(session, campaign)


@router.delete("/campaigns/{campaign_id}", summary="Delete a draft", status_code=status.HTTP_204_NO_CONTENT)
def delete_campaign(campaign_id: CampaignId, caller: Caller, session: DbSession) -> Response:
    service.delete_campaign(session, caller.workspace_id, campaign_id, actor=caller.actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/campaigns/{campaign_id}/checks", summary="Pre-send checks of every variant",
            description="`error` findings forbid sending (for advertising: the Communications Law's "
                        "'פרסומת' subject, the sender and an opt-out); warnings and advice do not.")
def campaign_checks(campaign_id: CampaignId, caller: Caller, session: DbSession, online: bool = False) -> list[FindingOut]:
    workspace = _workspace(session, caller)
    campaign = service.get_campaign(session, workspace.id, campaign_id)
    return [FindingOut(variant=label, code=f.code, level=f.level, message=f.message.format(**f.params), field=f.field)
            for label, f in service.findings(session, workspace, campaign, online=online)]


@router.post("/campaigns/{campaign_id}/send", summary="Send now, or schedule",
             description="Without `send_at` the campaign goes out now; a `send_at` without a zone is in the "
                         "workspace's timezone. Refused while a check that forbids sending fails.")
def send_campaign(campaign_id: CampaignId, body: SendIn, caller: Caller, session: DbSession,
                  request: Request) -> CampaignOut:
    campaign = service.send(session, _workspace(session, caller), campaign_id, send_at=body.send_at, actor=caller.actor)
    start_pass_after_commit(session, request.app.state.settings, campaign)
    return campaign_out(session, campaign)


@router.post("/campaigns/{campaign_id}/pause", summary="Pause sending; nobody is skipped on resume")
def pause_campaign(campaign_id: CampaignId, caller: Caller, session: DbSession) -> CampaignOut:
    return campaign_out(session, service.pause(session, _workspace(session, caller), campaign_id, actor=caller.actor))


@router.post("/campaigns/{campaign_id}/resume", summary="Resume a paused campaign")
def resume_campaign(campaign_id: CampaignId, caller: Caller, session: DbSession, request: Request) -> CampaignOut:
    campaign = service.resume(session, _workspace(session, caller), campaign_id, actor=caller.actor)
    start_pass_after_commit(session, request.app.state.settings, campaign)
    return campaign_out(session, campaign)


@router.post("/campaigns/{campaign_id}/cancel", summary="Cancel: no further message is sent")
def cancel_campaign(campaign_id: CampaignId, caller: Caller, session: DbSession) -> CampaignOut:
    return campaign_out(session, service.cancel(session, _workspace(session, caller), campaign_id, actor=caller.actor))


@router.get("/campaigns/{campaign_id}/progress", summary="Messages by state and by variant")
def campaign_progress(campaign_id: CampaignId, caller: Caller, session: DbSession) -> Progress:
    return service.progress(session, service.get_campaign(session, caller.workspace_id, campaign_id))


@router.get("/campaigns/{campaign_id}/abtest", summary="The A/B test's figures so far, and its decision once made")
def campaign_abtest(campaign_id: CampaignId, caller: Caller, session: DbSession) -> dict[str, object]:
    campaign = service.get_campaign(session, caller.workspace_id, campaign_id)
    if not campaign.ab:
        return {"test": False}
    metric = campaign.ab.get("metric", "open_rate")
    current = abtest.decide(abtest.arms(session, campaign, metric), metric)
    return {"test": True, **campaign.ab, "current": current.report()}


@router.post("/campaigns/{campaign_id}/test", summary="Send test messages to a few addresses",
             description="Rendered as the contact given (or a sample contact), with '[TEST]' before the subject; "
                         "not counted in the campaign's figures.")
def send_test(campaign_id: CampaignId, body: TestSendIn, caller: Caller, session: DbSession,
              request: Request) -> dict[str, list[str]]:
    workspace = _workspace(session, caller)
    campaign = service.get_campaign(session, workspace.id, campaign_id)
    sent = test_send(session, request.app.state.settings, workspace, campaign, body.emails,
                     contact_id=body.contact_id, variant=body.variant)
    return {"sent": sent}


@router.get("/campaigns/{campaign_id}/report",
            summary="What the campaign did: delivery, opens, clicks, unsubscribes, complaints, revenue",
            description="Counts by recipient (and in total for opens and clicks), rates as fractions (0..1) or null "
                        "while their base is 0. Automatic opens and clicks (Apple Mail Privacy Protection, link "
                        "scanners) are counted apart (`machine_*`) and left out of every rate. Revenue is the "
                        f"purchases recipients made within {reports.ATTRIBUTION_DAYS} days after their message, "
                        "in ILS. `variants` is filled for an A/B test.")
def campaign_report(campaign_id: CampaignId, caller: Caller, session: DbSession) -> dict[str, object]:
    return reports.report(session, service.get_campaign(session, caller.workspace_id, campaign_id)).as_dict()
