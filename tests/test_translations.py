"""Every text a user can see, in Hebrew and English: the UI's own, and every error's reason."""

from __future__ import annotations

import ast
import pickle
import re
import string
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po

from kesher.errors import Conflict, KesherError, NotFound, ValidationError
from kesher.web.i18n import LOCALE_DIR, current_language

SRC = Path(__file__).resolve().parents[1] / "src" / "kesher"
# Raising one of these marks its first argument as a message id, the way `_()` does.
ERRORS = ("KesherError", "ValidationError", "NotFound", "Conflict", "AuthError", "BodyTooLarge", "OriginNotAllowed")


def _msgids() -> set[str | tuple[str, str]]:
    method_map = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
    options = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n", "newstyle_gettext": "true"}}
    keywords = {**DEFAULT_KEYWORDS, **dict.fromkeys(ERRORS)}
    return {message for _f, _l, message, _c, _x in extract_from_dir(str(SRC), method_map, options, keywords)}


def _hebrew() -> Catalog:
    with (LOCALE_DIR / "he" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        return read_po(fh, locale="he")


def test_every_text_has_a_hebrew_translation() -> None:
    path = LOCALE_DIR / "he" / "LC_MESSAGES" / "messages.po"
    header = path.read_text(encoding="utf-8").split("\n\n")[0]
    assert '"Content-Type: text/plain; charset=UTF-8\\n"' in header
    assert '"Plural-Forms: nplurals=2; plural=(n != 1);\\n"' in header
    catalog = _hebrew()
    missing = []
    for msgid in _msgids():
        key = msgid[0] if isinstance(msgid, tuple) else msgid
        message = catalog.get(key)
        strings = message.string if message is not None else None
        if not strings or (isinstance(strings, tuple) and not all(strings)):
            missing.append(msgid)
    assert not missing, f"add Hebrew translations to locale/he/LC_MESSAGES/messages.po for: {missing}"
    assert len(_msgids()) > 100


def _placeholders(text: str) -> set[str]:
    return {name for _lit, name, _spec, _conv in string.Formatter().parse(text) if name is not None}


def test_each_translation_fills_the_same_placeholders() -> None:
    """A translation that names another placeholder would fail when shown; one that drops one would lose a fact."""
    wrong = []
    for message in _hebrew():
        if not message.id or not message.string:
            continue
        # A plural's forms together: a singular may say "one contact" in words where English writes the number.
        pairs = [(" ".join(message.id), " ".join(message.string))] if isinstance(message.id, tuple) \
            else [(message.id, message.string)]
        for english, hebrew in pairs:
            if "{" in english or "{" in hebrew:
                try:
                    same = _placeholders(english) == _placeholders(hebrew)
                except ValueError:
                    same = False
                if not same:
                    wrong.append(english)
            if set(re.findall(r"%\((\w+)\)", english)) != set(re.findall(r"%\((\w+)\)", hebrew)):
                wrong.append(english)
    assert not wrong, f"these translations name other placeholders than their English: {wrong}"


def _error_calls() -> list[tuple[Path, ast.Call]]:
    calls = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ERRORS and node.args:
                calls.append((path, node))
    return calls


def test_an_error_message_is_a_fixed_text_with_placeholders() -> None:
    """A text built with an f-string, `+` or `%` has no entry in the catalogue; `exc.message` passed on loses the
    parameters the translation needs (`exc.located(field)` keeps them)."""
    built = []
    for path, call in _error_calls():
        first = call.args[0]
        formatted = isinstance(first, ast.Call) and isinstance(first.func, ast.Attribute) and first.func.attr == "format"
        passed_on = isinstance(first, ast.Attribute) and first.attr == "message"
        if isinstance(first, ast.JoinedStr | ast.BinOp) or formatted or passed_on:
            built.append(f"{path.relative_to(SRC)}:{call.lineno}")
    assert not built, f"write these messages as fixed texts with {{placeholders}} and keyword arguments: {built}"


def test_an_error_speaks_the_readers_language_and_keeps_english_for_the_api() -> None:
    error = ValidationError("{value!r} is not a valid phone number", "phone", value="12")
    assert error.message == "'12' is not a valid phone number" and str(error) == f"phone: {error.message}"
    assert error.text("en") == error.message
    hebrew = error.text("he")
    assert "'12'" in hebrew and hebrew != error.message
    token = current_language.set("he")
    try:
        assert error.text() == hebrew
    finally:
        current_language.reset(token)


@pytest.mark.parametrize("kind", [ValidationError, NotFound, Conflict])
def test_an_error_keeps_its_kind_field_and_parameters_on_its_way_through_a_process_or_a_form(
        kind: type[KesherError]) -> None:
    error = kind("no contact {id}", "id", id=7)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is kind and (again.template, again.field, again.params) == ("no contact {id}", "id", {"id": 7})
    moved = error.located("contacts[3].id")
    assert type(moved) is kind and moved.field == "contacts[3].id" and moved.message == "no contact 7"
    assert moved.status == kind.status
