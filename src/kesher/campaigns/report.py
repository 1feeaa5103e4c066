"""What a campaign did: delivery, opens, clicks, unsubscribes, complaints and revenue, per variant.

Every figure is counted in a few grouped queries over the outbox and the campaign's events, so a
report over a million recipients costs a handful of index scans, not a query per contact.

- Sent is what the mail server accepted; delivered is sent less the recipients whose message
  bounced, and the rates of response are taken of delivered.
- Opens and clicks are counted by person (unique) and in total. Those that look automatic
  (Apple Mail Privacy Protection fetching every image, link scanners following every link) are
  counted apart and left out of the rates; a recipient with only such opens is a "machine opener".
- Revenue is every purchase a recipient made within ATTRIBUTION_DAYS after their message was sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy import and_, case, distinct, func, select
from sqlalchemy.orm import Session

from kesher.campaigns.models import Campaign
from kesher.channels.outbox import OUTBOX
from kesher.events.lifecycle import epoch_seconds
from kesher.events.models import Event

ATTRIBUTION_DAYS = 5
RESPONSES = ("email_opened", "email_clicked", "email_bounced", "email_complained", "unsubscribed")
EVENTS = Event.__table__


@dataclass
class Figures:
    """A campaign's figures, for one variant or (variant None) for the whole campaign."""

    variant: str | None = None
    sent: int = 0
    failed: int = 0
    bounced: int = 0  # recipients, hard and soft
    hard_bounced: int = 0
    openers: int = 0  # recipients with a person's open
    machine_openers: int = 0  # recipients whose every open looked automatic
    opens: int = 0  # a person's opens, repeats included
    machine_opens: int = 0
    clickers: int = 0
    machine_clickers: int = 0
    clicks: int = 0
    machine_clicks: int = 0
    unsubscribed: int = 0
    complained: int = 0
    orders: int = 0
    revenue_minor: int = 0  # agorot

    @property
    def delivered(self) -> int:
        return max(self.sent - self.bounced, 0)

    @property
    def delivery_rate(self) -> float | None:
        return _share(self.delivered, self.sent)

    @property
    def bounce_rate(self) -> float | None:
        return _share(self.bounced, self.sent)

    @property
    def open_rate(self) -> float | None:
        return _share(self.openers, self.delivered)

    @property
    def click_rate(self) -> float | None:
        return _share(self.clickers, self.delivered)

    @property
    def click_to_open_rate(self) -> float | None:
        return _share(self.clickers, self.openers)

    @property
    def unsubscribe_rate(self) -> float | None:
        return _share(self.unsubscribed, self.delivered)

    @property
    def complaint_rate(self) -> float | None:
        return _share(self.complained, self.delivered)

    @property
    def conversion_rate(self) -> float | None:
        """Orders per delivered message."""
        return _share(self.orders, self.delivered)

    @property
    def revenue(self) -> float:
        return self.revenue_minor / 100

    @property
    def revenue_per_recipient(self) -> float | None:
        return round(self.revenue_minor / self.delivered / 100, 2) if self.delivered else None

    def add(self, other: Figures) -> None:
        for f in fields(self):
            if f.name != "variant":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, Any]:
        counts = {f.name: getattr(self, f.name) for f in fields(self)}
        derived = ("delivered", "delivery_rate", "bounce_rate", "open_rate", "click_rate", "click_to_open_rate",
                   "unsubscribe_rate", "complaint_rate", "conversion_rate", "revenue", "revenue_per_recipient")
        return {**counts, **{name: getattr(self, name) for name in derived}}


@dataclass(frozen=True)
class LinkFigures:
    url: str
    clicks: int  # a person's clicks, repeats included
    clickers: int


@dataclass
class Report:
    campaign_id: int
    total: Figures
    variants: list[Figures] = field(default_factory=list)  # only for an A/B test
    links: list[LinkFigures] = field(default_factory=list)  # most clicked first
    attribution_days: int = ATTRIBUTION_DAYS


    def as_dict(self) -> dict[str, Any]:
        return {"campaign_id": self.campaign_id, "attribution_days": self.attribution_days,
                "total": self.total.as_dict(), "variants": [f.as_dict() for f in self.variants],
                "links": [{"url": link.url, "clicks": link.clicks, "clickers": link.clickers} for link in self.links]}


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _machine() -> Any:
    """True where the open or click was marked automatic when it came in."""
    flag = EVENTS.c.properties["machine"].as_boolean()
    return and_(flag.is_not(None), flag.is_(True))


