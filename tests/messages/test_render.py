"""The renderer: layout and direction, CSS inlined, text part, links, pixel, products. No database."""

from __future__ import annotations

from datetime import UTC, datetime

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kesher.errors import ValidationError
from kesher.messages.context import sample_context
from kesher.messages.products import ProductItem
from kesher.messages.render import Content, Renderer, _tidy
from kesher.messages.templates import build

UNSUBSCRIBE = "https://example.invalid/u/sample"

NEWSLETTER = """<style>.offer { color: #b91c1c; font-weight: bold; }</style>
<h1>שלום [[שם פרטי|חבר/ה]]</h1>
<p class="offer">20% הנחה על כל הוויטמינים</p>
<p><a href="https://shop.example.co.il/sale?a=1&amp;b=2">לחנות</a>
<a href="https://shop.example.co.il/sale?a=1&amp;b=2">שוב לחנות</a>
<a href="https://shop.example.co.il/blog">לבלוג</a>
<a href="mailto:info@shop.example.co.il">info@shop.example.co.il</a>
<a href="tel:+97231234567">03-1234567</a></p>
<table>{% for item in products.best_sellers(2) %}<tr><td class="offer">{{ item.name }}</td></tr>{% endfor %}</table>
"""


def newsletter(**content) -> Renderer:
    return Renderer(Content(**{"subject": "פרסומת: [[שם פרטי]], מבצע החודש", "html": NEWSLETTER,
                               "preheader": "הנחות לכבוד החג", **content}))


def test_hebrew_is_right_to_left_and_english_left_to_right():
    hebrew = newsletter().render(sample_context("he"))
    assert re.search(r'<html lang="he" dir="rtl">', hebrew.html)
    assert 'class="kesher-body" dir="rtl"' in hebrew.html
    english = Renderer(Content(subject="Hi [[first name]]", html="<p>Hello</p>", language="en")).render(
        sample_context("en"))
    assert re.search(r'<html lang="en" dir="ltr">', english.html) and english.subject == "Hi Dana"
    with pytest.raises(ValidationError) as caught:
        Renderer(Content(subject="", html="<p>x</p>", language="fr"))
    assert caught.value.field == "language"


def test_css_is_inlined_into_the_body_and_the_layout():
    renderer = newsletter()
    html = renderer.render(sample_context()).html
    assert renderer.css_at_compile_time
    assert re.search(r'<p class="offer" style="color: #b91c1c;font-weight: bold;[^"]*">20%', html)
    # Rows a loop makes get the CSS too, and stay inside their table.
    assert re.search(r'<table><tr><td class="offer" style="color: #b91c1c;font-weight: bold;">ויטמין D3</td></tr>'
                     r'<tr><td class="offer"[^>]*>אומגה 3</td></tr></table>', html)
    assert "<style>.offer" not in html
    assert "@media only screen" in html  # responsive rules stay in the head


def test_jinja_where_css_inlining_at_compile_time_is_unsafe_inlines_each_message_instead():
    content = Content(subject="x", html='<style>.a{color:red}</style><!-- {{ contact.first_name }} -->'
                                        '<p class="a">[[שם פרטי]]</p>')
    renderer = Renderer(content)
    assert not renderer.css_at_compile_time
    assert re.search(r'<p class="a" style="color: red;[^"]*">דנה</p>', renderer.render(sample_context()).html)


def test_the_preheader_is_hidden_at_the_top_and_the_footer_names_the_sender():
    html = newsletter().render(sample_context()).html
    body = html[html.index("<body"):]
    assert body.index("הנחות לכבוד החג") < body.index("שלום דנה")
    assert re.search(r'<div style="display:none;[^"]*">הנחות לכבוד החג', html)
    footer = html[html.index("<!--kesher:footer-->"):]
    assert "החנות שלי · רחוב הרצל 1, תל אביב" in footer
    assert f'href="{UNSUBSCRIBE}" data-kesher="unsubscribe"' in footer


