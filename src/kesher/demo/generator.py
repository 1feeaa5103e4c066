"""Deterministic demo data: an Israeli online shop for the elderly and their families.

The same seed gives the same output, byte for byte, so a demo, a benchmark or a bug report
can be replayed. Everything streams: a million contacts and ten million events never sit in
memory together; only one contact's history is held at a time.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from kesher.demo.catalogue import CATEGORIES, Product, catalogue
from kesher.demo.names import (
    ADULT_FEMALE, ADULT_MALE, CITIES, ELDER_FEMALE, ELDER_MALE, EMAIL_PROVIDERS, LAST_NAMES,
)
from kesher.errors import ValidationError

__all__ = ["CATEGORIES", "DEFAULT_NOW", "Product", "campaigns", "catalogue", "contacts", "events"]

DEFAULT_NOW = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
SHOP_URL = "https://demo.kesher.example"
HISTORY = timedelta(days=365)
JERUSALEM = ZoneInfo("Asia/Jerusalem")  # shop hours, Shabbat and holidays are local

T = TypeVar("T")


class _Weighted(Generic[T]):
    """A weighted choice that costs one random number and a bisect."""

    def __init__(self, pairs: Sequence[tuple[T, float]]) -> None:
        self.items = [item for item, _ in pairs]
        self.cumulative = list(itertools.accumulate(weight for _, weight in pairs))

    def pick(self, rng: random.Random) -> T:
        return self.items[bisect.bisect_right(self.cumulative, rng.random() * self.cumulative[-1])]


_TYPES = _Weighted([("loyal", 12), ("occasional", 30), ("dormant", 25), ("new", 8), ("prospect", 25)])
_ROLES = _Weighted([("customer", 50), ("family", 38), ("caregiver", 12)])
_FEMALE_SHARE = {"customer": 0.62, "family": 0.6, "caregiver": 0.85}
_FIRST_NAMES = {  # (elderly, female) -> names of that generation
    (True, True): ELDER_FEMALE, (True, False): ELDER_MALE, (False, True): ADULT_FEMALE, (False, False): ADULT_MALE,
}
_LAST_NAMES = _Weighted([((hebrew, latin), weight) for hebrew, latin, weight in LAST_NAMES])
_CITIES = _Weighted(CITIES)
_ELDER_PROVIDERS = _Weighted([(domain, elder) for domain, elder, _ in EMAIL_PROVIDERS])
_ADULT_PROVIDERS = _Weighted([(domain, adult) for domain, _, adult in EMAIL_PROVIDERS])
# Days before `now` in which each type of contact signed up.
_SIGNUP_DAYS_AGO = {"loyal": (150, 365), "occasional": (30, 365), "dormant": (240, 365), "new": (0, 30), "prospect": (0, 365)}
# Local hour of activity: the elderly shop in the morning, their children after work.
_ELDER_HOURS = _Weighted(list(enumerate([0, 0, 0, 0, 0, 0, 1, 3, 6, 8, 9, 8, 6, 5, 4, 4, 4, 4, 3, 3, 3, 2, 1, 0])))
_ADULT_HOURS = _Weighted(list(enumerate([1, 0, 0, 0, 0, 0, 1, 2, 3, 4, 4, 4, 6, 6, 4, 4, 4, 5, 5, 6, 8, 8, 6, 3])))
_HOLIDAY_BOOST = 1.8  # how much more people shop in the three weeks before Rosh Hashana and Pesach
_SHABBAT_KEEP = 0.3  # share of Shabbat activity that happens anyway (secular customers); the rest waits
# Israeli mobile prefixes (050 Pelephone, 052 Cellcom, 053 Hot, 054 Partner, 058 Golan), as 5XY blocks
# of a million numbers each, limited to the blocks `phonenumbers` accepts as valid mobiles.
_MOBILE_BLOCKS = tuple(
    f"5{operator}{digit}"
    for operator, digits in (("0", "023456789"), ("2", "023456789"), ("3", "0123456789"), ("4", "23456789"), ("8", "34567"))
    for digit in digits
)
MAX_CONTACTS = len(_MOBILE_BLOCKS) * 1_000_000


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return DEFAULT_NOW
    if now.tzinfo is None:
        raise ValidationError("must be a timezone-aware datetime, e.g. datetime.now(timezone.utc)", "now")
    return now.astimezone(timezone.utc)


# --- Calendar: the Jewish holidays that drive the shop's seasons -------------------------------

def _elapsed_days(hebrew_year: int) -> int:
    """Days from the Hebrew epoch to the molad of Tishrei, with the 'lo ADU' postponement."""
    months = (235 * hebrew_year - 234) // 19
    parts = 12084 + 13753 * months
    days = months * 29 + parts // 25920
    return days + 1 if (3 * (days + 1)) % 7 < 3 else days


@lru_cache(maxsize=64)
def _rosh_hashana(year: int) -> date:
    """1 Tishrei falling in Gregorian `year` (Calendrical Calculations, Reingold & Dershowitz)."""
    hebrew = year + 3761
    before, this, after = _elapsed_days(hebrew - 1), _elapsed_days(hebrew), _elapsed_days(hebrew + 1)
    correction = 2 if after - this == 356 else 1 if this - before == 382 else 0
    return date.fromordinal(-1373427 + this + correction)


def _pesach(year: int) -> date:
    """15 Nisan falls exactly 163 days before the next Rosh Hashana."""
    return _rosh_hashana(year) - timedelta(days=163)


def _holidays(start: date, end: date) -> list[date]:
    days = (holiday(year) for year in range(start.year, end.year + 1) for holiday in (_pesach, _rosh_hashana))
    return sorted(day for day in days if start <= day <= end)


def _holiday_factor(day: date) -> float:
    """People shop more in the three weeks before Rosh Hashana and Pesach."""
    for holiday in (_pesach(day.year), _rosh_hashana(day.year)):
        if 0 <= (holiday - day).days <= 21:
            return _HOLIDAY_BOOST
    return 1.0


def _clothing_factor(day: date) -> float:
    return 2.5 if day.month in (11, 12, 1, 2) else 0.4 if day.month in (6, 7, 8) else 1.0


# --- Time of day ---------------------------------------------------------------------------------

def _on_shabbat(weekday: int, hour: int) -> bool:
    return (weekday == 4 and hour >= 16) or (weekday == 5 and hour < 19)


def _saturday_night(rng: random.Random, day: date) -> datetime:
    """When the shop's Shabbat-keeping customers come back: Saturday 19:30-23:30."""
    saturday = day + timedelta(days=1 if day.weekday() == 4 else 0)
    night = datetime(saturday.year, saturday.month, saturday.day, 19, 30, tzinfo=JERUSALEM)
    return (night + timedelta(seconds=rng.randrange(4 * 3600))).astimezone(timezone.utc)


