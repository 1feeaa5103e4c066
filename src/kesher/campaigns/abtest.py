"""A/B tests: a share of the audience gets the variants; after a wait the winner goes to the rest.

The winner is the variant best by the chosen metric, but only when it beats the runner-up by a
statistically significant margin (two-sided, 5%):

- open rate and click rate: the two-proportion z-test, with the pooled proportion;
- revenue per recipient: Welch's test of two means, read against the normal distribution (the
  test shares are large; for a few hundred recipients this is close to Welch's t).

Opens and clicks that look automatic (privacy proxies, link scanners) do not count. Revenue is
every purchase a recipient made after their message was sent. Without a significant difference
the default variant (A) goes out, and the report says so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from kesher.accounts.models import Workspace
from kesher.campaigns import audience, service
from kesher.campaigns.models import Campaign
from kesher.channels.outbox import OUTBOX
from kesher.events.service import campaign_responders, purchases_since
from kesher.policy import gate

ALPHA = 0.05


@dataclass(frozen=True)
class Arm:
    variant: str
    recipients: int
    value: float  # the rate (0..1) or the mean revenue per recipient in shekels
    successes: int = 0  # openers or clickers
    variance: float = 0.0  # of revenue per recipient


@dataclass(frozen=True)
class Decision:
    winner: str
    significant: bool
    method: str
    p_value: float | None
    statistic: float | None
    arms: list[Arm]

    def report(self) -> dict[str, Any]:
        return {**asdict(self), "arms": [asdict(a) for a in self.arms]}


def _normal_p(z: float) -> float:
    """Two-sided p-value of a standard normal statistic."""
    return math.erfc(abs(z) / math.sqrt(2))


def two_proportion_z(a: Arm, b: Arm) -> tuple[float, float] | None:
    if not a.recipients or not b.recipients:
        return None
    pooled = (a.successes + b.successes) / (a.recipients + b.recipients)
    se = math.sqrt(pooled * (1 - pooled) * (1 / a.recipients + 1 / b.recipients))
    if se == 0:
        return None
    z = (a.value - b.value) / se
    return z, _normal_p(z)


def welch(a: Arm, b: Arm) -> tuple[float, float] | None:
    if a.recipients < 2 or b.recipients < 2:
        return None
    se = math.sqrt(a.variance / a.recipients + b.variance / b.recipients)
    if se == 0:
        return None
    z = (a.value - b.value) / se
    return z, _normal_p(z)


def _recipients(campaign_id: int) -> Any:
    return (select(OUTBOX.c.contact_id, OUTBOX.c.variant, OUTBOX.c.sent_at)
            .where(OUTBOX.c.campaign_id == campaign_id, OUTBOX.c.status == "sent", OUTBOX.c.variant.is_not(None))
            .subquery())


def arms(session: Session, campaign: Campaign, metric: str) -> list[Arm]:
    sent = _recipients(campaign.id)
    labels = [v.label for v in service.variants_of(session, campaign.id)]
    if metric in ("open_rate", "click_rate"):
        kind = "email_opened" if metric == "open_rate" else "email_clicked"
        responders = campaign_responders(campaign.workspace_id, str(campaign.id), kind).subquery()
        rows = session.execute(
            select(sent.c.variant, func.count(), func.count(responders.c.contact_id))
            .select_from(sent.outerjoin(responders, responders.c.contact_id == sent.c.contact_id))
            .group_by(sent.c.variant)).all()
        found = {v: Arm(v, n, (k / n) if n else 0.0, k) for v, n, k in rows}
    else:
        first = session.scalar(select(func.min(sent.c.sent_at)))
        if first is None:
            return [Arm(label, 0, 0.0) for label in labels]
        bought = purchases_since(campaign.workspace_id, first).subquery()
        per_person = (select(sent.c.variant, sent.c.contact_id,
                             (func.coalesce(func.sum(bought.c.amount_minor), 0) / 100.0).label("revenue"))
                      .select_from(sent.outerjoin(bought, and_(bought.c.contact_id == sent.c.contact_id,
                                                               bought.c.ts >= sent.c.sent_at)))
                      .group_by(sent.c.variant, sent.c.contact_id).subquery())
        rows = session.execute(select(per_person.c.variant, func.count(), func.sum(per_person.c.revenue),
                                      func.sum(per_person.c.revenue * per_person.c.revenue))
                               .group_by(per_person.c.variant)).all()
        found = {}
        for v, n, total, squares in rows:
            mean = float(total or 0) / n
            variance = (float(squares or 0) - n * mean * mean) / (n - 1) if n > 1 else 0.0
            found[v] = Arm(v, n, mean, variance=max(variance, 0.0))
    return [found.get(label, Arm(label, 0, 0.0)) for label in labels]


def decide(arms_: list[Arm], metric: str, default: str = "A") -> Decision:
    ranked = sorted(arms_, key=lambda a: (-a.value, a.variant))
    method = "two-proportion z-test" if metric != "revenue" else "Welch's test (normal approximation)"
    if len(ranked) < 2:
        return Decision(default, False, method, None, None, arms_)
    best, runner_up = ranked[0], ranked[1]
    result = (two_proportion_z if metric != "revenue" else welch)(best, runner_up)
    if result is None:
        return Decision(default, False, method, None, None, arms_)
    statistic, p_value = result
    significant = p_value < ALPHA and best.value > runner_up.value
    return Decision(best.variant if significant else default, significant, method, p_value, statistic, arms_)


def due(campaign: Campaign, now: datetime) -> bool:
    sent_at = (campaign.ab or {}).get("test_sent_at")
    if campaign.status != "testing" or not sent_at:
        return False
    return now >= datetime.fromisoformat(sent_at) + timedelta(hours=float(campaign.ab.get("wait_hours", 4)))


def conclude(session: Session, workspace: Workspace, campaign: Campaign, now: datetime) -> Decision:
    """Choose the winner and write the rest of the audience to the outbox with it."""
    metric = campaign.ab.get("metric", "open_rate")
    decision = decide(arms(session, campaign, metric), metric)
    campaign.ab = {**campaign.ab, "winner": decision.winner, "decided_at": now.isoformat(),
                   "report": decision.report()}
    audience.materialize_rest(session, campaign, decision.winner, gate.next_allowed(workspace, campaign.channel, now))
    campaign.status = "sending"
    session.flush()
    return decision