def test_the_layout_adds_an_unsubscribe_link_only_when_the_body_has_none():
    own = Renderer(Content(subject="x", html='<p><a href="{{ unsubscribe_url }}">להסרה מהרשימה</a></p>'))
    rendered = own.render(sample_context())
    assert rendered.html.count(UNSUBSCRIBE) == 1
    assert f'<a data-kesher="unsubscribe" href="{UNSUBSCRIBE}"' in rendered.html  # marked, for the checks
    assert rendered.text.count(UNSUBSCRIBE) == 1


def test_the_text_part_is_made_from_the_html_with_links_kept():
    text = newsletter().render(sample_context()).text
    assert "שלום דנה" in text and "20% הנחה על כל הוויטמינים" in text
    assert "לחנות (https://shop.example.co.il/sale?a=1&b=2)" in text
    assert "info@shop.example.co.il" in text and "03-1234567 (tel:+97231234567)" in text
    assert "ויטמין D3" in text and "<" not in text and "\n\n\n" not in text
    assert f": {UNSUBSCRIBE}" in text and "החנות שלי, רחוב הרצל 1, תל אביב" in text


def test_a_text_part_given_is_used_instead():
    rendered = newsletter(text="שלום [[שם פרטי]], המבצע כאן: https://shop.example.co.il/sale").render(sample_context())
    assert rendered.text.startswith("שלום דנה, המבצע כאן: https://shop.example.co.il/sale\n")


def test_links_are_rewritten_but_mailto_tel_and_unsubscribe_are_left_alone():
    seen = []

    def track(url: str) -> str:
        seen.append(url)
        return f"https://k.example/c/{len(seen)}"

    rendered = newsletter().render(sample_context(), link=track, pixel_url="https://k.example/o/1.gif")
    assert rendered.links == ["https://shop.example.co.il/sale?a=1&b=2", "https://shop.example.co.il/blog"]
    assert seen == rendered.links  # each link once, however often it appears
    assert rendered.html.count('href="https://k.example/c/1"') == 2
    assert 'href="https://k.example/c/2"' in rendered.html
    assert 'href="mailto:info@shop.example.co.il"' in rendered.html and 'href="tel:+97231234567"' in rendered.html
    assert f'href="{UNSUBSCRIBE}"' in rendered.html and "shop.example.co.il/sale" not in rendered.html
    assert "לחנות (https://k.example/c/1)" in rendered.text
    assert re.search(r'<img src="https://k.example/o/1.gif" width="1" height="1"[^>]*></body>', rendered.html)


def test_a_whole_document_keeps_its_own_head_and_gets_the_preheader_and_footer():
    document = ('<!DOCTYPE html><html lang="he" dir="rtl"><head><style>p{color:#333}</style></head>'
                '<body><p>שלום [[שם פרטי]]</p></body></html>')
    html = Renderer(Content(subject="x", html=document, preheader="קדימון")).render(sample_context()).html
    assert "kesher-container" not in html and '<p style="color: #333;">שלום דנה</p>' in html
    assert html.index("קדימון") < html.index("שלום דנה") < html.index("<!--kesher:footer-->") < html.index("</body>")


def test_the_products_block_renders_a_grid_in_html_and_lines_in_text():
    renderer = Renderer(Content(subject="x", html="<h2>בשבילך</h2>{{ products.same_category(2) }}"
                                                  "{{ product_block(products.last_bought) }}"))
    context = sample_context()
    rendered = renderer.render(context)
    assert "kesher-products" in rendered.html and "אומגה 3" in rendered.html and "₪89" in rendered.html
    assert "ויטמין D3" in rendered.html  # last bought
    assert "* אומגה 3 – ₪89" in rendered.text and "kesher-products" not in rendered.text
    linked = Renderer(Content(subject="x", html="{{ product_block(items) }}")).render(
        {**context, "items": [ProductItem("A1", "כרית", price=120.5, url="https://shop.example/a1")]},
        link=lambda url: "https://k.example/c/1")
    assert 'href="https://k.example/c/1"' in linked.html and "₪120.50" in linked.html
    assert linked.links == ["https://shop.example/a1"]