def _local_moment(rng: random.Random, day: date, hours: _Weighted[int]) -> datetime:
    """A time of day on `day` in Israel, by the contact's habits; most Shabbat moments move to Saturday night."""
    hour = hours.pick(rng)
    if _on_shabbat(day.weekday(), hour) and rng.random() >= _SHABBAT_KEEP:
        return _saturday_night(rng, day)
    local = datetime(day.year, day.month, day.day, hour, rng.randrange(60), rng.randrange(60), tzinfo=JERUSALEM)
    return local.astimezone(timezone.utc)


def _observe_shabbat(rng: random.Random, ts: datetime) -> datetime:
    """Move most of what would happen on Shabbat (an email open, say) to Saturday night."""
    local = ts.astimezone(JERUSALEM)
    if _on_shabbat(local.weekday(), local.hour) and rng.random() >= _SHABBAT_KEEP:
        return _saturday_night(rng, local.date())
    return ts


def _when(rng: random.Random, start: datetime, end: datetime, hours: _Weighted[int], seasonal: bool = True,
          ) -> datetime | None:
    """A plausible moment between start and end, or None when the window is too short to find one."""
    for _ in range(20):
        day = (start + (end - start) * rng.random()).astimezone(JERUSALEM).date()
        if seasonal and rng.random() * _HOLIDAY_BOOST > _holiday_factor(day):
            continue
        ts = _local_moment(rng, day, hours)
        if start <= ts <= end:
            return ts
    return None


