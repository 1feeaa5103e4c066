"""Personalisation data for a batch of contacts: real contacts, fields, rollups, segments and purchases."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import count
from typing import Any

import pytest
from sqlalchemy import event

from kesher.accounts.models import Workspace
from kesher.contacts import fields
from kesher.contacts import service as contacts
from kesher.db import utcnow
from kesher.events import catalogue, purchases
from kesher.events.ingest import ingest
from kesher.messages.context import contexts, shop_data
from kesher.messages.render import Content, Renderer
from kesher.segments import service as segments

_serial = count()


@pytest.fixture
def ws(database, workspace):
    with database.session() as s:
        yield s.get_one(Workspace, workspace.id), s


def person(s: Any, ws: Workspace, **data: Any) -> int:
    return contacts.save_contact(s, ws.id, {"email": f"c{next(_serial)}@example.com", **data}).contact_id


def buy(s: Any, ws: Workspace, contact_id: int, *items: tuple[str, str, str, float, float],
        at: datetime | None = None) -> None:
    lines = [{"sku": sku, "name": name, "category": category, "price": price, "quantity": quantity}
             for sku, name, category, price, quantity in items]
    event = {"type": "purchase", "contact": {"id": contact_id}, "ts": (at or utcnow()).isoformat(),
             "properties": {"order_id": f"o{next(_serial)}", "items": lines}}
    assert ingest(s, ws, [event]).errors == []


VITAMIN = ("VIT-D", "ויטמין D3", "vitamins", 49.9, 1.0)
OMEGA = ("OMEGA", "אומגה 3", "vitamins", 89.0, 1.0)
MAGNESIUM = ("MAG", "מגנזיום", "vitamins", 39.0, 1.0)
TEA = ("TEA", "תה צמחים", "tea", 24.5, 1.0)


def test_a_batch_gets_fields_rollups_segments_and_products(ws):
    workspace, s = ws
    fields.create_field(s, workspace.id, "shoe_size", "מספר נעליים", "number")
    dana = person(s, workspace, first_name="דנה", city="Haifa", fields={"shoe_size": 38})
    avi = person(s, workspace, first_name="אבי", city="Eilat")
    buy(s, workspace, dana, VITAMIN, TEA)
    buy(s, workspace, dana, VITAMIN)
    buy(s, workspace, avi, OMEGA, MAGNESIUM)
    buy(s, workspace, avi, (*OMEGA[:4], 3.0))
    segments.create_segment(s, workspace, "צפון", {"field": "city", "op": "eq", "value": "Haifa"})
    segments.create_segment(s, workspace, "קונים", {"stat": "purchase_count", "op": "gte", "value": 1})

    found = contexts(s, workspace.id, [dana, avi, dana, 10**12])
    assert set(found) == {dana, avi}
    mine = found[dana]
    assert mine["contact"]["first_name"] == "דנה" and mine["contact"]["shoe_size"] == 38
    assert mine["contact"]["fields"] == {"shoe_size": 38}
    assert "last_name" not in mine["contact"]  # missing values are left out, so they render empty
    assert mine["rollups"]["purchase_count"] == 2 and mine["rollups"]["revenue"] == pytest.approx(124.3)
    assert mine["segments"] == {"צפון", "קונים"} and found[avi]["segments"] == {"קונים"}
    assert [p.sku for p in mine["products"].last_bought] == ["VIT-D", "TEA"]
    # Best sellers by units: omega (4) before vitamin D (2), magnesium, tea; minus what Dana owns.
    assert [p.sku for p in mine["products"].best_sellers(2)] == ["OMEGA", "VIT-D"]
    assert [p.sku for p in mine["products"].same_category(3)] == ["OMEGA", "MAG"]
    assert [p.sku for p in found[avi]["products"].same_category(3)] == ["VIT-D"]
    assert contexts(s, workspace.id, []) == {}


def test_each_product_bought_once_as_its_newest_line_shows_it_unless_the_catalogue_knows_it(ws):
    workspace, s = ws
    dana, avi = person(s, workspace), person(s, workspace)
    then = utcnow().replace(microsecond=123456) - timedelta(days=30)
    buy(s, workspace, dana, ("VIT-D", "ויטמין ישן", "old", 39.0, 1.0), TEA, at=then)
    buy(s, workspace, dana, VITAMIN, MAGNESIUM, OMEGA, at=then + timedelta(days=1))
    buy(s, workspace, dana, ("VIT-D", "ויטמין הכי ישן", "oldest", 29.0, 1.0), at=then - timedelta(days=1))
    buy(s, workspace, avi, TEA, at=then)
    catalogue.create_category(s, workspace.id, {"key": "tea", "name": "תה"})
    catalogue.create_product(s, workspace.id, {"sku": "TEA", "name": "תה צמחים אורגני", "category": "tea",
                                               "price": 29.0})
    found = purchases.products_bought(s, workspace.id, [dana, avi, 10**12])
    assert set(found) == {dana, avi}
    # The newest first, SKUs bought at the same time by SKU; each once, as its newest line has it.
    assert [(p.sku, p.name, p.category, p.price) for p in found[dana]] == [
        ("MAG", "מגנזיום", "vitamins", 39.0), ("OMEGA", "אומגה 3", "vitamins", 89.0),
        ("VIT-D", "ויטמין D3", "vitamins", 49.9), ("TEA", "תה צמחים אורגני", "tea", 29.0)]
    assert [p.last_at for p in found[dana]] == [then + timedelta(days=1)] * 3 + [then]
    assert found[avi] == [purchases.Purchased("TEA", "תה צמחים אורגני", "tea", 29.0, then)]
    assert purchases.products_bought(s, workspace.id, []) == {}


def test_a_batch_loads_only_what_its_templates_read(ws):
    workspace, s = ws
    dana = person(s, workspace, first_name="דנה", city="Haifa")
    buy(s, workspace, dana, VITAMIN)
    segments.create_segment(s, workspace, "צפון", {"field": "city", "op": "eq", "value": "Haifa"})
    plain = Renderer(Content(subject="x", html="<p>{{ contact.first_name }}</p>"))
    assert {"products", "rollups", "segments", "in_segment"}.isdisjoint(plain.uses)
    assert set(contexts(s, workspace.id, [dana], uses=plain.uses)[dana]) == {"contact", "field_keys"}
    rich = Renderer(Content(subject="x", html='{% segment "צפון" %}<b>{{ rollups.purchase_count }}</b>{% endsegment %}'
                                              "{{ products.last_bought }}"))
    assert {"products", "rollups", "in_segment"} <= rich.uses
    found = contexts(s, workspace.id, [dana], uses=rich.uses)[dana]
    assert found["segments"] == {"צפון"} and found["rollups"]["purchase_count"] == 1
    assert [p.sku for p in found["products"].last_bought] == ["VIT-D"]
    html = rich.render(found).html
    assert "<b>1</b>" in html and "ויטמין D3" in html


def test_segment_blocks_are_shown_only_to_members(ws):
    workspace, s = ws
    member = person(s, workspace, first_name="דנה", city="Haifa")
    other = person(s, workspace, first_name="אבי", city="Eilat")
    segments.create_segment(s, workspace, "VIP", {"field": "city", "op": "eq", "value": "Haifa"})
    renderer = Renderer(Content(subject="x", html='{% segment "VIP" %}<p>הטבת VIP</p>{% else %}<p>הצטרפו למועדון</p>'
                                                  '{% endsegment %}'))
    people = contexts(s, workspace.id, [member, other])
    assert "הטבת VIP" in renderer.render(people[member]).html and "הצטרפו" not in renderer.render(people[member]).html
    assert "הטבת VIP" not in renderer.render(people[other]).html and "הצטרפו" in renderer.render(people[other]).html


def test_a_products_block_from_real_purchases(ws):
    workspace, s = ws
    dana = person(s, workspace, first_name="דנה")
    buy(s, workspace, dana, VITAMIN)
    buy(s, workspace, person(s, workspace), OMEGA, TEA)
    renderer = Renderer(Content(subject="x", html="{{ products.last_bought }}{{ products.same_category(3) }}"))
    rendered = renderer.render(contexts(s, workspace.id, [dana], shop=shop_data(s, workspace.id))[dana])
    assert rendered.html.count("kesher-products") == 2
    assert "ויטמין D3" in rendered.html and "₪49.90" in rendered.html and "אומגה 3" in rendered.html
    assert "תה צמחים" not in rendered.html  # another category
    assert "* ויטמין D3 – ₪49.90" in rendered.text


def test_a_workspace_sees_only_its_own_contacts(database, workspace, other_workspace):
    with database.session() as s:
        theirs = person(s, s.get_one(Workspace, other_workspace.id), first_name="זר")
        assert contexts(s, workspace.id, [theirs]) == {}


def _statements(s: Any, workspace: Workspace, ids: list[int]) -> int:
    shop = shop_data(s, workspace.id)
    seen: list[str] = []

    def count_it(conn, cursor, statement, *args):  # noqa: ANN001 - SQLAlchemy's listener signature
        seen.append(statement)

    engine = s.get_bind()
    event.listen(engine, "before_cursor_execute", count_it)
    try:
        assert len(contexts(s, workspace.id, ids, shop=shop)) == len(ids)
    finally:
        event.remove(engine, "before_cursor_execute", count_it)
    return len(seen)


def test_a_batch_costs_the_same_few_queries_whatever_its_size(ws):
    workspace, s = ws
    fields.create_field(s, workspace.id, "plan", "תוכנית", "text")
    segments.create_segment(s, workspace, "כולם", {"stat": "purchase_count", "op": "gte", "value": 0})
    ids = []
    for n in range(40):
        ids.append(person(s, workspace, first_name=f"איש {n}", fields={"plan": "gold"}))
        buy(s, workspace, ids[-1], VITAMIN if n % 2 else TEA)
    small, large = _statements(s, workspace, ids[:2]), _statements(s, workspace, ids)
    assert small == large <= 7
