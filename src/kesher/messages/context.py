"""What a template knows about a contact, loaded for a whole batch of contacts at once.

`contexts()` runs a fixed number of queries (one per kind of data) whatever the batch size: a
campaign to millions calls it for a batch of a few hundred contacts at a time, and asks only for
the kinds its templates read (`uses`). Each context:

    contact    built-in fields and custom fields by key (also under `contact.fields`); missing
               values are left out, so they render empty and `default` applies
    rollups    purchase_count, revenue (₪, refunds taken off), last_purchase_at, stage, loyalty...
    segments   the names of the segments the contact is in (for `{% segment %}` and `in_segment`)
    products   last_bought, same_category(n), best_sellers(n)
    field_keys custom field keys by label, for merge tags compiled without the workspace's fields

The sender (name, email, address), `unsubscribe_url` and `preferences_url` are the sender's to add.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kesher.contacts import fields as custom_fields
from kesher.contacts import service as contacts
from kesher.contacts.models import Contact
from kesher.db.upsert import one_of, same_workspace
from kesher.events import purchases
from kesher.events.rollups import rollups_of
from kesher.messages.products import MAX_ITEMS, ProductItem, Products, Shop
from kesher.messages.templates import merge_fields
from kesher.segments.service import segment_names

CONTACT_COLUMNS = ("id", "email", "phone", "external_id", "first_name", "last_name", "gender", "birthday", "city",
                   "language", "timezone", "source", "created_at")
ROLLUP_COLUMNS = ("purchase_count", "sent_count", "open_count", "click_count", "last_purchase_at", "first_purchase_at",
                  "last_open_at", "last_click_at", "last_visit_at", "last_event_at", "stage", "loyalty",
                  "rfm_recency", "rfm_frequency", "rfm_monetary", "engagement_score")
SHOP_SECONDS = 300  # how long best sellers computed for one batch serve the next batches


def shop_data(session: Session, workspace_id: int, *, days: int = 90) -> Shop:
    """The workspace's best sellers, overall and by category (one query)."""
    by_category: dict[str, list[ProductItem]] = {}
    best: list[ProductItem] = []
    for row in purchases.best_sellers(session, workspace_id, per_category=MAX_ITEMS, days=days):
        item = ProductItem(sku=row.sku, name=row.name, category=row.category, price=row.price)
        best.append(item)
        by_category.setdefault(row.category, []).append(item)
    return Shop(tuple(best[:MAX_ITEMS]), {k: tuple(v) for k, v in by_category.items()})


_shops: dict[tuple[str, int], tuple[float, Shop]] = {}


def _shop(session: Session, workspace_id: int) -> Shop:
    # Best sellers read every purchase line of the last 90 days, and move slowly: the batches of
    # one campaign share one computation for a few minutes instead of repeating it per batch.
    key, now = (str(session.get_bind().url), workspace_id), time.monotonic()
    cached = _shops.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    for stale in [k for k, (until, _) in _shops.items() if until <= now]:
        _shops.pop(stale, None)
    shop = shop_data(session, workspace_id)
    _shops[key] = (now + SHOP_SECONDS, shop)
    return shop


def _rollups(row: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"purchase_count": 0, "sent_count": 0, "open_count": 0, "click_count": 0,
                              "revenue": 0.0, "refunds": 0.0, "average_order": 0.0}
    if row is None:
        return values
    values.update({c: getattr(row, c) for c in ROLLUP_COLUMNS if getattr(row, c) is not None})
    values["revenue"] = (row.revenue_minor - row.refunds_minor) / 100
    values["refunds"] = row.refunds_minor / 100
    values["average_order"] = round(row.revenue_minor / 100 / row.purchase_count, 2) if row.purchase_count else 0.0
    return values


