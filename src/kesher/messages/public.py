"""The public routes behind the links of every message: open pixel, click redirect, unsubscribe, preferences.

No login: each request is authorised by its signed token (see `tracking.py`), which names an
outbox message; the workspace, the contact and the address come from that message's row. The
forms here carry no CSRF token and set no cookie: the token in the address is the proof, and the
RFC 8058 one-click POST comes from mail providers that hold no session.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from ipaddress import ip_address, ip_network
from typing import Annotated, Any
from urllib.parse import quote, urlsplit, urlunsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from kesher.accounts.models import Workspace
from kesher.channels import outbox
from kesher.channels.models import OutboxMessage
from kesher.contacts import service as contacts
from kesher.contacts.service import ContactDetail
from kesher.db import Database
from kesher.db.base import utcnow
from kesher.errors import NotFound
from kesher.messages import preferences
from kesher.messages.tracking import Tracking
from kesher.web.deps import DbSession
from kesher.web.i18n import _, current_language, direction, pick_language
from kesher.web.pages import templates

# A transparent 1x1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}
APPLE_NETWORK = ip_network("17.0.0.0/8")
SCANNER_AGENT = re.compile(
    r"\bbot\b|(bot|crawler|spider)/|scan|barracuda|mimecast|proofpoint|symantec|trend ?micro|forcepoint|ironport|"
    r"fortinet|sophos|python|curl/|wget/|go-http-client|okhttp|java/|libwww|headless", re.IGNORECASE)
TOO_SOON = timedelta(seconds=2)
ONE_CLICK = "One-Click"


@dataclass(frozen=True)
class Fetcher:
    """Who fetched the pixel or followed the link: `machine` when the signals point away from a person."""

    machine: bool = False
    signal: str | None = None

    def properties(self) -> dict[str, Any]:
        return {**({"machine": True} if self.machine else {}), **({"signal": self.signal} if self.signal else {})}


def who_fetched(user_agent: str, ip: str | None, since_sent: timedelta | None) -> Fetcher:
    """Tell a person's open or click from a machine's, as far as the request shows; reports count both apart.

    The signals, checked in this order:

    - `apple_mpp`: Apple Mail Privacy Protection fetches every image of a mail through Apple's proxy
      when the mail reaches the device, whether it is read or not. The proxy calls from Apple's
      network 17.0.0.0/8 and says only `Mozilla/5.0`; either is taken as the proxy. Limits: a read
      behind MPP cannot be told from no read at all, so every MPP open counts as a machine's; a
      person on Apple's own network looks the same; proxies outside 17/8 with a full user agent pass.
    - `scanner`: security gateways and link checkers (Proofpoint, Mimecast, Barracuda...), crawlers
      and scripts that name themselves in the user agent. Limit: many scanners pose as a browser.
    - `too_soon`: within 2 seconds of sending; no one reads or clicks that fast, but gateways that
      check a mail as it arrives do. Limit: a scanner that waits longer passes as a person.
    - `gmail_proxy`: Gmail fetches images through its GoogleImageProxy when the person opens the
      mail, so this is a person's open (not a machine). Limit: Gmail keeps the image, so a second
      open by the same person may never reach Kesher.

    The address is the one the request came from: behind a reverse proxy, run the server so that it
    takes the client's address from the proxy's headers (uvicorn `--proxy-headers`).
    """
    if user_agent.strip() == "Mozilla/5.0" or _in_network(ip, APPLE_NETWORK):
        return Fetcher(True, "apple_mpp")
    if SCANNER_AGENT.search(user_agent):
        return Fetcher(True, "scanner")
    if since_sent is not None and since_sent < TOO_SOON:
        return Fetcher(True, "too_soon")
    if "GoogleImageProxy" in user_agent:
        return Fetcher(False, "gmail_proxy")
    return Fetcher()


def _in_network(ip: str | None, network: Any) -> bool:
    try:
        return ip is not None and ip_address(ip) in network
    except ValueError:
        return False


class PublicRoute(APIRoute):
    """A route whose NotFound (a bad token, a message no longer kept) is the public "link not valid" page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                return await handler(request)
            except NotFound:
                language = pick_language(request.headers.get("accept-language", "")[:2].lower())
                return _page(request, "public/not_found.html", language, None, status_code=404)

        return page


router = APIRouter(route_class=PublicRoute, include_in_schema=False)


@lru_cache(maxsize=4)
def _reader(secret: str) -> Tracking:
    # Addresses made here lead to this same site, so they are relative.
    return Tracking("", secret)


def _tracking(request: Request) -> Tracking:
    return _reader(request.app.state.settings.secret_key)


def _ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _page(request: Request, template: str, language: str, workspace: Workspace | None, status_code: int = 200,
          **data: Any) -> HTMLResponse:
    # Rendered in this thread, so the language set here is the one the template's `_` reads.
    current_language.set(language)
    context = {"lang": language, "dir": direction(language), "workspace": workspace, **data}
    return templates.TemplateResponse(request, template, context, status_code=status_code, headers=NO_STORE)


# Opens and clicks: answered at once, recorded after the answer -----------------------------------


@router.get("/o/{token}.gif")
def open_pixel(token: str, request: Request) -> Response:
    try:
        message_id = _tracking(request).read_open(token)
    except NotFound:
        return Response(status_code=404, headers=NO_STORE)
    record = BackgroundTask(_record_fetch, request.app.state.database, message_id, "email_opened", {},
                            request.headers.get("user-agent", ""), _ip(request), utcnow())
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE, background=record)


