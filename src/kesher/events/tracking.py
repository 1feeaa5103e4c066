"""Websites that send behaviour: tracking sites, their public write keys and origins, collect and identify.

A site's write key is public (it sits in the shop's HTML), so it can do little: add behaviour
events to its workspace from the site's own origins, and name the visitor by email or phone.
It reads nothing. A visitor stays anonymous (an `anonymous_id` the snippet keeps in the browser)
until identified; then the visitor's anonymous events move to the contact, and later ones go
straight to it: the mapping is the events themselves, no table of visitors.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticError
from sqlalchemy import select
from sqlalchemy.orm import Session

from kesher.accounts.models import Workspace
from kesher.accounts.service import audit
from kesher.contacts.inputs import ContactInput
from kesher.contacts.models import Contact
from kesher.contacts.normalize import normalize_email, normalize_phone
from kesher.contacts.upsert import upsert_contacts
from kesher.db.base import utcnow
from kesher.errors import AuthError, KesherError, NotFound, ValidationError
from kesher.events.ingest import attach_anonymous, ingest
from kesher.events.models import Event, TrackingSite
from kesher.events.schemas import IngestError, IngestResult

KEY_PREFIX = "pk_"
BEHAVIOUR_TYPES = ("page_view", "cart_updated", "cart_abandoned", "form_submitted")
MAX_EVENTS_PER_CALL = 50
MAX_BODY_BYTES = 64 * 1024
MAX_ORIGINS = 100
NAME_LIMIT = 200
# A browser's clock can be wrong: a time further off than this is replaced by the time of arrival.
CLOCK_SKEW = timedelta(minutes=5)
MAX_DELAY = timedelta(days=1)
DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")


class OriginNotAllowed(KesherError):
    status = 403


# Sites ------------------------------------------------------------------------------------------


def clean_origin(value: str, field: str) -> str:
    """`scheme://host[:port]`, as a browser writes it in `Origin`: lower case, no default port, no path."""
    text = value.strip()
    wrong = ValidationError("{value!r} is not an origin; write scheme://host[:port], such as "
                            "https://shop.example.co.il (no path)", field, value=text[:100])
    try:
        parts = urlsplit(text)
        port = parts.port
        host = (parts.hostname or "").encode("idna").decode("ascii")
    except (ValueError, UnicodeError):
        raise wrong from None
    if parts.scheme not in DEFAULT_PORTS or "@" in parts.netloc or parts.path not in ("", "/") or parts.query \
            or parts.fragment:
        raise wrong
    if not _HOST.match(host):
        try:
            host = f"[{ipaddress.IPv6Address(host)}]"
        except ValueError:
            raise wrong from None
    origin = f"{parts.scheme}://{host}"
    return origin if port in (None, DEFAULT_PORTS[parts.scheme]) else f"{origin}:{port}"


def _origins(values: list[str]) -> list[str]:
    if len(values) > MAX_ORIGINS:
        raise ValidationError("lists {count} origins; at most {limit} are allowed", "allowed_origins",
                              count=len(values), limit=MAX_ORIGINS)
    return list(dict.fromkeys(clean_origin(v, f"allowed_origins.{i}") for i, v in enumerate(values)))


def _name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise ValidationError("must not be empty", "name")
    if len(name) > NAME_LIMIT:
        raise ValidationError("is longer than {limit} characters", "name", limit=NAME_LIMIT)
    return name


def create_site(session: Session, workspace_id: int, name: str, origins: list[str], *,
                actor: str = "system") -> TrackingSite:
    site = TrackingSite(workspace_id=workspace_id, name=_name(name), allowed_origins=_origins(origins),
                        write_key=KEY_PREFIX + secrets.token_urlsafe(24))
    session.add(site)
    session.flush()
    audit(session, workspace_id, actor, "tracking_site.created", "tracking_site", site.id,
          {"name": site.name, "allowed_origins": site.allowed_origins})
    return site


def list_sites(session: Session, workspace_id: int) -> list[TrackingSite]:
    return list(session.scalars(select(TrackingSite).where(TrackingSite.workspace_id == workspace_id)
                                .order_by(TrackingSite.id)))


def get_site(session: Session, workspace_id: int, site_id: int) -> TrackingSite:
    site = session.scalar(select(TrackingSite).where(TrackingSite.workspace_id == workspace_id,
                                                     TrackingSite.id == site_id))
    if site is None:
        raise NotFound("no tracking site {id}", "id", id=site_id)
    return site


def update_site(session: Session, workspace_id: int, site_id: int, *, name: str | None = None,
                origins: list[str] | None = None, actor: str = "system") -> TrackingSite:
    """Rename a site or replace its allowed origins; an empty list pauses it (nothing is accepted)."""
    site = get_site(session, workspace_id, site_id)
    changes: dict[str, Any] = {}
    if name is not None:
        site.name = changes["name"] = _name(name)
    if origins is not None:
        site.allowed_origins = changes["allowed_origins"] = _origins(origins)
    if changes:
        audit(session, workspace_id, actor, "tracking_site.updated", "tracking_site", site.id, changes)
    return site


def delete_site(session: Session, workspace_id: int, site_id: int, *, actor: str = "system") -> None:
    """Forget a site: its key stops working at once; the events it sent stay."""
    site = get_site(session, workspace_id, site_id)
    session.delete(site)
    audit(session, workspace_id, actor, "tracking_site.deleted", "tracking_site", site_id, {"name": site.name})


# What a visitor's browser may do ----------------------------------------------------------------


def site_for(session: Session, write_key: str, origin: str) -> TrackingSite:
    """The site of a write key, when the request comes from one of the site's origins."""
    site = session.scalar(select(TrackingSite).where(TrackingSite.write_key == write_key))
    if site is None:
        raise AuthError("no tracking site has this write key; copy it from the site in Kesher", "key")
    if origin not in site.allowed_origins:
        if not origin:
            raise OriginNotAllowed("a request without Origin is not one of this site's allowed origins", "Origin")
        raise OriginNotAllowed("{origin} is not one of this site's allowed origins", "Origin", origin=origin)
    return site


