"""Order webhooks from WooCommerce and Shopify (`POST /hooks/<platform>/<connection id>`).

The routes are public: what proves a delivery comes from the store is its signature, an HMAC-SHA256
of the raw body keyed with the connection's secret, base64-encoded, in `X-WC-Webhook-Signature`
(WooCommerce) or `X-Shopify-Hmac-Sha256` (Shopify). An unsigned or wrongly signed delivery is
refused before its body is parsed. A paid order becomes one `purchase` event through `ingest`,
keyed by store and order, so the platforms' re-deliveries (and the created/paid/updated topics
all sending the same order) count once. A fully refunded order adds one `refund` of its total.
The buyer's marketing consent, where the platform sends it (Shopify does, WooCommerce does not),
is recorded with the order.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel
from sqlalchemy.orm import Session

from kesher.accounts.models import Workspace
from kesher.contacts.models import Consent
from kesher.contacts.service import save_contact, set_consent
from kesher.db.base import utcnow
from kesher.errors import AuthError, KesherError, ValidationError
from kesher.events import catalogue
from kesher.events.ingest import ingest
from kesher.events.models import StoreConnection
from kesher.db.base import MAX_ID
from kesher.web.deps import DbSession, public_url, read_body
from kesher.web.problems import problem_doc

log = logging.getLogger("kesher.webhooks")

MAX_BODY_BYTES = 5 * 1024 * 1024
# WooCommerce's test delivery when a webhook is saved: a form body, no signature.
WOOCOMMERCE_PING = re.compile(rb"^webhook_id=\d+$")
NAME_LIMIT = 300
SKU_LIMIT = 100


# An order as Kesher reads it -----------------------------------------------------------------------


@dataclass
class Buyer:
    email: str = ""
    phone: str = ""
    first_name: str = ""
    last_name: str = ""
    city: str = ""


@dataclass(frozen=True)
class StoreConsent:
    """A marketing consent decision the store reports for the buyer on one channel."""

    channel: Literal["email", "sms"]
    status: Literal["granted", "unsubscribed"]
    at: datetime | None  # when the buyer decided, when the store says
    text: str  # where it came from, kept as the consent's proof


@dataclass
class Order:
    """What an order says, whichever platform sent it."""

    id: str
    number: str
    state: Literal["paid", "refunded", "other"]
    ts: datetime | None
    total: float | None
    currency: str | None
    customer_id: str
    buyer: Buyer
    items: list[dict[str, Any]] = field(default_factory=list)
    consents: list[StoreConsent] = field(default_factory=list)


def _text(value: Any) -> str:
    return str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _money(value: Any) -> float | None:
    """Platforms send money as strings ("219.80") or numbers; anything else is unknown."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return float(round(amount, 2)) if amount.is_finite() else None


def _time(value: Any) -> datetime | None:
    """ISO 8601; a time without a zone is UTC (WooCommerce's `*_gmt` fields)."""
    try:
        ts = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _first(*values: Any) -> str:
    return next((text for text in map(_text, values) if text), "")


def _line(sku: str, fallback: str, name: Any, price: float | None, quantity: Any) -> dict[str, Any] | None:
    """A purchase line; a line without a SKU is named by the store's product id (`fallback`)."""
    if isinstance(quantity, bool) or not isinstance(quantity, int | float) or quantity <= 0:
        return None
    sku = (sku or fallback)[:SKU_LIMIT]
    if not sku:
        return None
    line = {"sku": sku, "name": _text(name)[:NAME_LIMIT], "quantity": quantity}
    if price is not None and price >= 0:
        line["price"] = price
    return line


def woocommerce_order(data: dict[str, Any], store: StoreConnection) -> Order:
    """An order as the WooCommerce REST API (v3) writes it, which is what its webhooks send."""
    billing = _obj(data.get("billing"))
    status = data.get("status")
    items = []
    for raw in data.get("line_items") or []:
        raw = _obj(raw)
        product = _first(raw.get("variation_id") or None, raw.get("product_id") or None)
        quantity = raw.get("quantity")
        # `price` is the unit price after discounts; older stores may send only the line's `total`.
        price = _money(raw.get("price"))
        if price is None and isinstance(quantity, int | float) and quantity:
            total = _money(raw.get("total"))
            price = round(total / quantity, 2) if total is not None else None
        line = _line(_text(raw.get("sku")), f"woocommerce-{store.id}-{product}" if product else "", raw.get("name"),
                     price, quantity)
        if line:
            items.append(line)
    return Order(
        id=_text(data.get("id")), number=_first(data.get("number"), data.get("id")),
        state="paid" if status in ("processing", "completed") else "refunded" if status == "refunded" else "other",
        ts=_time(data.get("date_created_gmt")), total=_money(data.get("total")),
        currency=_text(data.get("currency")) or None, customer_id=_text(data.get("customer_id") or ""),
        buyer=Buyer(email=_text(billing.get("email")), phone=_text(billing.get("phone")),
                    first_name=_text(billing.get("first_name")), last_name=_text(billing.get("last_name")),
                    city=_text(billing.get("city"))),
        items=items,
    )


