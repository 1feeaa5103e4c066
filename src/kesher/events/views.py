"""UI routes of events: a contact's activity (where it stands, its rollups, its timeline) and the explorer.

The contact card fetches the activity block with HTMX once it shows, so the card never waits for
the events; `/contacts/{id}/activity` is also a page of its own for a browser without JavaScript.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from kesher.contacts import service as contacts
from kesher.contacts.views import PageRoute
from kesher.errors import NotFound, ValidationError
from kesher.events import service
from kesher.events.models import Event
from kesher.events.schemas import CHANNEL_EVENT, CUSTOM, MAX_ID, PROPERTIES, properties_model
from kesher.web.deps import UiContext, csrf_protect, transaction, ui_context
from kesher.web.i18n import _
from kesher.web.pages import is_partial, redirect, render

PAGE_SIZE = 50
MAX_ITEMS_SHOWN = 3
MAX_CUSTOM_PROPERTIES = 3

router = APIRouter(dependencies=[Depends(csrf_protect)], route_class=PageRoute, include_in_schema=False)

ICONS = {
    "email_sent": "✉", "email_delivered": "✓", "email_opened": "◎", "email_clicked": "➚", "email_bounced": "⚠",
    "email_complained": "⚑", "unsubscribed": "⊘", "purchase": "₪", "refund": "↩", "cart_updated": "⊞",
    "cart_abandoned": "⊠", "page_view": "▤", "form_submitted": "✎", "segment_entered": "⊕", "segment_exited": "⊖",
    "stage_changed": "⇄",
}
CHANNEL_ICON, CUSTOM_ICON = "☎", "★"
# The properties a line shows, in this order; a custom event shows a few of its own as well.
SHOWN = ("total", "amount", "items", "order_id", "campaign_id", "url", "title", "bounce_type", "reason", "channel",
         "form_id", "segment_id")
LEFT_TO_RIGHT = {"url", "order_id"}


def type_labels() -> dict[str, str]:
    """The canonical event types as marketers read them, in the order the explorer offers them."""
    labels = {
        "email_sent": _("Email sent"), "email_delivered": _("Email delivered"), "email_opened": _("Email opened"),
        "email_clicked": _("Email link clicked"), "email_bounced": _("Email bounced"),
        "email_complained": _("Marked as spam"), "unsubscribed": _("Unsubscribed"), "purchase": _("Purchase"),
        "refund": _("Refund"), "cart_updated": _("Cart updated"), "cart_abandoned": _("Cart abandoned"),
        "page_view": _("Page viewed"), "form_submitted": _("Form submitted"), "segment_entered": _("Entered a segment"),
        "segment_exited": _("Left a segment"), "stage_changed": _("Stage changed"),
    }
    return {t: labels[t] for t in PROPERTIES}


def stage_names() -> dict[str, str]:
    return {"new": _("New"), "active": _("Active"), "loyal": _("Loyal"), "at_risk": _("At risk"),
            "dormant": _("Dormant"), "lost": _("Lost")}


def loyalty_names() -> dict[str, str]:
    return {"strong": _("Strong"), "medium": _("Medium"), "weak": _("Weak")}


def shekels(amount: float) -> str:
    return f"-₪{-amount:,.2f}" if amount < 0 else f"₪{amount:,.2f}"


def _money(amount: float, currency: str) -> str:
    return shekels(amount) if currency == "ILS" else f"{amount:,.2f} {currency}"


# One event as a line ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Detail:
    label: str
    value: str
    left_to_right: bool = False  # an address or a code, read left to right on a Hebrew page too


@dataclass(frozen=True)
class EventLine:
    """An event as the timeline and the explorer show it: icon, label, the properties that matter, time."""

    id: int
    type: str
    icon: str
    label: str
    ts: datetime
    contact_id: int | None
    anonymous_id: str | None
    details: list[Detail]
    change: tuple[str, str] | None = None  # stage_changed: from, to


def _label(event_type: str) -> tuple[str, str]:
    """Icon and label of any type: canonical, sms_/whatsapp_ channel events and custom:<name>."""
    known = type_labels()
    if event_type in known:
        return ICONS[event_type], known[event_type]
    if CUSTOM.match(event_type):
        return CUSTOM_ICON, _("Custom: %(name)s") % {"name": event_type.removeprefix("custom:")}
    if CHANNEL_EVENT.match(event_type):
        channel, _sep, action = event_type.partition("_")
        name = {"sms": _("SMS"), "whatsapp": _("WhatsApp")}[channel]
        return CHANNEL_ICON, _("%(channel)s: %(action)s") % {"channel": name, "action": action.replace("_", " ")}
    return CUSTOM_ICON, event_type


def _items(items: list[dict[str, Any]]) -> str:
    names = [(f"{i['quantity']:g} × " if i.get("quantity", 1) != 1 else "") + (i.get("name") or i["sku"])
             for i in items[:MAX_ITEMS_SHOWN]]
    if len(items) > MAX_ITEMS_SHOWN:
        names.append(_("and %(count)s more") % {"count": len(items) - MAX_ITEMS_SHOWN})
    return ", ".join(names)


def _details(event: Event) -> list[Detail]:
    props = event.properties or {}
    labels = {
        "total": _("Total"), "amount": _("Amount"), "items": _("Items"), "order_id": _("Order"),
        "campaign_id": _("Campaign"), "url": _("Address"), "title": _("Title"), "bounce_type": _("Bounce"),
        "reason": _("Reason"), "channel": _("Channel"), "form_id": _("Form"), "segment_id": _("Segment"),
    }
    coded = {"hard": _("Hard"), "soft": _("Soft"), "email": _("Email"), "sms": _("SMS"), "whatsapp": _("WhatsApp")}
    currency = str(props.get("currency", "ILS"))
    details: list[Detail] = []
    for key in SHOWN:
        value = props.get(key)
        if value is None or value == "" or value == []:
            continue
        if key in ("total", "amount") and isinstance(value, int | float):
            text = _money(value, currency)
        elif key == "items" and isinstance(value, list):
            text = _items(value)
        else:
            text = coded.get(value, str(value)) if key in ("bounce_type", "channel") else str(value)
        details.append(Detail(labels[key], text, key in LEFT_TO_RIGHT))
    if CUSTOM.match(event.type):
        own = [(k, v) for k, v in props.items() if k not in SHOWN and isinstance(v, str | int | float | bool)]
        details += [Detail(k, str(v)) for k, v in own[:MAX_CUSTOM_PROPERTIES]]
    return details


def describe(event: Event) -> EventLine:
    icon, label = _label(event.type)
    change = None
    if event.type == "stage_changed":
        names, props = stage_names(), event.properties or {}
        change = (names.get(props.get("from") or "", "—"), names.get(props.get("to") or "", "—"))
    return EventLine(event.id, event.type, icon, label, event.ts, event.contact_id, event.anonymous_id,
                     _details(event), change)


# A contact's activity ---------------------------------------------------------------------------


def _timeline(session: Session, workspace_id: int, contact_id: int, cursor: str) -> tuple[list[EventLine], str | None]:
    """A page of the contact's events, newest first; a cursor mangled in the address starts again."""
    flt = service.EventFilter(contact_id=contact_id)
    try:
        rows, next_cursor = service.find_events(session, workspace_id, flt, cursor=cursor or None, limit=PAGE_SIZE)
    except ValidationError:
        rows, next_cursor = service.find_events(session, workspace_id, flt, limit=PAGE_SIZE)
    return [describe(e) for e in rows], next_cursor