# --- Contacts ------------------------------------------------------------------------------------

class _PhoneNumbers:
    """Index -> distinct mobile number: a keyed Feistel permutation, cycle-walked into the number space.

    A bijection needs no memory of numbers already handed out, however many contacts there are.
    """

    _HALF = 13  # two halves of 13 bits: 2**26 covers the 41 million numbers

    def __init__(self, seed: int) -> None:
        keys = random.Random(f"phones/{seed}")
        self._keys = [keys.getrandbits(32) for _ in range(4)]

    def __call__(self, index: int) -> str:
        number = self._permute(index)
        while number >= MAX_CONTACTS:
            number = self._permute(number)
        block, subscriber = divmod(number, 1_000_000)
        return f"+972{_MOBILE_BLOCKS[block]}{subscriber:06d}"

    def _permute(self, value: int) -> int:
        mask = (1 << self._HALF) - 1
        left, right = value >> self._HALF, value & mask
        for key in self._keys:
            left, right = right, left ^ ((((right ^ key) * 0x9E3779B1) >> 11) & mask)
        return (left << self._HALF) | right


def _email(rng: random.Random, index: int, first: str, last: str, elderly: bool) -> str:
    """Name-based and unique without a registry: names end in a letter, then come the index digits."""
    local = rng.choice((f"{first}.{last}", f"{first}{last}", f"{first[0]}{last}", f"{last}.{first}", f"{first}_{last}"))
    provider = (_ELDER_PROVIDERS if elderly else _ADULT_PROVIDERS).pick(rng)
    return f"{local}{index + 1}@{provider}"


def _contact(rng: random.Random, index: int, today: date, signup: dict[str, tuple[datetime, datetime]],
             phones: _PhoneNumbers) -> dict[str, Any]:
    customer_type, role = _TYPES.pick(rng), _ROLES.pick(rng)
    elderly = role == "customer"
    female = rng.random() < _FEMALE_SHARE[role]
    first_name, first_latin = rng.choice(_FIRST_NAMES[(elderly, female)])
    last_name, last_latin = _LAST_NAMES.pick(rng)
    age = rng.randint(65, 95) if elderly else rng.randint(35, 64)
    reach = rng.random()  # 5% phone only, 10% email only, the rest both
    email = _email(rng, index, first_latin, last_latin, elderly) if reach >= 0.05 else None
    phone = phones(index) if reach < 0.05 or reach >= 0.15 else None
    start, end = signup[customer_type]
    created_at = _when(rng, start, end, _ELDER_HOURS if elderly else _ADULT_HOURS, seasonal=False) or end
    return {
        "external_id": f"C{index + 1:07d}",
        "email": email,
        "phone": phone,
        "first_name": first_name,
        "last_name": last_name,
        "gender": "female" if female else "male",
        "birthday": today - timedelta(days=round((age + rng.random()) * 365.2425)),
        "city": _CITIES.pick(rng),
        "language": "en" if rng.random() < 0.08 else "he",
        "created_at": created_at,
        "customer_type": customer_type,
        "role": role,
        "consent_email": email is not None and rng.random() < 0.9,
        "consent_sms": phone is not None and rng.random() < 0.65,
        "consent_whatsapp": phone is not None and rng.random() < 0.5,
    }


