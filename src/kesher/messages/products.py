"""Products in a message: what a contact bought, what else fits, the shop's best sellers.

A `ProductList` renders itself: in the HTML part as a responsive grid (inline styles, since it is
made at render time, after the CSS of the template was inlined), in the plain-text part as lines.
So `{{ products.best_sellers(3) }}` and `{{ product_block(items) }}` need no markup of their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from jinja2 import Environment, Template
from markupsafe import Markup

LAYOUTS = Path(__file__).resolve().parent / "layouts"
MAX_ITEMS = 12  # the most a block may ask for; `Shop` keeps this many per category


def shekels(value: Any) -> str:
    """A price as Israelis read it: ₪1,234.50, or ₪120 when whole."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return ""
    return f"₪{value:,.0f}" if float(value).is_integer() else f"₪{value:,.2f}"


class ProductItem(NamedTuple):
    """A product as a block shows it. A tuple: a contact's purchases make a few dozen of them a
    message, and a tuple is made, hashed and compared (the blocks' caches) in C."""

    sku: str
    name: str
    category: str = ""
    price: float | None = None
    url: str | None = None  # the catalogue has no product address yet; a block links when one is given
    image: str | None = None
    bought_at: datetime | None = None  # last, so that `item[:SHOWN]` is what a block shows of it

    @property
    def price_text(self) -> str:
        return shekels(self.price)


SHOWN = 6  # the fields of a ProductItem that a block may show: all but `bought_at`


@cache
def _layout(name: str) -> Template:
    # Kesher's own files, not marketers' input: a plain environment is enough. A cell ends its line.
    env = Environment(autoescape=name.endswith(".html"), trim_blocks=True, lstrip_blocks=True,
                      keep_trailing_newline=True)
    return env.from_string((LAYOUTS / name).read_text(encoding="utf-8"))


class ProductList(list[ProductItem]):
    """A list of products that renders as a product grid (HTML) or as lines (text)."""

    def __html__(self) -> Markup:
        return Markup(_grid(tuple(self), "html")) if self else Markup("")

    def __str__(self) -> str:
        return _grid(tuple(self), "txt") if self else ""


@lru_cache(maxsize=128)  # the blocks many contacts share stay; a contact's own purchases pass through
def _grid(items: tuple[ProductItem, ...], kind: str) -> str:
    # Best sellers are the same for every contact of a campaign: their block is rendered once. The
    # products a contact bought make a grid of their own, of cells each rendered once, in a frame
    # rendered once: rendering even that frame for each contact took as long as the rest.
    head, tail = _frame(kind)
    return head + "".join([_cell(item[:SHOWN], kind) for item in items]) + tail


@lru_cache(maxsize=4096)
def _cell(shown: tuple[Any, ...], kind: str) -> str:
    return _layout(f"product.{kind}").render(item=ProductItem(*shown))


@cache
def _frame(kind: str) -> tuple[str, str]:
    """The grid's layout (`products.html`, `.txt`) before and after its cells."""
    hole = "\0cells\0"
    head, found, tail = _layout(f"products.{kind}").render(cells=[Markup(hole)]).partition(hole)
    assert found, f"products.{kind} shows no cells"
    return head, tail


def product_block(items: Any) -> ProductList:
    """The template global: any products (or product dicts) as a block; anything else renders nothing."""
    if isinstance(items, ProductList):
        return items
    if not isinstance(items, Iterable) or isinstance(items, str | bytes | Mapping):
        return ProductList()
    chosen = [i if isinstance(i, ProductItem) else _item(i) for i in list(items)[:MAX_ITEMS]]
    return ProductList(i for i in chosen if i is not None)


def _item(data: Any) -> ProductItem | None:
    if not isinstance(data, Mapping) or not data.get("name"):
        return None
    price = data.get("price")
    return ProductItem(sku=str(data.get("sku") or ""), name=str(data["name"]), category=str(data.get("category") or ""),
                       price=float(price) if isinstance(price, int | float) and not isinstance(price, bool) else None,
                       url=data.get("url") or None, image=data.get("image") or None)


@dataclass(frozen=True)
class Shop:
    """The workspace's best sellers, overall and per category; computed once for many contacts."""

    best: tuple[ProductItem, ...] = ()
    by_category: Mapping[str, tuple[ProductItem, ...]] = field(default_factory=dict)


def _count(n: Any) -> int:
    return max(0, min(int(n), MAX_ITEMS)) if isinstance(n, int) and not isinstance(n, bool) else 3


class Products:
    """`products` in a template: `last_bought`, `same_category(n)`, `best_sellers(n)`."""

    def __init__(self, bought: list[ProductItem], shop: Shop) -> None:
        self._bought = bought  # newest first, one per product
        self._shop = shop

    @property
    def last_bought(self) -> ProductList:
        return ProductList(self._bought[:MAX_ITEMS])

    def same_category(self, n: int = 3) -> ProductList:
        """Best sellers of the categories the contact bought from, most recent category first, minus what they own."""
        owned = {item.sku for item in self._bought}
        categories = list(dict.fromkeys(item.category for item in self._bought if item.category))
        chosen: list[ProductItem] = []
        wanted = _count(n)
        for category in categories:
            for item in self._shop.by_category.get(category, ()):
                if len(chosen) == wanted:
                    return ProductList(chosen)
                if item.sku not in owned:
                    chosen.append(item)
                    owned.add(item.sku)
        return ProductList(chosen)

    def best_sellers(self, n: int = 3) -> ProductList:
        return ProductList(self._shop.best[:_count(n)])
