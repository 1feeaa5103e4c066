"""Load the demo shop into a workspace: its admin, custom fields, lists, tags, contacts and history.

Everything is found again by a stable key (workspace slug, user email, field key, list or tag
name, contact external id), so loading twice leaves the database as loading once did. Contacts
stream from the generator in batches, so a million of them take no more memory than a thousand.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import Any

from sqlalchemy.orm import Session

from kesher.accounts import service as accounts
from kesher.contacts import groups
from kesher.contacts.fields import create_field, fields_by_key
from kesher.contacts.inputs import ContactInput
from kesher.contacts.models import CustomField
from kesher.contacts.service import build_input
from kesher.contacts.upsert import Outcome, upsert_contacts
from kesher.db import Database
from kesher.demo import generator
from kesher.errors import NotFound
from kesher.db.upsert import refresh_statistics
from kesher.events.ingest import ingest, settle
from kesher.events.models import Event, PurchaseItem
from kesher.events.schemas import IngestResult

DEMO_NAME = "חנות הדגמה"
DEMO_SLUG = "demo"
ADMIN_EMAIL = "admin@kesher.local"
BATCH_SIZE = 2000
SOURCE = "demo"
NEWSLETTER = "ניוזלטר"  # everyone who agreed to email
CUSTOMERS = "לקוחות"  # everyone who has bought, i.e. all but prospects
TYPE_TAGS = {"loyal": "נאמן", "occasional": "מזדמן", "dormant": "רדום", "new": "חדש", "prospect": "מתעניין"}
ROLES = ("customer", "family", "caregiver")
FIELDS = (("customer_type", "סוג לקוח", tuple(TYPE_TAGS)), ("role", "תפקיד", ROLES))
CONTACT_FIELDS = ("external_id", "email", "phone", "first_name", "last_name", "gender", "birthday", "city", "language")
# Consent is recorded only for channels the contact can be reached on: (channel, address field).
CONSENT = (("email", "email"), ("sms", "phone"), ("whatsapp", "phone"))


@dataclass(frozen=True)
class DemoAccess:
    """How to get into the demo workspace; the API key only on the run that created the workspace."""

    workspace_id: int
    workspace_name: str
    workspace_slug: str
    email: str
    password: str
    api_key: str | None


@dataclass
class LoadResult:
    """What loading did to the contacts, by upsert outcome."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    first_error: str | None = None

    @property
    def loaded(self) -> int:
        return self.created + self.updated + self.unchanged

    def add(self, outcomes: list[Outcome]) -> None:
        counts = Counter(outcome.status for outcome in outcomes)
        self.created += counts["created"]
        self.updated += counts["updated"]
        self.unchanged += counts["unchanged"]
        self.failed += counts["error"]
        if self.first_error is None:
            failure = next((o for o in outcomes if o.status == "error"), None)
            if failure is not None:
                error = failure.errors[0]
                self.first_error = f"contact {failure.ref + 1}, {error.field}: {error.message}"


@dataclass(frozen=True)
class _Shop:
    """The workspace's custom fields, and the list and tag ids the demo contacts go into."""

    fields: dict[str, CustomField]
    newsletter_id: int
    customers_id: int
    tag_ids: dict[str, int]  # customer type -> tag id


def ensure_access(db: Database, *, name: str = DEMO_NAME, slug: str = DEMO_SLUG, email: str = ADMIN_EMAIL,
                  ) -> DemoAccess:
    """The demo workspace (created with an API key the first time) and its admin, with a new password each run."""
    password = secrets.token_urlsafe(12)
    api_key = None
    with db.session() as session:
        try:
            workspace = accounts.get_workspace(session, slug)
        except NotFound:
            workspace = accounts.create_workspace(session, name, slug=slug)
            _, api_key = accounts.create_api_key(session, workspace, "demo")
        try:
            user = accounts.set_password(session, email, password)
        except NotFound:
            user = accounts.create_user(session, email, password, name="Admin")
        accounts.add_member(session, user, workspace)
        return DemoAccess(workspace.id, workspace.name, workspace.slug, user.email, password, api_key)