# Shopify's marketing states that are the buyer's decision; not_subscribed, pending (a confirmation
# not yet clicked), redacted and invalid tell Kesher nothing to record.
SHOPIFY_MARKETING: dict[Any, Literal["granted", "unsubscribed"]] = {
    "subscribed": "granted", "unsubscribed": "unsubscribed"}
SHOPIFY_COLLECTED_FROM = {"SHOPIFY": "collected by Shopify", "OTHER": "collected outside Shopify"}
SHOPIFY_CONSENTS: tuple[tuple[Literal["email", "sms"], str, str], ...] = (
    ("email", "email_marketing_consent", "email marketing"), ("sms", "sms_marketing_consent", "SMS marketing"))


def _shopify_consents(data: dict[str, Any], customer: dict[str, Any], number: str) -> list[StoreConsent]:
    """The customer's `email_marketing_consent` and `sms_marketing_consent`; without the email one
    (API versions before 2022-04 sent none), the order's `buyer_accepts_marketing`."""
    consents = []
    for channel, key, what in SHOPIFY_CONSENTS:
        raw = customer.get(key)
        if not isinstance(raw, dict):
            if channel == "email" and data.get("buyer_accepts_marketing") is True:
                consents.append(StoreConsent("email", "granted", None, f"Shopify order {number}: accepts marketing"))
            continue
        status = SHOPIFY_MARKETING.get(raw.get("state"))
        if status is None:
            continue
        details = [_text(raw.get("opt_in_level")), SHOPIFY_COLLECTED_FROM.get(raw.get("consent_collected_from"), "")]
        shown = f"Shopify order {number}: {what} {raw['state']}"
        if any(details):
            shown += f" ({', '.join(d for d in details if d)})"
        at = _time(raw.get("consent_updated_at"))
        consents.append(StoreConsent(channel, status, at.astimezone(UTC) if at else None, shown))
    return consents


def shopify_order(data: dict[str, Any], store: StoreConnection) -> Order:
    """An order as Shopify's `orders/create`, `orders/paid` and `orders/updated` webhooks send it."""
    customer = _obj(data.get("customer"))
    billing, shipping = _obj(data.get("billing_address")), _obj(data.get("shipping_address"))
    status = data.get("financial_status")
    items = []
    for raw in data.get("line_items") or []:
        raw = _obj(raw)
        product = _first(raw.get("variant_id"), raw.get("product_id"))
        line = _line(_text(raw.get("sku")), f"shopify-{store.id}-{product}" if product else "", raw.get("title"),
                     _money(raw.get("price")), raw.get("quantity"))
        if line:
            items.append(line)
    number = _first(data.get("name"), data.get("id"))
    return Order(
        id=_text(data.get("id")), number=number,
        # No financial status at all: an order made outside a payment flow, taken as paid.
        state="paid" if status in (None, "paid", "partially_refunded") else "refunded" if status == "refunded"
        else "other",
        ts=_time(data.get("created_at")), total=_money(data.get("total_price")),
        currency=_text(data.get("currency")) or None, customer_id=_text(customer.get("id")),
        buyer=Buyer(
            email=_first(data.get("email"), data.get("contact_email"), customer.get("email")),
            phone=_first(data.get("phone"), customer.get("phone"), billing.get("phone"), shipping.get("phone")),
            first_name=_first(customer.get("first_name"), billing.get("first_name"), shipping.get("first_name")),
            last_name=_first(customer.get("last_name"), billing.get("last_name"), shipping.get("last_name")),
            city=_first(billing.get("city"), shipping.get("city")),
        ),
        items=items, consents=_shopify_consents(data, customer, number),
    )