def origin_known(session: Session, origin: str) -> bool:
    """Whether any site lists this origin: all a CORS preflight can be asked, as it carries no write key."""
    return any(origin in origins for origins in session.scalars(select(TrackingSite.allowed_origins)))


class TrackedEvent(BaseModel):
    """One event as a website sends it: the visitor is the sender, so it names no contact."""

    model_config = ConfigDict(extra="forbid")

    type: Annotated[str, Field(min_length=1, max_length=80)]
    ts: AwareDatetime | None = None
    properties: dict[str, Any] = {}


def is_behaviour(event_type: str) -> bool:
    """What a browser may report; a mistyped `custom:` name is left for ingest to explain."""
    return event_type in BEHAVIOUR_TYPES or event_type.startswith("custom:")


def _when(sent: datetime | None, now: datetime) -> datetime:
    if sent is None or not now - MAX_DELAY <= sent <= now + CLOCK_SKEW:
        return now
    return min(sent, now)


def visitor_contact(session: Session, workspace_id: int, anonymous_id: str) -> int | None:
    """The contact a visitor was identified as: that of the visitor's latest event that has one."""
    return session.scalar(
        select(Event.contact_id)
        .where(Event.workspace_id == workspace_id, Event.anonymous_id == anonymous_id, Event.contact_id.is_not(None))
        .order_by(Event.id.desc()).limit(1))


def collect(session: Session, site: TrackingSite, anonymous_id: str, raw_events: list[Any],
            region: str = "IL") -> IngestResult:
    """Store a visitor's behaviour; any other event is refused on its own, reported by its index."""
    now = utcnow()
    contact_id = visitor_contact(session, site.workspace_id, anonymous_id)
    errors: list[IngestError] = []
    batch: list[dict[str, Any]] = []
    sent_at: list[int] = []  # the index in `raw_events` of each event of `batch`
    for index, raw in enumerate(raw_events):
        try:
            event = TrackedEvent.model_validate(raw)
        except PydanticError as exc:
            err = exc.errors()[0]
            errors.append(IngestError(index=index, field=".".join(str(p) for p in err["loc"]) or "event",
                                      message=err["msg"]))
            continue
        if not is_behaviour(event.type):
            errors.append(IngestError(index=index, field="type", message=(
                f"{event.type!r} cannot be sent from a website; only {', '.join(BEHAVIOUR_TYPES)} and custom:<name>")))
            continue
        sent_at.append(index)
        batch.append({"type": event.type, "ts": _when(event.ts, now), "properties": event.properties,
                      "anonymous_id": anonymous_id, **({"contact": {"id": contact_id}} if contact_id else {})})
    workspace = session.get_one(Workspace, site.workspace_id)
    result = ingest(session, workspace, batch, source="web", region=region)
    errors += [e.model_copy(update={"index": sent_at[e.index]}) for e in result.errors]
    result.errors = sorted(errors, key=lambda e: e.index)
    return result


def identify(session: Session, site: TrackingSite, anonymous_id: str, *, email: str | None = None,
             phone: str | None = None, region: str = "IL") -> int | None:
    """Name a visitor by email (else phone): find or create the contact, and give it the visitor's history.

    Returns the contact, or None when the workspace creates no contacts from events and none matched.
    """
    kind, value = ("email", normalize_email(email)) if email else ("phone", normalize_phone(phone, region))
    if value is None:
        raise ValidationError("name the visitor by email or phone", "email")
    workspace = session.get_one(Workspace, site.workspace_id)
    contact_id = _find_or_create(session, workspace, kind, value)
    if contact_id is not None:
        attach_anonymous(session, workspace, anonymous_id, contact_id)
    return contact_id


def _find_or_create(session: Session, workspace: Workspace, kind: str, value: str) -> int | None:
    found = session.scalar(select(Contact.id).where(Contact.workspace_id == workspace.id,
                                                    getattr(Contact, kind) == value))
    # As for events sent through the API: a workspace that creates no contacts from events gets none from sites.
    if found is not None or not workspace.settings.get("events_create_contacts", True):
        return found
    return upsert_contacts(session, workspace.id, [ContactInput(0, {kind: value})], source="web")[0].contact_id