@router.get("/contacts/{contact_id}/activity", response_class=HTMLResponse)
def contact_activity(
    request: Request, contact_id: int, cursor: str = "", ctx: UiContext = Depends(ui_context),
    session: Session = transaction,
) -> HTMLResponse:
    ws = ctx.workspace.id
    stats = service.contact_stats(session, ws, contact_id)
    lines, next_cursor = _timeline(session, ws, contact_id, cursor)
    data = {"contact_id": contact_id, "stats": stats, "lines": lines, "next_cursor": next_cursor,
            "stage_names": stage_names(), "loyalty_names": loyalty_names(), "shekels": shekels}
    if is_partial(request):
        response = render(request, "events/_activity.html", ctx, **data)
    else:
        contact = contacts.get_contact(session, ws, contact_id)
        response = render(request, "events/activity.html", ctx, contact=contact, **data)
    response.headers["Vary"] = "HX-Request"
    return response


@router.get("/contacts/{contact_id}/timeline", response_class=HTMLResponse)
def contact_timeline(
    request: Request, contact_id: int, cursor: str = "", ctx: UiContext = Depends(ui_context),
    session: Session = transaction,
) -> Response:
    """The next lines of the timeline, for the "more" button; a plain visit gets the activity page."""
    if not is_partial(request):
        return redirect(f"/contacts/{contact_id}/activity?{urlencode({'cursor': cursor})}")
    contacts.get_contact(session, ctx.workspace.id, contact_id)
    lines, next_cursor = _timeline(session, ctx.workspace.id, contact_id, cursor)
    response = render(request, "events/_timeline.html", ctx, contact_id=contact_id, lines=lines,
                      next_cursor=next_cursor)
    response.headers["Vary"] = "HX-Request"
    return response


