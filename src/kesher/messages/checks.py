"""Pre-send checks: what would keep a message out of the inbox, out of the reader's eye, or break the law.

Each finding is an `error` (the message may not be sent: `blocking`), a `warning` or an `advice`.
Its `message` is an English msgid with {placeholders}, translated where it is shown (`Finding.text`).

Israeli Communications Law, section 30A (amendment 40): an advertising message's subject starts
with "פרסומת", and the message names the sender, gives its address and a way to opt out.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import socket
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, Literal
from urllib.parse import urlsplit

from kesher.messages.render import Content, Rendered
from kesher.messages.spam_words import ENGLISH, HEBREW
from kesher.segments.service import N_
from kesher.web.i18n import translate

Level = Literal["error", "warning", "advice"]
SUBJECT_CHARACTERS = (25, 50)
SUBJECT_WORDS = (6, 10)
GMAIL_CLIPS_AT = 102 * 1024  # bytes of HTML
TEXT_SHARE_GOAL = 60  # percent of the message that is text (60:40 text to images)
TEXT_SHARE_ADVICE = 50  # below this, advise; below IMAGE_ONLY_SHARE, warn
IMAGE_ONLY_SHARE = 15
CHARACTER_AREA = 200  # square pixels a character of body text takes, to weigh text against images
DEFAULT_IMAGE = (600, 300)  # an image whose size is not given
LINK_TIMEOUT = 5.0  # seconds, for online link checks
LINK_CONCURRENCY = 8
MAX_LINKS_ONLINE = 50
AD_PREFIX = re.compile(r"^\s*פרסומת(?=$|[\s:\-–—])")
UNSUBSCRIBE_WORDS = re.compile(r"unsubscribe|opt[\s-]?out|הסר|להסרה|הסרה|הסירו", re.I)
_HEBREW_PREFIXES = "[והבלמשכ]{0,3}"


@dataclass(frozen=True)
class Finding:
    code: str
    level: Level
    message: str  # an English msgid with {placeholders}
    params: dict[str, Any] = dataclasses.field(default_factory=dict)  # `field` is taken below
    field: str = ""

    def text(self, language: str | None = None) -> str:
        """The message in `language`, or in the current request's language."""
        return translate(self.message, self.params, language)


