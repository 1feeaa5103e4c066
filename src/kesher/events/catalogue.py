"""The workspace's catalogue and stores: product categories, products, and the shops that send orders.

What a purchase means for marketing comes from here: a consumable runs out after its usage days
(a replenishment reminder), a technical product wants a how-to. A category says it for all its
products; a product's own value, when set, overrides its category's (None: "as the category
says"). Orders from a store fill the catalogue with new SKUs and keep names and prices current,
but never touch what a marketer decided (category, flags, margin).
"""

from __future__ import annotations

import re
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kesher.accounts.service import audit
from kesher.db.base import utcnow
from kesher.db.upsert import insert_ignore, lookup, merge_rows
from kesher.errors import Conflict, NotFound, ValidationError
from kesher.events.models import Category, Product, StoreConnection

PRODUCTS = Product.__table__
CATEGORIES = Category.__table__
KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
MAX_USAGE_DAYS = 3650
MAX_PRICE = 1e9
MAX_PAGE = 1000
PLATFORMS = ("woocommerce", "shopify")
SECRET_LENGTH = (8, 200)


@dataclass(frozen=True)
class Effective:
    """What a product is, once its category has filled in what the product leaves open."""

    consumable: bool
    usage_days: int | None
    technical: bool


def effective(product: Product, category: Category | None) -> Effective:
    """The product's own flags where set, else its category's; only a consumable has usage days."""
    consumable = product.consumable if product.consumable is not None else bool(category and category.consumable)
    technical = product.technical if product.technical is not None else bool(category and category.technical)
    usage_days = product.usage_days if product.usage_days is not None else (category.usage_days if category else None)
    return Effective(consumable, usage_days if consumable else None, technical)


# Checking values ---------------------------------------------------------------------------------


def _text(limit: int) -> Callable[[Any, str], str]:
    def check(value: Any, field: str) -> str:
        if not isinstance(value, str):
            raise ValidationError("must be text", field)
        text = " ".join(value.split())
        if not text:
            raise ValidationError("must not be empty", field)
        if len(text) > limit:
            raise ValidationError("is longer than {limit} characters", field, limit=limit)
        return text
    return check


def _key(value: Any, field: str) -> str:
    if not isinstance(value, str) or not KEY.match(value):
        raise ValidationError("must hold only a-z, 0-9, _ and -, start with a letter or digit (100 at most)", field)
    return value


def _category_key(value: Any, field: str) -> str:
    # "" leaves a product without a category.
    return "" if value in ("", None) else _key(value, field)


def _flag(nullable: bool) -> Callable[[Any, str], bool | None]:
    def check(value: Any, field: str) -> bool | None:
        if value is None and nullable:
            return None
        if not isinstance(value, bool):
            if nullable:
                raise ValidationError("must be true or false, or null to follow the category", field)
            raise ValidationError("must be true or false", field)
        return value
    return check


