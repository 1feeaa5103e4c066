"""build_message: the headers receivers need, Hebrew that survives the trip, a DKIM signature that verifies."""

import base64
import email
from email import policy

import dkim
import pytest
from dkim.canonicalization import CanonicalizationPolicy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kesher.channels.email import DkimKey, build_message, relaxed_body, sign
from kesher.channels.smtp import DataReady, data_bytes

SUBJECT = "מבצע סוף עונה – 20% הנחה על כל הוויטמינים, רק השבוע ורק לחברי המועדון"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def dkim_key(key: rsa.RSAPrivateKey) -> DkimKey:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return DkimKey(domain="teva.co.il", selector="k1", private_key_pem=pem)


def dns_with(key: rsa.RSAPrivateKey):
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == b"k1._domainkey.teva.co.il." else None

    return dnsfunc


def build(**changes) -> bytes:
    values = dict(subject=SUBJECT, html="<p dir='rtl'>שלום דנה, <a href='https://teva.co.il'>למבצע</a></p>",
                  text="שלום דנה,\n.נקודה בתחילת שורה\nלמבצע: https://teva.co.il", from_name="חנות הטבע",
                  from_email="shop@teva.co.il", reply_to="help@teva.co.il", to="dana@example.com",
                  message_id="42.abcdefghijklmnop@teva.co.il", list_unsubscribe_mailto="unsubscribe+42@teva.co.il",
                  list_unsubscribe_url="https://kesher.teva.co.il/u/42-token", feedback_id="9:3:kesher",
                  dkim=None)
    values.update(changes)
    return build_message(**values)


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=policy.default)


def test_headers_name_the_sender_the_message_and_the_one_click_unsubscribe():
    raw = build()
    message = parse(raw)
    assert message["From"].addresses[0].display_name == "חנות הטבע"
    assert message["From"].addresses[0].addr_spec == "shop@teva.co.il"
    assert message["To"] == "dana@example.com"
    assert message["Reply-To"] == "help@teva.co.il"
    assert message["Message-ID"] == "<42.abcdefghijklmnop@teva.co.il>"
    assert message["Date"].datetime.tzinfo is not None
    assert message["List-Unsubscribe"] == "<mailto:unsubscribe+42@teva.co.il>, <https://kesher.teva.co.il/u/42-token>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Feedback-ID"] == "9:3:kesher"
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert raw.isascii(), "7-bit clean: no relay re-encodes it and breaks the signature"
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78


def test_hebrew_subject_names_and_bodies_survive_the_round_trip():
    message = parse(build())
    assert message["Subject"] == SUBJECT
    assert message.get_body(("plain",)).get_content() == "שלום דנה,\r\n.נקודה בתחילת שורה\r\nלמבצע: https://teva.co.il\r\n"
    assert "שלום דנה" in message.get_body(("html",)).get_content()
    assert b"=?utf-8?b?" in build().split(b"\r\n\r\n")[0]


@pytest.mark.parametrize("size", [1, 57, 20_000, 400_000])
def test_bodies_of_any_length_come_back_whole_in_lines_of_76(size):
    html = ("<p>" + "א" * size + "</p>")[:size] or "x"
    raw = build(html=html)
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    assert parse(raw).get_body(("html",)).get_content() == html + "\r\n"


@pytest.mark.parametrize(("text", "canonical"), [
    ("a\nb", "a\r\nb\r\n"), ("a\r\nb\r\n", "a\r\nb\r\n"), ("a\rb\n\n", "a\r\nb\r\n\r\n"), ("", "\r\n"),
    ("a\r\n\r\rb", "a\r\n\r\n\r\nb\r\n"), ("שורה\u2028אותה שורה\x0c", "שורה\u2028אותה שורה\x0c\r\n")])
def test_a_body_has_crlf_line_breaks_where_it_had_cr_lf_or_crlf(text, canonical):
    bodies = [part.get_payload(decode=True).decode() for part in parse(build(text=text, html=text)).iter_parts()]
    assert bodies == [canonical, canonical]


