"""The demo store generator: reproducible, believable enough to demo with, and streaming."""

from __future__ import annotations

import re
import statistics
import sys
import tracemalloc
from collections import Counter, defaultdict
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
import pytest

from kesher.demo.generator import CATEGORIES, DEFAULT_NOW, campaigns, catalogue, contacts, events
from kesher.demo.names import ADULT_FEMALE, ADULT_MALE, ELDER_FEMALE, ELDER_MALE, FEMALE_FIRST_NAMES, MALE_FIRST_NAMES
from kesher.errors import ValidationError

HEBREW = re.compile(r"^[\u05d0-\u05ea][\u05d0-\u05ea' -]*$")
JERUSALEM = ZoneInfo("Asia/Jerusalem")
CONTACT_FIELDS = {
    "external_id", "email", "phone", "first_name", "last_name", "gender", "birthday", "city", "language",
    "created_at", "customer_type", "role", "consent_email", "consent_sms", "consent_whatsapp",
}
EVENT_TYPES = {"purchase", "cart_updated", "cart_abandoned", "page_view", "email_sent", "email_opened", "email_clicked"}
PRODUCTS = {product.sku: product for product in catalogue()}


@pytest.fixture(scope="module")
def people() -> list[dict[str, Any]]:
    return list(contacts(2000))


@pytest.fixture(scope="module")
def history() -> list[dict[str, Any]]:
    return list(events(500, n_events=20_000))


@pytest.fixture(scope="module")
def kinds() -> dict[str, str]:
    return {contact["external_id"]: contact["customer_type"] for contact in contacts(500)}