def _days(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_USAGE_DAYS:
        raise ValidationError("must be a whole number of days from 1 to {high}", field, high=MAX_USAGE_DAYS)
    return value


def _number(low: float, high: float, wrong: ValidationError) -> Callable[[Any, str], float | None]:
    def check(value: Any, field: str) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise wrong.located(field)
        return float(value)
    return check


CATEGORY_FIELDS: dict[str, Callable[[Any, str], Any]] = {
    "key": _key, "name": _text(200), "consumable": _flag(False), "usage_days": _days, "technical": _flag(False),
}
PRODUCT_FIELDS: dict[str, Callable[[Any, str], Any]] = {
    "sku": _text(100), "name": _text(300), "category": _category_key,
    "price": _number(0, MAX_PRICE, ValidationError("must be a price from 0 to {high:,.0f}", high=MAX_PRICE)),
    "consumable": _flag(True), "usage_days": _days, "technical": _flag(True),
    "margin": _number(0, 1, ValidationError("must be a fraction from 0 to 1 (0.3 is 30%)")),
}


def _checked(fields: dict[str, Callable[[Any, str], Any]], data: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValidationError("is not a field here", unknown[0])
    return {name: fields[name](value, name) for name, value in data.items()}


def _usage_needs_consumable(consumable: bool | None, usage_days: int | None) -> None:
    if consumable is False and usage_days is not None:
        raise ValidationError("only a consumable runs out; mark it consumable or clear the usage days", "usage_days")


# Categories --------------------------------------------------------------------------------------


def list_categories(session: Session, workspace_id: int) -> list[Category]:
    return list(session.scalars(select(Category).where(Category.workspace_id == workspace_id).order_by(Category.key)))


def categories_by_key(session: Session, workspace_id: int) -> dict[str, Category]:
    return {c.key: c for c in list_categories(session, workspace_id)}


def get_category(session: Session, workspace_id: int, category_id: int) -> Category:
    category = session.scalar(select(Category).where(Category.workspace_id == workspace_id, Category.id == category_id))
    if category is None:
        raise NotFound("no category {id}", "id", id=category_id)
    return category


def create_category(session: Session, workspace_id: int, data: Mapping[str, Any], *, actor: str = "system") -> Category:
    """A new category from `key` and `name` (required) and its flags."""
    values = {"consumable": False, "usage_days": None, "technical": False, **_checked(CATEGORY_FIELDS, data)}
    for required in ("key", "name"):
        if required not in values:
            raise ValidationError("is required", required)
    _usage_needs_consumable(values["consumable"], values["usage_days"])
    if session.scalar(select(Category.id).where(Category.workspace_id == workspace_id, Category.key == values["key"])):
        raise Conflict("another category has this key", "key")
    category = Category(workspace_id=workspace_id, **values)
    session.add(category)
    session.flush()
    audit(session, workspace_id, actor, "category.created", "category", category.id, values)
    return category


def update_category(session: Session, workspace_id: int, category_id: int, changes: Mapping[str, Any], *,
                    actor: str = "system") -> Category:
    """Change a category's name or flags; its key names it in products and purchases, so it stays."""
    category = get_category(session, workspace_id, category_id)
    if "key" in changes and changes["key"] != category.key:
        raise ValidationError("cannot change; products and past purchases refer to it", "key")
    values = _checked(CATEGORY_FIELDS, {k: v for k, v in changes.items() if k != "key"})
    _usage_needs_consumable(values.get("consumable", category.consumable),
                            values.get("usage_days", category.usage_days))
    _apply(session, workspace_id, actor, "category", category, values)
    return category


def delete_category(session: Session, workspace_id: int, category_id: int, *, actor: str = "system") -> None:
    """Delete a category no product is in (past purchases keep its key)."""
    category = get_category(session, workspace_id, category_id)
    used = session.scalar(select(func.count(Product.id)).where(Product.workspace_id == workspace_id,
                                                               Product.category == category.key))
    if used:
        raise Conflict("{count} products are in this category; move them to another category first", "products",
                       count=used)
    session.delete(category)
    audit(session, workspace_id, actor, "category.deleted", "category", category_id, {"key": category.key})


# Products ----------------------------------------------------------------------------------------


def list_products(session: Session, workspace_id: int, *, category: str | None = None, after: str | None = None,
                  limit: int = MAX_PAGE) -> list[Product]:
    """Products by SKU, `limit` at a time after the SKU `after`; `category=""` lists those without one."""
    stmt = select(Product).where(Product.workspace_id == workspace_id)
    if category is not None:
        stmt = stmt.where(Product.category == category)
    if after is not None:
        stmt = stmt.where(Product.sku > after)
    return list(session.scalars(stmt.order_by(Product.sku).limit(limit)))


def products_per_category(session: Session, workspace_id: int) -> dict[str, int]:
    """How many products each category key has ("" for those without a category)."""
    stmt = (select(Product.category, func.count(Product.id)).where(Product.workspace_id == workspace_id)
            .group_by(Product.category))
    return {category: n for category, n in session.execute(stmt)}


def get_product(session: Session, workspace_id: int, product_id: int) -> Product:
    product = session.scalar(select(Product).where(Product.workspace_id == workspace_id, Product.id == product_id))
    if product is None:
        raise NotFound("no product {id}", "id", id=product_id)
    return product


def _known_category(session: Session, workspace_id: int, key: str) -> None:
    stmt = select(Category.id).where(Category.workspace_id == workspace_id, Category.key == key)
    if key and not session.scalar(stmt):
        raise ValidationError("no category has this key; create the category first", "category")


def _sku_free(session: Session, workspace_id: int, sku: str, product_id: int | None = None) -> None:
    stmt = select(Product.id).where(Product.workspace_id == workspace_id, Product.sku == sku)
    if product_id is not None:
        stmt = stmt.where(Product.id != product_id)
    if session.scalar(stmt):
        raise Conflict("another product has this SKU", "sku")


def create_product(session: Session, workspace_id: int, data: Mapping[str, Any], *, actor: str = "system") -> Product:
    """A new product from `sku` and `name` (required), its category, price, flags and margin."""
    values = {"category": "", **_checked(PRODUCT_FIELDS, data)}
    for required in ("sku", "name"):
        if required not in values:
            raise ValidationError("is required", required)
    _usage_needs_consumable(values.get("consumable"), values.get("usage_days"))
    _known_category(session, workspace_id, values["category"])
    _sku_free(session, workspace_id, values["sku"])
    now = utcnow()
    product = Product(workspace_id=workspace_id, source="manual", created_at=now, updated_at=now, **values)
    session.add(product)
    session.flush()
    audit(session, workspace_id, actor, "product.created", "product", product.id, values)
    return product


def update_product(session: Session, workspace_id: int, product_id: int, changes: Mapping[str, Any], *,
                   actor: str = "system") -> Product:
    """Change the fields in `changes`; null for a flag or usage days makes the product follow its category."""
    product = get_product(session, workspace_id, product_id)
    values = _checked(PRODUCT_FIELDS, changes)
    _usage_needs_consumable(values.get("consumable", product.consumable), values.get("usage_days", product.usage_days))
    if "category" in values:
        _known_category(session, workspace_id, values["category"])
    if "sku" in values:
        _sku_free(session, workspace_id, values["sku"], product.id)
    if _apply(session, workspace_id, actor, "product", product, values):
        product.updated_at = utcnow()
    return product


def delete_product(session: Session, workspace_id: int, product_id: int, *, actor: str = "system") -> None:
    """Forget a product (past purchases keep its SKU); a later order for it adds it again."""
    product = get_product(session, workspace_id, product_id)
    session.delete(product)
    audit(session, workspace_id, actor, "product.deleted", "product", product_id, {"sku": product.sku})


def _apply(session: Session, workspace_id: int, actor: str, kind: str, row: Category | Product,
           values: dict[str, Any]) -> bool:
    """Set the values that differ, auditing them as [old, new]; True when any did."""
    changes = {name: [getattr(row, name), value] for name, value in values.items() if getattr(row, name) != value}
    for name, (_old, new) in changes.items():
        setattr(row, name, new)
    if changes:
        audit(session, workspace_id, actor, f"{kind}.updated", kind, row.id, changes)
    return bool(changes)


# Filled by orders --------------------------------------------------------------------------------


def upsert_from_order(session: Session, workspace_id: int, items: Iterable[Mapping[str, Any]], source: str) -> None:
    """Add the SKUs of order lines not yet in the catalogue; refresh the name and price of known ones.

    `items` are purchase lines (`sku`, `name`, `price`). Category, flags and margin are the
    marketer's and are never written here; a blank name or a missing price leaves the stored one.
    """
    now = utcnow()
    rows = {item["sku"]: {"workspace_id": workspace_id, "sku": item["sku"], "name": item.get("name") or "",
                          "category": "", "price": item.get("price"), "source": source, "created_at": now,
                          "updated_at": now}
            for item in items}
    merge_rows(session, PRODUCTS, list(rows.values()), ["workspace_id", "sku"], lambda new: {
        "name": func.coalesce(func.nullif(new.name, ""), PRODUCTS.c.name),
        "price": func.coalesce(new.price, PRODUCTS.c.price),
        "updated_at": new.updated_at,
    })


def categories_of(session: Session, workspace_id: int, skus: Iterable[str]) -> dict[str, str]:
    """The category key of each SKU the catalogue knows and has put in a category."""
    rows = lookup(session, PRODUCTS.c.sku, set(skus), [PRODUCTS.c.sku, PRODUCTS.c.category],
                  PRODUCTS.c.workspace_id == workspace_id)
    return {sku: category for sku, category in rows if category}


def seed_demo(session: Session, workspace_id: int) -> None:
    """The demo shop's categories and products; what is already there (and any edit of it) is kept.

    A category takes what most of its products are; a product stores its own value only where it
    differs, so the demo shows both a category's defaults and a product's overrides.
    """
    from kesher.demo import catalogue as demo

    products = demo.catalogue()
    categories = []
    for key, name in demo.CATEGORIES.items():
        members = [p for p in products if p.category == key]
        consumable = _most(p.consumable for p in members)
        usage = [p.usage_days for p in members if p.consumable and p.usage_days]
        categories.append({"workspace_id": workspace_id, "key": key, "name": name, "consumable": consumable,
                           "usage_days": _most(usage) if consumable and usage else None,
                           "technical": _most(p.technical for p in members)})
    insert_ignore(session, CATEGORIES, categories, ["workspace_id", "key"])
    by_key = {c["key"]: c for c in categories}
    now = utcnow()
    rows = []
    for p in products:
        cat = by_key[p.category]
        rows.append({
            "workspace_id": workspace_id, "sku": p.sku, "name": p.name, "category": p.category, "price": p.price,
            "consumable": None if p.consumable == cat["consumable"] else p.consumable,
            "usage_days": None if p.usage_days == cat["usage_days"] or not p.consumable else p.usage_days,
            "technical": None if p.technical == cat["technical"] else p.technical,
            "margin": p.margin, "source": "demo", "created_at": now, "updated_at": now,
        })
    insert_ignore(session, PRODUCTS, rows, ["workspace_id", "sku"])


def _most(values: Iterable[Any]) -> Any:
    return Counter(values).most_common(1)[0][0]


# Stores ------------------------------------------------------------------------------------------


def list_stores(session: Session, workspace_id: int) -> list[StoreConnection]:
    return list(session.scalars(select(StoreConnection).where(StoreConnection.workspace_id == workspace_id)
                                .order_by(StoreConnection.id)))


def get_store(session: Session, workspace_id: int, store_id: int) -> StoreConnection:
    store = session.scalar(select(StoreConnection).where(StoreConnection.workspace_id == workspace_id,
                                                         StoreConnection.id == store_id))
    if store is None:
        raise NotFound("no store connection {id}", "id", id=store_id)
    return store


def _secret(secret: str) -> str:
    secret = secret.strip()
    low, high = SECRET_LENGTH
    if not low <= len(secret) <= high:
        raise ValidationError("must be {low} to {high} characters", "secret", low=low, high=high)
    return secret


def create_store(session: Session, workspace_id: int, platform: str, name: str, secret: str | None = None, *,
                 actor: str = "system") -> StoreConnection:
    """Connect a store; its webhooks must be signed with `secret` (one is made when none is given)."""
    if platform not in PLATFORMS:
        raise ValidationError("must be one of {choices}", "platform", choices=", ".join(PLATFORMS))
    store = StoreConnection(workspace_id=workspace_id, platform=platform, name=_text(200)(name, "name"),
                            secret=_secret(secret if secret and secret.strip() else secrets.token_urlsafe(32)))
    session.add(store)
    session.flush()
    audit(session, workspace_id, actor, "store.created", "store", store.id, {"platform": platform, "name": store.name})
    return store


def update_store(session: Session, workspace_id: int, store_id: int, *, name: str | None = None,
                 secret: str | None = None, actor: str = "system") -> StoreConnection:
    """Rename a connection, or replace its secret with the one the store signs with (Shopify shows its own)."""
    store = get_store(session, workspace_id, store_id)
    changes: dict[str, Any] = {}
    if name is not None:
        store.name = changes["name"] = _text(200)(name, "name")
    if secret is not None:
        store.secret = _secret(secret)
        changes["secret"] = "replaced"  # never the secret itself
    if changes:
        audit(session, workspace_id, actor, "store.updated", "store", store.id, changes)
    return store


def delete_store(session: Session, workspace_id: int, store_id: int, *, actor: str = "system") -> None:
    """Disconnect a store: its webhooks are refused from now on; what it sent stays."""
    store = get_store(session, workspace_id, store_id)
    session.delete(store)
    audit(session, workspace_id, actor, "store.deleted", "store", store_id, {"platform": store.platform,
                                                                             "name": store.name})


def store_for_webhook(session: Session, platform: str, store_id: int) -> StoreConnection:
    """The connection a webhook URL names, in whichever workspace it is (the signature proves the sender)."""
    store = session.scalar(select(StoreConnection).where(StoreConnection.id == store_id,
                                                         StoreConnection.platform == platform))
    if store is None:
        raise NotFound("no {platform} store connection {id}", "id", platform=platform, id=store_id)
    return store
