"""Pre-send checks: each with a passing and a failing case; amendment 40 blocks advertising."""

from __future__ import annotations

import pytest

from kesher.messages import checks
from kesher.messages.checks import Finding, blocking, check, spam_words
from kesher.messages.context import sample_context
from kesher.messages.render import Content, Rendered, Renderer

SENDER = {"sender_name": "החנות שלי", "sender_email": "news@shop.example.co.il", "sender_address": "רחוב הרצל 1, תל אביב"}
GOOD_SUBJECT = "פרסומת: דנה, ההטבות של החודש מחכות לך"
GOOD_BODY = ("<h1>שלום [[שם פרטי]]</h1><p>" + "בחרנו עבורך מוצרים חדשים וטיפים לשגרה בריאה יותר. " * 8
             + '</p><p><a href="https://shop.example.co.il/sale">לכל ההטבות</a></p>'
             '<img src="https://cdn.example.co.il/a.jpg" width="300" height="150" alt="מבצע">')


def run(subject: str = GOOD_SUBJECT, html: str = GOOD_BODY, *, advertising: bool = True, text: str | None = None,
        context: dict | None = None, **sender: str) -> list[Finding]:
    content = Content(subject=subject, html=html, text=text)
    context = context or sample_context()
    context["sender"] = {"name": SENDER["sender_name"], "email": SENDER["sender_email"],
                         "address": SENDER["sender_address"]}
    rendered = Renderer(content).render(context)
    return check(content, rendered, advertising=advertising, **{**SENDER, **sender})


def codes(findings: list[Finding]) -> set[str]:
    return {f.code for f in findings}


def test_a_good_advertising_message_passes_every_check():
    assert run() == []


def test_amendment_40_an_advertising_subject_starts_with_the_word_for_advertising():
    for subject in ("פרסומת: דנה, ההטבות של החודש מחכות לך", "  פרסומת - דנה, ההטבות של החודש מחכות לך",
                    "פרסומת דנה, ההטבות של החודש מחכות לך כאן"):
        assert "subject_not_marked" not in codes(run(subject))
    for subject in ("דנה, ההטבות של החודש מחכות לך - פרסומת", "פרסומתי: דנה, ההטבות של החודש מחכות לך"):
        found = run(subject)
        assert [f.code for f in blocking(found)] == ["subject_not_marked"]
        assert blocking(found)[0].field == "subject"
    assert "subject_not_marked" not in codes(run("דנה, ההטבות של החודש מחכות לך", advertising=False))


def test_amendment_40_an_advertising_message_names_its_sender_and_gives_an_address_and_a_way_out():
    found = run(sender_name="", sender_address="", sender_email="")
    assert {f.code for f in blocking(found)} == {"sender_name_missing", "sender_address_missing",
                                                 "sender_email_missing"}
    context = sample_context()
    context["unsubscribe_url"] = ""  # no unsubscribe link anywhere
    found = run(context=context)
    assert [(f.code, f.level) for f in found] == [("unsubscribe_missing", "error")]
    shown_elsewhere = run(sender_name="חנות אחרת", sender_address="רחוב יפו 2, ירושלים")
    assert codes(blocking(shown_elsewhere)) == {"sender_name_not_shown", "sender_address_not_shown"}
    assert blocking(run(sender_name="", sender_address="", advertising=False)) == []


def test_a_unsubscribe_link_of_the_bodys_own_counts():
    context = sample_context()
    html = GOOD_BODY + '<p><a href="{{ unsubscribe_url }}">להסרה</a></p>'
    assert run(html=html, context=context) == []


def test_subject_length_and_word_count_are_advice():
    long_subject = "פרסומת: " + "מבצע ענק על כל המוצרים בחנות שלנו לכבוד סוף העונה והחגים " * 2
    found = run(long_subject)
    assert {(f.code, f.level) for f in found} == {("subject_length", "advice"), ("subject_words", "advice")}
    assert run("פרסומת: היי")[0].params["length"] == len("פרסומת: היי")
    assert blocking(found) == []