def blocking(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that forbid sending."""
    return [f for f in findings if f.level == "error"]


# Reading the rendered HTML ------------------------------------------------------------------------


@dataclass
class _Anchor:
    href: str | None
    marked: str | None  # data-kesher: unsubscribe, preferences
    text: str = ""


class _Page(HTMLParser):
    """Links, images and visible text of a message; the layout's preheader and footer apart from the body."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[_Anchor] = []
        self.images: list[tuple[int, int]] = []
        self.body: list[str] = []
        self.all: list[str] = []
        self._open: list[_Anchor] = []
        self._hidden = 0  # inside head, style, script, title
        self._region = ""  # "preheader" or "footer" of the layout

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("head", "style", "script", "title"):
            self._hidden += 1
        elif tag == "a":
            anchor = _Anchor(values.get("href"), values.get("data-kesher"))
            self.anchors.append(anchor)
            self._open.append(anchor)
        elif tag == "img":
            self._image(_pixels(values.get("width")), _pixels(values.get("height")))

    def _image(self, width: int | None, height: int | None) -> None:
        if width is not None and height is not None and width <= 2 and height <= 2:
            return  # an open pixel, not content
        if width is None and height is None:
            width, height = DEFAULT_IMAGE
        elif width is None:
            width = 2 * height  # type: ignore[operator]
        elif height is None:
            height = width // 2
        self.images.append((width, height))  # type: ignore[arg-type]

    def handle_endtag(self, tag: str) -> None:
        if tag in ("head", "style", "script", "title"):
            self._hidden = max(0, self._hidden - 1)
        elif tag == "a" and self._open:
            self._open.pop()

    def handle_comment(self, data: str) -> None:
        if data in ("kesher:preheader", "kesher:footer"):
            self._region = data.removeprefix("kesher:")
        elif data in ("/kesher:preheader", "/kesher:footer"):
            self._region = ""

    def handle_data(self, data: str) -> None:
        if self._hidden or self._region == "preheader":
            return
        for anchor in self._open:
            anchor.text += data
        self.all.append(data)
        if not self._region:
            self.body.append(data)


def _pixels(value: str | None) -> int | None:
    match = re.match(r"\s*(\d+)\s*(px)?\s*$", value or "")
    return int(match.group(1)) if match else None


def _squeeze(text: str) -> str:
    return " ".join(text.split())


def _read(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


# The checks -----------------------------------------------------------------------------------------


def _spam_patterns() -> list[tuple[str, re.Pattern[str]]]:
    patterns = []
    for words, prefix in ((HEBREW, _HEBREW_PREFIXES), (ENGLISH, "")):
        for word in words:
            body = r"\s+".join(re.escape(part) for part in word.split())
            patterns.append((word, re.compile(rf"(?<!\w){prefix}{body}(?!\w)", re.I)))
    return patterns


_SPAM = _spam_patterns()


def spam_words(text: str) -> list[str]:
    """The listed words and phrases `text` holds, in the order of the lists."""
    return [word for word, pattern in _SPAM if pattern.search(text)]


def _subject(subject: str, advertising: bool) -> list[Finding]:
    found = []
    if not subject.strip():
        return [Finding("subject_missing", "error", N_("The message has no subject"), {}, "subject")]
    if advertising and not AD_PREFIX.search(subject):
        found.append(Finding("subject_not_marked", "error", N_(
            "An advertising message's subject must start with \"פרסומת\" (Communications Law, section 30A)"),
            {}, "subject"))
    length, words = len(subject.strip()), len(subject.split())
    if not SUBJECT_CHARACTERS[0] <= length <= SUBJECT_CHARACTERS[1]:
        found.append(Finding("subject_length", "advice", N_(
            "The subject has {length} characters; subjects of {low}–{high} characters are read best"),
            {"length": length, "low": SUBJECT_CHARACTERS[0], "high": SUBJECT_CHARACTERS[1]}, "subject"))
    if not SUBJECT_WORDS[0] <= words <= SUBJECT_WORDS[1]:
        found.append(Finding("subject_words", "advice", N_(
            "The subject has {words} words; subjects of {low}–{high} words are opened most"),
            {"words": words, "low": SUBJECT_WORDS[0], "high": SUBJECT_WORDS[1]}, "subject"))
    spammy = spam_words(subject)
    if spammy:
        found.append(Finding("subject_spam_words", "warning", N_(
            "The subject has words spam filters distrust: {words}"), {"words": ", ".join(spammy)}, "subject"))
    return found


def _body(rendered: Rendered, page: _Page) -> list[Finding]:
    found = []
    size = len(rendered.html.encode("utf-8"))
    if size > GMAIL_CLIPS_AT:
        found.append(Finding("html_too_large", "warning", N_(
            "The message is {size} KB; Gmail clips messages over {limit} KB and hides the rest, "
            "the unsubscribe link too"), {"size": round(size / 1024), "limit": GMAIL_CLIPS_AT // 1024}, "html"))
    spammy = spam_words(_squeeze(" ".join(page.body)))
    if spammy:
        found.append(Finding("body_spam_words", "advice", N_(
            "The message has words spam filters distrust: {words}"), {"words": ", ".join(spammy)}, "html"))
    text = len(_squeeze("".join(page.body)))
    images = sum(w * h for w, h in page.images) / CHARACTER_AREA
    if page.images:
        share = round(100 * text / (text + images)) if text + images else 0
        if share < IMAGE_ONLY_SHARE:
            found.append(Finding("image_only", "warning", N_(
                "The message is almost all images ({text_percent}% text); spam filters distrust it and many "
                "readers see nothing until they allow images. Add text"), {"text_percent": share}, "html"))
        elif share < TEXT_SHARE_ADVICE:
            found.append(Finding("image_heavy", "advice", N_(
                "Text is {text_percent}% of the message; about {goal}% text to {rest}% images reads and delivers best"),
                {"text_percent": share, "goal": TEXT_SHARE_GOAL, "rest": 100 - TEXT_SHARE_GOAL}, "html"))
    return found


def _malformed(url: str) -> bool:
    """A web address without a host, one with spaces, an empty mailto: or tel:, or a relative address
    (a message has no page to be relative to)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname if parts.scheme in ("http", "https") else None
    except ValueError:
        return True
    if parts.scheme in ("http", "https"):
        return not host or "." not in host or bool(re.search(r"\s", url))
    if parts.scheme in ("mailto", "tel", "sms"):
        return not parts.path.strip()
    return not parts.scheme


def _links(page: _Page) -> list[Finding]:
    found = []
    for anchor in page.anchors:
        href = (anchor.href or "").strip()
        params = {"text": _squeeze(anchor.text)[:60], "href": href[:200]}
        if not href:
            found.append(Finding("link_empty", "warning", N_("The link \"{text}\" has no address"), params, "html"))
        elif href == "#" or href.startswith("#"):
            found.append(Finding("link_nowhere", "warning", N_(
                "The link \"{text}\" points to \"{href}\" and goes nowhere"), params, "html"))
        elif href.lower().startswith(("javascript:", "data:", "vbscript:")):
            found.append(Finding("link_script", "warning", N_(
                "The link \"{text}\" runs a script; mail programs block it"), params, "html"))
        elif _malformed(href):
            found.append(Finding("link_malformed", "warning", N_(
                "The link \"{text}\" has a malformed address: {href}"), params, "html"))
    return found


def _legal(page: _Page, advertising: bool, sender_name: str, sender_email: str, sender_address: str) -> list[Finding]:
    if not advertising:
        return []
    found = []
    shown = _squeeze(" ".join(page.all))
    unsubscribe = [a for a in page.anchors if (a.href or "").strip() not in ("", "#") and (
        a.marked == "unsubscribe" or "unsubscribe" in (a.href or "").lower() or UNSUBSCRIBE_WORDS.search(a.text))]
    if not unsubscribe:
        found.append(Finding("unsubscribe_missing", "error", N_(
            "An advertising message must have an unsubscribe link (Communications Law, section 30A)"), {}, "html"))
    if not sender_name.strip():
        found.append(Finding("sender_name_missing", "error", N_(
            "An advertising message must name its sender (Communications Law, section 30A)"), {}, "sender_name"))
    elif _squeeze(sender_name) not in shown:
        found.append(Finding("sender_name_not_shown", "error", N_(
            "The message must show the sender's name, {name} (Communications Law, section 30A)"),
            {"name": sender_name.strip()}, "html"))
    if not sender_address.strip():
        found.append(Finding("sender_address_missing", "error", N_(
            "An advertising message must give the sender's address (Communications Law, section 30A)"),
            {}, "sender_address"))
    elif _squeeze(sender_address) not in shown:
        found.append(Finding("sender_address_not_shown", "error", N_(
            "The message must show the sender's address, {address} (Communications Law, section 30A)"),
            {"address": sender_address.strip()}, "html"))
    if not sender_email.strip():
        found.append(Finding("sender_email_missing", "error", N_(
            "An advertising message must give an email address for replies and refusals (Communications Law, "
            "section 30A)"), {}, "sender_email"))
    return found


# Online link checks ---------------------------------------------------------------------------------


def _public(host: str) -> bool:
    """Whether every address of `host` is a public one: a link check must not probe the server's own network."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_global for a in addresses)


def _probe(client: Any, url: str) -> str | None:
    """None when the link answers; else why not."""
    import httpx

    host = urlsplit(url).hostname or ""
    if not _public(host):
        return "not a public address"
    try:
        response = client.head(url)
        if response.status_code in (403, 405, 501):  # some servers refuse HEAD but serve GET
            with client.stream("GET", url) as streamed:
                response = streamed
        if response.status_code >= 400:
            return f"HTTP {response.status_code}"
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return None


def _client() -> Any:
    import httpx

    # Redirects are not followed blindly: each hop would need the public-address check again.
    return httpx.Client(timeout=LINK_TIMEOUT, follow_redirects=False, headers={"User-Agent": "Kesher link check"})


def unreachable(urls: list[str]) -> dict[str, str]:
    """The links that do not answer, with why; at most LINK_CONCURRENCY at a time."""
    urls = list(dict.fromkeys(urls))[:MAX_LINKS_ONLINE]
    if not urls:
        return {}
    with _client() as client, ThreadPoolExecutor(LINK_CONCURRENCY) as pool:
        answers = list(pool.map(lambda url: _probe(client, url), urls))
    return {url: why for url, why in zip(urls, answers, strict=True) if why}


def _online(rendered: Rendered) -> list[Finding]:
    return [Finding("link_unreachable", "warning", N_("The link {url} does not answer: {reason}"),
                    {"url": url, "reason": why}, "html") for url, why in unreachable(rendered.links).items()]


def check(content: Content, rendered: Rendered, *, advertising: bool, sender_name: str, sender_email: str,
          sender_address: str, online: bool = False) -> list[Finding]:
    """Every finding about a rendered message, errors first. `online` also asks each link whether it answers."""
    page = _read(rendered.html)
    found = (_subject(rendered.subject, advertising) + _legal(page, advertising, sender_name, sender_email,
                                                               sender_address)
             + _body(rendered, page) + _links(page) + (_online(rendered) if online else []))
    if content.text is not None and not content.text.strip():
        found.append(Finding("text_empty", "warning", N_(
            "The plain-text part is empty; leave it out to have it made from the HTML"), {}, "text"))
    order = {"error": 0, "warning": 1, "advice": 2}
    return sorted(found, key=lambda f: order[f.level])
