"""Bounce, complaint and delivery webhooks of email providers: Amazon SES (through SNS), SendGrid and Mailgun.

Each provider proves a request its own way, as its documentation describes; this module checks
that proof and reads the events into `bounces.Report`s, and keeps each workspace's keys (in
`workspaces.settings["email_webhooks"]`).

- **Amazon SNS** signs every message with a certificate of its own: SignatureVersion 1 (SHA1) or
  2 (SHA256) with RSA, over the message's fields in a documented order. The certificate is fetched
  from SigningCertURL, which must be https on SNS's host (`sns.<region>.amazonaws.com`). SNS delivers only to a
  confirmed subscription, and Kesher confirms none by itself (unless the workspace says so): the
  SubscribeURL is written to the log for the operator to open.
- **SendGrid** signs the timestamp header followed by the body with ECDSA (P-256, SHA-256); the
  workspace holds the public key SendGrid shows ("Signed Event Webhook").
- **Mailgun** puts an HMAC-SHA256 of timestamp + token, keyed with the webhook signing key, in the
  body's `signature` object.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from sqlalchemy.orm import Session

from kesher.accounts.models import Workspace
from kesher.accounts.service import audit
from kesher.channels.bounces import Kind, Report, ReportKind
from kesher.errors import AuthError, ValidationError

log = logging.getLogger("kesher.webhooks")

SETTINGS_KEY = "email_webhooks"
PROVIDERS = ("ses", "sendgrid", "mailgun")  # each posts to /hooks/<provider>/<workspace slug>
UNCHANGED: Any = object()
Fetch = Callable[[str], bytes]  # GET an https URL of SNS's, answer the body


def _time(value: Any) -> datetime | None:
    """An ISO 8601 time (SES) or Unix seconds (SendGrid, Mailgun) as an aware datetime."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    return None


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# The workspace's keys -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookKeys:
    sendgrid_public_key: str | None = None
    mailgun_signing_key: str | None = None
    ses_confirm_subscriptions: bool = False


def webhook_keys(workspace: Workspace) -> WebhookKeys:
    stored = _obj((workspace.settings or {}).get(SETTINGS_KEY))
    return WebhookKeys(sendgrid_public_key=stored.get("sendgrid_public_key") or None,
                       mailgun_signing_key=stored.get("mailgun_signing_key") or None,
                       ses_confirm_subscriptions=stored.get("ses_confirm_subscriptions") is True)


def set_webhook_keys(session: Session, workspace: Workspace, *, sendgrid_public_key: Any = UNCHANGED,
                     mailgun_signing_key: Any = UNCHANGED, ses_confirm_subscriptions: Any = UNCHANGED,
                     actor: str = "system") -> WebhookKeys:
    """Set what is given; None or blank removes a key (that provider's deliveries are then refused)."""
    stored = dict(_obj((workspace.settings or {}).get(SETTINGS_KEY)))
    if sendgrid_public_key is not UNCHANGED:
        key = _text(sendgrid_public_key)
        if key:
            _sendgrid_key(key, "sendgrid_public_key")
        stored["sendgrid_public_key"] = key or None
    if mailgun_signing_key is not UNCHANGED:
        stored["mailgun_signing_key"] = _text(mailgun_signing_key) or None
    if ses_confirm_subscriptions is not UNCHANGED:
        if not isinstance(ses_confirm_subscriptions, bool):
            raise ValidationError("must be true or false", "ses_confirm_subscriptions")
        stored["ses_confirm_subscriptions"] = ses_confirm_subscriptions
    workspace.settings = {**(workspace.settings or {}), SETTINGS_KEY: stored}
    session.flush()
    audit(session, workspace.id, actor, "email_webhooks.changed", "workspace", workspace.id,
          {name: "set" if value else value for name, value in stored.items()})  # never the keys themselves
    return webhook_keys(workspace)


# Amazon SES through SNS ---------------------------------------------------------------------------

SNS_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
SNS_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com$")
MAX_CERTIFICATE_BYTES, MAX_CERTIFICATES = 64 * 1024, 64
_certificates: dict[str, bytes] = {}