def load_contacts(
    db: Database, workspace_id: int, n: int, seed: int = 42, *, batch_size: int = BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
) -> LoadResult:
    """Create or merge the first `n` demo contacts of `seed`; `progress` hears how many are done after each batch."""
    people, done = generator.contacts(n, seed), 0  # checks n before anything is written
    with db.session() as session:
        shop = _prepare(session, workspace_id)
    result = LoadResult()
    while batch := list(islice(people, batch_size)):
        parts = _split(workspace_id, shop, batch, done)
        with db.session() as session:
            for (list_ids, tag_id), items in parts.items():
                result.add(upsert_contacts(session, workspace_id, items, source=SOURCE, list_ids=list_ids,
                                           tag_ids=[tag_id]))
        done += len(batch)
        if progress is not None:
            progress(done)
    return result


def _prepare(session: Session, workspace_id: int) -> _Shop:
    known = fields_by_key(session, workspace_id)
    for key, label, choices in FIELDS:
        if key not in known:
            known[key] = create_field(session, workspace_id, key, label, "choice", list(choices), actor=SOURCE)
    newsletter, customers = (groups.get_or_create(session, workspace_id, "list", name, actor=SOURCE)
                             for name in (NEWSLETTER, CUSTOMERS))
    tag_ids = {kind: groups.get_or_create(session, workspace_id, "tag", name, actor=SOURCE).id
               for kind, name in TYPE_TAGS.items()}
    return _Shop(known, newsletter.id, customers.id, tag_ids)


def _split(workspace_id: int, shop: _Shop, batch: list[dict[str, Any]], start: int,
           ) -> dict[tuple[tuple[int, ...], int], list[ContactInput]]:
    """The batch's contacts by the (lists, tag) they belong in, so that each part is one upsert."""
    parts: dict[tuple[tuple[int, ...], int], list[ContactInput]] = {}
    for ref, person in enumerate(batch, start):
        kind = person["customer_type"]
        newsletter = (shop.newsletter_id,) if person["consent_email"] else ()
        customers = (shop.customers_id,) if kind != "prospect" else ()
        item = build_input(None, workspace_id, ref, _contact_data(person), known_fields=shop.fields)
        item.created_at = person["created_at"]
        parts.setdefault((newsletter + customers, shop.tag_ids[kind]), []).append(item)
    return parts


def _contact_data(person: dict[str, Any]) -> dict[str, Any]:
    data = {key: person[key] for key in CONTACT_FIELDS}
    data["fields"] = {"customer_type": person["customer_type"], "role": person["role"]}
    data["consent"] = {channel: "granted" if person[f"consent_{channel}"] else "denied"
                       for channel, address in CONSENT if person[address]}
    return data


def load_events(
    db: Database, workspace_id: int, n_contacts: int, n_events: int | None, seed: int = 42, *,
    batch_size: int = 5000, progress: Callable[[int], None] | None = None,
) -> IngestResult:
    """The shop's year of behaviour, stored as history: the events in bulk, then rollups, stages
    and segments computed once from all of them (`ingest.settle`), as live ingest would have left them.

    Every generated event has a stable idempotency key, so loading twice stores each once.
    """
    from kesher.accounts.models import Workspace

    from kesher.events.catalogue import seed_demo

    with db.session() as session:
        seed_demo(session, workspace_id)  # the catalogue first: replenishment needs its usage periods
    total = IngestResult()
    stream = generator.events(n_contacts, n_events, seed)
    while batch := list(islice(stream, batch_size)):
        with db.session() as session:
            result = ingest(session, session.get_one(Workspace, workspace_id), batch, source=SOURCE, history=True)
        total.accepted += result.accepted
        total.duplicates += result.duplicates
        total.errors += result.errors
        if progress:
            progress(len(batch))
    with db.session() as session:  # a year of history at once: let the planner see it
        for table, sampled in ((Event.__table__, True), (PurchaseItem.__table__, True)):
            refresh_statistics(session, table, sampled=sampled)
    settle(db, workspace_id)  # its segments step refreshes the statistics of contacts and rollups
    return total