def contexts(session: Session, workspace_id: int, contact_ids: list[int], *,
             shop: Shop | None = None, uses: Collection[str] | None = None) -> dict[int, dict[str, Any]]:
    """Template contexts of many contacts, by contact id; ids not in the workspace are left out.

    `shop` (from `shop_data`) is computed once per few minutes per workspace when not given.
    `uses`, the names the templates read (`Renderer.uses`): rollups, segments and products are
    loaded only for templates that read them (`products`; `segments` or `in_segment`). Every product
    a contact bought is read for `products` (`same_category` leaves out what they own), about 9 µs
    a purchase line, for a template that may show none of them. None: everything, for a preview or
    a test send."""
    ids = list(dict.fromkeys(contact_ids))
    if not ids:
        return {}
    table = Contact.__table__
    rows = session.execute(select(*(table.c[name] for name in CONTACT_COLUMNS)).where(
        one_of(session, table.c.id, ids), same_workspace(session, table.c.workspace_id, workspace_id)))
    people: dict[int, dict[str, Any]] = {}
    for row in rows:
        people[row.id] = {c: value for c, value in zip(CONTACT_COLUMNS, row) if value is not None}
    if not people:
        return {}
    found = list(people)
    defined = custom_fields.list_fields(session, workspace_id)
    values = contacts.custom_values(session, found, defined)

    def wanted(*names: str) -> bool:
        return uses is None or not set(names).isdisjoint(uses)

    rollups = rollups_of(session, workspace_id, found) if wanted("rollups") else None
    segments = segment_names(session, workspace_id, found) if wanted("segments", "in_segment") else None
    bought = purchases.products_bought(session, workspace_id, found) if wanted("products") else None
    if bought is not None and shop is None:
        shop = _shop(session, workspace_id)
    field_keys = merge_fields(defined)
    result = {}
    for contact_id, contact in people.items():
        own = {f.key: values[(contact_id, f.key)] for f in defined if values.get((contact_id, f.key)) is not None}
        context = {"contact": {**own, **contact, "fields": own}, "field_keys": field_keys}
        if rollups is not None:
            context["rollups"] = _rollups(rollups.get(contact_id))
        if segments is not None:
            context["segments"] = frozenset(segments.get(contact_id, ()))
        if bought is not None:
            items = [ProductItem(sku=p.sku, name=p.name, category=p.category, price=p.price, bought_at=p.last_at)
                     for p in bought.get(contact_id, ())]
            context["products"] = Products(items, shop or Shop())
        result[contact_id] = context
    return result


_SAMPLES = {
    "he": {"contact": {"first_name": "דנה", "last_name": "כהן", "city": "חיפה"},
           "sender": {"name": "החנות שלי", "address": "רחוב הרצל 1, תל אביב"},
           "products": [("VIT-D", "ויטמין D3", "vitamins", 49.9), ("OMEGA", "אומגה 3", "vitamins", 89.0),
                        ("TEA", "תה צמחים", "tea", 24.5)]},
    "en": {"contact": {"first_name": "Dana", "last_name": "Cohen", "city": "Haifa"},
           "sender": {"name": "My Shop", "address": "1 Herzl St, Tel Aviv"},
           "products": [("VIT-D", "Vitamin D3", "vitamins", 49.9), ("OMEGA", "Omega 3", "vitamins", 89.0),
                        ("TEA", "Herbal tea", "tea", 24.5)]},
}


def sample_context(language: str = "he") -> dict[str, Any]:
    """A made-up contact for previews and trial renders; a new dict each call, for the caller to add to."""
    sample = _SAMPLES.get(language, _SAMPLES["he"])
    items = [ProductItem(sku=sku, name=name, category=category, price=price) for sku, name, category, price in
             sample["products"]]  # type: ignore[attr-defined]
    shop = Shop(tuple(items), {"vitamins": tuple(items[:2]), "tea": tuple(items[2:])})
    contact = {"id": 0, "email": "dana@example.com", "phone": "+972501234567", "gender": "female",
               "language": language, "timezone": "Asia/Jerusalem", **sample["contact"], "fields": {}}  # type: ignore[dict-item]
    rollups = {"purchase_count": 3, "sent_count": 12, "open_count": 7, "click_count": 2, "revenue": 459.7,
               "refunds": 0.0, "average_order": 153.23, "stage": "active", "loyalty": "medium"}
    return {"contact": contact, "rollups": rollups, "segments": frozenset(), "products": Products(items[:1], shop),
            "field_keys": {}, "sender": {"email": "news@example.com", **sample["sender"]},  # type: ignore[dict-item]
            "unsubscribe_url": "https://example.invalid/u/sample", "preferences_url": "https://example.invalid/p/sample"}
