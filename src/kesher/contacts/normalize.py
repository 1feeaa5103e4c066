"""Turn raw values (from a form, the API or a spreadsheet cell) into clean contact values.

Each function raises `ValidationError` naming the field, so every caller reports the same words.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from email_validator.syntax import validate_email_domain_name, validate_email_local_part

from kesher.errors import ValidationError

IDENTITY_FIELDS = ("external_id", "email", "phone")
TEXT_LIMITS = {"first_name": 200, "last_name": 200, "city": 200, "external_id": 255, "email": 320}
BUILTIN_FIELDS = (
    "email", "phone", "external_id", "first_name", "last_name", "gender", "birthday", "city", "language", "timezone",
)

_GENDERS = {
    "female": "female", "f": "female", "woman": "female", "נקבה": "female", "נ": "female", "אישה": "female",
    "אשה": "female", "male": "male", "m": "male", "man": "male", "זכר": "male", "ז": "male", "גבר": "male",
    "other": "other", "אחר": "other",
}
_LANGUAGES = {"he": "he", "heb": "he", "hebrew": "he", "עברית": "he", "en": "en", "eng": "en", "english": "en", "אנגלית": "en"}
MAX_EMAIL, MAX_LOCAL = 254, 64  # RFC 5321 limits
# Day first, as Israelis write dates: 12/03/1950, 12.3.1950, 12-03-50; or ISO 2026-11-23.
_DMY = re.compile(r"^(\d{1,2})[./-](\d{1,2})[./-](\d{2}|\d{4})$")
_YMD = re.compile(r"^(\d{4})[./-](\d{1,2})[./-](\d{1,2})$")
_SPACES = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def reject_control(text: str, field: str) -> str:
    """Control characters (a NUL from a broken export) are never meaningful, and PostgreSQL refuses NUL."""
    if _CONTROL.search(text):
        raise ValidationError("contains control characters (such as NUL); fix the value in the file", field)
    return text


def clean_text(value: Any, field: str) -> str | None:
    """Trimmed text or None for blank; too long is an error, not a silent cut."""
    if value is None:
        return None
    text = _SPACES.sub(" ", reject_control(str(value), field)).strip()
    if not text:
        return None
    limit = TEXT_LIMITS.get(field)
    if limit and len(text) > limit:
        raise ValidationError("is {length:,} characters long; at most {limit:,} are allowed", field,
                              length=len(text), limit=limit)
    return text


@lru_cache(maxsize=8192)
def _domain(domain: str) -> str:
    """The normalised domain; cached because a list repeats a few domains (gmail.com, walla.co.il)."""
    return validate_email_domain_name(domain, test_environment=False, globally_deliverable=True)["domain"]


# The commonest of email-validator's reasons, in words the catalogue translates (its own are English).
_EMAIL_REASONS = (
    ("The part after the @-sign is not valid. It should have a period.",
     "{value!r} is not a valid email address: the part after @ needs a dot, as in example.com"),
    ("An email address cannot have two periods in a row.",
     "{value!r} is not a valid email address: it has two dots in a row"),
    ("An email address cannot end with a period.", "{value!r} is not a valid email address: it ends with a dot"),
    ("An email address cannot start with a period.", "{value!r} is not a valid email address: it starts with a dot"),
    ("An email address cannot have a period immediately",
     "{value!r} is not a valid email address: a dot stands right before or after the @"),
    ("An email address cannot have a hyphen immediately after the @-sign",
     "{value!r} is not a valid email address: the part after @ starts with a hyphen"),
    ("The email address contains invalid characters before the @-sign",
     "{value!r} is not a valid email address: the part before @ has characters an address cannot have"),
    ("The part after the @-sign contains invalid characters",
     "{value!r} is not a valid email address: the part after @ has characters a domain cannot have"),
)


def _email_error(value: str, reason: str) -> ValidationError:
    for start, text in _EMAIL_REASONS:
        if reason.startswith(start):
            return ValidationError(text, "email", value=value)
    return ValidationError("{value!r} is not a valid email address: {reason}", "email", value=value, reason=reason)


def normalize_email(value: Any) -> str | None:
    text = clean_text(value, "email")
    if text is None:
        return None
    local, at, domain = text.rpartition("@")
    if not at or not local:
        raise ValidationError("{value!r} is not an email address (no @)", "email", value=text[:80])
    try:
        if any(ch in local for ch in '"<> ') or "@" in local:
            # Quoted local parts and display names take the library's full path.
            return validate_email(text, check_deliverability=False).normalized.lower()
        if len(local) > MAX_LOCAL:
            raise ValidationError("{value!r} is not a valid email address: the part before @ is longer than {limit} "
                                  "characters", "email", value=text[:80], limit=MAX_LOCAL)
        local = validate_email_local_part(local)["local_part"]
        address = f"{local}@{_domain(domain)}"
    except EmailNotValidError as exc:
        raise _email_error(text[:80], str(exc)) from None
    if len(address) > MAX_EMAIL:
        raise ValidationError("is longer than {limit} characters", "email", limit=MAX_EMAIL)
    return address.lower()


def normalize_phone(value: Any, region: str = "IL") -> str | None:
    """E.164, read in the workspace's region when the number has no country code."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if not text:
        return None
    if text.isdigit() and not text.startswith("0") and region == "IL" and len(text) == 9:
        text = "0" + text  # Excel drops the leading zero of Israeli numbers
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise ValidationError("{value!r} is not a phone number", "phone", value=text[:40]) from None
    if not (_real_prefix(number) or phonenumbers.is_valid_number(number)):
        raise ValidationError("{value!r} is not a valid phone number", "phone", value=text[:40])
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _real_prefix(number: phonenumbers.PhoneNumber) -> bool:
    """True for a number of the right length whose operator or area prefix exists.

    Allocation tables lag the operators (050-1xxxxxx is in use yet unlisted), so a number is
    accepted when the same prefix with a listed subscriber block is valid. The answer depends only
    on the country, the prefix and the length, so it is cached: a list repeats a few prefixes.
    """
    national = str(number.national_number)
    return len(national) >= 8 and _prefix_ok(number.country_code, national[:-7], len(national))


