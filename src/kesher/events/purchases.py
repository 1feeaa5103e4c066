"""What contacts bought, read in batches: for personalising messages to many contacts at once.

Names and prices come from the catalogue where it knows the product (its current ones), else from
the purchase lines. Each function is one query for any number of contacts.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from kesher.db.base import utcnow
from kesher.db.upsert import one_of, same_workspace
from kesher.events.models import Product, PurchaseItem


class Purchased(NamedTuple):
    sku: str
    name: str
    category: str
    price: float | None
    last_at: datetime


class BestSeller(NamedTuple):
    sku: str
    name: str
    category: str
    price: float | None
    units: float


def products_bought(session: Session, workspace_id: int, contact_ids: list[int]) -> dict[int, list[Purchased]]:
    """Every product each contact bought, once each, the most recently bought first."""
    if not contact_ids:
        return {}
    lines = (select(PurchaseItem.contact_id, PurchaseItem.sku, func.max(PurchaseItem.category).label("category"),
                    func.max(PurchaseItem.name).label("name"), func.max(PurchaseItem.price).label("price"),
                    func.max(PurchaseItem.ts).label("last_at"))
             .where(same_workspace(session, PurchaseItem.workspace_id, workspace_id),
                    one_of(session, PurchaseItem.contact_id, contact_ids))
             .group_by(PurchaseItem.contact_id, PurchaseItem.sku).subquery())
    stmt = (select(lines.c.contact_id, lines.c.sku, lines.c.category, func.coalesce(Product.name, lines.c.name),
                   func.coalesce(Product.price, lines.c.price), lines.c.last_at)
            .join(Product, and_(Product.workspace_id == workspace_id, Product.sku == lines.c.sku), isouter=True)
            .order_by(lines.c.contact_id, lines.c.last_at.desc(), lines.c.sku))
    bought: dict[int, list[Purchased]] = {}
    for contact_id, sku, category, name, price, last_at in session.execute(stmt):
        bought.setdefault(contact_id, []).append(Purchased(sku, name or sku, category or "", price, last_at))
    return bought


def best_sellers(session: Session, workspace_id: int, *, per_category: int = 12, days: int = 90,
                 now: datetime | None = None) -> list[BestSeller]:
    """The products sold most (in units) in the last `days`, the top `per_category` of each category,
    most sold first. The overall top N are the first N of the list."""
    since = (now or utcnow()) - timedelta(days=days)
    category = func.max(PurchaseItem.category)
    units = func.sum(PurchaseItem.quantity)
    ranked = (select(PurchaseItem.sku, category.label("category"), func.max(PurchaseItem.name).label("name"),
                     func.max(PurchaseItem.price).label("price"), units.label("units"),
                     func.row_number().over(partition_by=category, order_by=(units.desc(), PurchaseItem.sku))
                     .label("rank"))
              .where(PurchaseItem.workspace_id == workspace_id, PurchaseItem.ts >= since)
              .group_by(PurchaseItem.sku).subquery())
    stmt = (select(ranked.c.sku, ranked.c.category, func.coalesce(Product.name, ranked.c.name),
                   func.coalesce(Product.price, ranked.c.price), ranked.c.units)
            .join(Product, and_(Product.workspace_id == workspace_id, Product.sku == ranked.c.sku), isouter=True)
            .where(ranked.c.rank <= per_category)
            .order_by(ranked.c.units.desc(), ranked.c.sku))
    return [BestSeller(sku, name or sku, cat or "", price, float(n or 0))
            for sku, cat, name, price, n in session.execute(stmt)]


__all__ = ["BestSeller", "Purchased", "best_sellers", "products_bought"]
