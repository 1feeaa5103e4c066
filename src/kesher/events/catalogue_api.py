"""The catalogue and stores JSON API (mounted at /api/v1): categories, products, store connections.

Routes only translate: the models fix the shape of the JSON, `events.catalogue` checks the values
(so the API and the UI say the same about the same mistake) and works in the caller's workspace.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from kesher.contacts.api import CONFLICT, NO_CONTENT
from kesher.events import catalogue
from kesher.events.models import Category, Product, StoreConnection
from kesher.db.base import MAX_ID
from kesher.events.webhooks import webhook_url
from kesher.web.deps import ApiCaller, DbSession, api_caller
from kesher.web.problems import API_ERRORS


router = APIRouter(responses=API_ERRORS)
Caller = Annotated[ApiCaller, Depends(api_caller)]
CategoryId = Annotated[int, Path(ge=1, le=MAX_ID, description="A category id")]
ProductId = Annotated[int, Path(ge=1, le=MAX_ID, description="A product id")]
StoreId = Annotated[int, Path(ge=1, le=MAX_ID, description="A store connection id")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def changes(self) -> dict[str, Any]:
        """Only what the caller sent, so fields left out stay as stored."""
        return self.model_dump(exclude_unset=True)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# Categories --------------------------------------------------------------------------------------


class _CategoryFields(_In):
    usage_days: int | None = Field(None, description="How long one unit lasts (consumables only); null: unknown.",
                                   examples=[30])


class CategoryIn(_CategoryFields):
    key: str = Field(description="a-z, 0-9, _ and -; what purchase items name in `category`. Cannot change later.",
                     examples=["vitamins"])
    name: str = Field(examples=["ויטמינים ותוספי תזונה"])
    consumable: bool = Field(False, description="Runs out and is bought again.")
    technical: bool = Field(False, description="Wants a how-to after purchase.")


class CategoryPatch(_CategoryFields):
    name: str | None = None
    consumable: bool | None = None
    technical: bool | None = None


class CategoryOut(_Out):
    id: int
    key: str
    name: str
    consumable: bool
    usage_days: int | None
    technical: bool


@router.get("/catalogue/categories", tags=["catalogue"], summary="All product categories, by key")
def all_categories(caller: Caller, session: DbSession) -> list[CategoryOut]:
    return [CategoryOut.model_validate(c) for c in catalogue.list_categories(session, caller.workspace_id)]


@router.post("/catalogue/categories", tags=["catalogue"], summary="Create a category",
             status_code=status.HTTP_201_CREATED, responses=CONFLICT)
def create_category(body: CategoryIn, caller: Caller, session: DbSession) -> CategoryOut:
    category = catalogue.create_category(session, caller.workspace_id, body.changes(), actor=caller.actor)
    return CategoryOut.model_validate(category)


@router.get("/catalogue/categories/{category_id}", tags=["catalogue"], summary="A category")
def get_category(category_id: CategoryId, caller: Caller, session: DbSession) -> CategoryOut:
    return CategoryOut.model_validate(catalogue.get_category(session, caller.workspace_id, category_id))


@router.patch("/catalogue/categories/{category_id}", tags=["catalogue"],
              summary="Rename a category or change its flags (its key stays)")
def update_category(category_id: CategoryId, body: CategoryPatch, caller: Caller, session: DbSession) -> CategoryOut:
    category = catalogue.update_category(session, caller.workspace_id, category_id, body.changes(), actor=caller.actor)
    return CategoryOut.model_validate(category)


@router.delete("/catalogue/categories/{category_id}", tags=["catalogue"], status_code=NO_CONTENT,
               response_class=Response, responses=CONFLICT,
               summary="Delete a category no product is in (409 names how many are)")
def delete_category(category_id: CategoryId, caller: Caller, session: DbSession) -> None:
    catalogue.delete_category(session, caller.workspace_id, category_id, actor=caller.actor)


# Products ----------------------------------------------------------------------------------------


class _ProductFields(_In):
    category: str | None = Field(None, description="A category key; \"\" for none.", examples=["vitamins"])
    price: float | None = Field(None, examples=[59.9])
    consumable: bool | None = Field(None, description="null: as its category says.")
    usage_days: int | None = Field(None, description="null: as its category says.", examples=[90])
    technical: bool | None = Field(None, description="null: as its category says.")
    margin: float | None = Field(None, description="Gross margin, 0 to 1 (0.3 is 30%).", examples=[0.55])


class ProductIn(_ProductFields):
    sku: str = Field(examples=["VIT-001"])
    name: str = Field(examples=["ויטמין D3 1000 יחב\"ל (90 כמוסות)"])


class ProductPatch(_ProductFields):
    sku: str | None = None
    name: str | None = None


class EffectiveOut(BaseModel):
    consumable: bool
    usage_days: int | None
    technical: bool


class ProductOut(_Out):
    id: int
    sku: str
    name: str
    category: str
    price: float | None
    consumable: bool | None
    usage_days: int | None
    technical: bool | None
    margin: float | None
    effective: EffectiveOut = Field(description="The product's flags with its category's filling in the nulls.")
    source: str = Field(description="manual, demo, or the platform whose orders added it.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, product: Product, category: Category | None) -> Self:
        flags = catalogue.effective(product, category)
        return cls.model_validate({**{name: getattr(product, name) for name in cls.model_fields if name != "effective"},
                                   "effective": EffectiveOut(consumable=flags.consumable, usage_days=flags.usage_days,
                                                             technical=flags.technical)})


class ProductPage(BaseModel):
    data: list[ProductOut]
    next_cursor: str | None = Field(description="Pass as `after` for the next page; null on the last page.")


def _product_out(session: Session, caller: ApiCaller, product: Product) -> ProductOut:
    category = catalogue.categories_by_key(session, caller.workspace_id).get(product.category)
    return ProductOut.of(product, category)


@router.get("/catalogue/products", tags=["catalogue"], summary="Products by SKU, a page at a time")
def all_products(
    caller: Caller, session: DbSession,
    category: Annotated[str | None, Query(max_length=100, description="Only this category; \"\" for none")] = None,
    after: Annotated[str | None, Query(max_length=100, description="`next_cursor` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=catalogue.MAX_PAGE)] = 200,
) -> ProductPage:
    products = catalogue.list_products(session, caller.workspace_id, category=category, after=after, limit=limit)
    categories = catalogue.categories_by_key(session, caller.workspace_id)
    return ProductPage(data=[ProductOut.of(p, categories.get(p.category)) for p in products],
                       next_cursor=products[-1].sku if len(products) == limit else None)


@router.post("/catalogue/products", tags=["catalogue"], summary="Create a product",
             status_code=status.HTTP_201_CREATED, responses=CONFLICT)
def create_product(body: ProductIn, caller: Caller, session: DbSession) -> ProductOut:
    product = catalogue.create_product(session, caller.workspace_id, body.changes(), actor=caller.actor)
    return _product_out(session, caller, product)


@router.get("/catalogue/products/{product_id}", tags=["catalogue"], summary="A product with its effective flags")
def get_product(product_id: ProductId, caller: Caller, session: DbSession) -> ProductOut:
    return _product_out(session, caller, catalogue.get_product(session, caller.workspace_id, product_id))


@router.patch("/catalogue/products/{product_id}", tags=["catalogue"], responses=CONFLICT,
              summary="Change some fields of a product",
              description="Only the fields sent change. `null` for consumable, usage_days or technical makes the "
                          "product follow its category again. Orders from a store never change these.")
def update_product(product_id: ProductId, body: ProductPatch, caller: Caller, session: DbSession) -> ProductOut:
    product = catalogue.update_product(session, caller.workspace_id, product_id, body.changes(), actor=caller.actor)
    return _product_out(session, caller, product)


@router.delete("/catalogue/products/{product_id}", tags=["catalogue"], status_code=NO_CONTENT,
               response_class=Response, summary="Delete a product (past purchases keep its SKU)")
def delete_product(product_id: ProductId, caller: Caller, session: DbSession) -> None:
    catalogue.delete_product(session, caller.workspace_id, product_id, actor=caller.actor)


# Stores ------------------------------------------------------------------------------------------


class StoreIn(_In):
    platform: Literal["woocommerce", "shopify"]
    name: str = Field(examples=["החנות באתר"])
    secret: str | None = Field(None, description="The key the store signs webhooks with. Leave out to have one "
                                                 "made (WooCommerce); for Shopify, paste the key Shopify shows.")


class StorePatch(_In):
    name: str | None = None
    secret: str | None = Field(None, description="Replace the secret, e.g. with the key Shopify signs webhooks with.")


class StoreOut(_Out):
    id: int
    platform: str
    name: str
    webhook_url: str = Field(description="Paste into the store's webhook settings.")
    created_at: datetime
    last_received_at: datetime | None

    @classmethod
    def of(cls, request: Request, store: StoreConnection) -> Self:
        return cls.model_validate({"id": store.id, "platform": store.platform, "name": store.name,
                                   "webhook_url": webhook_url(request, store), "created_at": store.created_at,
                                   "last_received_at": store.last_received_at})


class StoreCreatedOut(StoreOut):
    secret: str = Field(description="Shown this once: paste it into the store's webhook settings.")


@router.get("/stores", tags=["stores"], summary="The workspace's store connections and their webhook URLs")
def all_stores(request: Request, caller: Caller, session: DbSession) -> list[StoreOut]:
    return [StoreOut.of(request, s) for s in catalogue.list_stores(session, caller.workspace_id)]


@router.post("/stores", tags=["stores"], summary="Connect a WooCommerce or Shopify store",
             status_code=status.HTTP_201_CREATED)
def create_store(body: StoreIn, request: Request, caller: Caller, session: DbSession) -> StoreCreatedOut:
    store = catalogue.create_store(session, caller.workspace_id, body.platform, body.name, body.secret,
                                   actor=caller.actor)
    return StoreCreatedOut(**StoreOut.of(request, store).model_dump(), secret=store.secret)


@router.get("/stores/{store_id}", tags=["stores"], summary="A store connection (its secret is never shown again)")
def get_store(store_id: StoreId, request: Request, caller: Caller, session: DbSession) -> StoreOut:
    return StoreOut.of(request, catalogue.get_store(session, caller.workspace_id, store_id))


@router.patch("/stores/{store_id}", tags=["stores"], summary="Rename a store connection or replace its secret")
def update_store(store_id: StoreId, body: StorePatch, request: Request, caller: Caller, session: DbSession) -> StoreOut:
    store = catalogue.update_store(session, caller.workspace_id, store_id, name=body.name, secret=body.secret,
                                   actor=caller.actor)
    return StoreOut.of(request, store)


@router.delete("/stores/{store_id}", tags=["stores"], status_code=NO_CONTENT, response_class=Response,
               summary="Disconnect a store: its webhooks are refused from now on")
def delete_store(store_id: StoreId, caller: Caller, session: DbSession) -> None:
    catalogue.delete_store(session, caller.workspace_id, store_id, actor=caller.actor)