@lru_cache(maxsize=4096)
def _prefix_ok(country_code: int, prefix: str, length: int) -> bool:
    probe = phonenumbers.PhoneNumber(country_code=country_code, national_number=int(prefix + "2345678"))
    if len(str(probe.national_number)) != length:
        return False
    return (phonenumbers.is_possible_number_with_reason(probe) == phonenumbers.ValidationResult.IS_POSSIBLE
            and phonenumbers.is_valid_number(probe))


def normalize_gender(value: Any) -> str | None:
    text = clean_text(value, "gender")
    if text is None:
        return None
    gender = _GENDERS.get(text.lower())
    if gender is None:
        raise ValidationError("{value!r} is not a gender; use female, male or other (נקבה, זכר, אחר)", "gender",
                              value=text[:40])
    return gender


def parse_date(value: Any, field: str) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    if not text:
        return None
    match = _YMD.match(text) or _DMY.match(text)
    try:
        if match is None:
            raise ValueError
        a, b, c = (int(g) for g in match.groups())
        if match.re is _YMD:
            return date(a, b, c)
        if c < 100:  # two-digit years: 00-29 are this century, the rest the last
            c += 2000 if c < 30 else 1900
        return date(c, b, a)
    except ValueError:
        raise ValidationError("{value!r} is not a date; use YYYY-MM-DD or DD/MM/YYYY", field, value=text[:40]) from None


def normalize_birthday(value: Any) -> date | None:
    birthday = parse_date(value, "birthday")
    if birthday is not None and not (date(1900, 1, 1) <= birthday <= date.today()):
        raise ValidationError("{value} is not a plausible birthday", "birthday", value=birthday.isoformat())
    return birthday


def normalize_language(value: Any) -> str | None:
    text = clean_text(value, "language")
    if text is None:
        return None
    language = _LANGUAGES.get(text.lower())
    if language is None:
        raise ValidationError("{value!r} is not a supported language; use he or en", "language", value=text[:20])
    return language


@lru_cache(maxsize=512)
def normalize_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError("{value!r} is not a known time zone (e.g. Asia/Jerusalem)", "timezone",
                              value=value[:60]) from None
    return value


def normalize_contact(raw: dict[str, Any], region: str = "IL") -> tuple[dict[str, Any], list[ValidationError]]:
    """Clean every built-in field of `raw` that is present; collect all problems, not just the first."""
    clean: dict[str, Any] = {}
    problems: list[ValidationError] = []
    for field in BUILTIN_FIELDS:
        if field not in raw:
            continue
        value = raw[field]
        try:
            if field == "email":
                clean[field] = normalize_email(value)
            elif field == "phone":
                clean[field] = normalize_phone(value, region)
            elif field == "gender":
                clean[field] = normalize_gender(value)
            elif field == "birthday":
                clean[field] = normalize_birthday(value)
            elif field == "language":
                clean[field] = normalize_language(value)
            elif field == "timezone":
                text = clean_text(value, field)
                clean[field] = normalize_timezone(text) if text else None
            else:
                clean[field] = clean_text(value, field)
        except ValidationError as exc:
            problems.append(exc)
    return clean, problems
