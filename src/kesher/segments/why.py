"""Why a contact is in or out of a segment, as the contact card shows it: the explain tree with
each condition in words, whether it holds, and the facts behind it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from markupsafe import Markup

from kesher.events.models import Event
from kesher.events.views import EventLine, describe, stage_names
from kesher.segments.compiler import STATS
from kesher.segments.wording import Names, channel_names, coded_values, sentence, status_names, value_text
from kesher.web.i18n import _, ngettext
from kesher.web.pages import local_time


@dataclass
class CampaignLine:
    campaign_id: str
    sent_at: str
    opened_at: str  # "" when not opened
    clicked_at: str


@dataclass
class Reason:
    """One node of the rule for one contact: the words, the verdict and the evidence."""

    text: Markup
    matched: bool
    kind: str
    facts: list[str] = field(default_factory=list)
    events: list[EventLine] = field(default_factory=list)
    campaigns: list[CampaignLine] = field(default_factory=list)
    children: list[Reason] = field(default_factory=list)
    inner: Reason | None = None  # a segment condition: that segment's own tree


def reason(finding: dict[str, Any], names: Names, timezone: str) -> Reason:
    """The explain tree (`Finding.as_json()`) ready to show."""
    kind, evidence = finding["kind"], finding["evidence"]
    node = Reason(sentence(finding["rule"], names), finding["matched"], kind,
                  children=[reason(child, names, timezone) for child in finding["children"]])
    when = _Times(timezone)
    if kind == "field":
        key = evidence.get("field", "")
        value = evidence.get("value")
        shown = when.moment(value) if _is_moment(value) else value_text(value, coded_values().get(key))
        node.facts.append(_("Value: %(value)s") % {"value": shown} if value not in (None, "") else _("No value"))
    elif kind == "stat":
        value, stat = evidence.get("value"), STATS.get(evidence.get("stat", ""))
        money = bool(stat and stat.scale != 1)
        coded = coded_values().get(evidence["stat"])
        shown = when.moment(value) if _is_moment(value) else value_text(value, coded, money)
        node.facts.append(_("Value: %(value)s") % {"value": shown} if value is not None else _("No value yet"))
    elif kind == "stage":
        if evidence.get("stage"):
            stage = stage_names().get(evidence["stage"], evidence["stage"])
            node.facts.append(_("Stage: %(stage)s, since %(time)s") % {"stage": stage,
                                                                        "time": when.moment(evidence.get("since"))})
        else:
            node.facts.append(_("No stage yet"))
    elif kind == "event":
        node.facts.append(ngettext("%(num)s matching event", "%(num)s matching events", evidence["count"])
                          % {"num": evidence["count"]})
        if evidence.get("since"):
            node.facts.append(_("Counted since %(time)s") % {"time": when.moment(evidence["since"])})
        if evidence.get("sum") is not None:
            node.facts.append(_("Total: %(total)s") % {"total": value_text(evidence["sum"], money=True)})
        node.events = [describe(Event(id=e["id"], type=e["type"], ts=datetime.fromisoformat(e["ts"]), contact_id=None,
                                      anonymous_id=None, properties=e.get("properties") or {}))
                       for e in evidence.get("events", [])]
    elif kind in ("list", "tag"):
        added = evidence.get("added_at")
        if kind == "list":
            node.facts.append(_("Added to the list on %(time)s") % {"time": when.moment(added)} if added
                              else _("Not in this list"))
        else:
            node.facts.append(_("Tagged on %(time)s") % {"time": when.moment(added)} if added
                              else _("Does not have this tag"))
    elif kind == "consent":
        if evidence.get("status"):
            node.facts.append(_("%(channel)s: %(status)s since %(time)s (source: %(source)s)") % {
                "channel": channel_names().get(evidence["channel"], evidence["channel"]),
                "status": status_names().get(evidence["status"], evidence["status"]),
                "time": when.moment(evidence.get("changed_at")), "source": evidence.get("source") or "—"})
        else:
            node.facts.append(_("No consent recorded for this channel"))
    elif kind == "campaigns":
        node.facts.append(_("Campaigns received: %(received)s of the %(needed)s needed") % {
            "received": evidence.get("received", 0), "needed": finding["rule"].get("campaigns", 0)})
        node.campaigns = [CampaignLine(c["campaign_id"], when.moment(c.get("sent_at")), when.moment(c.get("opened_at")),
                                       when.moment(c.get("clicked_at"))) for c in evidence.get("campaigns", [])]
    elif kind == "segment":
        node.inner = reason(evidence["explanation"], names, timezone)
    elif kind == "replenishment_due":
        for row in evidence.get("categories", []):
            node.facts.append(_("%(category)s: bought %(bought)s, runs out %(runs_out)s") % {
                "category": row["category"], "bought": when.moment(row["last_purchase_at"]),
                "runs_out": when.moment(row["runs_out_at"])})
        if not evidence.get("categories"):
            node.facts.append(_("No consumable bought"))
    return node


def _is_moment(value: Any) -> bool:
    """An ISO time (not a plain date) as explain writes datetimes."""
    if not isinstance(value, str) or "T" not in value:
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class _Times:
    timezone: str

    def moment(self, value: Any) -> str:
        if not value:
            return ""
        if isinstance(value, str) and "T" not in value:
            return value_text(value)
        at = datetime.fromisoformat(value) if isinstance(value, str) else value
        return local_time(at, self.timezone)


__all__ = ["Reason", "reason"]