@dataclass(frozen=True)
class Platform:
    name: str
    signature_header: str
    read_order: Callable[[dict[str, Any], StoreConnection], Order]


BY_PLATFORM = {
    "woocommerce": Platform("woocommerce", "X-WC-Webhook-Signature", woocommerce_order),
    "shopify": Platform("shopify", "X-Shopify-Hmac-Sha256", shopify_order),
}


# Recording an order -----------------------------------------------------------------------------


class Delivery(BaseModel):
    """What Kesher made of a delivery."""

    outcome: Literal["recorded", "duplicate", "ignored", "ping"]
    reason: str | None = None


def signature(secret: str, body: bytes) -> str:
    """base64(HMAC-SHA256(secret, body)): how both platforms sign a delivery."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode("ascii")


def _buyer(
    session: Session, workspace_id: int, buyer: Buyer, actor: str, region: str,
) -> tuple[int, set[str]] | None:
    """The contact who bought, found by email (else phone) and given the order's name, city and phone;
    with the addresses of the order ("email", "phone") the contact was saved with.

    A phone that is not valid, or belongs to another contact, must not lose the order: the buyer is
    then saved without it, and by phone alone when the email is the part that is wrong.
    """
    details = {"first_name": buyer.first_name, "last_name": buyer.last_name, "city": buyer.city}
    attempts = [{"email": buyer.email, "phone": buyer.phone, **details}, {"email": buyer.email, **details},
                {"phone": buyer.phone, **details}]
    tried: list[dict[str, str]] = []
    for attempt in attempts:
        data = {key: value for key, value in attempt.items() if value}
        if not (data.get("email") or data.get("phone")) or data in tried:
            continue
        tried.append(data)
        try:
            contact_id = save_contact(session, workspace_id, data, actor=actor, region=region).contact_id
        except KesherError:
            continue
        if contact_id is None:
            return None
        return contact_id, {key for key in ("email", "phone") if key in data}
    return None


CHANNEL_ADDRESS = {"email": "email", "sms": "phone"}
# A "no" recorded in Kesher (an unsubscribe link, a refusal entered by hand) that a store's
# subscription from before it must not undo.
REFUSALS = ("unsubscribed", "denied")


def _take_consents(session: Session, store: StoreConnection, contact_id: int, addresses: set[str],
                   consents: list[StoreConsent]) -> None:
    """Record the buyer's consent as the store reports it, unless Kesher knows a later word from them.

    An opt-out is always taken. A subscription does not replace a refusal Kesher recorded after the
    store's consent time, or at any time when the store gives none: the buyer may have unsubscribed
    from a Kesher email after that checkout. Consent is for an address, so a channel is left alone
    when the buyer was saved without the order's address for it (another contact's, or not valid).
    """
    if not consents:
        return
    now = utcnow()
    for consent in consents:
        if CHANNEL_ADDRESS[consent.channel] not in addresses:
            continue
        current = session.get(Consent, (contact_id, consent.channel))  # set_consent reads the same row
        # A time ahead of Kesher's clock would outrank every unsubscribe made until then: it counts as none.
        at = consent.at if consent.at and consent.at <= now else None
        if current is not None and current.status == consent.status:
            continue  # so already, with its first proof: a re-delivered order changes nothing
        if (consent.status == "granted" and current is not None and current.status in REFUSALS
                and (at is None or at <= current.changed_at)):
            continue
        set_consent(session, store.workspace_id, contact_id, consent.channel, consent.status, source=store.platform,
                    text_shown=consent.text, actor=f"{store.platform}:{store.id}", changed_at=at)


def record_order(session: Session, store: StoreConnection, order: Order, region: str) -> Delivery:
    """A paid order as one purchase (a refunded one also as its refund), its buyer, the buyer's
    consent and its products, all in the caller's transaction."""
    if order.state == "other":
        return Delivery(outcome="ignored", reason="the order is not paid")
    if not order.id:
        raise ValidationError("the order has no id", "id")
    platform, ws = store.platform, store.workspace_id
    catalogue.upsert_from_order(session, ws, order.items, source=platform)
    buyer = _buyer(session, ws, order.buyer, f"{platform}:{store.id}", region)
    if buyer is None:
        return Delivery(outcome="ignored", reason="the order names no buyer by a valid email or phone")
    contact_id, addresses = buyer
    _take_consents(session, store, contact_id, addresses, order.consents)
    known = catalogue.categories_of(session, ws, (item["sku"] for item in order.items))
    items = [{**item, "category": known[item["sku"]]} if item["sku"] in known else item for item in order.items]
    key = f"{platform}:{store.id}:{order.id}"
    properties: dict[str, Any] = {"order_id": order.id, "order_number": order.number, "store_id": store.id,
                                  "items": items}
    if order.total is not None:
        properties["total"] = order.total
    if order.currency:
        properties["currency"] = order.currency
    if order.customer_id:
        properties["customer_id"] = order.customer_id
    events: list[dict[str, Any]] = [{"type": "purchase", "contact": {"id": contact_id}, "ts": order.ts,
                                     "idempotency_key": key, "properties": properties}]
    if order.state == "refunded" and order.total is not None:
        refund = {"order_id": order.id, "amount": order.total, "currency": order.currency or "ILS"}
        events.append({"type": "refund", "contact": {"id": contact_id}, "idempotency_key": f"{key}:refund",
                       "properties": refund})
    result = ingest(session, session.get_one(Workspace, ws), events, source=platform, region=region)
    if result.errors:
        error = result.errors[0]
        raise ValidationError("the event was not recorded: {detail}", error.field, detail=error.message)
    return Delivery(outcome="recorded" if result.accepted else "duplicate")


