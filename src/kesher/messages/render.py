"""The one renderer: every channel and every preview turns content into a message here.

`Renderer(content)` does the slow work once: it checks and compiles the subject, preheader, HTML
and text, puts the HTML into the layout (a right-to-left document for Hebrew, with the preheader
and a footer carrying the sender and the unsubscribe link), inlines the CSS, and makes the
plain-text part from the HTML. `render(context)` then only renders the compiled templates,
rewrites the links and adds the open pixel, so a campaign can render per contact.

CSS is inlined at compile time on the template source itself, with every Jinja tag hidden in an
HTML comment (the one thing an HTML parser never moves, even inside a table). This is only done
when it is known to be safe: no Jinja inside HTML comments, and every hidden tag comes back once,
in order. Otherwise each rendered message is inlined instead (slower, same result). The CSS then
applies to what the template source holds; markup that values bring in at render time (a product
block, a `|safe` value) carries its own inline styles.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from html import escape, unescape
from pathlib import Path
from typing import Any

import css_inline
import html2text
from jinja2 import Template
from jinja2.exceptions import SecurityError

from kesher.errors import ValidationError
from kesher.messages.templates import (JINJA, build, compile_template, names_used, translate_merge_tags,
                                      trial_render)
from kesher.segments.service import N_
from kesher.web.i18n import LANGUAGES, direction, translations

LAYOUTS = Path(__file__).resolve().parent / "layouts"
_DOCUMENT = re.compile(r"<!doctype|<html[\s>]|<body[\s>]", re.I)
_BODY_OPEN = re.compile(r"<body\b[^>]*>", re.I)
_HTML_OPEN = re.compile(r"<html\b[^>]*>|<!doctype[^>]*>", re.I)
_BODY_CLOSE = re.compile(r"</body\s*>", re.I)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_HIDDEN = re.compile(r"<!--kj(\d+)-->|&lt;!--kj(\d+)--&gt;")
_TBODY = re.compile(r"</?tbody>")
_TEXT_TOKEN = re.compile(r"zqkj(\d+)zq")
_MD_LINK = re.compile(r"\[([^\]\n]*)\]\(([^)\s]*)(?:\s+\"[^\"\n]*\")?\)")
_MD_ESCAPE = re.compile(r"\\([-.+#*_\[\]()!`>\\])")
_ANCHOR = re.compile(r"<[aA]\s[^>]*>")  # not re.I: the whole message is scanned per render, and this is faster
_HREF = re.compile(r"""\shref\s*=\s*(["'])(.*?)\1""", re.I | re.S)
_TEXT_URL = re.compile(r"https?://[^\s()<>\"']+")
# What `str.rstrip` would take off a line; a literal first, which the engine skips to: eight times faster.
_SPACE_BEFORE_BREAK = re.compile(r"\n(?<=[^\S\n]\n)")
_BLANK_LINES = re.compile(r"\n\n\n+")  # a literal start the engine skips to: ten times faster than \n{3,}
_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


@dataclass(frozen=True)
class Content:
    subject: str
    html: str  # template source: a body fragment, or a whole document
    text: str | None = None  # plain-text template; generated from the HTML when None
    preheader: str = ""
    language: str = "he"  # "he" -> dir="rtl" lang="he"; "en" -> ltr


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str  # whole document, CSS inlined, links rewritten, pixel added
    text: str
    links: list[str]  # the original http(s) URLs of the message, in order, deduplicated


@cache
def _layout(name: str) -> str:
    # Kesher's own files: read once, not at each compile (a compile reads the footer three times).
    return (LAYOUTS / name).read_text(encoding="utf-8")


def _uses_unsubscribe(source: str) -> bool:
    return any("unsubscribe_url" in tag for tag in JINJA.findall(source))


def _document(body: str, preheader: str) -> str:
    """The whole HTML source: a fragment goes into the layout; a document gets the preheader and footer."""
    hidden = _layout("preheader.html").replace("{# preheader #}", preheader) if preheader.strip() else ""
    footer = _layout("footer.html")
    if not _DOCUMENT.search(body):
        return (_layout("base.html").replace("{# preheader #}", hidden).replace("{# footer #}", footer)
                .replace("{# body #}", body))
    opening = _BODY_OPEN.search(body) or _HTML_OPEN.search(body)  # never before the doctype
    at = opening.end() if opening else 0
    body = body[:at] + hidden + body[at:]
    closings = list(_BODY_CLOSE.finditer(body))
    at = closings[-1].start() if closings else len(body)
    return body[:at] + footer + body[at:]


def _inline_css(source: str) -> str | None:
    """The source with its CSS inlined, Jinja tags untouched; None when that cannot be done safely."""
    if any(JINJA.search(comment) for comment in _COMMENT.findall(source)):
        return None
    tags: list[str] = []

    def hide(match: re.Match[str]) -> str:
        tags.append(match.group())
        return f"<!--kj{len(tags) - 1}-->"

    try:
        inlined = _INLINER.inline(JINJA.sub(hide, source))
    except (css_inline.InlineError, ValueError):
        return None
    if [int(a or b) for a, b in _HIDDEN.findall(inlined)] != list(range(len(tags))):
        return None
    if not re.search(r"<tbody", source, re.I):
        # The parser adds <tbody> around rows; around rows a loop makes, it would open in the loop and
        # close after it. Mail programs imply it anyway.
        inlined = _TBODY.sub("", inlined)
    return _HIDDEN.sub(lambda m: tags[int(m.group(1) or m.group(2))], inlined)


def _converter() -> html2text.HTML2Text:
    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.unicode_snob = True
    converter.ignore_tables = True
    converter.ignore_emphasis = True
    converter.images_to_alt = True
    converter.use_automatic_links = False
    converter.inline_links = True
    converter.skip_internal_links = True
    return converter


def _link_text(match: re.Match[str]) -> str:
    label, url = match.group(1).strip(), match.group(2)
    if not label or label == url:
        return url
    if url in (f"mailto:{label}", f"tel:{label}"):
        return label
    return f"{label} ({url})"


def html_to_text(html: str) -> str:
    """Plain text of HTML: links as "text (url)", images as their alt text, no Markdown marks."""
    text = _MD_LINK.sub(_link_text, _converter().handle(html))
    return _MD_ESCAPE.sub(r"\1", text)


def _text_source(html_source: str) -> str:
    """A plain-text template made from an HTML template: Jinja tags kept, the HTML around them converted."""
    tags: list[str] = []

    def hide(match: re.Match[str]) -> str:
        tags.append(match.group())
        return f"zqkj{len(tags) - 1}zq"

    text = html_to_text(JINJA.sub(hide, html_source))
    text = re.sub(r"\{(?=[{%#])", "{{ '{' }}", text)  # literal braces in the text are text, not Jinja
    return _TEXT_TOKEN.sub(lambda m: tags[int(m.group(1))], text)


def _tidy(text: str) -> str:
    """No trailing spaces, at most one blank line in a row (blocks a contact does not see leave some)."""
    if _SPACE_BEFORE_BREAK.search(text):  # only then is splitting into lines and back worth its cost
        text = "\n".join([line.rstrip() for line in text.split("\n")])
    return _BLANK_LINES.sub("\n\n", text).strip() + "\n"


class Renderer:
    """Compiled content, ready to render for any number of contacts.

    `uses` names what its templates read from a context (`templates.names_used`), so a campaign
    loads only that part of each recipient's data (`context.contexts`)."""

    def __init__(self, content: Content, *, fields: Mapping[str, str] | None = None) -> None:
        """Compile once; raises ValidationError naming subject, preheader, html, text or language.

        `fields` are the workspace's custom fields (`templates.merge_fields`): given, a merge tag
        naming an unknown field is refused; not given, custom merge tags are looked up at render time."""
        from kesher.messages.context import sample_context

        if content.language not in LANGUAGES:
            raise ValidationError("must be one of {choices}", "language", choices=", ".join(LANGUAGES))
        self.content = content
        sample = {**sample_context(content.language), "subject": ""}
        sources: dict[str, str] = {}
        for part in ("subject", "preheader", "html", "text"):
            value = getattr(content, part)
            if value is None:
                continue
            if not isinstance(value, str):
                raise ValidationError("must be text", part)
            sources[part] = translate_merge_tags(value, part, fields)
            compiled = compile_template(sources[part], part, fields=fields, sample=sample)
            if part == "subject":
                self._subject = compiled
        catalogue = translations(content.language)
        layout = {"language": content.language, "dir": direction(content.language),
                  "unsubscribe": catalogue.gettext(N_("Unsubscribe")),
                  "preferences": catalogue.gettext(N_("Update your preferences"))}
        body = sources["html"]
        document = _document(body, sources["preheader"])
        inlined = _inline_css(document)
        self.css_at_compile_time = inlined is not None
        self._html = build(inlined if inlined is not None else document, "document",
                           {"layout": {**layout, "own_unsubscribe": _uses_unsubscribe(body)}})
        trial_render(self._html, "html", sample)
        text = sources.get("text")
        footer = build(_layout("footer.txt"), "text",
                       {"layout": {**layout, "own_unsubscribe": _uses_unsubscribe(text or body)}})
        self._text, self._text_html = self._text_templates(body, text, footer, sample)
        self._footer = footer
        # The text part is made from the body when not given, so the body's names cover it then.
        self.uses = frozenset().union(*(names_used(source) for source in (
            sources["subject"], document, text or "", _layout("footer.txt"))))

    @staticmethod
    def _text_templates(body: str, text: str | None, footer: Template,
                        sample: Mapping[str, Any]) -> tuple[Template | None, Template | None]:
        """The plain-text template: the one given, else one made once from the HTML; when the HTML is too
        tangled with Jinja to convert once, the HTML body to convert for each message instead."""
        footer_source = _layout("footer.txt")
        # The source is tidied as each message will be (`_tidy`), which then finds little to do. The
        # same result: with no trim_blocks or lstrip_blocks, a tag never takes part in a line's trailing
        # spaces or a run of blank lines, and `-` whitespace control takes all the whitespace either way.
        if text is not None:
            made = build(_tidy(text + "\n" + footer_source), "text", footer.globals)
            trial_render(made, "text", sample)
            return made, None
        try:
            made = build(_tidy(_text_source(body) + "\n" + footer_source), "text", footer.globals)
            made.render(sample)
            return made, None
        except Exception:  # noqa: BLE001 - any failure of the conversion means: convert each message
            return None, build(body, "html")

    def render(self, context: Mapping[str, Any], *, link: Callable[[str], str] | None = None,
               pixel_url: str | None = None) -> Rendered:
        """The message for one contact; `link(url)` rewrites each http(s) link (for click tracking),
        `pixel_url` adds the open pixel. Raises ValidationError when this contact's data breaks the template."""
        try:
            subject = " ".join(self._subject.render(context).split())
            html = self._html.render(context, subject=subject)
            if not self.css_at_compile_time:
                html = _INLINER.inline(html)
            if self._text is not None:
                text = self._text.render(context)
            else:
                text = html_to_text(self._text_html.render(context)) + "\n" + self._footer.render(context)  # type: ignore[union-attr]
        except SecurityError as exc:
            raise ValidationError("is refused by the template sandbox: {detail}", "html", detail=str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - the caller decides whether one contact may stop a send
            raise ValidationError("could not be rendered for this contact: {detail}", "html", detail=str(exc)) from None
        skip = {context.get("preferences_url")} - {None, ""}
        html, rewritten = _rewrite_links(html, link, context.get("unsubscribe_url") or None, skip)
        if link is not None and rewritten:
            text = _TEXT_URL.sub(lambda m: rewritten.get(m.group(), m.group()), text)
        if pixel_url:
            html = _add_pixel(html, pixel_url)
        return Rendered(subject, html, _tidy(text), list(rewritten))


def _rewrite_links(html: str, link: Callable[[str], str] | None, unsubscribe: str | None,
                   skip: set[Any]) -> tuple[str, dict[str, str]]:
    """Each http(s) <a href> through `link`, except the unsubscribe and preferences links; the unsubscribe
    link is marked, so checks find it however it is worded. Returns the HTML and {original: new}."""
    rewritten: dict[str, str] = {}

    def anchor(match: re.Match[str]) -> str:
        tag = match.group()
        parts = _anchor_parts(tag)
        if parts is None:
            return tag
        before, url, after, web = parts
        if url == unsubscribe:
            return tag if "data-kesher=" in tag else '<a data-kesher="unsubscribe"' + tag[2:]
        if not web or url in skip:
            return tag
        new = rewritten.get(url)
        if new is None:
            new = rewritten[url] = link(url) if link is not None else url
        return tag if link is None else before + escape(new) + after

    return _ANCHOR.sub(anchor, html), rewritten


# A campaign's messages hold the same few <a> tags, so each is taken apart once.
@lru_cache(maxsize=1024)
def _anchor_parts(tag: str) -> tuple[str, str, str, bool] | None:
    """An <a> tag as the text before its href's value, the address it holds, the text after, and
    whether the address is http(s); None without href."""
    href = _HREF.search(tag)
    if href is None:
        return None
    url = unescape(href.group(2)).strip()
    return tag[:href.start(2)], url, tag[href.end(2):], url.lower().startswith(("http://", "https://"))


def _add_pixel(html: str, pixel_url: str) -> str:
    pixel = (f'<img src="{escape(pixel_url)}" width="1" height="1" alt="" '
             'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0;">')
    at = html.rfind("</body>")
    return html[:at] + pixel + html[at:] if at >= 0 else html + pixel
