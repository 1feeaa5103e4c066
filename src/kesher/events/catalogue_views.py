"""UI routes of the catalogue: categories and products with what they mean for marketing, and stores."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from kesher.contacts.views import PageRoute
from kesher.errors import KesherError
from kesher.events import catalogue
from kesher.events.models import StoreConnection
from kesher.events.webhooks import webhook_url
from kesher.web.deps import UiContext, csrf_protect, transaction, ui_context
from kesher.web.i18n import _
from kesher.web.pages import redirect, render

PAGE_SIZE = 100
NO_CATEGORY = "-"  # the filter for products without a category; no category key starts with "-"
NAME_LIMIT = {"category": 200, "product": 300, "store": 200}

router = APIRouter(dependencies=[Depends(csrf_protect)], route_class=PageRoute, include_in_schema=False)


def _wording(error: KesherError, kind: str) -> str:
    """The problem in the reader's language; the service's own words, translated, only when none fits."""
    if error.status == 409:
        return {"key": _("Another category has this key."), "sku": _("Another product has this SKU."),
                "products": _("Products are in this category; move them to another category first.")
                }.get(error.field or "", error.text())
    by_field = {
        "key": _("A key holds only a-z, 0-9, _ and -, like vitamins."),
        "name": _("A name is required, at most %(limit)s characters.") % {"limit": NAME_LIMIT[kind]},
        "sku": _("A SKU is required, at most 100 characters."),
        "category": _("Choose one of the categories."),
        "usage_days": _("Usage days are a whole number from 1 to 3650, and only a consumable has them."),
        "margin": _("The margin is a percentage from 0 to 100."),
        "price": _("The price is a number, 0 or more."),
        "platform": _("Choose one of the options."),
        "secret": _("A secret is 8 to 200 characters."),
    }
    return by_field.get(error.field or "", error.text())


def _number(text: str, scale: float = 1) -> Any:
    """A typed number for the service: blank is None, and text that is no number goes on to be refused there."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text) / scale
    except ValueError:
        return text
    return int(value) if value.is_integer() and scale == 1 else value


def _choice(text: str) -> bool | None:
    """A flag from a select: "yes", "no", or blank for "as its category says"."""
    return {"yes": True, "no": False}.get(text)


# The catalogue page -----------------------------------------------------------------------------


def _catalogue_page(request: Request, ctx: UiContext, session: Session, *, category: str = "", after: str = "",
                    error: str = "", status_code: int = 200) -> HTMLResponse:
    ws = ctx.workspace.id
    categories = catalogue.categories_by_key(session, ws)
    only = "" if category == NO_CATEGORY else (category or None)
    products = catalogue.list_products(session, ws, category=only, after=after or None, limit=PAGE_SIZE)
    rows = [(p, catalogue.effective(p, categories.get(p.category))) for p in products]
    query = {"category": category} if category else {}
    next_query = urlencode({**query, "after": products[-1].sku}) if len(products) == PAGE_SIZE else None
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return render(request, "catalogue/index.html", ctx, status_code=status_code, categories=categories,
                  counts=catalogue.products_per_category(session, ws), rows=rows, category=category,
                  no_category=NO_CATEGORY, first_query=urlencode(query), next_query=next_query, after=after,
                  here=here if request.method == "GET" else "/catalogue", error=error)


@router.get("/catalogue", response_class=HTMLResponse)
def catalogue_page(
    request: Request, category: str = "", after: str = "", ctx: UiContext = Depends(ui_context),
    session: Session = transaction,
) -> HTMLResponse:
    return _catalogue_page(request, ctx, session, category=category, after=after)


def _refused(request: Request, ctx: UiContext, session: Session, exc: KesherError, kind: str, label: str) -> Response:
    session.rollback()
    message = _wording(exc, kind)
    return _catalogue_page(request, ctx, session, error=f"{label}: {message}" if label else message,
                           status_code=exc.status)


@router.post("/catalogue/categories", response_class=HTMLResponse)
def create_category(
    request: Request, key: str = Form(""), name: str = Form(""), consumable: str = Form(""),
    usage_days: str = Form(""), technical: str = Form(""), ctx: UiContext = Depends(ui_context),
    session: Session = transaction,
) -> Response:
    data = {"key": key.strip(), "name": name, "consumable": bool(consumable), "usage_days": _number(usage_days),
            "technical": bool(technical)}
    try:
        catalogue.create_category(session, ctx.workspace.id, data, actor=ctx.actor)
    except KesherError as exc:
        return _refused(request, ctx, session, exc, "category", key.strip())
    return redirect("/catalogue#categories")