def test_a_product_block_shows_each_products_details_as_they_are_now_in_order():
    renderer = Renderer(Content(subject="x", html="{{ product_block(items) }}"))
    pillow, blanket = ProductItem("A1", "כרית", price=120.5), ProductItem("B2", "שמיכה", price=200.0)
    first = renderer.render({**sample_context(), "items": [pillow, blanket]})
    cheaper = pillow._replace(price=99.0, bought_at=datetime(2026, 3, 1, tzinfo=UTC))
    again = renderer.render({**sample_context(), "items": [blanket, cheaper]})
    assert first.html.index("כרית") < first.html.index("שמיכה") and "₪120.50" in first.html
    assert again.html.index("שמיכה") < again.html.index("כרית")
    assert "₪99" in again.html and "₪120.50" not in again.html
    assert again.html.count("kesher-products") == 1 and again.html.count("max-width:184px") == 2
    assert "* שמיכה – ₪200\n* כרית – ₪99\n" in again.text


def test_a_part_that_does_not_compile_is_named():
    for part in ("subject", "preheader", "html", "text"):
        content = {"subject": "x", "html": "<p>x</p>", part: "{{ contact.first_name"}
        with pytest.raises(ValidationError) as caught:
            Renderer(Content(**content))
        assert caught.value.field == part


def test_one_contacts_bad_data_is_an_error_not_a_crash():
    renderer = Renderer(Content(subject="x", html="{{ 100 / (contact.fields.points | default(1)) }}"))
    context = sample_context()
    context["contact"] = {**context["contact"], "fields": {"points": 4}}
    assert "25.0" in renderer.render(context).html
    context["contact"]["fields"] = {"points": 0}
    with pytest.raises(ValidationError, match="could not be rendered for this contact"):
        renderer.render(context)


def test_jinja_inside_tags_falls_back_to_converting_each_message_with_the_same_result():
    html = ('<style>.a{color:red}</style><p class="a" {% if contact.first_name %}title="x">שלום [[שם פרטי]]'
            '{% else %}>שלום{% endif %}</p>')
    renderer = Renderer(Content(subject="x", html=html))
    assert not renderer.css_at_compile_time
    rendered = renderer.render(sample_context())
    assert re.search(r'<p class="a" title="x" style="color: red;[^"]*">שלום דנה</p>', rendered.html)
    assert rendered.text.startswith("שלום דנה\n")


# The plain-text part is tidied twice: its template's source once, when compiled, and each message.
# Both must give what tidying the message alone gives, on any text and any template.
_WHITESPACE = st.sampled_from(["a", "ב", " ", "\t", "\n", "\n", "\n", "\r", "\xa0", "\u2003", "\x0c", "\x85"])


def _tidy_by_lines(text: str) -> str:
    return re.sub(r"\n\n\n+", "\n\n", "\n".join(line.rstrip() for line in text.split("\n"))).strip() + "\n"


@settings(max_examples=500, deadline=None)
@given(st.lists(_WHITESPACE, max_size=16).map("".join))
def test_tidy_gives_what_stripping_every_line_gives(text: str) -> None:
    assert _tidy(text) == _tidy_by_lines(text)


_PIECES = st.recursive(
    st.sampled_from(["a", "ב ", " ", "  \n", "\n", "\n\n\n", "{{ v }}", "{{ w }}"]),
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=4).map("".join),
        inner.map(lambda body: "{% if x %}" + body + "{% endif %}"),
        inner.map(lambda body: "{%- if y -%}" + body + "{%- endif %}\n"),
        inner.map(lambda body: "{% for i in items %}" + body + "{% endfor %}  \n")),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(_PIECES, st.sampled_from(["", "x", "x \n\n\n", "\n  \n"]), st.booleans(), st.booleans())
def test_a_text_template_tidied_at_compile_time_renders_as_tidied_after(source: str, value: str, x: bool,
                                                                        y: bool) -> None:
    context = {"v": value, "w": "ב  ", "x": x, "y": y, "items": [1, 2]}
    assert _tidy(build(_tidy(source), "text").render(context)) == _tidy(build(source, "text").render(context))
