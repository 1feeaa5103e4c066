"""Signed tokens of the public links, and UTM parameters: pure functions, no database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import string

import pytest

from kesher.messages.tracking import HEAD, MAC_BYTES, BadToken, Click, HmacKey, Tracking, add_utm

BASE = "https://kesher.example"
LINKS = Tracking(BASE, "the-secret")
STRANGER = Tracking(BASE, "another-secret")  # what a forger who guessed wrong would sign with
SHOP = "https://shop.example.co.il/מבצע?ref=mail#top"
ALPHABET = string.ascii_letters + string.digits + "-_"


def token(url: str, prefix: str, suffix: str = "") -> str:
    assert url.startswith(f"{BASE}/{prefix}/") and url.endswith(suffix)
    return url.removeprefix(f"{BASE}/{prefix}/").removesuffix(suffix)


def altered(text: str) -> list[str]:
    """Every one-character change of `text` (each position, to the next letter of the alphabet)."""
    return [text[:i] + ALPHABET[(ALPHABET.index(c) + 1) % len(ALPHABET)] + text[i + 1:] for i, c in enumerate(text)]


READERS = {
    "open": (lambda t, m: token(t.open_url(m), "o", ".gif"), Tracking.read_open),
    "unsubscribe": (lambda t, m: token(t.unsubscribe_url(m), "u"), Tracking.read_unsubscribe),
    "preferences": (lambda t, m: token(t.preferences_url(m), "p"), Tracking.read_preferences),
}


@pytest.mark.parametrize("kind", READERS)
def test_each_token_names_its_message_and_is_short(kind: str) -> None:
    make, read = READERS[kind]
    for message_id in (1, 977, 2**31 + 5, 2**48 - 1):
        made = make(LINKS, message_id)
        assert len(made) == HEAD and set(made) <= set(ALPHABET)
        assert read(LINKS, made) == message_id


@pytest.mark.parametrize("kind", READERS)
def test_forged_and_altered_tokens_are_refused(kind: str) -> None:
    make, read = READERS[kind]
    made = make(LINKS, 4242)
    bad = [make(STRANGER, 4242), made[:-1], made + "A", "", "x" * HEAD, made.replace(made[3], "!"), *altered(made)]
    for candidate in bad:
        with pytest.raises(BadToken):
            read(LINKS, candidate)


def test_a_token_is_good_for_its_own_purpose_only() -> None:
    tokens = {kind: make(LINKS, 7) for kind, (make, _) in READERS.items()}
    for kind, (_, read) in READERS.items():
        for other, made in tokens.items():
            if other != kind:
                with pytest.raises(BadToken):
                    read(LINKS, made)
    with pytest.raises(BadToken):
        LINKS.read_click(tokens["open"] + "aHR0cHM6Ly9ldmlsLmV4YW1wbGU")


def test_a_click_token_carries_its_url_and_no_other() -> None:
    made = token(LINKS.click_url(31337, SHOP), "c")
    assert LINKS.read_click(made) == Click(31337, SHOP)
    evil = base64.urlsafe_b64encode(b"https://evil.example/login").decode().rstrip("=")
    forged_url = token(STRANGER.click_url(31337, "https://evil.example/login"), "c")
    other_link = token(LINKS.click_url(31337, "https://shop.example.co.il/"), "c")
    bad = [made[:HEAD] + evil,  # the signature of the shop's link, with another address
           other_link[:HEAD] + made[HEAD:], forged_url, made[:HEAD], made[:-2], *altered(made)]
    for candidate in bad:
        with pytest.raises(BadToken):
            LINKS.read_click(candidate)


def test_the_signature_is_standard_hmac_sha256() -> None:
    # The signer's hand-prepared HMAC must agree with the standard library's, which the reader uses.
    key = hmac.digest(b"the-secret", b"kesher/tracking/click", "sha256")
    raw = base64.urlsafe_b64decode(token(LINKS.click_url(5, SHOP), "c")[:HEAD])
    ident = (5).to_bytes(6, "big")
    assert raw == hmac.new(key, SHOP.encode() + ident, hashlib.sha256).digest()[:12] + ident


def test_a_prepared_key_signs_as_the_standard_library_does_whatever_the_keys_length() -> None:
    for key in (b"", b"k", b"x" * 64, b"y" * 65, bytes(range(200))):
        prepared = HmacKey(key)
        for message in (b"", b"kesher-outbox:1", b"m" * 200):
            standard = hmac.digest(key, message, "sha256")
            assert prepared.mac(message) == standard and prepared.sign(message) == standard[:MAC_BYTES]
            assert prepared.verify(message, standard[:MAC_BYTES])


def test_only_web_links_are_tracked() -> None:
    for url in ("mailto:dana@example.co.il", "tel:+972501234567", "#top", "{{ shop_url }}",
                "https://shop.example/" + "x" * 5000):
        assert LINKS.click_url(1, url) == url
    assert LINKS.click_url(1, "HTTPS://SHOP.EXAMPLE/").startswith(f"{BASE}/c/")


def test_the_unsubscribe_address_survives_a_change_of_case() -> None:
    mailto = LINKS.unsubscribe_mailto(2024, "bounces.example.co.il")
    assert mailto.startswith("mailto:unsubscribe+") and mailto.endswith("@bounces.example.co.il?subject=unsubscribe")
    address = mailto.removeprefix("mailto:").removesuffix("?subject=unsubscribe")
    local = address.split("@")[0]
    assert len(local) < 64  # the most a local part may have (RFC 5321)
    for form in (address, address.upper(), f"<{address}>", local):
        assert LINKS.read_unsubscribe_address(form) == 2024
    stranger = STRANGER.unsubscribe_mailto(2024, "x").removeprefix("mailto:").split("?")[0]
    changed = local[:-1] + ("a" if local[-1] != "a" else "b")
    for bad in (stranger, changed, "bounces+" + local.split("+")[1], "unsubscribe@x", "unsubscribe+!!@x"):
        with pytest.raises(BadToken):
            LINKS.read_unsubscribe_address(bad)


def test_links_use_the_base_url_given() -> None:
    links = Tracking("https://kesher.example/", "s")
    assert links.open_url(1).startswith("https://kesher.example/o/") and links.open_url(1).endswith(".gif")
    assert links.unsubscribe_url(1).startswith("https://kesher.example/u/")
    assert links.preferences_url(1).startswith("https://kesher.example/p/")
    assert Tracking("", "s").click_url(1, SHOP).startswith("/c/")


UTM = {"utm_source": "kesher", "utm_medium": "email", "utm_campaign": "אביב"}


@pytest.mark.parametrize(("url", "expected"), [
    ("https://shop.example/", "https://shop.example/?utm_source=kesher&utm_medium=email&utm_campaign=%D7%90%D7%91%D7%99%D7%91"),
    ("https://shop.example/p?id=7&x=", "https://shop.example/p?id=7&x=&utm_source=kesher&utm_medium=email"
                                       "&utm_campaign=%D7%90%D7%91%D7%99%D7%91"),
    ("https://shop.example/p?utm_source=fb&utm_campaign=&a=1#reviews",
     "https://shop.example/p?utm_source=fb&utm_campaign=&a=1&utm_medium=email#reviews"),
    ("https://shop.example/p?#x", "https://shop.example/p?utm_source=kesher&utm_medium=email"
                                  "&utm_campaign=%D7%90%D7%91%D7%99%D7%91#x"),
    ("https://shop.example/a%20b?q=%D7%90&utm_source=x&utm_medium=y&utm_campaign=z",
     "https://shop.example/a%20b?q=%D7%90&utm_source=x&utm_medium=y&utm_campaign=z"),
    ("mailto:shop@example.co.il", "mailto:shop@example.co.il"),
    ("#top", "#top"),
])
def test_add_utm_adds_only_what_is_missing(url: str, expected: str) -> None:
    assert add_utm(url, UTM) == expected


def test_add_utm_edge_cases() -> None:
    assert add_utm("https://shop.example/?a=1", {}) == "https://shop.example/?a=1"
    assert add_utm("https://shop.example/", {"utm_source": "", "utm_term": "ויטמין D"}) == \
        "https://shop.example/?utm_term=%D7%95%D7%99%D7%98%D7%9E%D7%99%D7%9F%20D"
    with pytest.raises(ValueError, match="source"):
        add_utm("https://shop.example/", {"source": "kesher"})
