"""Hebrew and English texts through Babel catalogues (`src/kesher/locale/<lang>/LC_MESSAGES/messages.po`).

Message ids are English; the Hebrew catalogue translates them. Catalogues are compiled in memory
when first used, so there is no build step and no compiled file to keep in step with its source.
"""

from __future__ import annotations

import gettext
from contextvars import ContextVar
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
LANGUAGES = ("he", "en")
RTL = {"he"}
current_language: ContextVar[str] = ContextVar("current_language", default="he")


@lru_cache
def translations(language: str) -> gettext.NullTranslations:
    path = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    if not path.exists():
        return gettext.NullTranslations()
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=language)
    buffer = BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def _(message: str) -> str:
    """The message in the current request's language."""
    return translations(current_language.get()).gettext(message)


def translate(template: str, params: dict[str, Any] | None = None, language: str | None = None) -> str:
    """An English text with `{placeholders}` in `language` (else the current request's), filled from `params`."""
    text = translations(language or current_language.get()).gettext(template)
    return text.format(**params) if params else text


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(current_language.get()).ngettext(singular, plural, n)


def pick_language(requested: str | None, fallback: str = "he") -> str:
    return requested if requested in LANGUAGES else fallback


def direction(language: str) -> str:
    return "rtl" if language in RTL else "ltr"
