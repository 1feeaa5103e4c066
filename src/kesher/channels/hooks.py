"""Public webhooks of email providers: `POST /hooks/ses|sendgrid|mailgun/{workspace_slug}`.

A request is refused (401) unless its provider's proof checks out (see `channels.providers`);
its bounces, complaints and deliveries then go through `bounces.record_report`, each counted once
however often the provider posts it.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from kesher.accounts.models import Workspace
from kesher.accounts.service import get_workspace
from kesher.channels import providers
from kesher.channels.bounces import Report, record_report
from kesher.errors import NotFound, ValidationError
from kesher.web.deps import DbSession, public_url, read_body
from kesher.web.problems import problem_doc

log = logging.getLogger("kesher.webhooks")

MAX_BODY_BYTES = 5 * 1024 * 1024

router = APIRouter(prefix="/hooks", tags=["email webhooks (public)"], responses={
    401: problem_doc("The provider's signature is missing or does not check out"),
    404: problem_doc("No workspace has this slug"),
    413: problem_doc(f"The body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB"),
    422: problem_doc("The body is not what the provider sends; `field` names what is wrong"),
})
WorkspaceSlug = Annotated[str, Path(min_length=1, max_length=100, description="The workspace's slug")]


class HookResult(BaseModel):
    """What Kesher made of a provider's request."""

    outcome: Literal["received", "subscription", "ignored"] = Field(
        description="`subscription`: an SNS subscription confirmation (see the log); `ignored`: nothing to record.")
    reports: int = Field(0, description="Bounces, complaints and deliveries in the request.")
    recorded: int = Field(0, description="Of them, new events.")
    duplicates: int = Field(0, description="Already recorded: the provider posted them again.")
    unmatched: int = Field(0, description="Naming no message and no contact of the workspace (a delivery: no "
                                          "message); a hard bounce or complaint still suppresses the address.")


async def raw_body(request: Request) -> bytes:
    """The body exactly as sent: the signatures cover these bytes."""
    return await read_body(request, MAX_BODY_BYTES, f"the body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB")


RawBody = Annotated[bytes, Depends(raw_body)]


def sns_fetch() -> providers.Fetch:
    """How SNS certificates (and, when allowed, subscription confirmations) are fetched; tests replace it."""
    return providers.fetch_from_sns


def webhook_urls(request: Request, slug: str) -> dict[str, str]:
    """The addresses of a workspace's email provider webhooks (the routes below), by provider."""
    return {provider: public_url(request, f"{router.prefix}/{provider}/{slug}") for provider in providers.PROVIDERS}


def _workspace(session: Session, slug: str) -> Workspace:
    try:
        return get_workspace(session, slug)
    except NotFound as exc:
        raise exc.located("workspace_slug") from None


def _record(request: Request, session: Session, workspace: Workspace, reports: list[Report],
            source: str) -> HookResult:
    result = HookResult(outcome="received", reports=len(reports))
    secret = request.app.state.settings.secret_key
    for report in reports:
        applied = record_report(session, report, secret, source=source, workspace=workspace)
        if applied is None or applied.event == "no_contact":
            result.unmatched += 1
        elif applied.event == "duplicate":
            result.duplicates += 1
        else:
            result.recorded += 1
    return result


def _object(data: Any, field: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationError("must be a JSON object", field)
    return data


@router.post("/ses/{workspace_slug}", summary="Receive Amazon SES bounce, complaint and delivery notifications (SNS)")
def ses(workspace_slug: WorkspaceSlug, request: Request, body: RawBody, session: DbSession,
        fetch: Annotated[providers.Fetch, Depends(sns_fetch)]) -> HookResult:
    workspace = _workspace(session, workspace_slug)
    document = _object(providers.parse_json(body), "body")
    providers.verify_sns(document, fetch)
    if document["Type"] == "SubscriptionConfirmation":
        url = providers.sns_url(document.get("SubscribeURL"), "SubscribeURL")
        if providers.webhook_keys(workspace).ses_confirm_subscriptions:
            fetch(url)
            log.info("confirmed the SNS subscription of %s to %s", workspace.slug, document.get("TopicArn"))
        else:
            log.warning("SNS asks workspace %s to confirm its subscription to %s: open %s to receive its "
                        "notifications", workspace.slug, document.get("TopicArn"), url)
        return HookResult(outcome="subscription")
    if document["Type"] != "Notification":
        return HookResult(outcome="ignored")
    message = document.get("Message")
    notification = _object(providers.parse_json(message.encode() if isinstance(message, str) else b""), "Message")
    return _record(request, session, workspace, providers.ses_reports(notification), "ses")


@router.post("/sendgrid/{workspace_slug}", summary="Receive SendGrid's event webhook (delivered, bounce, dropped, "
                                                   "deferred, spamreport)")
def sendgrid(workspace_slug: WorkspaceSlug, request: Request, body: RawBody, session: DbSession) -> HookResult:
    workspace = _workspace(session, workspace_slug)
    providers.verify_sendgrid(providers.webhook_keys(workspace).sendgrid_public_key,
                              request.headers.get(providers.SENDGRID_SIGNATURE),
                              request.headers.get(providers.SENDGRID_TIMESTAMP), body)
    events = providers.parse_json(body)
    if not isinstance(events, list):
        raise ValidationError("must be a JSON array of events", "body")
    return _record(request, session, workspace, providers.sendgrid_reports(events), "sendgrid")


@router.post("/mailgun/{workspace_slug}", summary="Receive a Mailgun webhook (delivered, failed, complained)")
def mailgun(workspace_slug: WorkspaceSlug, request: Request, body: RawBody, session: DbSession) -> HookResult:
    workspace = _workspace(session, workspace_slug)
    data = _object(providers.parse_json(body), "body")
    signature = data.get("signature")
    providers.verify_mailgun(providers.webhook_keys(workspace).mailgun_signing_key,
                             signature if isinstance(signature, dict) else {})
    event = _object(data.get("event-data"), "event-data")
    return _record(request, session, workspace, providers.mailgun_reports(event), "mailgun")
