"""The senders JSON API (mounted at /api/v1): sender identities and their DKIM keys, and the keys
that let email providers' delivery, bounce and complaint webhooks in.

Routes only translate; `channels.senders` checks the values (naming the field at fault) and keeps
the private key to itself: answers carry the DNS record to publish, never the key.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response, status

from kesher.accounts.models import Workspace
from kesher.channels import providers, senders
from kesher.channels.hooks import webhook_urls
from kesher.channels.schemas import (
    DkimKeyIn, DkimRecordOut, SenderIn, SenderOut, SenderPatch, WebhookKeysOut, WebhookKeysPatch,
)
from kesher.contacts.api import CONFLICT, NO_CONTENT
from kesher.db.base import MAX_ID
from kesher.web.deps import ApiCaller, DbSession, api_caller
from kesher.web.problems import API_ERRORS

router = APIRouter(tags=["senders"], responses=API_ERRORS)
Caller = Annotated[ApiCaller, Depends(api_caller)]
SenderId = Annotated[int, Path(ge=1, le=MAX_ID, description="A sender id")]


@router.get("/senders", summary="The workspace's sender identities, by name")
def all_senders(caller: Caller, session: DbSession) -> list[SenderOut]:
    return [SenderOut.of(s) for s in senders.list_senders(session, caller.workspace_id)]


@router.post("/senders", summary="Add a sender identity", status_code=status.HTTP_201_CREATED, responses=CONFLICT)
def create_sender(body: SenderIn, caller: Caller, session: DbSession) -> SenderOut:
    sender = senders.create_sender(session, caller.workspace_id, name=body.name, email=body.email,
                                   reply_to=body.reply_to, address=body.address, actor=caller.actor)
    return SenderOut.of(sender)


@router.get("/senders/{sender_id}", summary="A sender identity, with the DNS record of its DKIM key")
def get_sender(sender_id: SenderId, caller: Caller, session: DbSession) -> SenderOut:
    return SenderOut.of(senders.get_sender(session, caller.workspace_id, sender_id))


@router.patch("/senders/{sender_id}", summary="Change a sender identity", responses=CONFLICT)
def update_sender(sender_id: SenderId, body: SenderPatch, caller: Caller, session: DbSession) -> SenderOut:
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    sender = senders.update_sender(session, caller.workspace_id, sender_id, actor=caller.actor, **changes)
    return SenderOut.of(sender)


@router.delete("/senders/{sender_id}", summary="Delete a sender identity no campaign uses", status_code=NO_CONTENT,
               response_class=Response, responses=CONFLICT)
def delete_sender(sender_id: SenderId, caller: Caller, session: DbSession) -> None:
    senders.delete_sender(session, caller.workspace_id, sender_id, actor=caller.actor)


@router.post("/senders/{sender_id}/dkim", summary="Make a new DKIM key; answers the DNS record to publish",
             status_code=status.HTTP_201_CREATED,
             description="An RSA-2048 key replaces any earlier one and signs mail at once: publish the TXT record "
                         "before the next campaign goes out.")
def generate_dkim_key(sender_id: SenderId, body: DkimKeyIn, caller: Caller, session: DbSession) -> DkimRecordOut:
    record = senders.generate_dkim_key(session, caller.workspace_id, sender_id, body.selector, actor=caller.actor)
    return DkimRecordOut.of(record)


def _keys_out(request: Request, workspace: Workspace) -> WebhookKeysOut:
    keys = providers.webhook_keys(workspace)
    return WebhookKeysOut(sendgrid_public_key_set=keys.sendgrid_public_key is not None,
                          mailgun_signing_key_set=keys.mailgun_signing_key is not None,
                          ses_confirm_subscriptions=keys.ses_confirm_subscriptions,
                          urls=webhook_urls(request, workspace.slug))


@router.get("/email-webhooks", summary="Where providers post deliveries, bounces and complaints, and which keys are set")
def get_webhook_keys(request: Request, caller: Caller, session: DbSession) -> WebhookKeysOut:
    return _keys_out(request, session.get_one(Workspace, caller.workspace_id))


@router.patch("/email-webhooks", summary="Set the keys that verify providers' delivery, bounce and complaint webhooks")
def set_webhook_keys(body: WebhookKeysPatch, request: Request, caller: Caller, session: DbSession) -> WebhookKeysOut:
    workspace = session.get_one(Workspace, caller.workspace_id)
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    providers.set_webhook_keys(session, workspace, actor=caller.actor, **changes)
    return _keys_out(request, workspace)