def report(session: Session, campaign: Campaign, *, links: int = 20) -> Report:
    by_variant: dict[str | None, Figures] = {}

    def figures(variant: str | None) -> Figures:
        return by_variant.setdefault(variant, Figures(variant))

    for variant, status, n in session.execute(
            select(OUTBOX.c.variant, OUTBOX.c.status, func.count()).where(OUTBOX.c.campaign_id == campaign.id)
            .group_by(OUTBOX.c.variant, OUTBOX.c.status)):
        if status == "sent":
            figures(variant).sent += n
        elif status == "failed":
            figures(variant).failed += n

    machine = _machine()
    person = EVENTS.c.contact_id
    responses = (
        select(OUTBOX.c.variant, EVENTS.c.type,
               func.count(distinct(case((~machine, person)))),  # people, by a person's action
               func.count(distinct(person)),  # people, by any action
               func.sum(case((machine, 0), else_=1)),  # a person's actions
               func.sum(case((machine, 1), else_=0)),
               func.count(distinct(case((EVENTS.c.properties["bounce_type"].as_string() == "hard", person)))))
        .select_from(EVENTS.join(OUTBOX, and_(OUTBOX.c.campaign_id == campaign.id, OUTBOX.c.contact_id == person)))
        .where(EVENTS.c.workspace_id == campaign.workspace_id, EVENTS.c.campaign_id == str(campaign.id),
               EVENTS.c.type.in_(RESPONSES))
        .group_by(OUTBOX.c.variant, EVENTS.c.type))
    for variant, kind, people, anyone, actions, automatic, hard in session.execute(responses):
        f = figures(variant)
        if kind == "email_opened":
            f.openers, f.machine_openers, f.opens, f.machine_opens = people, anyone - people, actions, automatic
        elif kind == "email_clicked":
            f.clickers, f.machine_clickers, f.clicks, f.machine_clicks = people, anyone - people, actions, automatic
        elif kind == "email_bounced":
            f.bounced, f.hard_bounced = anyone, hard
        elif kind == "email_complained":
            f.complained = anyone
        else:
            f.unsubscribed = anyone

    bought = EVENTS.alias("bought")
    sent_at = epoch_seconds(OUTBOX.c.sent_at)
    purchases = (
        select(OUTBOX.c.variant, func.count(), func.coalesce(func.sum(bought.c.amount_minor), 0))
        .select_from(OUTBOX.join(bought, and_(
            bought.c.contact_id == OUTBOX.c.contact_id, bought.c.type == "purchase",
            bought.c.ts >= OUTBOX.c.sent_at, epoch_seconds(bought.c.ts) < sent_at + ATTRIBUTION_DAYS * 86400)))
        .where(OUTBOX.c.campaign_id == campaign.id, OUTBOX.c.status == "sent")
        .group_by(OUTBOX.c.variant))
    for variant, orders, revenue in session.execute(purchases):
        f = figures(variant)
        f.orders, f.revenue_minor = orders, int(revenue)

    total = Figures(None)
    for f in by_variant.values():
        total.add(f)
    labelled = sorted((f for v, f in by_variant.items() if v), key=lambda f: f.variant or "")
    return Report(campaign.id, total, labelled if len(labelled) > 1 else [],
                  clicked_links(session, campaign, links))


def clicked_links(session: Session, campaign: Campaign, limit: int = 20) -> list[LinkFigures]:
    """The campaign's links by a person's clicks, total and unique; automatic clicks left out."""
    url = EVENTS.c.properties["url"].as_string()
    rows = session.execute(
        select(url, func.count(), func.count(distinct(EVENTS.c.contact_id)))
        .where(EVENTS.c.workspace_id == campaign.workspace_id, EVENTS.c.campaign_id == str(campaign.id),
               EVENTS.c.type == "email_clicked", ~_machine())
        .group_by(url).order_by(func.count().desc(), url).limit(limit))
    return [LinkFigures(u or "", clicks, clickers) for u, clicks, clickers in rows]