@router.get("/c/{token}")
def click(token: str, request: Request) -> Response:
    """Redirect to the link's address, which the token's signature proves this message contained."""
    target = _tracking(request).read_click(token)
    record = BackgroundTask(_record_fetch, request.app.state.database, target.message_id, "email_clicked",
                            {"url": target.url}, request.headers.get("user-agent", ""), _ip(request), utcnow())
    return RedirectResponse(_uri(target.url), status_code=302, headers=NO_STORE, background=record)


def _record_fetch(database: Database, message_id: int, event_type: str, properties: dict[str, Any],
                  user_agent: str, ip: str | None, at: datetime) -> None:
    with database.session() as session:
        message = outbox.find(session, message_id)
        if message is None:  # its workspace or contact was deleted since
            return
        since_sent = at - message.sent_at if message.sent_at else None
        fetcher = who_fetched(user_agent, ip, since_sent)
        preferences.record_message_event(session, message, event_type, {**properties, **fetcher.properties()})


def _uri(url: str) -> str:
    """The address as a Location header takes it: a Hebrew domain in IDNA, other non-ASCII percent-encoded."""
    if url.isascii():
        return url
    parts = urlsplit(url)
    safe = "/:?#[]@!$&'()*+,;=%~"
    netloc = parts.netloc
    if not netloc.isascii():
        userinfo, at, hostport = netloc.rpartition("@")
        host, colon, port = hostport.partition(":")
        try:
            host = host.encode("idna").decode()
        except UnicodeError:
            host = quote(host, safe)
        netloc = quote(userinfo, safe) + at + host + colon + port
    return urlunsplit((parts.scheme, netloc, quote(parts.path, safe), quote(parts.query, safe),
                       quote(parts.fragment, safe)))


# Unsubscribe and preferences --------------------------------------------------------------------


@dataclass
class Recipient:
    """The message a token names, with its contact and workspace."""

    message: OutboxMessage
    detail: ContactDetail
    workspace: Workspace

    @property
    def language(self) -> str:
        return pick_language(self.detail.contact.language, pick_language(self.workspace.language))

    @property
    def unsubscribed(self) -> bool:
        consent = self.detail.consent.get(self.message.channel)
        return consent is not None and consent.status == "unsubscribed"


def _recipient(session: Session, message_id: int) -> Recipient:
    message = outbox.find(session, message_id)
    if message is None:
        raise NotFound("this message is no longer kept", "token")
    detail = contacts.contact_detail(session, message.workspace_id, message.contact_id)
    return Recipient(message, detail, session.get_one(Workspace, message.workspace_id))


def _unsubscribe_page(request: Request, recipient: Recipient) -> HTMLResponse:
    return _page(request, "public/unsubscribe.html", recipient.language, recipient.workspace,
                 done=recipient.unsubscribed, address=recipient.message.address,
                 preferences_url=_tracking(request).preferences_url(recipient.message.id))


@router.get("/u/{token}")
def unsubscribe_page(token: str, request: Request, session: DbSession) -> HTMLResponse:
    """Asks to confirm; only the POST unsubscribes, since mail scanners follow every link they see."""
    recipient = _recipient(session, _tracking(request).read_unsubscribe(token))
    return _unsubscribe_page(request, recipient)


@router.post("/u/{token}")
def unsubscribe(
    token: str, request: Request, session: DbSession,
    one_click: Annotated[str | None, Form(alias="List-Unsubscribe")] = None,
) -> Response:
    """The page's confirmation, or the RFC 8058 one-click POST (`List-Unsubscribe=One-Click`)."""
    recipient = _recipient(session, _tracking(request).read_unsubscribe(token))
    current_language.set(recipient.language)
    shown = "List-Unsubscribe=One-Click" if one_click == ONE_CLICK else _("Yes, unsubscribe me")
    preferences.unsubscribe(session, recipient.message, recipient.detail, source="unsubscribe_link",
                            ip=_ip(request), text_shown=shown)
    if one_click == ONE_CLICK:
        return PlainTextResponse("unsubscribed", headers=NO_STORE)
    return _unsubscribe_page(request, _recipient(session, recipient.message.id))


def _channel_names() -> dict[str, str]:
    return {"email": _("Email"), "sms": _("SMS"), "whatsapp": _("WhatsApp")}


@router.get("/p/{token}")
def preferences_page(token: str, request: Request, session: DbSession, saved: bool = False) -> HTMLResponse:
    recipient = _recipient(session, _tracking(request).read_preferences(token))
    current_language.set(recipient.language)
    return _page(request, "public/preferences.html", recipient.language, recipient.workspace, saved=saved,
                 channels=preferences.channel_choices(recipient.message, recipient.detail),
                 channel_names=_channel_names(), topics=preferences.topic_lists(session, recipient.workspace),
                 chosen_topics={lst.id for lst in recipient.detail.lists},
                 less_mail=preferences.get_preferences(session, recipient.message.contact_id).less_mail)


@router.post("/p/{token}")
def save_preferences(
    token: str, request: Request, session: DbSession,
    channel: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI copies defaults
    topic: Annotated[list[int], Form()] = [],  # noqa: B006
    less_mail: Annotated[bool, Form()] = False,
) -> RedirectResponse:
    """The whole form each time: a box left unticked withdraws what it stood for."""
    recipient = _recipient(session, _tracking(request).read_preferences(token))
    current_language.set(recipient.language)
    preferences.save_preferences(session, recipient.workspace, recipient.message.contact_id, less_mail=less_mail,
                                 topics=topic)
    preferences.save_channels(session, recipient.message, recipient.detail, channel, ip=_ip(request),
                              text_shown=_("Your preferences"))
    return RedirectResponse(f"/p/{token}?saved=true", status_code=303, headers=NO_STORE)