def sns_url(url: Any, field: str) -> str:
    """`url` when it is https on SNS's own host, `sns.<region>.amazonaws.com`, else an AuthError.

    Any host under amazonaws.com would not do: S3 serves anyone's bucket as `<bucket>.s3.amazonaws.com`,
    and a certificate put there would sign forged notifications.
    """
    parts = urlsplit(url if isinstance(url, str) else "")
    if parts.scheme != "https" or parts.username or parts.password or parts.port \
            or not SNS_HOST.match(parts.hostname or ""):
        raise AuthError("must be an https address on sns.<region>.amazonaws.com", field)
    return str(url)


def fetch_from_sns(url: str) -> bytes:
    """GET an SNS URL (checked by `sns_url`); signing certificates are kept once fetched."""
    if url in _certificates:
        return _certificates[url]
    with urllib.request.urlopen(sns_url(url, "url"), timeout=10) as response:  # noqa: S310 - https only
        body = bytes(response.read(MAX_CERTIFICATE_BYTES))
    if url.endswith(".pem") and len(_certificates) < MAX_CERTIFICATES:
        _certificates[url] = body
    return body


def sns_string_to_sign(document: dict[str, Any]) -> bytes:
    """The fields SNS signs, each as `name\\nvalue\\n`, in its order; Subject only when present."""
    names = SNS_SIGNED_FIELDS.get(_text(document.get("Type")), ())
    return "".join(f"{name}\n{document[name]}\n" for name in names
                   if name in document and not (name == "Subject" and document[name] is None)).encode()