def _purchases_by_contact(history: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    purchases = defaultdict(list)
    for event in history:
        if event["type"] == "purchase":
            purchases[event["contact"]["external_id"]].append(event)
    return purchases


# Determinism ------------------------------------------------------------------------------------

def test_same_seed_gives_identical_output_and_another_seed_does_not() -> None:
    assert repr(list(contacts(300, seed=7))) == repr(list(contacts(300, seed=7)))
    assert repr(list(events(40, seed=7))) == repr(list(events(40, seed=7)))
    assert list(contacts(50, seed=7)) != list(contacts(50, seed=8))
    assert list(events(20, seed=7)) != list(events(20, seed=8))
    assert campaigns(seed=7) == campaigns(seed=7)


def test_a_bigger_run_extends_a_smaller_one() -> None:
    assert list(contacts(500))[:200] == list(contacts(200))


def test_now_moves_the_whole_year() -> None:
    later = DEFAULT_NOW + timedelta(days=100)
    for event in events(30, now=later):
        assert later - timedelta(days=365) <= event["ts"] <= later
    with pytest.raises(ValidationError):
        contacts(10, now=later.replace(tzinfo=None))


# Contacts ---------------------------------------------------------------------------------------

def test_contacts_have_exactly_the_import_fields(people: list[dict[str, Any]]) -> None:
    assert all(set(contact) == CONTACT_FIELDS for contact in people)
    assert people[0]["external_id"] == "C0000001"
    assert len({contact["external_id"] for contact in people}) == len(people)


def test_emails_and_phones_are_unique_valid_and_someone_is_always_reachable(people: list[dict[str, Any]]) -> None:
    emails = [c["email"] for c in people if c["email"]]
    phones = [c["phone"] for c in people if c["phone"]]
    assert len(set(emails)) == len(emails) and len(set(phones)) == len(phones)
    assert all(re.fullmatch(r"[a-z0-9._]+@[a-z0-9.]+\.[a-z]+", email) for email in emails)
    for phone in phones:
        number = phonenumbers.parse(phone)
        assert re.fullmatch(r"\+9725\d{8}", phone)
        assert phonenumbers.is_valid_number(number) and phonenumbers.region_code_for_number(number) == "IL"
        assert phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.MOBILE
    assert all(c["email"] or c["phone"] for c in people)
    assert 0.03 < sum(c["email"] is None for c in people) / len(people) < 0.07
    assert 0.07 < sum(c["phone"] is None for c in people) / len(people) < 0.13


def test_names_are_hebrew_and_gender_follows_the_first_name(people: list[dict[str, Any]]) -> None:
    assert len(FEMALE_FIRST_NAMES | MALE_FIRST_NAMES) >= 60 and not FEMALE_FIRST_NAMES & MALE_FIRST_NAMES
    for contact in people:
        assert HEBREW.match(contact["first_name"]) and HEBREW.match(contact["last_name"]) and HEBREW.match(contact["city"])
        names = FEMALE_FIRST_NAMES if contact["gender"] == "female" else MALE_FIRST_NAMES
        assert contact["first_name"] in names
    assert len({c["last_name"] for c in people}) >= 50
    assert Counter(c["city"] for c in people).most_common(1)[0][0] == "ירושלים"


def test_email_spellings_are_plain_latin_ending_in_a_letter() -> None:
    # Email uniqueness rests on this: name letters, then the contact number's digits.
    for _, latin in ELDER_FEMALE + ELDER_MALE + ADULT_FEMALE + ADULT_MALE:
        assert re.fullmatch(r"[a-z]+", latin)


def test_customer_types_roles_and_ages_have_believable_shares(people: list[dict[str, Any]]) -> None:
    shares = Counter(c["customer_type"] for c in people)
    expected = {"loyal": 0.12, "occasional": 0.30, "dormant": 0.25, "new": 0.08, "prospect": 0.25}
    for kind, share in expected.items():
        assert abs(shares[kind] / len(people) - share) < 0.03, kind
    assert {c["role"] for c in people} == {"customer", "family", "caregiver"}
    assert 0.05 < sum(c["language"] == "en" for c in people) / len(people) < 0.11
    today = DEFAULT_NOW.date()
    for contact in people:
        age = (today - contact["birthday"]).days / 365.2425
        assert (65 <= age < 96) if contact["role"] == "customer" else (35 <= age < 65)


def test_signups_fall_in_the_year_and_new_contacts_in_the_last_month(people: list[dict[str, Any]]) -> None:
    start = DEFAULT_NOW - timedelta(days=365)
    for contact in people:
        assert contact["created_at"].tzinfo is not None and start <= contact["created_at"] <= DEFAULT_NOW
        if contact["customer_type"] == "new":
            assert contact["created_at"] >= DEFAULT_NOW - timedelta(days=30)
        assert not contact["consent_email"] or contact["email"]
        assert not (contact["consent_sms"] or contact["consent_whatsapp"]) or contact["phone"]
    assert sum(c["consent_email"] for c in people if c["email"]) / sum(1 for c in people if c["email"]) > 0.8


def test_contacts_stream_in_flat_memory() -> None:
    # 200,000 contacts held in a list would add millions of blocks; a stream stays level.
    stream = contacts(200_000)
    for _ in zip(range(1_000), stream):
        pass
    baseline, highest = sys.getallocatedblocks(), 0
    for count, _ in enumerate(stream, 1):
        if count % 10_000 == 0:
            highest = max(highest, sys.getallocatedblocks() - baseline)
    assert count == 199_000
    assert highest < 20_000


def test_events_stream_under_a_small_tracemalloc_peak() -> None:
    tracemalloc.start()
    try:
        count = sum(1 for _ in events(300, n_events=12_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count > 10_000
    assert peak < 2_000_000  # the 12,000 event dicts alone would take several megabytes


# Catalogue and campaigns ------------------------------------------------------------------------

def test_catalogue_is_a_believable_shop() -> None:
    products = catalogue()
    assert 35 <= len(products) <= 45 and len(PRODUCTS) == len(products)
    assert {p.category for p in products} == set(CATEGORIES)
    for product in products:
        assert re.match(r"[\u05d0-\u05ea]", product.name)
        assert product.price > 0 and 0 < product.margin < 1
        assert product.consumable == (product.usage_days is not None)
    assert all(p.consumable for p in products if p.category == "absorbent")
    assert sum(p.usage_days == 30 for p in products if p.category == "absorbent") >= 5
    assert {p.usage_days for p in products if p.category == "vitamins"} == {30, 60, 90}
    assert all(p.technical or p.sku == "WLK-007" for p in products if p.category == "walkers")
    assert not any(p.consumable for p in products if p.category in ("walkers", "clothing"))


def test_campaigns_are_weekly_and_in_hebrew() -> None:
    sent = campaigns()
    assert 51 <= len(sent) <= 53 and len({c["id"] for c in sent}) == len(sent)
    for earlier, later in zip(sent, sent[1:]):
        assert later["sent_at"] - earlier["sent_at"] in (timedelta(days=7), timedelta(days=7, hours=1),
                                                        timedelta(days=7, hours=-1))
    assert all(re.match(r"[\u05d0-\u05ea]", c["subject"]) for c in sent)
    assert all(c["sent_at"].astimezone(JERUSALEM).weekday() == 1 for c in sent)  # Tuesdays
    # Holiday campaigns go out in the three weeks before Rosh Hashana 5787 and Pesach 5786.
    for holiday, name in ((date(2026, 9, 12), "ראש השנה"), (date(2026, 4, 2), "פסח")):
        days_before = [(holiday - c["sent_at"].date()).days for c in sent if name in c["name"]]
        assert len(days_before) == 3 and all(0 <= days <= 21 for days in days_before)


# Events -----------------------------------------------------------------------------------------

def test_event_count_follows_n_events(history: list[dict[str, Any]]) -> None:
    assert abs(len(history) - 20_000) <= 2_000
    assert {event["type"] for event in history} == EVENT_TYPES
    with pytest.raises(ValidationError):
        events(2000, n_events=2000)


def test_events_are_well_formed_and_ordered(history: list[dict[str, Any]]) -> None:
    start, seen, last = DEFAULT_NOW - timedelta(days=365), set(), {}
    keys = [event["idempotency_key"] for event in history]
    assert len(set(keys)) == len(keys)
    campaign_ids = {c["id"] for c in campaigns()}
    for event in history:
        assert set(event) == {"type", "contact", "ts", "properties", "idempotency_key"}
        who, ts = event["contact"]["external_id"], event["ts"]
        assert ts.utcoffset() == timedelta(0) and start <= ts <= DEFAULT_NOW
        if who not in last:
            assert who not in seen  # the stream is grouped by contact
            seen.add(who)
            last.clear()
        assert ts >= last.get(who, ts)
        last[who] = ts
        if event["type"].startswith("email_"):
            assert event["properties"]["campaign_id"] in campaign_ids
        if event["type"] == "page_view":
            assert event["properties"]["url"].startswith("https://") and event["properties"]["title"]


def test_purchase_totals_are_the_sum_of_their_items(history: list[dict[str, Any]]) -> None:
    purchases = [e for e in history if e["type"] == "purchase"]
    assert len(purchases) > 300
    for purchase in purchases:
        properties = purchase["properties"]
        assert properties["currency"] == "ILS" and properties["items"]
        expected = sum(item["price"] * item["quantity"] for item in properties["items"])
        assert properties["total"] == pytest.approx(round(expected, 2), abs=0.001)
        for item in properties["items"]:
            assert PRODUCTS[item["sku"]].price == item["price"] and PRODUCTS[item["sku"]].category == item["category"]


def test_loyal_customers_reorder_consumables_when_they_run_out(
    history: list[dict[str, Any]], kinds: dict[str, str],
) -> None:
    ratios = []
    for who, purchases in _purchases_by_contact(history).items():
        if kinds[who] != "loyal":
            continue
        bought: dict[str, list[tuple[Any, int]]] = defaultdict(list)
        for purchase in purchases:
            for item in purchase["properties"]["items"]:
                bought[item["sku"]].append((purchase["ts"], item["quantity"]))
        for sku, times in bought.items():
            product = PRODUCTS[sku]
            if product.consumable and len(times) >= 3:
                for (earlier, quantity), (later, _) in zip(times, times[1:]):
                    ratios.append((later - earlier) / timedelta(days=product.usage_days * quantity))
    assert len(ratios) > 100
    assert all(0.6 < ratio < 1.4 for ratio in ratios)
    assert 0.9 < statistics.median(ratios) < 1.1


def test_durable_goods_like_walkers_are_bought_once(history: list[dict[str, Any]]) -> None:
    walkers = 0
    for purchases in _purchases_by_contact(history).values():
        durable = Counter(item["sku"] for p in purchases for item in p["properties"]["items"]
                          if not PRODUCTS[item["sku"]].consumable)
        assert all(count == 1 for count in durable.values())
        walkers += sum(count for sku, count in durable.items() if PRODUCTS[sku].category == "walkers")
    assert walkers > 0


def test_customer_types_behave_as_named(history: list[dict[str, Any]], kinds: dict[str, str]) -> None:
    purchases = _purchases_by_contact(history)
    assert not any(kinds[who] == "prospect" for who in purchases)
    assert all(len(purchases[who]) <= 2 for who, kind in kinds.items() if kind == "occasional")
    loyal = [len(purchases[who]) for who, kind in kinds.items() if kind == "loyal"]
    assert statistics.mean(loyal) >= 5
    quiet_since = DEFAULT_NOW - timedelta(days=110)  # dormant: last visit 140+ days ago, opens stop 30 days on
    opens: Counter[str] = Counter()
    for event in history:
        kind = kinds[event["contact"]["external_id"]]
        if kind == "dormant" and event["ts"] > quiet_since:
            assert event["type"] in ("email_sent", "email_opened", "email_clicked", "page_view")
            opens[event["type"]] += 1
        if kind == "new":
            assert event["ts"] >= DEFAULT_NOW - timedelta(days=31)
    assert opens["email_opened"] < 0.05 * opens["email_sent"]


def test_shabbat_is_quiet_and_holidays_and_winter_are_busy(history: list[dict[str, Any]]) -> None:
    purchases = [e for e in history if e["type"] == "purchase"]
    local = [p["ts"].astimezone(JERUSALEM) for p in purchases]
    on_shabbat = sum((t.weekday() == 4 and t.hour >= 16) or (t.weekday() == 5 and t.hour < 19) for t in local)
    assert on_shabbat / len(purchases) < 0.5 * 27 / 168  # Shabbat is 27 of the week's 168 hours
    holidays = (date(2026, 9, 12), date(2026, 4, 2))  # Rosh Hashana and Pesach in the default year
    before_holiday = sum(any(0 <= (h - t.date()).days <= 21 for h in holidays) for t in local)
    assert before_holiday / len(purchases) > 1.15 * 44 / 365
    clothing: dict[bool, list[bool]] = defaultdict(list)
    for purchase, t in zip(purchases, local):
        if t.month in (11, 12, 1, 2, 6, 7, 8):
            clothing[t.month in (11, 12, 1, 2)] += [i["category"] == "clothing" for i in purchase["properties"]["items"]]
    assert statistics.mean(clothing[True]) > 2 * statistics.mean(clothing[False])


def test_email_engagement_depends_on_customer_type(history: list[dict[str, Any]], kinds: dict[str, str]) -> None:
    sent: Counter[str] = Counter()
    opened: Counter[str] = Counter()
    for event in history:
        kind = kinds[event["contact"]["external_id"]]
        sent[kind] += event["type"] == "email_sent"
        opened[kind] += event["type"] == "email_opened"
    rate = {kind: opened[kind] / sent[kind] for kind in sent if sent[kind]}
    assert rate["loyal"] > rate["occasional"] > rate["dormant"]
    assert rate["loyal"] > rate["prospect"]