# Explorer ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExplorerQuery:
    """The explorer's filters as typed, kept as text to show them back and to page with them."""

    type: str = ""
    custom: str = ""  # any other type, e.g. custom:quiz_done (the prefix may be left out)
    since: str = ""  # a day in the workspace's time zone, YYYY-MM-DD
    until: str = ""  # the last day included
    property: str = ""  # name=value
    contact_id: str = ""

    def encode(self, **extra: str) -> str:
        return urlencode({k: v for k, v in {**asdict(self), **extra}.items() if v})


def explorer_query(
    type: str = "", custom: str = "", since: str = "", until: str = "", property: str = "", contact_id: str = "",
) -> ExplorerQuery:
    return ExplorerQuery(type.strip(), custom.strip(), since.strip(), until.strip(), property.strip(),
                         contact_id.strip())


def _event_type(query: ExplorerQuery) -> str | None:
    """The free text wins over the select; a bare name means custom:<name>."""
    if query.custom:
        return query.custom if properties_model(query.custom) else f"custom:{query.custom}"
    return query.type or None


def _day_start(text: str, zone: ZoneInfo, days_after: int = 0) -> datetime:
    """In UTC, the midnight that starts the day (plus `days_after`) in the workspace's zone.

    ValueError if the text is not a day, or the day is at the very edge of the calendar.
    """
    try:
        day = date.fromisoformat(text) + timedelta(days=days_after)
        return datetime.combine(day, time(), zone).astimezone(UTC)
    except OverflowError:
        raise ValueError(text) from None


def event_filter(query: ExplorerQuery, timezone: str) -> tuple[service.EventFilter, dict[str, str]]:
    """The service's filter from the form, and what to say next to each field that cannot be read."""
    zone = ZoneInfo(timezone)
    errors: dict[str, str] = {}
    since = until = None
    try:
        since = _day_start(query.since, zone) if query.since else None
    except ValueError:
        errors["since"] = _("Enter a date, like 31/12/1990.")
    try:
        until = _day_start(query.until, zone, days_after=1) if query.until else None
    except ValueError:
        errors["until"] = _("Enter a date, like 31/12/1990.")
    properties: dict[str, str] = {}
    if query.property:
        try:
            name, value = service.parse_property_filter(query.property)
            properties[name] = value
        except ValidationError:
            errors["property"] = _("Write it as name=value, like campaign_id=spring-sale.")
    contact_id = None
    if query.contact_id:
        if query.contact_id.isdigit() and 1 <= int(query.contact_id) <= MAX_ID:
            contact_id = int(query.contact_id)
        else:
            errors["contact_id"] = _("Enter a contact number, like 42.")
    return service.EventFilter(type=_event_type(query), contact_id=contact_id, since=since, until=until,
                               properties=properties), errors


def _search(session: Session, workspace_id: int, flt: service.EventFilter, cursor: str,
            errors: dict[str, str]) -> tuple[list[Event], str | None, str]:
    """A page of events and its cursor; the cursor used comes back too ("" when it had to start over)."""
    if errors:
        return [], None, ""
    try:
        rows, next_cursor = service.find_events(session, workspace_id, flt, cursor=cursor or None, limit=PAGE_SIZE)
    except NotFound:  # another workspace's contact looks exactly like a missing one
        errors["contact_id"] = _("No contact with this number in this workspace.")
        return [], None, ""
    except ValidationError:  # a cursor mangled in the address bar: start again at the first page
        cursor = ""
        rows, next_cursor = service.find_events(session, workspace_id, flt, limit=PAGE_SIZE)
    return rows, next_cursor, cursor


@router.get("/events", response_class=HTMLResponse)
def events_page(
    request: Request, cursor: str = "", back: str = "", query: ExplorerQuery = Depends(explorer_query),
    ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> HTMLResponse:
    flt, errors = event_filter(query, ctx.workspace.timezone)
    rows, next_cursor, cursor = _search(session, ctx.workspace.id, flt, cursor, errors)
    # As on the contacts table, `back` carries the cursors of the pages before this one ("-" is the first).
    trail = [b for b in back.split(".") if b] if cursor else []
    data = {
        "query": query, "errors": errors, "lines": [describe(e) for e in rows], "types": type_labels(),
        "names": contacts.display_names(session, ctx.workspace.id, (e.contact_id for e in rows if e.contact_id)),
        "next_query": query.encode(cursor=next_cursor, back=".".join([*trail, cursor or "-"])) if next_cursor else None,
        "prev_query": query.encode(cursor="" if trail[-1] == "-" else trail[-1], back=".".join(trail[:-1]))
        if trail else None,
    }
    template = "events/_results.html" if is_partial(request) and request.headers.get("HX-Target") == "results" \
        else "events/index.html"
    response = render(request, template, ctx, **data)
    response.headers["Vary"] = "HX-Request"
    return response
