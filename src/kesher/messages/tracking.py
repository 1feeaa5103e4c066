"""Signed public tokens for the links in every message: clicks, the open pixel, unsubscribe, preferences.

A token names one outbox message by its id; a click token also carries the link's address. Each
is signed with HMAC-SHA256 under a key derived from `KESHER_SECRET_KEY` and the token's purpose,
cut to 96 bits, so a token made for one purpose means nothing for another and a forged or altered
one is refused. The signature covers the click's address: a click can only go where Kesher itself
pointed it (invariant 4). No table holds the links, so a token stays valid as long as the secret.

Formats (`B64` is URL-safe base64 without padding, `id6` the outbox id in 6 bytes, big-endian):

    click          /c/B64(mac + id6)B64(url)     mac = HMAC(click key, url + id6)
    open           /o/B64(mac + id6).gif         mac = HMAC(open key, id6)
    unsubscribe    /u/B64(mac + id6)             likewise with its own key, and
    preferences    /p/B64(mac + id6)             likewise with its own key
    mailto         mailto:unsubscribe+b32(mac + id6)@domain?subject=unsubscribe

mac + id6 is 18 bytes, 24 characters; the address follows it without a separator. The mailto
token is the unsubscribe one in lower-case base32, since mail servers may change the case of an
address's local part.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from kesher.errors import NotFound

MAC_BYTES = 12
ID_BYTES = 6
HEAD = 24  # characters of B64(mac + id6)
MAX_URL = 4000  # the longest `url` an email_clicked event keeps
WEB_SCHEMES = ("http://", "https://")
CACHED_URLS = 10_000
_BLOCK = 64  # SHA-256's block size, for HMAC's pads


class BadToken(NotFound):
    """A link Kesher did not make, or one altered or cut short on the way."""

    def __init__(self) -> None:
        super().__init__("this link is not valid: it was changed or cut short", "token")


class Click(NamedTuple):
    message_id: int
    url: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    """Decode strictly: a string that does not re-encode to itself (changed padding bits) is refused."""
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise BadToken() from None
    if _b64(data) != text:
        raise BadToken()
    return data


class HmacKey:
    """HMAC-SHA256 under one key, with its inner and outer pads hashed once (RFC 2104).

    `hmac.digest` hashes both pads again on every call, which costs more than the message
    itself; copying the prepared states makes signing a link about three times faster.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:  # RFC 2104: a key longer than a block is hashed first
            key = hashlib.sha256(key).digest()
        padded = key.ljust(_BLOCK, b"\0")
        self.inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        self.outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))

    def prefixed(self, prefix: bytes) -> hashlib._Hash:
        inner = self.inner.copy()
        inner.update(prefix)
        return inner

    def finish(self, inner: hashlib._Hash) -> bytes:
        """The MAC, its first MAC_BYTES, of what `inner` (from `prefixed`) has taken in."""
        return self._outer(inner)[:MAC_BYTES]

    def sign(self, message: bytes) -> bytes:
        return self.finish(self.prefixed(message))

    def mac(self, message: bytes) -> bytes:
        """The whole HMAC-SHA256 of `message`."""
        return self._outer(self.prefixed(message))

    def _outer(self, inner: hashlib._Hash) -> bytes:
        outer = self.outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def verify(self, message: bytes, mac: bytes) -> bool:
        return hmac.compare_digest(self.sign(message), mac)


