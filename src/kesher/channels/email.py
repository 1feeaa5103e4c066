"""One email as bytes, ready for SMTP: multipart/alternative, UTF-8, RFC 8058 unsubscribe, DKIM-signed.

The message is written here line by line with the standard library's encoders (`email.header.Header`
for RFC 2047 words, `email.utils.formataddr`, base64 bodies) rather than through
`email.message.EmailMessage`: that class parses every header again each time it writes one
(Content-Type about seven times a message), which costs 0.6-2 ms a message; a campaign to 100,000
contacts would spend minutes on it. Writing the few headers Kesher sends directly takes tens of
microseconds, and the tests read every message back with the standard parser and verify its DKIM
signature with dkimpy.

Bodies are base64, so the message is 7-bit clean: no relay has to re-encode it (which would
break the DKIM signature), and Hebrew text costs 1.33 bytes a byte instead of quoted-printable's 3.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from email.header import Header
from email.utils import format_datetime, formataddr

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kesher.channels.smtp import DataReady

# The transport is channels/smtp.py; the campaigns import the email channel whole from here.

CRLF = "\r\n"
# Header fields the DKIM signature covers when the message has them (RFC 6376 §5.4.1 recommends
# From, To, Subject, Date, Message-ID, Reply-To, MIME fields; RFC 8058 §4 asks that both
# List-Unsubscribe fields be signed, so a relay cannot point the one-click POST elsewhere).
SIGNED_HEADERS = ("from", "to", "subject", "date", "message-id", "reply-to", "list-unsubscribe",
                  "list-unsubscribe-post", "feedback-id", "mime-version", "content-type")
# Written by Kesher itself; a caller's extra header may not replace one of them.
OWN_HEADERS = frozenset(SIGNED_HEADERS) | {"content-transfer-encoding", "dkim-signature", "return-path"}


@dataclass(frozen=True)
class DkimKey:
    """A sender's DKIM key: the signing domain (d=), the selector (s=) and the RSA key in PEM."""

    domain: str
    selector: str
    private_key_pem: str


def _one_line(value: str) -> str:
    # A template's subject or a sender's name with a line break in it must not start a new header.
    return " ".join(value.split())


# A campaign writes the same sender and, with few distinct first names, the same few subjects again and
# again; `Header` takes longer to encode one than the rest of the message takes to write.
@lru_cache(maxsize=4096)
def _text_header(name: str, value: str) -> str:
    """`value` folded under 78 columns; non-ASCII text as RFC 2047 UTF-8 words."""
    value = _one_line(value)
    charset = "us-ascii" if value.isascii() else "utf-8"
    return Header(value, charset, header_name=name).encode(linesep=CRLF)


def _ascii_address(address: str) -> str:
    """An address as headers carry it without SMTPUTF8: the domain in IDNA (punycode)."""
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        raise ValueError(f"{address!r}: a non-ASCII local part needs SMTPUTF8, which Kesher does not send")
    return f"{local}@{domain.encode('idna').decode('ascii')}" if not domain.isascii() else address


@lru_cache(maxsize=256)
def _address_header(name: str, display_name: str, address: str) -> str:
    address = _ascii_address(address)
    display_name = _one_line(display_name)
    if not display_name:
        return address
    if display_name.isascii():
        return formataddr((display_name, address))  # quotes a name with specials in it
    return f"{Header(display_name, 'utf-8', header_name=name).encode(linesep=CRLF)} <{address}>"


LINE = 76
_SLICES = [slice(i, i + LINE) for i in range(0, LINE * 4096, LINE)]  # bodies up to 300 KB of base64