# The routes -------------------------------------------------------------------------------------


router = APIRouter(prefix="/hooks", tags=["store webhooks (public)"], responses={
    401: problem_doc("The signature header is missing, or does not match the body and the connection's secret"),
    404: problem_doc("No connection of this platform has this id"),
    413: problem_doc(f"The body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB"),
    422: problem_doc("The body is not an order Kesher can read; `field` names what is wrong"),
})
ConnectionId = Annotated[int, Path(ge=1, le=MAX_ID, description="The store connection's id, from its webhook URL")]
# The body is read raw (the signature covers its bytes), so the document is told its shape here.
ORDER_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "description": "The order, exactly as the platform's order webhooks send it"}}}}}


async def raw_body(request: Request) -> bytes:
    """The body exactly as sent: the signature covers these bytes."""
    return await read_body(request, MAX_BODY_BYTES, f"the body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB")


RawBody = Annotated[bytes, Depends(raw_body)]


def webhook_url(request: Request, store: StoreConnection) -> str:
    """The address the store posts orders to."""
    return public_url(request, request.app.url_path_for(f"{store.platform}_webhook", connection_id=str(store.id)))


def _receive(platform: Platform, store_id: int, request: Request, body: bytes, session: Session) -> Delivery:
    store = catalogue.store_for_webhook(session, platform.name, store_id)
    sent = request.headers.get(platform.signature_header)
    if sent is None and platform.name == "woocommerce" and WOOCOMMERCE_PING.match(body.strip()):
        return Delivery(outcome="ping")
    if sent is None or not hmac.compare_digest(sent.strip().encode(), signature(store.secret, body).encode()):
        remote = request.client.host if request.client else "unknown"
        log.warning("refused a %s webhook for store connection %s from %s: %s signature", platform.name, store.id,
                    remote, "no" if sent is None else "a wrong")
        raise AuthError("the {header} header is missing or does not match this connection's secret",
                        platform.signature_header, header=platform.signature_header)
    store.last_received_at = utcnow()
    try:
        data = json.loads(body)
    except ValueError:
        raise ValidationError("is not JSON", "body") from None
    if not isinstance(data, dict):
        raise ValidationError("is not a JSON object", "body")
    region = str(request.app.state.settings.default_phone_region)
    return record_order(session, store, platform.read_order(data, store), region)


@router.post("/woocommerce/{connection_id}", name="woocommerce_webhook", openapi_extra=ORDER_BODY,
             summary="Receive a WooCommerce order webhook (topics Order created / Order updated)")
def woocommerce(connection_id: ConnectionId, request: Request, body: RawBody, session: DbSession) -> Delivery:
    return _receive(BY_PLATFORM["woocommerce"], connection_id, request, body, session)


@router.post("/shopify/{connection_id}", name="shopify_webhook", openapi_extra=ORDER_BODY,
             summary="Receive a Shopify order webhook (topics orders/create, orders/paid, orders/updated)")
def shopify(connection_id: ConnectionId, request: Request, body: RawBody, session: DbSession) -> Delivery:
    return _receive(BY_PLATFORM["shopify"], connection_id, request, body, session)