def contacts(n: int, seed: int = 42, now: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Stream `n` demo contacts; contact i is the same whatever `n` is, so a bigger run extends a smaller one."""
    if not 0 <= n <= MAX_CONTACTS:
        raise ValidationError("must be between 0 and {most:,} (the distinct mobile numbers available)", "n",
                              most=MAX_CONTACTS)
    return _contact_stream(n, seed, _utc(now))


def _contact_stream(n: int, seed: int, now: datetime) -> Iterator[dict[str, Any]]:
    rng, phones, today = random.Random(f"contacts/{seed}"), _PhoneNumbers(seed), now.date()
    signup = {kind: (now - timedelta(days=hi), now - timedelta(days=lo)) for kind, (lo, hi) in _SIGNUP_DAYS_AGO.items()}
    for index in range(n):
        yield _contact(rng, index, today, signup, phones)


# --- Campaigns -----------------------------------------------------------------------------------

# (name, subject, category the email links to)
_EVERGREEN = (
    ("מלאי מוצרי ספיגה", "לא להישאר בלי: משלוח מהיר עד הבית למוצרי ספיגה", "absorbent"),
    ("בטיחות בבית", "חמישה צעדים פשוטים למניעת נפילות בבית", "bath"),
    ("ניידות ועצמאות", "איך בוחרים הליכון שמתאים בדיוק לכם", "walkers"),
    ("בריאות בבית", "מד לחץ דם בבית: מתי ואיך למדוד נכון", "devices"),
    ("תוספי תזונה", "ויטמין D וסידן: מה חשוב לדעת אחרי גיל 65", "vitamins"),
    ("נוחות בכל יום", "בגדים שקל ללבוש ונעים ללבוש", "clothing"),
    ("מדריך למשפחה", "מטפלים בהורה מבוגר? ריכזנו עבורכם טיפים ומוצרים", "devices"),
)
_WINTER = (
    ("חורף חם", "מתחממים: סוודרים, פיג'מות ונעלי בית לחורף", "clothing"),
    ("ויטמינים לחורף", "מחזקים את המערכת החיסונית לקראת החורף", "vitamins"),
)
_ROSH_HASHANA = ("מבצעי ראש השנה", "שנה טובה ומתוקה: מתנות לגיל הזהב במחירי חג", "clothing")
_PESACH = ("מבצעי פסח", "לקראת ליל הסדר: כל מה שצריך לחג נוח ובטוח", "bath")


def campaigns(seed: int = 42, now: datetime | None = None) -> list[dict[str, Any]]:
    """The weekly newsletters of the year before `now` (Tuesdays 10:00 Israel time) that events refer to."""
    now = _utc(now)
    rng = random.Random(f"campaigns/{seed}")
    start = now - HISTORY
    day = start.astimezone(JERUSALEM).date()
    day += timedelta(days=(1 - day.weekday()) % 7)
    result = []
    while True:
        sent_at = datetime(day.year, day.month, day.day, 10, tzinfo=JERUSALEM).astimezone(timezone.utc)
        if sent_at > now:
            return result
        if sent_at < start:  # the window opened on a Tuesday after ten
            day += timedelta(days=7)
            continue
        name, subject, category = _theme(rng, day)
        campaign_id = f"CMP-{day:%Y%m%d}"
        result.append({
            "id": campaign_id, "name": f"{name} {day:%d.%m.%Y}", "subject": subject, "sent_at": sent_at,
            "category": category, "url": f"{SHOP_URL}/c/{category}?utm_source=email&utm_campaign={campaign_id}",
        })
        day += timedelta(days=7)


def _theme(rng: random.Random, day: date) -> tuple[str, str, str]:
    for holiday, theme in ((_rosh_hashana(day.year), _ROSH_HASHANA), (_pesach(day.year), _PESACH)):
        if 0 <= (holiday - day).days <= 21:
            return theme
    return rng.choice(_WINTER if day.month in (11, 12, 1, 2) else _EVERGREEN)


# --- Events --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Behaviour:
    """How one type of contact behaves: browsing sessions per 30 days, and shares of emails and sessions."""

    sessions: float
    open_rate: float
    click_rate: float  # of opened emails
    cart_rate: float  # of browsing sessions that leave a cart behind


_BEHAVIOUR = {
    "loyal": _Behaviour(sessions=1.5, open_rate=0.55, click_rate=0.30, cart_rate=0.10),
    "occasional": _Behaviour(sessions=0.7, open_rate=0.28, click_rate=0.18, cart_rate=0.15),
    "dormant": _Behaviour(sessions=1.0, open_rate=0.35, click_rate=0.12, cart_rate=0.15),
    "new": _Behaviour(sessions=3.0, open_rate=0.50, click_rate=0.25, cart_rate=0.25),
    "prospect": _Behaviour(sessions=0.6, open_rate=0.18, click_rate=0.12, cart_rate=0.25),
}
_DORMANT_OPEN_RATE = 0.02  # what is left a month after a dormant customer's last visit
_RECEIVE_RATE = 0.9  # share of weekly campaigns a consenting contact gets at the natural activity level
_MIN_ACTIVITY = 0.001
_CATEGORY_WEIGHTS = {"absorbent": 25, "vitamins": 25, "walkers": 8, "clothing": 15, "bath": 12, "devices": 15}
_PRODUCTS = catalogue()
_BY_CATEGORY = {key: [p for p in _PRODUCTS if p.category == key] for key in CATEGORIES}
_CONSUMABLES = [p for p in _PRODUCTS if p.consumable]
# A loyal customer's main staple runs out monthly: pads, wipes, B12, multivitamins, protein.
_MONTHLY = [p for p in _CONSUMABLES if p.usage_days == 30 and p.category in ("absorbent", "vitamins")]
_INFO_PAGES = (
    ("/", "דף הבית"), ("/shipping", "משלוחים והחזרות"), ("/contact", "צור קשר"),
    ("/blog/fall-prevention", "מניעת נפילות בבית: המדריך המלא"),
)


@lru_cache(maxsize=8)
def _categories(clothing_factor: float, consumables: bool) -> _Weighted[str]:
    weights = dict(_CATEGORY_WEIGHTS, clothing=_CATEGORY_WEIGHTS["clothing"] * clothing_factor)
    return _Weighted([(key, weight) for key, weight in weights.items()
                      if consumables or key not in ("absorbent", "vitamins")])


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _line(product: Product, quantity: int) -> dict[str, Any]:
    return {"sku": product.sku, "name": product.name, "category": product.category, "price": product.price,
            "quantity": quantity}


def _total(lines: Sequence[tuple[Product, int]]) -> float:
    return round(sum(product.price * quantity for product, quantity in lines), 2)


def _local_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=JERUSALEM).astimezone(timezone.utc)


@dataclass(frozen=True)
class _Order:
    ts: datetime
    lines: list[tuple[Product, int]]


@dataclass(frozen=True)
class _World:
    """What every contact's history shares in one run."""

    seed: int
    now: datetime
    campaigns: list[dict[str, Any]]
    sent_times: list[datetime]  # of the campaigns, for finding the first one a contact was around for


def _world(seed: int, now: datetime) -> _World:
    sent = campaigns(seed, now)
    return _World(seed, now, sent, [campaign["sent_at"] for campaign in sent])


class _History:
    """One contact's year at the shop. It is small, so it is built in memory, sorted, then handed out."""

    def __init__(self, contact: dict[str, Any], index: int, activity: float, world: _World) -> None:
        self.contact, self.world, self.activity = contact, world, activity
        self.rng = random.Random(f"events/{world.seed}/{index}")
        self.behaviour = _BEHAVIOUR[contact["customer_type"]]
        self.hours = _ELDER_HOURS if contact["role"] == "customer" else _ADULT_HOURS
        self.number = index + 1
        self.items: list[tuple[datetime, int, str, dict[str, Any]]] = []
        self.owned: set[str] = set()  # durable goods are bought once
        self.carts = 0
        # Purchases are planned before anything that `activity` scales, so scaling never changes them.
        orders, active_until = self._plan_orders()
        for number, order in enumerate(orders, 1):
            self._checkout(order, f"ORD-{self.number:07d}-{number:02d}")
        self._browsing(active_until)
        if contact["email"] and contact["consent_email"]:
            engaged_until = active_until + timedelta(days=30) if contact["customer_type"] == "dormant" else world.now
            self._emails(engaged_until)

    def events(self) -> Iterator[dict[str, Any]]:
        external_id = self.contact["external_id"]
        self.items.sort()
        for number, (ts, _, kind, properties) in enumerate(self.items):
            yield {"type": kind, "contact": {"external_id": external_id}, "ts": ts, "properties": properties,
                   "idempotency_key": f"demo-{self.world.seed}-{external_id}-{number}"}

    def _add(self, ts: datetime, kind: str, properties: dict[str, Any]) -> None:
        if ts <= self.world.now:
            self.items.append((ts, len(self.items), kind, properties))

    # Purchases -----------------------------------------------------------------------------------

    def _plan_orders(self) -> tuple[list[_Order], datetime]:
        """Orders by customer type, and the moment the contact stops visiting the shop."""
        rng, now, kind = self.rng, self.world.now, self.contact["customer_type"]
        created = self.contact["created_at"]
        first = created + timedelta(seconds=rng.randrange(60, 900))  # customers sign up at their first checkout
        if kind == "prospect":
            return [], now
        if kind == "loyal":
            return sorted(self._replenishment(first) + self._holiday_orders(created), key=lambda o: o.ts), now
        if kind == "new":
            return ([_Order(first, self._basket(first, rng.randint(1, 2)))] if rng.random() < 0.6 else []), now
        if kind == "occasional":
            orders = [_Order(first, self._basket(first, rng.randint(1, 3)))]
            second = _when(rng, first, now, self.hours) if rng.random() < 0.4 else None
            if second:
                orders.append(_Order(second, self._basket(second, rng.randint(1, 2))))
            return orders, now
        active_until = created + timedelta(days=rng.uniform(45, 100))  # dormant: a short spell, then silence
        orders = [_Order(first, self._basket(first, rng.randint(1, 2)))]
        for _ in range(rng.randint(0, 2)):
            ts = _when(rng, first, active_until, self.hours)
            if ts:
                orders.append(_Order(ts, self._basket(ts, 1)))
        return sorted(orders, key=lambda o: o.ts), active_until

    def _replenishment(self, first: datetime) -> list[_Order]:
        """A loyal customer reorders each staple when the last pack runs out, bundling what is nearly due."""
        rng, now = self.rng, self.world.now
        main = rng.choice(_MONTHLY)
        staples = [main] + rng.sample([p for p in _CONSUMABLES if p is not main], rng.randint(0, 2))
        quantity = {p.sku: 2 if rng.random() < 0.25 else 1 for p in staples}
        lasts = {p.sku: p.usage_days * quantity[p.sku] for p in staples if p.usage_days}
        due = {p.sku: first for p in staples}
        orders: list[_Order] = []
        while True:
            next_due = min(due.values())
            day = next_due.astimezone(JERUSALEM).date()
            ts = _local_moment(rng, day, self.hours) if orders else first
            if ts > now:
                return orders
            lines = [(p, quantity[p.sku]) for p in staples if due[p.sku] <= next_due + timedelta(days=5)]
            for product, _ in lines:
                due[product.sku] = ts + timedelta(days=lasts[product.sku] * rng.uniform(0.9, 1.1))
            if rng.random() < 0.12 * _holiday_factor(day):
                lines += self._basket(ts, 1, consumables=False)
            orders.append(_Order(ts, lines))

    def _holiday_orders(self, created: datetime) -> list[_Order]:
        """Gifts for the parents before Rosh Hashana and Pesach."""
        orders = []
        for holiday in _holidays(created.date(), self.world.now.date()):
            if self.rng.random() >= 0.5:
                continue
            start = max(created, _local_midnight(holiday - timedelta(days=21)))
            ts = _when(self.rng, start, _local_midnight(holiday), self.hours, seasonal=False)
            lines = self._basket(ts, self.rng.randint(1, 2), consumables=False) if ts else []
            if ts and lines:
                orders.append(_Order(ts, lines))
        return orders

    def _basket(self, ts: datetime, size: int, consumables: bool = True) -> list[tuple[Product, int]]:
        day = ts.astimezone(JERUSALEM).date()
        categories = _categories(_clothing_factor(day), consumables)
        lines: list[tuple[Product, int]] = []
        for _ in range(size * 4):
            if len(lines) == size:
                break
            product = self.rng.choice(_BY_CATEGORY[categories.pick(self.rng)])
            if (product.consumable and not consumables) or product.sku in self.owned:
                continue
            if not product.consumable:
                self.owned.add(product.sku)
            lines.append((product, self.rng.choice((1, 1, 1, 2)) if product.consumable else 1))
        return lines

    def _checkout(self, order: _Order, order_id: str) -> None:
        if not order.lines:
            return
        rng, ts = self.rng, order.ts
        for _ in range(_poisson(rng, 2 * self.activity)):
            product = rng.choice(order.lines)[0]
            self._add(ts, "page_view", {"url": f"{SHOP_URL}/p/{product.sku.lower()}", "title": product.name})
            ts += timedelta(seconds=rng.randint(20, 120))
        cart_id = self._next_cart()
        for end, (product, quantity) in enumerate(order.lines, 1):
            self._add(ts, "cart_updated", self._cart_change(cart_id, product, quantity, order.lines[:end]))
            ts += timedelta(seconds=rng.randint(20, 120))
        ts += timedelta(seconds=rng.randint(60, 400))
        self._add(ts, "purchase", {"order_id": order_id, "items": [_line(p, q) for p, q in order.lines],
                                   "total": _total(order.lines), "currency": "ILS"})

    # Browsing ------------------------------------------------------------------------------------

    def _browsing(self, until: datetime) -> None:
        created = self.contact["created_at"]
        months = (until - created).total_seconds() / (30 * 86400)
        for _ in range(_poisson(self.rng, self.behaviour.sessions * months * self.activity)):
            ts = _when(self.rng, created, until, self.hours)
            if ts:
                self._session(ts)

    def _session(self, ts: datetime) -> None:
        rng, viewed = self.rng, []
        for _ in range(1 + _poisson(rng, 2.0)):
            roll = rng.random()
            if roll < 0.5:
                product = rng.choice(_PRODUCTS)
                viewed.append(product)
                path, title = f"/p/{product.sku.lower()}", product.name
            elif roll < 0.85:
                category = rng.choice(_PRODUCTS).category
                path, title = f"/c/{category}", CATEGORIES[category]
            else:
                path, title = rng.choice(_INFO_PAGES)
            self._add(ts, "page_view", {"url": f"{SHOP_URL}{path}", "title": title})
            ts += timedelta(seconds=rng.randint(15, 180))
        if not viewed or rng.random() >= self.behaviour.cart_rate:
            return
        cart_id = self._next_cart()
        lines = [(product, 1) for product in list(dict.fromkeys(viewed))[: rng.randint(1, 2)]]
        for end, (product, quantity) in enumerate(lines, 1):
            self._add(ts, "cart_updated", self._cart_change(cart_id, product, quantity, lines[:end]))
            ts += timedelta(seconds=rng.randint(20, 90))
        self._add(ts + timedelta(seconds=rng.randint(3600, 3 * 3600)), "cart_abandoned", {
            "cart_id": cart_id, "items": [_line(p, q) for p, q in lines], "total": _total(lines), "currency": "ILS",
            "url": f"{SHOP_URL}/cart/{cart_id}",
        })

    def _next_cart(self) -> str:
        self.carts += 1
        return f"CART-{self.number:07d}-{self.carts:03d}"

    @staticmethod
    def _cart_change(cart_id: str, product: Product, quantity: int, cart: Sequence[tuple[Product, int]],
                     ) -> dict[str, Any]:
        return {"cart_id": cart_id, "sku": product.sku, "name": product.name, "quantity": quantity,
                "price": product.price, "cart_total": _total(cart), "items_count": len(cart), "currency": "ILS"}

    # Email ---------------------------------------------------------------------------------------

    def _emails(self, engaged_until: datetime) -> None:
        rng, behaviour = self.rng, self.behaviour
        receive = min(_RECEIVE_RATE, _RECEIVE_RATE * self.activity)
        first = bisect.bisect_right(self.world.sent_times, self.contact["created_at"])
        for campaign in self.world.campaigns[first:]:
            if rng.random() >= receive:
                continue
            sent = campaign["sent_at"] + timedelta(seconds=rng.randrange(900))  # a send takes a few minutes
            self._add(sent, "email_sent", {"campaign_id": campaign["id"]})
            open_rate = behaviour.open_rate if sent <= engaged_until else _DORMANT_OPEN_RATE
            if rng.random() >= open_rate:
                continue
            opened = _observe_shabbat(rng, sent + timedelta(seconds=60 + int(rng.expovariate(1 / 14400))))
            self._add(opened, "email_opened", {"campaign_id": campaign["id"]})
            if rng.random() >= behaviour.click_rate:
                continue
            clicked = opened + timedelta(seconds=rng.randint(5, 300))
            self._add(clicked, "email_clicked", {"campaign_id": campaign["id"], "url": campaign["url"]})
            self._add(clicked + timedelta(seconds=2), "page_view",
                      {"url": campaign["url"], "title": CATEGORIES[campaign["category"]]})


def events(n_contacts: int, n_events: int | None = None, seed: int = 42, now: datetime | None = None,
           ) -> Iterator[dict[str, Any]]:
    """Stream a year of shop events for the contacts of `contacts(n_contacts, seed, now)`, contact by contact.

    With `n_events`, every contact's activity level is tuned (on a sample, before the first event) so
    that about that many events come out (within 10%); purchases keep their rhythm, browsing and email
    scale. Fewer than about six events per contact is out of reach and raises `ValidationError`.
    """
    now = _utc(now)
    people = contacts(n_contacts, seed, now)
    if n_events is not None and n_events < 1:
        raise ValidationError("must be a positive number of events, or None for the natural activity", "n_events")
    world = _world(seed, now)
    activity = 1.0 if n_events is None or n_contacts == 0 else _calibrate(n_contacts, n_events, world)
    return _event_stream(people, activity, world)


def _event_stream(people: Iterator[dict[str, Any]], activity: float, world: _World) -> Iterator[dict[str, Any]]:
    for index, contact in enumerate(people):
        yield from _History(contact, index, activity, world).events()


def _calibrate(n_contacts: int, n_events: int, world: _World) -> float:
    """The activity level at which the first contacts average n_events / n_contacts events each.

    The count grows almost linearly with activity, so a few secant steps get within 3%.
    """
    target = n_events / n_contacts
    size = min(n_contacts, 2000, max(200, int(100_000 / max(target, 1))))

    def per_contact(activity: float) -> float:
        people = _contact_stream(size, world.seed, world.now)
        return sum(len(_History(c, i, activity, world).items) for i, c in enumerate(people)) / size

    tried = [(1.0, per_contact(1.0))]  # (activity, events per contact)
    while abs(tried[-1][1] - target) > 0.03 * target and len(tried) < 8:
        activity, produced = tried[-1]
        slope = (produced - tried[-2][1]) / (activity - tried[-2][0]) if len(tried) > 1 else 0.0
        guess = activity + (target - produced) / slope if slope > 0 else activity * target / max(produced, 1e-9)
        guess = max(guess, _MIN_ACTIVITY)
        if guess == activity:  # already at the floor: fewer events are out of reach
            break
        tried.append((guess, per_contact(guess)))
    activity, produced = min(tried, key=lambda point: abs(point[1] - target))
    if abs(produced - target) <= 0.1 * target:
        return activity
    raise ValidationError(
        "{events:,} events for {contacts:,} contacts is out of reach: the closest this store gets is about "
        "{closest:,.0f}, as purchases and their carts alone take five or six per contact", "n_events",
        events=n_events, contacts=n_contacts, closest=produced * n_contacts)