def _body_part(subtype: str, text: str) -> bytes:
    # Text is canonical with CRLF line breaks before it is encoded (RFC 2046 §4.1.1). The line breaks
    # are CR, LF and CRLF (other separators str.splitlines knows are content); replacing is four times
    # faster than splitting a rendered newsletter into lines and joining them again, and in UTF-8
    # bytes (where CR and LF are never part of another character) faster than in Hebrew text.
    canonical = text.encode("utf-8")
    if b"\r" in canonical:
        canonical = canonical.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    canonical = canonical.replace(b"\n", b"\r\n")
    if not canonical.endswith(b"\r\n"):
        canonical += b"\r\n"
    # One C call encodes it all; lines of 76 (RFC 2045 §6.8) are cut from that, about twice as fast as
    # `base64.encodebytes`, which encodes line by line, and by slices made once, twice as fast again.
    # In bytes to the end: no text copy of the encoded body to join and encode again.
    whole = base64.b64encode(canonical)
    lines = -(-len(whole) // LINE)
    slices = _SLICES[:lines] if lines <= len(_SLICES) else [slice(i, i + LINE) for i in range(0, len(whole), LINE)]
    head = f'Content-Type: text/{subtype}; charset="utf-8"{CRLF}Content-Transfer-Encoding: base64{CRLF}'
    return b"\r\n".join([head.encode("ascii"), *map(whole.__getitem__, slices), b""])


@lru_cache(maxsize=2)
def _date(second: int) -> str:
    return format_datetime(datetime.fromtimestamp(second, UTC))


def _list_unsubscribe(mailto: str | None, url: str | None) -> list[tuple[str, str]]:
    """RFC 2369 List-Unsubscribe, and RFC 8058's one-click POST when there is an https address to post to."""
    uris = [f"<{uri}>" for uri in (mailto and f"mailto:{mailto.removeprefix('mailto:')}", url) if uri]
    if not uris:
        return []
    fields = [("List-Unsubscribe", f",{CRLF} ".join(uris))]
    if url and url.startswith("https://"):
        fields.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    return fields


# DKIM (RFC 6376), rsa-sha256 with relaxed/relaxed canonicalization. The RSA signature is OpenSSL's,
# through `cryptography`: about half a millisecond, where dkimpy's own pure-Python RSA takes ten, which
# would hold a signed campaign to about a hundred messages a second. dkimpy stays the reference: the tests verify
# every signature made here with it.
_WSP = re.compile(rb"[ \t]+")
_WSP_BEFORE_CRLF = re.compile(rb"[ \t]+(?=\r\n)")


@lru_cache(maxsize=16)
def _rsa_key(pem: str) -> rsa.RSAPrivateKey:
    """The key, loaded once: loading checks it, which takes tens of milliseconds."""
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("a DKIM key must be an RSA key")
    return key


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4: no white space at line ends, runs of it as one space, no empty lines at the end."""
    if b"\t" in body or b"  " in body or b" \r\n" in body or body.endswith(b" "):  # base64 lines have none
        body = _WSP.sub(b" ", _WSP_BEFORE_CRLF.sub(b"", body))
    while body.endswith(b"\r\n\r\n"):
        body = body[:-2]
    if body == b"\r\n":
        return b""
    return body if not body or body.endswith(b"\r\n") else body + b"\r\n"


def relaxed_header(name: bytes, value: bytes) -> bytes:
    """RFC 6376 §3.4.2: the name in lower case, the value unfolded, runs of white space as one space, trimmed."""
    return name.strip().lower() + b":" + _WSP.sub(b" ", value.replace(b"\r\n", b"")).strip(b" ") + b"\r\n"


def _fields(head: bytes) -> list[tuple[bytes, bytes]]:
    """The header fields of `head` as (name, value), a folded value with its line breaks."""
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] = (fields[-1][0], fields[-1][1] + b"\r\n" + line)
        else:
            name, _, value = line.partition(b":")
            fields.append((name, value))
    return fields


def _folded_names(names: list[str]) -> str:
    """The h= list, folded after a colon where a line would pass 76 characters."""
    lines = [""]
    for name in names:
        if lines[-1] and len(lines[-1]) + len(name) > 70:
            lines.append("")
        lines[-1] += name + ":"
    return f"{CRLF} ".join(lines)[:-1]


def sign(message: bytes, key: DkimKey) -> bytes:
    """`message` with a DKIM-Signature (rsa-sha256, relaxed/relaxed) over the headers it has of SIGNED_HEADERS."""
    head, _, body = message.partition(b"\r\n\r\n")
    by_name = {name.strip().lower().decode("ascii", "replace"): (name, value) for name, value in _fields(head)}
    present = [name for name in SIGNED_HEADERS if name in by_name]  # the last of a repeated field, as §5.4.2 has it
    body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode("ascii")
    tags = (f" v=1; a=rsa-sha256; c=relaxed/relaxed;{CRLF} d={key.domain.encode('idna').decode('ascii')};"
            f" s={key.selector}; t={int(time.time())};{CRLF} h={_folded_names(present)};{CRLF} bh={body_hash};{CRLF} b=")
    signed = b"".join(relaxed_header(*by_name[name]) for name in present)
    signed += relaxed_header(b"DKIM-Signature", tags.encode("ascii"))[:-2]  # itself, b= empty, no line end
    signature = base64.b64encode(_rsa_key(key.private_key_pem).sign(signed, padding.PKCS1v15(), hashes.SHA256()))
    folded = f"{CRLF} ".join(signature[i:i + 72].decode("ascii") for i in range(0, len(signature), 72))
    return f"DKIM-Signature:{tags}{folded}{CRLF}".encode("ascii") + message


def build_message(
    *, subject: str, html: str, text: str, from_name: str, from_email: str, reply_to: str | None, to: str,
    message_id: str, list_unsubscribe_mailto: str | None, list_unsubscribe_url: str | None,
    feedback_id: str | None, headers: Mapping[str, str] | None = None, dkim: DkimKey | None,
) -> bytes:
    """The message to hand to SMTP: headers, a text then an HTML alternative, and a DKIM signature
    when the sender has a key.

    `message_id` is written in angle brackets whether or not it comes with them. `headers` are extra
    ASCII fields (e.g. a provider's tagging header); they may not replace one Kesher writes. There is
    no Return-Path: the envelope sender (`Outgoing.mail_from`) is where bounces go, and the receiving
    server writes Return-Path from it (RFC 5321 §4.4 asks the sender not to).
    """
    fields: list[tuple[str, str]] = [
        ("From", _address_header("From", from_name, from_email)),
        ("To", _ascii_address(to)),
        ("Subject", _text_header("Subject", subject)),
        ("Date", _date(int(time.time()))),
        ("Message-ID", f"<{message_id.strip('<>')}>"),
    ]
    if reply_to:
        fields.append(("Reply-To", _ascii_address(reply_to)))
    fields += _list_unsubscribe(list_unsubscribe_mailto, list_unsubscribe_url)
    if feedback_id:
        fields.append(("Feedback-ID", feedback_id))
    for name, value in (headers or {}).items():
        if name.lower() in OWN_HEADERS:
            raise ValueError(f"the {name} header is written by Kesher")
        if not (name.isascii() and name.replace("-", "").isalnum()):
            raise ValueError(f"{name!r} is not a header name")
        fields.append((name, _text_header(name, value)))
    boundary = "=_kesher_" + secrets.token_hex(12)  # "=" and "_" never occur inside base64 lines
    fields += [("MIME-Version", "1.0"), ("Content-Type", f'multipart/alternative;{CRLF} boundary="{boundary}"')]
    head = "".join(f"{name}: {value}{CRLF}" for name, value in fields)
    message = b"".join([f"{head}{CRLF}--{boundary}{CRLF}".encode("ascii"), _body_part("plain", text),
                        f"--{boundary}{CRLF}".encode("ascii"), _body_part("html", html),
                        f"--{boundary}--{CRLF}".encode("ascii")])
    # Base64 lines and boundaries never start with a dot or hold a lone CR or LF; the header fields
    # are checked here (a few hundred bytes), so the SMTP client need not scan the whole message.
    # A DKIM-Signature's lines start with its name or a space.
    lines = head.split(CRLF)
    ready = not any(line.startswith(".") or "\r" in line or "\n" in line for line in lines)
    if dkim is not None:
        message = sign(message, dkim)
    return DataReady(message) if ready else message