def verify_sns(document: dict[str, Any], fetch: Fetch) -> None:
    """Raise AuthError unless `document` carries a valid SNS signature."""
    algorithm = SNS_HASHES.get(_text(document.get("SignatureVersion")))
    if algorithm is None:
        raise AuthError("must be 1 or 2", "SignatureVersion")
    if _text(document.get("Type")) not in SNS_SIGNED_FIELDS:
        raise AuthError("is not a message type SNS sends", "Type")
    url = sns_url(document.get("SigningCertURL"), "SigningCertURL")
    try:
        signature = base64.b64decode(_text(document.get("Signature")), validate=True)
        certificate = x509.load_pem_x509_certificate(fetch(url))
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("not an RSA certificate")
        key.verify(signature, sns_string_to_sign(document), padding.PKCS1v15(), algorithm())
    except (ValueError, InvalidSignature, OSError) as exc:
        log.warning("refused an SNS message signed with %s: %s", url, exc or type(exc).__name__)
        raise AuthError("does not match the message and the certificate at SigningCertURL", "Signature") from None
    now = datetime.now(UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise AuthError("the certificate at SigningCertURL is not valid now", "SigningCertURL")


def ses_reports(notification: dict[str, Any]) -> list[Report]:
    """The bounces, complaints and deliveries of an SES notification (`notificationType`) or event
    (`eventType`)."""
    kind = _text(notification.get("notificationType") or notification.get("eventType"))
    mail = _obj(notification.get("mail"))
    # The envelope sender is the message's bounce address; Message-ID headers, when SES includes them.
    references = [_text(mail.get("source")), _text(_obj(mail.get("commonHeaders")).get("messageId"))]
    references += [_text(h.get("value")) for h in map(_obj, _list(mail.get("headers")))
                   if _text(h.get("name")).lower() in ("message-id", "return-path")]
    references = [r for r in references if r]
    if kind == "Bounce":
        bounce = _obj(notification.get("bounce"))
        hard = _text(bounce.get("bounceType")) == "Permanent"  # Transient and Undetermined: soft
        return [Report("hard" if hard else "soft", _text(r.get("emailAddress")),
                       reason=_text(r.get("diagnosticCode")) or _text(r.get("status")) or
                       f"{_text(bounce.get('bounceType'))} {_text(bounce.get('bounceSubType'))}".strip(),
                       references=references, ts=_time(bounce.get("timestamp")),
                       key=f"{_text(bounce.get('feedbackId'))}:{_text(r.get('emailAddress'))}")
                for r in map(_obj, _list(bounce.get("bouncedRecipients")))]
    if kind == "Complaint":
        complaint = _obj(notification.get("complaint"))
        if _text(complaint.get("complaintFeedbackType")) == "not-spam":
            return []
        reason = f"complaint: {_text(complaint.get('complaintFeedbackType')) or 'abuse'}"
        return [Report("complaint", _text(r.get("emailAddress")), reason=reason, references=references,
                       ts=_time(complaint.get("timestamp")),
                       key=f"{_text(complaint.get('feedbackId'))}:{_text(r.get('emailAddress'))}")
                for r in map(_obj, _list(complaint.get("complainedRecipients")))]
    if kind == "Delivery":
        delivery = _obj(notification.get("delivery"))
        return [Report("delivered", _text(r), references=references, ts=_time(delivery.get("timestamp")))
                for r in _list(delivery.get("recipients"))]
    return []


# SendGrid -------------------------------------------------------------------------------------------

SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
# Why SendGrid dropped a message, when that says something about the address.
SENDGRID_DROPS: dict[str, Kind] = {"bounced address": "hard", "invalid": "hard", "spam reporting address": "complaint"}


def _sendgrid_key(text: str, field: str) -> ec.EllipticCurvePublicKey:
    """The verification key as SendGrid shows it: base64 of the DER public key (a PEM is taken too)."""
    try:
        key = (serialization.load_pem_public_key(text.encode()) if text.startswith("-----")
               else serialization.load_der_public_key(base64.b64decode(text, validate=True)))
    except ValueError:
        raise ValidationError("is not the public key SendGrid shows (base64 of an ECDSA key)", field) from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValidationError("is not an ECDSA public key", field)
    return key


def verify_sendgrid(public_key: str | None, signature: str | None, timestamp: str | None, body: bytes) -> None:
    if not public_key:
        raise AuthError("this workspace has no SendGrid verification key; set it first", SENDGRID_SIGNATURE)
    if not signature or not timestamp:
        raise AuthError("the signature or timestamp header is missing", SENDGRID_SIGNATURE)
    try:
        _sendgrid_key(public_key, "sendgrid_public_key").verify(
            base64.b64decode(signature, validate=True), timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (ValueError, InvalidSignature):
        raise AuthError("does not match the body, the timestamp and the workspace's key", SENDGRID_SIGNATURE) from None


def sendgrid_reports(events: list[Any]) -> list[Report]:
    reports = []
    for event in map(_obj, events):
        name, reason = _text(event.get("event")), _text(event.get("reason")) or _text(event.get("response"))
        kinds: dict[str, ReportKind | None] = {
            "bounce": "soft" if _text(event.get("type")) == "blocked" else "hard", "deferred": "soft",
            "spamreport": "complaint", "dropped": SENDGRID_DROPS.get(reason.lower()), "delivered": "delivered"}
        kind = kinds.get(name)
        if kind is None:
            continue
        references = [r for r in (_text(event.get("smtp-id")), _text(event.get("kesher"))) if r]
        reports.append(Report(kind, _text(event.get("email")), reason=reason or name, references=references,
                              ts=_time(event.get("timestamp")), key=_text(event.get("sg_event_id"))))
    return reports


# Mailgun -------------------------------------------------------------------------------------------


def verify_mailgun(signing_key: str | None, signature: dict[str, Any]) -> None:
    if not signing_key:
        raise AuthError("this workspace has no Mailgun webhook signing key; set it first", "signature")
    timestamp, token, sent = (_text(signature.get(name)) for name in ("timestamp", "token", "signature"))
    expected = hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not (timestamp and token and hmac.compare_digest(sent.lower(), expected)):
        raise AuthError("does not match the timestamp, the token and the workspace's signing key", "signature")


def mailgun_reports(event: dict[str, Any]) -> list[Report]:
    name = _text(event.get("event"))
    kind: ReportKind
    if name == "delivered":
        kind = "delivered"
    elif name == "failed":
        kind = "hard" if _text(event.get("severity")) == "permanent" else "soft"
    elif name == "complained":
        kind = "complaint"
    else:
        return []
    status = _obj(event.get("delivery-status"))
    reason = (_text(status.get("description")) or _text(status.get("message")) or _text(event.get("reason"))
              or name)
    headers = _obj(_obj(event.get("message")).get("headers"))
    references = [r for r in (_text(headers.get("message-id")),
                              _text(_obj(event.get("user-variables")).get("kesher"))) if r]
    return [Report(kind, _text(event.get("recipient")), reason=reason, references=references,
                   ts=_time(event.get("timestamp")), key=_text(event.get("id")))]


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise ValidationError("is not JSON", "body") from None