@router.post("/catalogue/categories/{category_id}", response_class=HTMLResponse)
def update_category(
    request: Request, category_id: int, name: str = Form(""), consumable: str = Form(""),
    usage_days: str = Form(""), technical: str = Form(""), ctx: UiContext = Depends(ui_context),
    session: Session = transaction,
) -> Response:
    category = catalogue.get_category(session, ctx.workspace.id, category_id)
    data = {"name": name, "consumable": bool(consumable), "usage_days": _number(usage_days),
            "technical": bool(technical)}
    try:
        catalogue.update_category(session, ctx.workspace.id, category_id, data, actor=ctx.actor)
    except KesherError as exc:
        return _refused(request, ctx, session, exc, "category", category.key)
    return redirect(f"/catalogue#category-{category_id}")


@router.post("/catalogue/categories/{category_id}/delete", response_class=HTMLResponse)
def delete_category(
    request: Request, category_id: int, ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> Response:
    category = catalogue.get_category(session, ctx.workspace.id, category_id)
    try:
        catalogue.delete_category(session, ctx.workspace.id, category_id, actor=ctx.actor)
    except KesherError as exc:
        return _refused(request, ctx, session, exc, "category", category.key)
    return redirect("/catalogue#categories")


@router.post("/catalogue/products", response_class=HTMLResponse)
def create_product(
    request: Request, sku: str = Form(""), name: str = Form(""), category: str = Form(""), price: str = Form(""),
    ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> Response:
    data = {"sku": sku, "name": name, "category": category, "price": _number(price)}
    try:
        product = catalogue.create_product(session, ctx.workspace.id, data, actor=ctx.actor)
    except KesherError as exc:
        return _refused(request, ctx, session, exc, "product", sku.strip())
    return redirect(f"/catalogue?{urlencode({'category': product.category or NO_CATEGORY})}#product-{product.id}")


@router.post("/catalogue/products/{product_id}", response_class=HTMLResponse)
def update_product(
    request: Request, product_id: int, category: str = Form(""), consumable: str = Form(""),
    usage_days: str = Form(""), technical: str = Form(""), margin: str = Form(""), next: str = Form(""),
    ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> Response:
    product = catalogue.get_product(session, ctx.workspace.id, product_id)
    data = {"category": category, "consumable": _choice(consumable), "usage_days": _number(usage_days),
            "technical": _choice(technical), "margin": _number(margin, scale=100)}
    try:
        catalogue.update_product(session, ctx.workspace.id, product_id, data, actor=ctx.actor)
    except KesherError as exc:
        return _refused(request, ctx, session, exc, "product", product.sku)
    return redirect(f"{next or '/catalogue'}#product-{product_id}", default="/catalogue")


@router.post("/catalogue/products/{product_id}/delete")
def delete_product(
    product_id: int, next: str = Form(""), ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> RedirectResponse:
    catalogue.delete_product(session, ctx.workspace.id, product_id, actor=ctx.actor)
    return redirect(next, default="/catalogue")


# Stores -----------------------------------------------------------------------------------------


def _stores_page(request: Request, ctx: UiContext, session: Session, *, created: StoreConnection | None = None,
                 saved: bool = False, error: str = "", values: dict[str, str] | None = None,
                 status_code: int = 200) -> HTMLResponse:
    stores = [(s, webhook_url(request, s)) for s in catalogue.list_stores(session, ctx.workspace.id)]
    return render(request, "catalogue/stores.html", ctx, status_code=status_code, stores=stores, created=created,
                  created_url=webhook_url(request, created) if created else None, saved=saved,
                  error=error, values=values or {}, platforms={"woocommerce": "WooCommerce", "shopify": "Shopify"})


@router.get("/stores", response_class=HTMLResponse)
def stores_page(
    request: Request, saved: str = "", ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> HTMLResponse:
    return _stores_page(request, ctx, session, saved=bool(saved))


@router.post("/stores", response_class=HTMLResponse)
def create_store(
    request: Request, platform: str = Form(""), name: str = Form(""), secret: str = Form(""),
    ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> Response:
    try:
        store = catalogue.create_store(session, ctx.workspace.id, platform, name, secret or None, actor=ctx.actor)
    except KesherError as exc:
        session.rollback()
        return _stores_page(request, ctx, session, error=_wording(exc, "store"), status_code=exc.status,
                            values={"platform": platform, "name": name})
    # The secret is shown on this answer only, never stored in the session or shown again.
    return _stores_page(request, ctx, session, created=store)


@router.post("/stores/{store_id}/secret", response_class=HTMLResponse)
def replace_secret(
    request: Request, store_id: int, secret: str = Form(""), ctx: UiContext = Depends(ui_context),
    session: Session = transaction,
) -> Response:
    try:
        catalogue.update_store(session, ctx.workspace.id, store_id, secret=secret, actor=ctx.actor)
    except KesherError as exc:
        session.rollback()
        return _stores_page(request, ctx, session, error=_wording(exc, "store"), status_code=exc.status)
    return redirect("/stores?saved=1")


@router.post("/stores/{store_id}/delete")
def delete_store(
    store_id: int, ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> RedirectResponse:
    catalogue.delete_store(session, ctx.workspace.id, store_id, actor=ctx.actor)
    return redirect("/stores")