class Tracking:
    """Makes and reads the public links of messages; `base_url` is Kesher's public address."""

    def __init__(self, base_url: str, secret: str) -> None:
        self.base_url = base_url.rstrip("/")
        keys = {purpose: HmacKey(hmac.digest(secret.encode(), f"kesher/tracking/{purpose}".encode(), "sha256"))
                for purpose in ("click", "open", "unsubscribe", "preferences")}
        self._click, self._open = keys["click"], keys["open"]
        self._unsubscribe, self._preferences = keys["unsubscribe"], keys["preferences"]
        self._click_prefix = f"{self.base_url}/c/"
        # url -> (HMAC state with the url hashed, B64(url)): a campaign signs the same few links for every recipient.
        self._urls: dict[str, tuple[hashlib._Hash, str]] = {}

    # Making links ---------------------------------------------------------------------------

    def click_url(self, message_id: int, url: str) -> str:
        """The tracked address of `url` in message `message_id`.

        Only http and https addresses of at most MAX_URL characters are tracked; any other (mailto:,
        tel:, an #anchor, a template placeholder) comes back unchanged, since a redirect cannot serve it.
        """
        try:
            state, encoded = self._urls[url]
        except KeyError:
            if len(url) > MAX_URL or not url.lower().startswith(WEB_SCHEMES):
                return url
            state, encoded = self._prepare(url)
        ident = message_id.to_bytes(ID_BYTES, "big")
        inner = state.copy()
        inner.update(ident)
        return self._click_prefix + _b64(self._click.finish(inner) + ident) + encoded

    def _prepare(self, url: str) -> tuple[hashlib._Hash, str]:
        raw = url.encode()
        if len(self._urls) >= CACHED_URLS:
            self._urls.clear()
        prepared = self._urls[url] = (self._click.prefixed(raw), _b64(raw))
        return prepared

    def open_url(self, message_id: int) -> str:
        """The address of the message's 1x1 pixel."""
        return f"{self.base_url}/o/{self._token(self._open, message_id)}.gif"

    def unsubscribe_url(self, message_id: int) -> str:
        """The unsubscribe page, and the RFC 8058 one-click POST target of `List-Unsubscribe`."""
        return f"{self.base_url}/u/{self._token(self._unsubscribe, message_id)}"

    def preferences_url(self, message_id: int) -> str:
        return f"{self.base_url}/p/{self._token(self._preferences, message_id)}"

    def unsubscribe_mailto(self, message_id: int, domain: str) -> str:
        """The `mailto:` of `List-Unsubscribe`: a mail to this address unsubscribes like the page."""
        return f"mailto:{self.unsubscribe_address(message_id, domain)}?subject=unsubscribe"

    def unsubscribe_address(self, message_id: int, domain: str) -> str:
        ident = message_id.to_bytes(ID_BYTES, "big")
        token = base64.b32encode(self._unsubscribe.sign(ident) + ident).decode().rstrip("=").lower()
        return f"unsubscribe+{token}@{domain}"

    @staticmethod
    def _token(key: HmacKey, message_id: int) -> str:
        ident = message_id.to_bytes(ID_BYTES, "big")
        return _b64(key.sign(ident) + ident)

    # Reading links --------------------------------------------------------------------------

    def read_click(self, token: str) -> Click:
        """The message and address of a click token; BadToken unless Kesher signed exactly these."""
        head, tail = token[:HEAD], token[HEAD:]
        if len(head) != HEAD or not tail:
            raise BadToken()
        signed, raw = _unb64(head), _unb64(tail)
        mac, ident = signed[:MAC_BYTES], signed[MAC_BYTES:]
        if not self._click.verify(raw + ident, mac):
            raise BadToken()
        return Click(int.from_bytes(ident, "big"), raw.decode())

    def read_open(self, token: str) -> int:
        return self._read(self._open, token)

    def read_unsubscribe(self, token: str) -> int:
        return self._read(self._unsubscribe, token)

    def read_preferences(self, token: str) -> int:
        return self._read(self._preferences, token)

    def read_unsubscribe_address(self, address: str) -> int:
        """The message whose unsubscribe address (`unsubscribe+<token>@...`, any case) received a mail."""
        local = address.strip().strip("<>").partition("@")[0].lower()
        prefix, plus, token = local.partition("+")
        if prefix != "unsubscribe" or not plus:
            raise BadToken()
        try:
            data = base64.b32decode(token.upper() + "=" * (-len(token) % 8))
        except (binascii.Error, ValueError):
            raise BadToken() from None
        if base64.b32encode(data).decode().rstrip("=").lower() != token:
            raise BadToken()
        return self._verified(self._unsubscribe, data)

    def _read(self, key: HmacKey, token: str) -> int:
        if len(token) != HEAD:
            raise BadToken()
        return self._verified(key, _unb64(token))

    @staticmethod
    def _verified(key: HmacKey, data: bytes) -> int:
        mac, ident = data[:MAC_BYTES], data[MAC_BYTES:]
        if len(ident) != ID_BYTES or not key.verify(ident, mac):
            raise BadToken()
        return int.from_bytes(ident, "big")


def add_utm(url: str, utm: dict[str, str]) -> str:
    """`url` with the `utm_*` parameters it does not already have; the rest of it is left as written.

    Keys are full parameter names (`utm_source`); empty values are skipped. Addresses that are not
    http or https (mailto:, tel:, #anchors) come back unchanged. Sending calls this for every link of
    every message, so answers are kept for the same link and parameters.
    """
    return _add_utm(url, tuple(utm.items()))


@lru_cache(maxsize=CACHED_URLS)
def _add_utm(url: str, utm: tuple[tuple[str, str], ...]) -> str:
    if not url.lower().startswith(WEB_SCHEMES):
        return url
    for key, _ in utm:
        if not key.startswith("utm_"):
            raise ValueError(f"{key!r} is not a UTM parameter (utm_...)")
    address, hash_mark, fragment = url.partition("#")
    query = urlsplit(address).query
    present = {name for name, _ in parse_qsl(query, keep_blank_values=True)}
    missing = {key: value for key, value in utm if value and key not in present}
    if not missing:
        return url
    joint = "" if address.endswith(("?", "&")) else ("&" if query else "?")
    return address + joint + urlencode(missing, quote_via=quote) + hash_mark + fragment
