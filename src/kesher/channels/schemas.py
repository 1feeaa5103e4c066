"""Request and response bodies of the senders API. Values are checked by the senders service, so the
API and the UI give the same message for the same mistake; these models only give them their shape."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from kesher.channels.models import Sender
from kesher.channels.senders import DkimRecord, dkim_record


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SenderIn(_In):
    name: str = Field(description="The name recipients see in From.", examples=["חנות הטבע"])
    email: str = Field(description="The From address; unique in the workspace.", examples=["shop@teva.co.il"])
    reply_to: str | None = Field(None, description="Where replies go, when not to the From address.")
    address: str = Field("", description="The postal address advertising must show (Communications Law, "
                                         "amendment 40).", examples=["רחוב הרצל 1, חיפה"])


class SenderPatch(_In):
    """Only what is sent changes; `reply_to: null` removes it. A new email domain drops the DKIM key."""

    name: str | None = None
    email: str | None = None
    reply_to: str | None = None
    address: str | None = None


class DkimKeyIn(_In):
    selector: str = Field(description="The DKIM selector: the key is published at <selector>._domainkey.<domain>.",
                          examples=["k1"])


class DkimRecordOut(BaseModel):
    """The DNS record to publish for the sender's DKIM key (the private key is never shown)."""

    name: str = Field(examples=["k1._domainkey.teva.co.il"])
    type: str = "TXT"
    value: str = Field(examples=["v=DKIM1; k=rsa; p=MIIBIjANBgkqh..."])

    @classmethod
    def of(cls, record: DkimRecord) -> DkimRecordOut:
        return cls(name=record.name, type=record.type, value=record.value)


class SenderOut(BaseModel):
    id: int
    name: str
    email: str
    reply_to: str | None
    address: str
    dkim: DkimRecordOut | None = Field(description="The DNS record of the sender's DKIM key; null without a key.")
    created_at: datetime

    @classmethod
    def of(cls, sender: Sender) -> SenderOut:
        record = dkim_record(sender)
        return cls(id=sender.id, name=sender.name, email=sender.email, reply_to=sender.reply_to,
                   address=sender.address, dkim=DkimRecordOut.of(record) if record else None,
                   created_at=sender.created_at)


class WebhookKeysPatch(_In):
    """Only what is sent changes; `null` or "" removes a key, and that provider's deliveries are then refused."""

    sendgrid_public_key: str | None = Field(None, description="The verification key of SendGrid's signed event "
                                                              "webhook (base64 or PEM).")
    mailgun_signing_key: str | None = Field(None, description="Mailgun's HTTP webhook signing key.")
    ses_confirm_subscriptions: bool | None = Field(None, description="Confirm Amazon SNS subscriptions to this "
                                                                     "workspace's address by itself.")


class WebhookKeysOut(BaseModel):
    """Where each provider posts, and which keys are set. The keys themselves are never answered."""

    sendgrid_public_key_set: bool
    mailgun_signing_key_set: bool
    ses_confirm_subscriptions: bool
    urls: dict[str, str] = Field(description="The address to give each provider, by provider.")
