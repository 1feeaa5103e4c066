"""The catalogue: categories and products through the service, the API and the UI; store connections."""


import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from kesher.demo import catalogue as demo
from kesher.events import catalogue
from kesher.events.models import Category, Product, StoreConnection
from tests.problems import problem
from tests.browser import logged_in



def created(response) -> dict:
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def vitamins(api) -> dict:
    return created(api.post("/catalogue/categories", json={"key": "vitamins", "name": "ויטמינים", "consumable": True,
                                                           "usage_days": 30}))


# The service ------------------------------------------------------------------------------------


def test_effective_flags_follow_the_category_unless_the_product_says_otherwise():
    category = Category(key="vitamins", name="ויטמינים", consumable=True, usage_days=30, technical=False)
    follows = Product(sku="A", name="A", category="vitamins", consumable=None, usage_days=None, technical=None)
    assert catalogue.effective(follows, category) == catalogue.Effective(True, 30, False)
    own_days = Product(sku="B", name="B", consumable=None, usage_days=90, technical=True)
    assert catalogue.effective(own_days, category) == catalogue.Effective(True, 90, True)
    durable = Product(sku="C", name="C", consumable=False, usage_days=None, technical=None)
    assert catalogue.effective(durable, category) == catalogue.Effective(False, None, False)
    alone = Product(sku="D", name="D", consumable=None, usage_days=None, technical=None)
    assert catalogue.effective(alone, None) == catalogue.Effective(False, None, False)


def test_an_order_sync_adds_skus_refreshes_names_and_prices_and_keeps_what_the_marketer_set(session, workspace):
    catalogue.create_category(session, workspace.id, {"key": "vitamins", "name": "ויטמינים", "consumable": True})
    catalogue.create_product(session, workspace.id, {
        "sku": "VIT-001", "name": "ויטמין D", "category": "vitamins", "price": 50, "consumable": False,
        "technical": True, "margin": 0.4})
    catalogue.upsert_from_order(session, workspace.id, [
        {"sku": "VIT-001", "name": "ויטמין D3 (90 כמוסות)", "price": 59.9},
        {"sku": "NEW-1", "name": "מוצר חדש", "price": 12.5},
        {"sku": "NEW-1", "name": "מוצר חדש", "price": 12.5},  # the same SKU twice in one order
    ], source="shopify")
    catalogue.upsert_from_order(session, workspace.id, [{"sku": "NEW-1", "name": ""}], source="shopify")
    session.expire_all()
    products = {p.sku: p for p in catalogue.list_products(session, workspace.id)}
    kept = products["VIT-001"]
    assert (kept.name, kept.price, kept.source) == ("ויטמין D3 (90 כמוסות)", 59.9, "manual")
    assert (kept.category, kept.consumable, kept.usage_days, kept.technical, kept.margin) == (
        "vitamins", False, None, True, 0.4)
    new = products["NEW-1"]
    assert (new.name, new.price, new.source, new.category, new.consumable) == ("מוצר חדש", 12.5, "shopify", "", None)
    assert catalogue.categories_of(session, workspace.id, ["VIT-001", "NEW-1", "NONE"]) == {"VIT-001": "vitamins"}


def test_the_demo_catalogue_seeds_once_and_reads_as_the_demo_shop_sells(session, workspace):
    catalogue.seed_demo(session, workspace.id)
    vitamin = session.scalar(select(Product).where(Product.workspace_id == workspace.id, Product.sku == "VIT-001"))
    catalogue.update_product(session, workspace.id, vitamin.id, {"margin": 0.6})
    catalogue.seed_demo(session, workspace.id)
    categories = catalogue.categories_by_key(session, workspace.id)
    products = catalogue.list_products(session, workspace.id)
    assert set(categories) == set(demo.CATEGORIES) and len(products) == len(demo.catalogue())
    assert categories["absorbent"].name == demo.CATEGORIES["absorbent"] and categories["absorbent"].consumable
    assert not categories["walkers"].consumable and categories["walkers"].technical
    for sold in demo.catalogue():
        product = next(p for p in products if p.sku == sold.sku)
        flags = catalogue.effective(product, categories[product.category])
        assert flags == catalogue.Effective(sold.consumable, sold.usage_days, sold.technical), sold.sku
        assert product.margin == (0.6 if sold.sku == "VIT-001" else sold.margin)
    # Most products say nothing of their own: the category speaks for them.
    assert sum(p.consumable is None for p in products) > len(products) * 0.8