def test_no_https_address_means_no_one_click_header():
    message = parse(build(list_unsubscribe_url=None))
    assert message["List-Unsubscribe"] == "<mailto:unsubscribe+42@teva.co.il>"
    assert message["List-Unsubscribe-Post"] is None


def test_a_line_break_in_a_subject_or_name_does_not_make_a_header():
    message = parse(build(subject="שלום\r\nBcc: everyone@example.com", from_name="חנות\nX-Evil: 1"))
    assert message["Bcc"] is None and message["X-Evil"] is None
    assert message["Subject"] == "שלום Bcc: everyone@example.com"


def test_extra_headers_are_added_but_may_not_replace_kesher_s_own():
    assert parse(build(headers={"X-SES-MESSAGE-TAGS": "campaign=9"}))["X-SES-MESSAGE-TAGS"] == "campaign=9"
    with pytest.raises(ValueError, match="written by Kesher"):
        build(headers={"List-Unsubscribe": "<https://elsewhere.example>"})


def test_dkim_signature_covers_the_unsubscribe_pair_and_verifies(key):
    raw = build(dkim=dkim_key(key))
    assert raw.startswith(b"DKIM-Signature:")
    assert dkim.verify(raw, dnsfunc=dns_with(key))
    signature = parse(raw)["DKIM-Signature"]
    signed = {h.strip() for h in signature.split("h=")[1].split(";")[0].split(":")}
    assert {"from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post",
            "mime-version", "content-type"} <= signed
    assert "d=teva.co.il" in signature and "s=k1" in signature


def test_a_changed_header_or_body_breaks_the_signature(key):
    raw = build(dkim=dkim_key(key))
    assert not dkim.verify(raw.replace(b"https://kesher.teva.co.il/u/42-token", b"https://evil.example/u/42-token"),
                           dnsfunc=dns_with(key))
    head, body = raw.split(b"\r\n\r\n", 1)
    assert not dkim.verify(head + b"\r\n\r\n" + body.replace(b"--\r\n", b"--\r\nextra\r\n", 1), dnsfunc=dns_with(key))


@pytest.mark.parametrize("body", [
    b"", b"\r\n", b"\r\n\r\n\r\n", b"one line", b"one line\r\n\r\n\r\n", b"tabs\tand  spaces \t \r\nend  ",
    b" leading space\r\n\r\nmiddle empty line\r\n", b"trailing \r\n \r\n\t\r\n",
])
def test_the_relaxed_body_is_dkimpy_s_and_any_body_verifies(key, body):
    assert relaxed_body(body) == CanonicalizationPolicy.from_c_value(b"relaxed/relaxed").canonicalize_body(body)
    head = (b"From: =?utf-8?b?15fXoNeV16o=?= <shop@teva.co.il>\r\nTo: dana@example.com\r\n"
            b"Subject:  folded\r\n \t subject  \r\nDate: Mon, 07 Dec 2026 01:00:00 +0000\r\nX-Not-Signed: 1")
    raw = sign(head + b"\r\n\r\n" + body, dkim_key(key))
    assert dkim.verify(raw, dnsfunc=dns_with(key))
    assert b"h=from:to:subject:date;" in raw.replace(b"\r\n", b"")


def test_a_signed_message_is_in_data_form_too(key):
    raw = build(dkim=dkim_key(key))
    assert isinstance(raw, DataReady) and data_bytes(raw) is raw
    assert all(len(line) <= 78 for line in raw.split(b"\r\n\r\n")[0].split(b"\r\n") if line.startswith((b"DKIM", b" ")))


def test_a_built_message_is_already_in_data_form_and_is_not_scanned_again():
    """The text part has a line starting with a dot: base64 hides it, so nothing needs stuffing."""
    raw = build()
    assert isinstance(raw, DataReady)
    assert data_bytes(raw) is raw
    assert data_bytes(bytes(raw)) == raw  # the full scan would change nothing


def test_a_header_that_would_need_the_scan_keeps_it():
    # Only an address that should never get this far could put a line break into a header.
    raw = build(reply_to="help@teva.co.il\n.x")
    assert not isinstance(raw, DataReady)
    assert b"\r\n..x" in data_bytes(raw)
