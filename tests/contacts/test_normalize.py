from datetime import date

import pytest

from kesher.contacts.normalize import normalize_email, normalize_phone, parse_date
from kesher.errors import ValidationError


@pytest.mark.parametrize("raw, e164", [
    ("050-1234567", "+972501234567"),  # a block the allocation tables do not list yet
    ("052 765 4321", "+972527654321"),
    ("+972-54-123-4500", "+972541234500"),
    (501234567, "+972501234567"),  # Excel dropped the leading zero
    (501234567.0, "+972501234567"),
    ("03-1234567", "+97231234567"),
    ("+44 7700 900123", "+447700900123"),
    ("", None),
])
def test_phones_become_e164(raw, e164):
    assert normalize_phone(raw) == e164


@pytest.mark.parametrize("raw", ["12", "abc", "0000000000", "1111111111", "1-800-123", "0501234567890"])
def test_impossible_phones_are_refused(raw):
    with pytest.raises(ValidationError) as err:
        normalize_phone(raw)
    assert err.value.field == "phone"


@pytest.mark.parametrize("raw, clean", [
    ("Dana.Cohen@Walla.CO.IL", "dana.cohen@walla.co.il"),
    ("  x@example.com ", "x@example.com"),
    ("ש@example.com", "ש@example.com"),
])
def test_emails_are_normalised(raw, clean):
    assert normalize_email(raw) == clean


@pytest.mark.parametrize("raw", ["a@b", "no-at-sign", "Dana <d@example.com>", "a" * 65 + "@x.com",
                                 "a@" + "b" * 250 + ".com", "x@exa mple.com"])
def test_bad_emails_are_refused(raw):
    with pytest.raises(ValidationError) as err:
        normalize_email(raw)
    assert err.value.field == "email"


def test_an_email_error_says_why_in_hebrew_too() -> None:
    """email-validator speaks English only: its common reasons become Kesher's own, which the catalogue translates."""
    with pytest.raises(ValidationError) as caught:
        normalize_email("yossi@example")
    assert caught.value.message == "'yossi@example' is not a valid email address: the part after @ needs a dot, " \
                                   "as in example.com"
    assert caught.value.text("he") == "'yossi@example' אינו כתובת אימייל תקינה: אחרי ה-@ צריכה להופיע נקודה, " \
                                      "כמו ב-example.com"
    for raw in ("a..b@x.com", "a@x.com.", ".a@x.com", "a@x_y.com", "a@-x.com"):
        with pytest.raises(ValidationError) as caught:
            normalize_email(raw)
        assert caught.value.params.keys() == {"value"}, raw  # a reason of Kesher's own, not the library's text


@pytest.mark.parametrize("raw, day", [
    ("12/03/1950", date(1950, 3, 12)), ("1.2.50", date(1950, 2, 1)), ("2026-11-23", date(2026, 11, 23)),
    ("1950/3/12", date(1950, 3, 12)), ("12/3/05", date(2005, 3, 12)),
])
def test_dates_are_read_day_first(raw, day):
    assert parse_date(raw, "birthday") == day


@pytest.mark.parametrize("raw", ["31/02/1990", "abc", "13/13/2000", "2026-13-01"])
def test_bad_dates_name_the_field(raw):
    with pytest.raises(ValidationError) as err:
        parse_date(raw, "birthday")
    assert err.value.field == "birthday"