# The API: categories ----------------------------------------------------------------------------


def test_category_crud_and_validation_name_the_field(api, vitamins):
    assert vitamins == {"id": vitamins["id"], "key": "vitamins", "name": "ויטמינים", "consumable": True,
                        "usage_days": 30, "technical": False}
    problem(api.post("/catalogue/categories", json={"key": "vitamins", "name": "שוב"}), 409, "key")
    problem(api.post("/catalogue/categories", json={"key": "Vitamins!", "name": "x"}), 422, "key")
    problem(api.post("/catalogue/categories", json={"key": "walkers", "name": "  "}), 422, "name")
    problem(api.post("/catalogue/categories", json={"key": "walkers", "name": "x", "usage_days": 30}), 422, "usage_days")
    problem(api.post("/catalogue/categories", json={"key": "walkers", "name": "x", "consumable": True,
                                                    "usage_days": 0}), 422, "usage_days")
    problem(api.post("/catalogue/categories", json={"name": "x"}), 422, "key")

    walkers = created(api.post("/catalogue/categories", json={"key": "walkers", "name": "הליכונים",
                                                              "technical": True}))
    assert [c["key"] for c in api.get("/catalogue/categories").json()] == ["vitamins", "walkers"]
    changed = api.patch(f"/catalogue/categories/{vitamins['id']}", json={"name": "ויטמינים ותוספים", "usage_days": 60})
    assert changed.status_code == 200 and (changed.json()["name"], changed.json()["usage_days"]) == (
        "ויטמינים ותוספים", 60)
    problem(api.patch(f"/catalogue/categories/{vitamins['id']}", json={"key": "vit"}), 422, "key")
    problem(api.patch(f"/catalogue/categories/{vitamins['id']}", json={"consumable": False}), 422, "usage_days")
    problem(api.patch(f"/catalogue/categories/{vitamins['id']}", json={"consumable": None}), 422, "consumable")

    created(api.post("/catalogue/products", json={"sku": "WLK-001", "name": "רולטור", "category": "walkers"}))
    problem(api.delete(f"/catalogue/categories/{walkers['id']}"), 409, "products")
    assert api.delete(f"/catalogue/categories/{vitamins['id']}").status_code == 204
    problem(api.get(f"/catalogue/categories/{vitamins['id']}"), 404, "id")


# The API: products ------------------------------------------------------------------------------


def test_product_crud_effective_flags_and_validation(api, vitamins):
    product = created(api.post("/catalogue/products", json={"sku": "VIT-001", "name": "ויטמין D", "category": "vitamins",
                                                           "price": 59.9, "margin": 0.55}))
    assert (product["source"], product["consumable"], product["usage_days"]) == ("manual", None, None)
    assert product["effective"] == {"consumable": True, "usage_days": 30, "technical": False}

    durable = api.patch(f"/catalogue/products/{product['id']}", json={"consumable": False})
    assert durable.json()["effective"] == {"consumable": False, "usage_days": None, "technical": False}
    own = api.patch(f"/catalogue/products/{product['id']}", json={"consumable": None, "usage_days": 90,
                                                                  "technical": True})
    assert own.json()["effective"] == {"consumable": True, "usage_days": 90, "technical": True}
    assert own.json()["margin"] == 0.55 and own.json()["price"] == 59.9

    for body, field in (({"sku": "X", "name": "x", "category": "nope"}, "category"),
                        ({"sku": "X", "name": "x", "margin": 1.5}, "margin"),
                        ({"sku": "X", "name": "x", "price": -1}, "price"),
                        ({"sku": "X", "name": "x", "consumable": False, "usage_days": 30}, "usage_days"),
                        ({"sku": "", "name": "x"}, "sku"),
                        ({"name": "x"}, "sku"),
                        ({"sku": "X", "name": "x", "colour": "red"}, "colour")):
        problem(api.post("/catalogue/products", json=body), 422, field)
    problem(api.post("/catalogue/products", json={"sku": "VIT-001", "name": "שוב"}), 409, "sku")
    created(api.post("/catalogue/products", json={"sku": "ABC", "name": "בלי קטגוריה"}))
    problem(api.patch(f"/catalogue/products/{product['id']}", json={"sku": "ABC"}), 409, "sku")
    problem(api.patch(f"/catalogue/products/{product['id']}", json={"usage_days": 0}), 422, "usage_days")

    page = api.get("/catalogue/products", params={"limit": 1}).json()
    assert [p["sku"] for p in page["data"]] == ["ABC"] and page["next_cursor"] == "ABC"
    rest = api.get("/catalogue/products", params={"limit": 1, "after": "ABC"}).json()
    assert [p["sku"] for p in rest["data"]] == ["VIT-001"]
    assert [p["sku"] for p in api.get("/catalogue/products", params={"category": ""}).json()["data"]] == ["ABC"]
    assert [p["sku"] for p in api.get("/catalogue/products", params={"category": "vitamins"}).json()["data"]] == [
        "VIT-001"]

    assert api.delete(f"/catalogue/products/{product['id']}").status_code == 204
    problem(api.get(f"/catalogue/products/{product['id']}"), 404, "id")