def test_spam_words_in_hebrew_with_prefixes_and_english_on_word_boundaries():
    assert spam_words("משלוח בחינם והצעה מוגבלת!") == ["חינם", "הצעה מוגבלת"]
    assert spam_words("ACT NOW: 100% FREE, $$$") == ["free", "100% free", "act now", "100%", "$$$"]
    assert spam_words("freedom and carefree; חינמית") == []
    found = run("פרסומת: דנה, משלוח חינם ודחוף על כל ההזמנות")
    subject = next(f for f in found if f.code == "subject_spam_words")
    assert subject.level == "warning" and subject.params == {"words": "חינם, דחוף"}
    body = next(f for f in run(html=GOOD_BODY + "<p>act now!</p>") if f.code == "body_spam_words")
    assert body.level == "advice" and "act now" in body.params["words"]


def test_html_over_102_kb_is_clipped_by_gmail():
    found = run(html=GOOD_BODY + "<p>" + "טקסט ארוך " * 6000 + "</p>")
    assert [(f.code, f.level) for f in found] == [("html_too_large", "warning")]
    assert found[0].params["size"] > 102


def test_text_to_images_an_image_only_mail_warns_and_an_image_heavy_one_is_advised():
    image = '<img src="https://cdn.example.co.il/{n}.jpg" width="600" height="400" alt="">'
    found = run(html=image.format(n=1) + image.format(n=2) + "<p>מבצע</p>")
    assert [(f.code, f.level) for f in found] == [("image_only", "warning")]
    heavy = run(html="<p>" + "טקסט על המבצע של החודש. " * 40 + "</p>" + image.format(n=1))
    assert [(f.code, f.level) for f in heavy] == [("image_heavy", "advice")]
    assert 15 <= heavy[0].params["text_percent"] < 50


def test_broken_links_empty_hash_script_and_malformed():
    html = GOOD_BODY + ('<a href="">ריק</a><a href="#">לשום מקום</a><a href="javascript:alert(1)">סקריפט</a>'
                        '<a href="https://">בלי שרת</a><a href="/sale">יחסי</a><a>בלי כתובת</a>')
    found = run(html=html)
    assert [(f.code, f.params["text"]) for f in found] == [
        ("link_empty", "ריק"), ("link_nowhere", "לשום מקום"), ("link_script", "סקריפט"),
        ("link_malformed", "בלי שרת"), ("link_malformed", "יחסי"), ("link_empty", "בלי כתובת")]
    assert all(f.level == "warning" for f in found)


def test_online_link_checks_report_links_that_do_not_answer(monkeypatch):
    httpx = pytest.importorskip("httpx")

    def answer(request):
        return httpx.Response(404 if request.url.path == "/gone" else 405 if request.method == "HEAD" else 200)

    monkeypatch.setattr(checks, "_client", lambda: httpx.Client(transport=httpx.MockTransport(answer)))
    monkeypatch.setattr(checks, "_public", lambda host: host != "10.0.0.1")
    html = GOOD_BODY + '<a href="https://shop.example.co.il/gone">ישן</a><a href="http://10.0.0.1/admin">פנימי</a>'
    content = Content(subject=GOOD_SUBJECT, html=html)
    rendered = Renderer(content).render(sample_context())
    found = check(content, rendered, advertising=False, online=True, **SENDER)
    assert {(f.code, f.params["url"], f.params["reason"]) for f in found} == {
        ("link_unreachable", "https://shop.example.co.il/gone", "HTTP 404"),
        ("link_unreachable", "http://10.0.0.1/admin", "not a public address")}


def test_an_empty_text_part_is_flagged():
    assert [f.code for f in run(text=" ")] == ["text_empty"]


def test_findings_are_english_msgids_translated_where_shown():
    finding = run("פרסומת: היי")[0]
    assert finding.message == "The subject has {length} characters; subjects of {low}–{high} characters are read best"
    assert finding.text("en") == "The subject has 11 characters; subjects of 25–50 characters are read best"


def test_blocking_keeps_only_errors():
    found = [Finding("a", "advice", "x"), Finding("b", "error", "y"), Finding("c", "warning", "z")]
    assert [f.code for f in blocking(found)] == ["b"]


def test_rendered_messages_from_elsewhere_are_checked_too():
    rendered = Rendered(subject=GOOD_SUBJECT, html="<html><body><p>שלום</p></body></html>", text="שלום", links=[])
    found = check(Content(subject=GOOD_SUBJECT, html=""), rendered, advertising=True, **SENDER)
    assert codes(blocking(found)) == {"unsubscribe_missing", "sender_name_not_shown", "sender_address_not_shown"}
