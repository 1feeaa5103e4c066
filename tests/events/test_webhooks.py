"""Store webhooks: signed WooCommerce and Shopify orders become purchases, once; anything unsigned is refused."""

import base64
import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from kesher.accounts.models import AuditEntry
from kesher.contacts import service as contacts
from kesher.contacts.models import Consent, Contact
from kesher.events import catalogue
from kesher.events.models import ContactRollup, Event, Product, PurchaseItem, StoreConnection
from tests.problems import PROBLEM

FIXTURES = Path(__file__).parent / "fixtures"
HEADER = {"woocommerce": "X-WC-Webhook-Signature", "shopify": "X-Shopify-Hmac-Sha256"}


def order(name: str, **changes) -> dict:
    data = json.loads((FIXTURES / f"{name}_order.json").read_text(encoding="utf-8"))
    data.update(changes)
    return data


def sign(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def deliver(client: TestClient, store: StoreConnection, data: dict | bytes, *, secret: str | None = None,
            signature: str | None = None, platform: str | None = None):
    """POST as the platform does: the raw JSON body, signed with the connection's secret unless told otherwise."""
    platform = platform or store.platform
    body = data if isinstance(data, bytes) else json.dumps(data, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json"}
    if signature != "":
        headers[HEADER[platform]] = signature or sign(secret or store.secret, body)
    return client.post(f"/hooks/{platform}/{store.id}", content=body, headers=headers)


def store_of(database, workspace, platform: str) -> StoreConnection:
    with database.session() as s:
        return catalogue.create_store(s, workspace.id, platform, f"החנות ב-{platform}")


@pytest.fixture
def woo(database, workspace) -> StoreConnection:
    return store_of(database, workspace, "woocommerce")


@pytest.fixture
def shopify(database, workspace) -> StoreConnection:
    return store_of(database, workspace, "shopify")


@pytest.fixture
def client(app):
    with TestClient(app) as client:
        yield client


def stored(database, workspace) -> dict:
    """What the workspace holds: events by type, purchase lines, products and contacts."""
    with database.session() as s:
        ws = workspace.id
        events = s.execute(select(Event.type, func.count()).where(Event.workspace_id == ws, Event.type != "stage_changed")
                           .group_by(Event.type)).all()
        return {"events": dict(events),
                "items": s.scalar(select(func.count()).where(PurchaseItem.workspace_id == ws)),
                "products": s.scalar(select(func.count()).where(Product.workspace_id == ws)),
                "contacts": s.scalar(select(func.count()).where(Contact.workspace_id == ws))}


NOTHING = {"events": {}, "items": 0, "products": 0, "contacts": 0}


def purchases(database, workspace) -> list[Event]:
    with database.session() as s:
        return list(s.scalars(select(Event).where(Event.workspace_id == workspace.id, Event.type == "purchase")))


def test_a_signed_woocommerce_order_is_one_purchase_even_when_delivered_again(client, database, workspace, woo):
    response = deliver(client, woo, order("woocommerce"))
    assert response.status_code == 200, response.text
    assert response.json() == {"outcome": "recorded", "reason": None}

    [event] = purchases(database, workspace)
    assert (event.amount_minor, event.source, event.idempotency_key) == (24470, "woocommerce", f"woocommerce:{woo.id}:4127")
    assert event.ts.isoformat() == "2025-03-04T09:42:07+00:00"
    props = event.properties
    assert (props["order_id"], props["order_number"], props["currency"], props["customer_id"]) == ("4127", "4127", "ILS", "318")
    assert [(i["sku"], i["quantity"], i["price"]) for i in props["items"]] == [
        ("VIT-001", 2, 59.9), (f"woocommerce-{woo.id}-81", 1, 99.9)]

    with database.session() as s:
        contact = s.get_one(Contact, event.contact_id)
        assert (contact.email, contact.phone, contact.first_name, contact.last_name, contact.city) == (
            "miriam.alon@example.co.il", "+972527654321", "מרים", "אלון", "רחובות")
        products = {p.sku: p for p in s.scalars(select(Product).where(Product.workspace_id == workspace.id))}
        assert set(products) == {"VIT-001", f"woocommerce-{woo.id}-81"}
        assert (products["VIT-001"].name, products["VIT-001"].price, products["VIT-001"].source) == (
            'ויטמין D3 1000 יחב"ל (90 כמוסות)', 59.9, "woocommerce")
        assert s.get_one(StoreConnection, woo.id).last_received_at is not None

    again = deliver(client, woo, order("woocommerce"))
    assert again.json()["outcome"] == "duplicate"
    completed = deliver(client, woo, order("woocommerce", status="completed"))  # the "Order updated" topic
    assert completed.json()["outcome"] == "duplicate"
    assert stored(database, workspace) == {"events": {"purchase": 1}, "items": 2, "products": 2, "contacts": 1}
    with database.session() as s:
        rollup = s.get_one(ContactRollup, event.contact_id)
        assert (rollup.purchase_count, rollup.revenue_minor) == (1, 24470)


def test_a_signed_shopify_order_is_one_purchase(client, database, workspace, shopify):
    response = deliver(client, shopify, order("shopify"))
    assert response.status_code == 200 and response.json()["outcome"] == "recorded", response.text
    assert deliver(client, shopify, order("shopify")).json()["outcome"] == "duplicate"

    [event] = purchases(database, workspace)
    assert (event.amount_minor, event.source) == (73890, "shopify")
    assert event.idempotency_key == f"shopify:{shopify.id}:5830144090212"
    assert event.ts.isoformat() == "2025-03-05T17:15:31+00:00"
    assert (event.properties["order_id"], event.properties["order_number"]) == ("5830144090212", "#1042")
    assert [(i["sku"], i["name"], i["price"]) for i in event.properties["items"]] == [
        ("WLK-001", "הליכון רולטור 4 גלגלים עם מושב", 649.0), ("ABS-001", "תחתוני ספיגה למבוגרים, מידה M (30 יח')", 89.9)]
    with database.session() as s:
        contact = s.get_one(Contact, event.contact_id)
        assert (contact.email, contact.phone, contact.first_name, contact.last_name, contact.city) == (
            "yossi.katz@example.com", "+972541112233", "יוסי", "כץ", "אשדוד")
    assert stored(database, workspace) == {"events": {"purchase": 1}, "items": 2, "products": 2, "contacts": 1}


def test_the_buyer_is_found_by_email_and_updated(client, database, workspace, woo):
    with database.session() as s:
        known = contacts.save_contact(s, workspace.id, {"email": "Miriam.Alon@example.co.il", "first_name": "מרי"}).contact_id
    assert deliver(client, woo, order("woocommerce")).json()["outcome"] == "recorded"
    [event] = purchases(database, workspace)
    assert event.contact_id == known
    with database.session() as s:
        contact = s.get_one(Contact, known)
        assert (contact.first_name, contact.city, contact.phone) == ("מרים", "רחובות", "+972527654321")
    assert stored(database, workspace)["contacts"] == 1


def test_a_buyer_without_email_is_found_by_phone_and_a_bad_phone_does_not_lose_the_order(
        client, database, workspace, woo):
    with database.session() as s:
        known = contacts.save_contact(s, workspace.id, {"phone": "052-7654321", "first_name": "מרים"}).contact_id
    billing = {**order("woocommerce")["billing"], "email": ""}
    assert deliver(client, woo, order("woocommerce", billing=billing)).json()["outcome"] == "recorded"
    assert purchases(database, workspace)[0].contact_id == known

    billing = {**order("woocommerce")["billing"], "email": "new.buyer@example.co.il", "phone": "12"}
    assert deliver(client, woo, order("woocommerce", id=4128, billing=billing)).json()["outcome"] == "recorded"
    with database.session() as s:
        buyer = s.scalar(select(Contact).where(Contact.workspace_id == workspace.id,
                                               Contact.email == "new.buyer@example.co.il"))
        assert buyer is not None and buyer.phone is None

    nobody = {**order("woocommerce")["billing"], "email": "", "phone": ""}
    response = deliver(client, woo, order("woocommerce", id=4129, billing=nobody))
    assert response.json()["outcome"] == "ignored"
    assert len(purchases(database, workspace)) == 2


def test_lines_take_their_category_from_the_catalogue_and_hand_set_flags_survive(client, database, workspace, woo):
    with database.session() as s:
        catalogue.create_category(s, workspace.id, {"key": "vitamins", "name": "ויטמינים", "consumable": True,
                                                    "usage_days": 30})
        catalogue.create_product(s, workspace.id, {"sku": "VIT-001", "name": "שם ישן", "category": "vitamins",
                                                   "price": 10, "usage_days": 90, "technical": False, "margin": 0.55})
    assert deliver(client, woo, order("woocommerce")).json()["outcome"] == "recorded"
    [event] = purchases(database, workspace)
    assert [i["category"] for i in event.properties["items"]] == ["vitamins", ""]
    with database.session() as s:
        lines = dict(s.execute(select(PurchaseItem.sku, PurchaseItem.category).where(PurchaseItem.event_id == event.id)).all())
        assert lines == {"VIT-001": "vitamins", f"woocommerce-{woo.id}-81": ""}
        product = s.scalar(select(Product).where(Product.workspace_id == workspace.id, Product.sku == "VIT-001"))
        assert (product.name, product.price, product.source) == ('ויטמין D3 1000 יחב"ל (90 כמוסות)', 59.9, "manual")
        assert (product.category, product.consumable, product.usage_days, product.technical, product.margin) == (
            "vitamins", None, 90, False, 0.55)


def test_only_paid_orders_count_and_a_refunded_one_adds_its_refund(client, database, workspace, woo, shopify):
    assert deliver(client, woo, order("woocommerce", status="pending")).json() == {
        "outcome": "ignored", "reason": "the order is not paid"}
    assert deliver(client, shopify, order("shopify", financial_status="pending")).json()["outcome"] == "ignored"
    assert stored(database, workspace) == NOTHING
    # Paid later: the "Order updated" / "orders/paid" delivery records it.
    assert deliver(client, woo, order("woocommerce", status="processing")).json()["outcome"] == "recorded"
    assert deliver(client, woo, order("woocommerce", status="refunded")).json()["outcome"] == "recorded"
    assert deliver(client, woo, order("woocommerce", status="refunded")).json()["outcome"] == "duplicate"
    assert stored(database, workspace)["events"] == {"purchase": 1, "refund": 1}
    with database.session() as s:
        contact_id = purchases(database, workspace)[0].contact_id
        rollup = s.get_one(ContactRollup, contact_id)
        assert (rollup.revenue_minor, rollup.refunds_minor) == (24470, 24470)


def test_a_wrong_or_missing_signature_is_401_stores_nothing_and_is_logged(client, database, workspace, woo, shopify,
                                                                         caplog):
    caplog.set_level(logging.WARNING, logger="kesher.webhooks")
    for store in (woo, shopify):
        data = order(store.platform)
        wrong = deliver(client, store, data, secret="not-the-secret")
        assert wrong.status_code == 401 and wrong.headers["content-type"].startswith(PROBLEM)
        assert wrong.json()["field"] == HEADER[store.platform]
        assert deliver(client, store, data, signature="").status_code == 401
        assert deliver(client, store, data, signature="garbage").status_code == 401
        body = json.dumps(data).encode()
        tampered = client.post(f"/hooks/{store.platform}/{store.id}", content=body.replace(b'"ILS"', b'"USD"'),
                               headers={HEADER[store.platform]: sign(store.secret, body)})
        assert tampered.status_code == 401
    assert stored(database, workspace) == NOTHING
    with database.session() as s:
        assert s.get_one(StoreConnection, woo.id).last_received_at is None
    warnings = [r for r in caplog.records if r.name == "kesher.webhooks" and r.levelno == logging.WARNING]
    assert len(warnings) == 8
    text = "\n".join(r.getMessage() for r in warnings)
    assert f"store connection {woo.id} from testclient" in text and f"store connection {shopify.id}" in text
    assert woo.secret not in text and shopify.secret not in text


def test_a_connection_takes_only_its_own_secret(client, database, workspace, other_workspace, woo):
    theirs = store_of(database, other_workspace, "woocommerce")
    assert deliver(client, theirs, order("woocommerce"), secret=woo.secret).status_code == 401
    assert deliver(client, woo, order("woocommerce"), secret=theirs.secret).status_code == 401
    assert stored(database, workspace) == NOTHING and stored(database, other_workspace) == NOTHING
    assert deliver(client, theirs, order("woocommerce")).json()["outcome"] == "recorded"
    assert stored(database, workspace) == NOTHING
    assert stored(database, other_workspace)["events"] == {"purchase": 1}


def test_unknown_connection_or_platform_is_404(client, woo):
    assert deliver(client, woo, order("woocommerce"), platform="shopify", secret=woo.secret).status_code == 404
    missing = client.post("/hooks/woocommerce/999999999", content=b"{}", headers={HEADER["woocommerce"]: "x"})
    assert missing.status_code == 404 and missing.headers["content-type"].startswith(PROBLEM)
    assert client.post(f"/hooks/magento/{woo.id}", content=b"{}").status_code == 404


def test_the_woocommerce_ping_is_answered_without_storing(client, database, workspace, woo, shopify):
    ping = client.post(f"/hooks/woocommerce/{woo.id}", data={"webhook_id": "17"})
    assert ping.status_code == 200 and ping.json()["outcome"] == "ping"
    assert client.post(f"/hooks/shopify/{shopify.id}", data={"webhook_id": "17"}).status_code == 401
    assert stored(database, workspace) == NOTHING


def test_a_signed_body_that_is_no_order_is_422(client, database, workspace, woo):
    for body, field in ((b"not json", "body"), (b"[1, 2]", "body")):
        response = deliver(client, woo, body)
        assert response.status_code == 422 and response.json()["field"] == field, response.text
    response = deliver(client, woo, order("woocommerce", currency="shekels"))
    assert response.status_code == 422 and response.json()["field"] == "properties.currency"
    assert stored(database, workspace) == NOTHING
    # WooCommerce's "Order deleted" sends only the id: nothing to record.
    assert deliver(client, woo, {"id": 4127}).json()["outcome"] == "ignored"


# Marketing consent -------------------------------------------------------------------------------


CHECKOUT = "2025-03-05T19:15:29+02:00"  # the fixture's consent time, at its checkout


def marketing(state: str, at: str | None = CHECKOUT, **more) -> dict:
    """A customer's `email_marketing_consent` / `sms_marketing_consent` as Shopify sends it."""
    return {"state": state, "opt_in_level": "single_opt_in", "consent_updated_at": at, **more}


def with_consent(data: dict, **consent: dict | None) -> dict:
    """The order with the customer's consent objects replaced (`email=`, `sms=`); None leaves one out."""
    customer = dict(data["customer"])
    for channel, value in consent.items():
        customer.pop(f"{channel}_marketing_consent")
        if value is not None:
            customer[f"{channel}_marketing_consent"] = value
    return {**data, "customer": customer}


def consent_of(database, contact_id: int) -> dict[str, tuple]:
    """channel: (status, source, changed_at, text_shown)."""
    with database.session() as s:
        return {c.channel: (c.status, c.source, c.changed_at.isoformat(), c.text_shown)
                for c in s.scalars(select(Consent).where(Consent.contact_id == contact_id))}


def consent_audit(database, workspace, contact_id: int) -> list[tuple]:
    with database.session() as s:
        return [(a.actor, a.changes["channel"], a.changes["status"]) for a in s.scalars(
            select(AuditEntry).where(AuditEntry.workspace_id == workspace.id, AuditEntry.action == "consent.changed",
                                     AuditEntry.entity_id == str(contact_id)).order_by(AuditEntry.id))]


def known_contact(database, workspace, **consent: tuple[str, datetime | None]) -> int:
    """The fixture's buyer, already in Kesher with the given consent per channel: (status, when)."""
    with database.session() as s:
        contact_id = contacts.save_contact(s, workspace.id, {"email": "yossi.katz@example.com",
                                                             "phone": "054-1112233"}).contact_id
        for channel, (status, when) in consent.items():
            contacts.set_consent(s, workspace.id, contact_id, channel, status, source="ui", changed_at=when)
        return contact_id


def test_shopify_marketing_consent_is_recorded_with_its_proof_once(client, database, workspace, shopify):
    assert deliver(client, shopify, order("shopify")).json()["outcome"] == "recorded"
    [event] = purchases(database, workspace)
    assert consent_of(database, event.contact_id) == {
        "email": ("granted", "shopify", "2025-03-05T17:15:29+00:00",
                  "Shopify order #1042: email marketing subscribed (single_opt_in)"),
        "sms": ("granted", "shopify", "2025-03-05T17:15:29+00:00",
                "Shopify order #1042: SMS marketing subscribed (single_opt_in, collected by Shopify)"),
    }
    audit = [(f"shopify:{shopify.id}", "email", [None, "granted"]), (f"shopify:{shopify.id}", "sms", [None, "granted"])]
    assert consent_audit(database, workspace, event.contact_id) == audit

    # The same order again, and by the orders/paid topic: the purchase counts once, the consent is not re-recorded.
    assert deliver(client, shopify, order("shopify")).json()["outcome"] == "duplicate"
    assert deliver(client, shopify, order("shopify", updated_at="2025-03-05T19:16:02+02:00")).json()["outcome"] == (
        "duplicate")
    assert consent_audit(database, workspace, event.contact_id) == audit
    assert consent_of(database, event.contact_id)["email"][2] == "2025-03-05T17:15:29+00:00"


def test_a_shopify_unsubscribe_is_honoured_and_a_consent_held_already_keeps_its_proof(
        client, database, workspace, shopify):
    # Granted in Kesher after the store's time: an opt-out from the store is taken all the same.
    later = datetime(2025, 3, 20, 8, 0, tzinfo=UTC)
    contact_id = known_contact(database, workspace, email=("granted", later), sms=("granted", later))
    data = with_consent(order("shopify"), email=marketing("unsubscribed"), sms=marketing("subscribed"))
    assert deliver(client, shopify, data).json()["outcome"] == "recorded"
    consent = consent_of(database, contact_id)
    assert consent["email"] == ("unsubscribed", "shopify", "2025-03-05T17:15:29+00:00",
                                "Shopify order #1042: email marketing unsubscribed (single_opt_in)")
    assert consent["sms"] == ("granted", "ui", "2025-03-20T08:00:00+00:00", None)
    assert consent_audit(database, workspace, contact_id)[2:] == [
        (f"shopify:{shopify.id}", "email", ["granted", "unsubscribed"])]


@pytest.mark.parametrize("state", ["not_subscribed", "pending", "redacted", "invalid"])
def test_a_shopify_state_that_is_no_decision_changes_nothing(client, database, workspace, shopify, state):
    before = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    contact_id = known_contact(database, workspace, email=("granted", before), sms=("unsubscribed", before))
    data = with_consent(order("shopify"), email=marketing(state), sms=marketing(state, consent_collected_from="OTHER"))
    assert deliver(client, shopify, data).json()["outcome"] == "recorded"
    assert purchases(database, workspace)[0].contact_id == contact_id
    assert consent_of(database, contact_id) == {"email": ("granted", "ui", "2025-03-01T09:00:00+00:00", None),
                                                "sms": ("unsubscribed", "ui", "2025-03-01T09:00:00+00:00", None)}
    assert [actor for actor, _, _ in consent_audit(database, workspace, contact_id)] == ["ui", "ui"]


def test_a_kesher_unsubscribe_after_the_stores_consent_is_kept(client, database, workspace, shopify):
    assert deliver(client, shopify, order("shopify")).json()["outcome"] == "recorded"
    [event] = purchases(database, workspace)
    with database.session() as s:  # the buyer clicks unsubscribe in a Kesher email five days after that checkout
        contacts.set_consent(s, workspace.id, event.contact_id, "email", "unsubscribed", source="unsubscribe_link",
                             changed_at=datetime(2025, 3, 10, 12, 0, tzinfo=UTC))

    assert deliver(client, shopify, order("shopify", financial_status="partially_refunded")).json()["outcome"] == (
        "duplicate")
    assert deliver(client, shopify, order("shopify") | {"id": 5830144090299, "name": "#1043"}).json()["outcome"] == "recorded"
    consent = consent_of(database, event.contact_id)
    assert consent["email"][:3] == ("unsubscribed", "unsubscribe_link", "2025-03-10T12:00:00+00:00")
    assert consent["sms"][0] == "granted"

    # A checkout after that unsubscribe, with the box ticked again, subscribes them again.
    again = with_consent(order("shopify") | {"id": 5830144090300, "name": "#1044"},
                         email=marketing("subscribed", "2025-04-01T10:00:00+03:00"))
    assert deliver(client, shopify, again).json()["outcome"] == "recorded"
    assert consent_of(database, event.contact_id)["email"] == (
        "granted", "shopify", "2025-04-01T07:00:00+00:00", "Shopify order #1044: email marketing subscribed (single_opt_in)")


def test_a_consent_time_ahead_of_kesher_counts_as_none(client, database, workspace, shopify):
    ahead = with_consent(order("shopify"), email=marketing("subscribed", "2099-01-01T00:00:00+00:00"), sms=None)
    assert deliver(client, shopify, ahead).json()["outcome"] == "recorded"
    [event] = purchases(database, workspace)
    assert datetime.fromisoformat(consent_of(database, event.contact_id)["email"][2]) <= datetime.now(UTC)
    # It cannot be compared with an unsubscribe made since: a re-delivery keeps that unsubscribe.
    with database.session() as s:
        contacts.set_consent(s, workspace.id, event.contact_id, "email", "unsubscribed", source="unsubscribe_link")
    assert deliver(client, shopify, ahead).json()["outcome"] == "duplicate"
    assert consent_of(database, event.contact_id)["email"][0] == "unsubscribed"


def test_buyer_accepts_marketing_counts_when_the_consent_objects_are_absent(client, database, workspace, shopify):
    legacy = with_consent(order("shopify"), email=None, sms=None)
    assert legacy["buyer_accepts_marketing"] is True
    assert deliver(client, shopify, legacy).json()["outcome"] == "recorded"
    [event] = purchases(database, workspace)
    status, source, changed_at, text = consent_of(database, event.contact_id)["email"]
    assert (status, source, text) == ("granted", "shopify", "Shopify order #1042: accepts marketing")
    assert datetime.fromisoformat(changed_at) > datetime(2025, 3, 6, tzinfo=UTC)  # no store time: when Kesher heard
    assert "sms" not in consent_of(database, event.contact_id)

    # With no store time to compare, an unsubscribe in Kesher is kept.
    with database.session() as s:
        contacts.set_consent(s, workspace.id, event.contact_id, "email", "unsubscribed", source="unsubscribe_link")
    assert deliver(client, shopify, legacy | {"id": 5830144090301}).json()["outcome"] == "recorded"
    assert consent_of(database, event.contact_id)["email"][:2] == ("unsubscribed", "unsubscribe_link")

    # The newer object, when present, is what counts: here it says the buyer did not subscribe.
    newer = with_consent(order("shopify", id=5830144090302, email="dana@example.com", contact_email="",
                               customer={**order("shopify")["customer"], "email": "dana@example.com",
                                         "phone": None}, billing_address=None, shipping_address=None),
                         email=marketing("not_subscribed"), sms=None)
    assert deliver(client, shopify, newer).json()["outcome"] == "recorded"
    with database.session() as s:
        dana = s.scalar(select(Contact.id).where(Contact.workspace_id == workspace.id,
                                                 Contact.email == "dana@example.com"))
    assert consent_of(database, dana) == {}


def test_consent_goes_only_to_the_address_the_buyer_was_saved_with(client, database, workspace, shopify):
    with database.session() as s:  # the order's email and phone belong to two different contacts
        by_email = contacts.save_contact(s, workspace.id, {"email": "yossi.katz@example.com"}).contact_id
        by_phone = contacts.save_contact(s, workspace.id, {"phone": "054-1112233"}).contact_id
    assert deliver(client, shopify, order("shopify")).json()["outcome"] == "recorded"
    assert purchases(database, workspace)[0].contact_id == by_email
    assert set(consent_of(database, by_email)) == {"email"}
    assert consent_of(database, by_phone) == {}


def test_consent_is_rolled_back_with_an_order_that_fails(client, database, workspace, shopify):
    response = deliver(client, shopify, order("shopify", currency="shekels"))
    assert response.status_code == 422 and response.json()["field"] == "properties.currency"
    assert stored(database, workspace) == NOTHING
    with database.session() as s:
        assert s.scalar(select(func.count()).where(Consent.workspace_id == workspace.id)) == 0
        assert s.scalar(select(func.count()).where(AuditEntry.workspace_id == workspace.id,
                                                   AuditEntry.action == "consent.changed")) == 0


def test_a_woocommerce_order_records_no_consent(client, database, workspace, woo):
    assert deliver(client, woo, order("woocommerce")).json()["outcome"] == "recorded"
    assert consent_of(database, purchases(database, workspace)[0].contact_id) == {}