def test_another_workspaces_catalogue_is_not_found(api, database, other_workspace):
    with database.session() as s:
        theirs = catalogue.create_category(s, other_workspace.id, {"key": "secret", "name": "סוד"})
        product = catalogue.create_product(s, other_workspace.id, {"sku": "S-1", "name": "סוד", "category": "secret"})
        store = catalogue.create_store(s, other_workspace.id, "shopify", "שלהם")
    problem(api.get(f"/catalogue/categories/{theirs.id}"), 404)
    problem(api.patch(f"/catalogue/products/{product.id}", json={"name": "שלי"}), 404)
    problem(api.delete(f"/stores/{store.id}"), 404)
    problem(api.post("/catalogue/products", json={"sku": "S-1", "name": "x", "category": "secret"}), 422, "category")
    assert api.get("/catalogue/categories").json() == [] and api.get("/stores").json() == []


def test_the_catalogue_api_needs_a_key(app):
    with TestClient(app, base_url="http://testserver/api/v1") as client:
        problem(client.get("/catalogue/products"), 401, "Authorization")
        problem(client.post("/stores", json={"platform": "shopify", "name": "x"}), 401, "Authorization")


# The API: stores --------------------------------------------------------------------------------


def test_store_connections_show_their_secret_once(api, database):
    woo = created(api.post("/stores", json={"platform": "woocommerce", "name": "האתר"}))
    assert len(woo["secret"]) >= 32
    assert woo["webhook_url"] == f"http://testserver/hooks/woocommerce/{woo['id']}"
    shop = created(api.post("/stores", json={"platform": "shopify", "name": "שופיפיי", "secret": " shpss_key_123 "}))
    assert shop["secret"] == "shpss_key_123"
    listed = api.get("/stores").json()
    assert [s["id"] for s in listed] == [woo["id"], shop["id"]] and all("secret" not in s for s in listed)
    assert "secret" not in api.get(f"/stores/{woo['id']}").json()

    problem(api.post("/stores", json={"platform": "magento", "name": "x"}), 422, "platform")
    problem(api.post("/stores", json={"platform": "shopify", "name": "x", "secret": "short"}), 422, "secret")
    problem(api.post("/stores", json={"platform": "shopify", "name": ""}), 422, "name")
    renamed = api.patch(f"/stores/{shop['id']}", json={"name": "החנות", "secret": "the-key-shopify-shows"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "החנות" and "secret" not in renamed.json()
    problem(api.patch(f"/stores/{shop['id']}", json={"secret": ""}), 422, "secret")
    with database.session() as s:
        assert s.get_one(StoreConnection, shop["id"]).secret == "the-key-shopify-shows"
    assert api.delete(f"/stores/{shop['id']}").status_code == 204
    problem(api.get(f"/stores/{shop['id']}"), 404)


# The UI -----------------------------------------------------------------------------------------


@pytest.fixture
def ui(app, database, workspace):
    with logged_in(app, database, workspace, "/catalogue") as page:
        yield page


def test_the_catalogue_page_edits_categories_and_products(ui, database, workspace):
    with database.session() as s:
        catalogue.seed_demo(s, workspace.id)
        vitamins = catalogue.categories_by_key(s, workspace.id)["vitamins"]
        product = s.scalar(select(Product).where(Product.workspace_id == workspace.id, Product.sku == "VIT-002"))
    page = ui.get("/catalogue")
    assert page.status_code == 200 and '<html lang="he" dir="rtl">' in page.text
    assert "קטלוג" in page.text and "ויטמינים ותוספי תזונה" in page.text and "VIT-002" in page.text
    assert 'aria-current="page">קטלוג<' in page.text

    saved = ui.post(f"/catalogue/products/{product.id}", {
        "category": "vitamins", "consumable": "", "usage_days": "45", "technical": "yes", "margin": "52.5",
        "next": "/catalogue?category=vitamins"})
    assert saved.status_code == 303 and saved.headers["location"] == f"/catalogue?category=vitamins#product-{product.id}"
    with database.session() as s:
        stored = s.get_one(Product, product.id)
        assert (stored.consumable, stored.usage_days, stored.technical, stored.margin) == (None, 45, True, 0.525)

    wrong = ui.post(f"/catalogue/products/{product.id}", {"category": "vitamins", "usage_days": "soon"})
    assert wrong.status_code == 422 and "VIT-002" in wrong.text and "ימי שימוש" in wrong.text

    assert ui.post(f"/catalogue/categories/{vitamins.id}", {"name": "תוספים", "consumable": "1",
                                                            "usage_days": "60"}).status_code == 303
    assert ui.post("/catalogue/categories", {"key": "gifts", "name": "מתנות"}).status_code == 303
    assert ui.post("/catalogue/categories", {"key": "Gifts!", "name": "מתנות"}).status_code == 422
    in_use = ui.post(f"/catalogue/categories/{vitamins.id}/delete")
    assert in_use.status_code == 409 and "alert error" in in_use.text
    with database.session() as s:
        categories = catalogue.categories_by_key(s, workspace.id)
        assert (categories["vitamins"].name, categories["vitamins"].usage_days, categories["vitamins"].technical) == (
            "תוספים", 60, False)
        assert "gifts" in categories

    assert ui.post("/catalogue/products", {"sku": "GFT-1", "name": "שובר מתנה", "category": "gifts",
                                           "price": "100"}).status_code == 303
    assert "GFT-1" in ui.get("/catalogue?category=gifts").text
    assert "GFT-1" not in ui.get("/catalogue?category=-").text

    refused = ui.client.post(f"/catalogue/products/{product.id}/delete", data={"csrf_token": "forged"})
    assert refused.status_code == 403


def test_the_stores_page_connects_shows_the_secret_once_and_disconnects(ui, database, workspace):
    page = ui.post("/stores", {"platform": "woocommerce", "name": "האתר שלי", "secret": ""})
    assert page.status_code == 200
    with database.session() as s:
        [store] = catalogue.list_stores(s, workspace.id)
    assert store.secret in page.text and f"http://testserver/hooks/woocommerce/{store.id}" in page.text
    again = ui.get("/stores")
    assert store.secret not in again.text and f"/hooks/woocommerce/{store.id}" in again.text
    assert ui.post("/stores", {"platform": "shopify", "name": "x", "secret": "short"}).status_code == 422
    assert ui.post(f"/stores/{store.id}/secret", {"secret": "a-new-secret-key"}).status_code == 303
    with database.session() as s:
        assert s.get_one(StoreConnection, store.id).secret == "a-new-secret-key"
    assert ui.post(f"/stores/{store.id}/delete").status_code == 303
    with database.session() as s:
        assert catalogue.list_stores(s, workspace.id) == []


def test_behind_a_proxy_the_public_address_is_given_out(api, app):
    app.state.settings = app.state.settings.model_copy(update={"public_url": "https://kesher.example.co.il/"})
    store = created(api.post("/stores", json={"platform": "shopify", "name": "shop"}))
    assert store["webhook_url"] == f"https://kesher.example.co.il/hooks/shopify/{store['id']}"
    site = api.post("/tracking/sites", json={"name": "shop", "allowed_origins": ["https://shop.example.co.il"]})
    assert 'src="https://kesher.example.co.il/t/kesher.js"' in site.json()["snippet"]
