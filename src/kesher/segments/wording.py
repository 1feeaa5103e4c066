"""Segment rules in the reader's words: labels, a sentence for every node, the builder's vocabulary
and what to say about a rule that does not hold.

Everything here is translated at the moment it is asked for, so it speaks the request's language.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from markupsafe import Markup
from sqlalchemy.orm import Session

from kesher.accounts.models import Workspace
from kesher.contacts import groups
from kesher.contacts.fields import list_fields
from kesher.contacts.views import field_labels
from kesher.errors import ValidationError
from kesher.events.catalogue import list_categories
from kesher.events.views import stage_names, type_labels
from kesher.segments import rules as R
from kesher.segments.compiler import BUILTIN_FIELDS, STATS
from kesher.segments.service import list_segments
from kesher.web.i18n import _

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def kind_labels() -> dict[str, str]:
    return {"field": _("Contact field"), "event": _("Did something (event)"), "stat": _("Statistic"),
            "list": _("In a list"), "tag": _("Has a tag"), "segment": _("In another segment"),
            "consent": _("Consent"), "campaigns": _("Last campaigns"), "stage": _("Lifecycle stage"),
            "replenishment_due": _("Replenishment due")}


def op_labels() -> dict[str, str]:
    return {"eq": _("is"), "ne": _("is not"), "lt": _("less than"), "lte": _("at most"), "gt": _("more than"),
            "gte": _("at least"), "in": _("is one of"), "not_in": _("is none of"), "contains": _("contains"),
            "starts_with": _("starts with"), "is_set": _("has a value"), "is_not_set": _("has no value"),
            "before": _("before"), "after": _("after"), "within_last_days": _("in the last … days"),
            "more_than_days_ago": _("more than … days ago"), "in_month": _("in the month of"),
            "top_percent": _("in the top …%")}


def count_op_labels() -> dict[str, str]:
    return {"eq": _("exactly"), "ne": _("not exactly"), "lt": _("fewer than"), "lte": _("at most"),
            "gt": _("more than"), "gte": _("at least")}


def stat_labels() -> dict[str, str]:
    labels = {
        "total_revenue": _("Total revenue"), "gross_revenue": _("Revenue before refunds"), "refunds": _("Refunds"),
        "average_order_value": _("Average order"), "purchase_count": _("Purchases"), "sent_count": _("Emails sent"),
        "open_count": _("Opens"), "click_count": _("Clicks"), "open_rate": _("Open rate (%)"),
        "click_rate": _("Click rate (%)"), "days_between_purchases": _("Average days between purchases"),
        "last_open_at": _("Last email open"), "last_click_at": _("Last click"),
        "last_purchase_at": _("Last purchase"), "first_purchase_at": _("First purchase"),
        "last_visit_at": _("Last site visit"), "last_event_at": _("Last activity"),
        "engagement_score": _("Engagement score"), "rfm_recency": _("RFM recency (1-5)"),
        "rfm_frequency": _("RFM frequency (1-5)"), "rfm_monetary": _("RFM monetary (1-5)"), "loyalty": _("Loyalty"),
    }
    return {key: labels.get(key, key) for key in STATS}


def channel_names() -> dict[str, str]:
    return {"email": _("Email"), "sms": _("SMS"), "whatsapp": _("WhatsApp")}


def status_names() -> dict[str, str]:
    return {"granted": _("Granted"), "pending": _("Pending"), "denied": _("Denied"), "unsubscribed": _("Unsubscribed")}


def month_names() -> list[str]:
    return [_("January"), _("February"), _("March"), _("April"), _("May"), _("June"), _("July"), _("August"),
            _("September"), _("October"), _("November"), _("December")]


def coded_values() -> dict[str, dict[str, str]]:
    """The values of coded fields and stats, as people read them."""
    return {"gender": {"female": _("Female"), "male": _("Male"), "other": _("Other")},
            "language": {"he": _("Hebrew"), "en": _("English")},
            "loyalty": {"strong": _("Strong"), "medium": _("Medium"), "weak": _("Weak")}}


def event_label(event_type: str) -> str:
    return type_labels().get(event_type) or event_type


# The workspace's names ---------------------------------------------------------------------------


@dataclass
class Names:
    """What a rule's ids and keys are called in one workspace: lists, tags, segments, custom fields."""

    lists: dict[int, str]
    tags: dict[int, str]
    segments: dict[int, str]
    fields: dict[str, tuple[str, str]]  # key -> (label, type)

    @classmethod
    def load(cls, session: Session, workspace_id: int) -> Names:
        return cls({g.id: g.name for g, _n in groups.all_with_counts(session, workspace_id, "list")},
                   {g.id: g.name for g, _n in groups.all_with_counts(session, workspace_id, "tag")},
                   {s.id: s.name for s in list_segments(session, workspace_id)},
                   {f.key: (f.label, f.type) for f in list_fields(session, workspace_id)})

    def group(self, kind: str, ref: Any) -> str:
        """A list's, tag's or segment's name; a rule may name it, or give its id."""
        known = {"list": self.lists, "tag": self.tags, "segment": self.segments}[kind]
        return known.get(ref, str(ref)) if isinstance(ref, int) else str(ref)


# A node in words ---------------------------------------------------------------------------------


def value_text(value: Any, coded: dict[str, str] | None = None, money: bool = False) -> str:
    if isinstance(value, bool):
        return _("Yes") if value else _("No")
    if isinstance(value, (int, float)):
        number = f"{value:,.2f}".rstrip("0").rstrip(".") if isinstance(value, float) else f"{value:,}"
        return f"₪{number}" if money else number
    if isinstance(value, str) and DATE.match(value):
        return date.fromisoformat(value).strftime("%d/%m/%Y")
    if isinstance(value, str) and coded and value in coded:
        return coded[value]
    return str(value)


def comparison(op: str, value: Any, coded: dict[str, str] | None = None, money: bool = False) -> Markup:
    """`op value` as a phrase, e.g. "is one of Haifa, Eilat" or "in the last 30 days"."""
    if op in R.PRESENCE:
        return Markup.escape(op_labels()[op])
    if op == "within_last_days":
        return Markup.escape(_("in the last %(days)s days") % {"days": value_text(value)})
    if op == "more_than_days_ago":
        return Markup.escape(_("more than %(days)s days ago") % {"days": value_text(value)})
    if op == "in_month":
        if not value:
            return Markup.escape(_("in the current month"))
        return Markup.escape(_("in %(month)s") % {"month": month_names()[int(value) - 1]})
    if op == "top_percent":
        return Markup.escape(_("in the top %(percent)s%%") % {"percent": value_text(value)})
    values = value if isinstance(value, list) else [value]
    shown = ", ".join(value_text(v, coded, money) for v in values)
    return Markup("{} <bdi>{}</bdi>").format(op_labels().get(op, op), shown)


def _subject(label: str, op: str, value: Any, coded: dict[str, str] | None = None, money: bool = False) -> Markup:
    return Markup("<bdi>{}</bdi> {}").format(label, comparison(op, value, coded, money))


def sentence(node: dict[str, Any], names: Names) -> Markup:
    """One node of a rule (JSON, as stored) in words; a group's words say how its children combine."""
    if "all" in node:
        return Markup.escape(_("All of these"))
    if "any" in node:
        return Markup.escape(_("Any of these"))
    if "not" in node:
        return Markup.escape(_("Not this"))
    if "field" in node:
        key = node["field"]
        label = field_labels().get(key) if key in BUILTIN_FIELDS else names.fields.get(key, (key, ""))[0]
        return _subject(label or key, node["op"], node.get("value"), coded_values().get(key))
    if "stat" in node:
        stat = STATS.get(node["stat"])
        return _subject(stat_labels().get(node["stat"], node["stat"]), node["op"], node.get("value"),
                        coded_values().get(node["stat"]), money=bool(stat and stat.scale != 1))
    if "event" in node:
        return _event_sentence(node)
    if "list" in node:
        return _named(_("In the list %(name)s"), names.group("list", node["list"]))
    if "tag" in node:
        return _named(_("Has the tag %(name)s"), names.group("tag", node["tag"]))
    if "segment" in node:
        return _named(_("In the segment %(name)s"), names.group("segment", node["segment"]))
    if "consent" in node:
        return Markup.escape(_("%(channel)s consent: %(status)s") % {
            "channel": channel_names()[node["consent"]], "status": status_names()[node.get("status", "granted")]})
    if "campaigns" in node:
        words = {"campaigns": node["campaigns"], "op": count_op_labels()[node.get("op", "eq")],
                 "value": node.get("value", 0)}
        if node.get("action", "clicked") == "opened":
            return Markup.escape(_("Opened %(op)s %(value)s of the last %(campaigns)s campaigns received") % words)
        return Markup.escape(_("Clicked %(op)s %(value)s of the last %(campaigns)s campaigns received") % words)
    if "stage" in node:
        stages = node["stage"] if isinstance(node["stage"], list) else [node["stage"]]
        return Markup.escape(_("Lifecycle stage: %(stages)s") % {
            "stages": _(" or ").join(stage_names().get(s, s) for s in stages)})
    if "replenishment_due" in node:
        if node.get("category"):
            return Markup(_("A consumable of %(category)s runs out within %(days)s days")) % {
                "category": Markup("<bdi>{}</bdi>").format(node["category"]), "days": node["replenishment_due"]}
        return Markup.escape(_("A consumable runs out within %(days)s days") % {"days": node["replenishment_due"]})
    return Markup.escape(str(node))


def _named(text: str, name: str) -> Markup:
    return Markup(text) % {"name": Markup("<bdi>{}</bdi>").format(name)}


def _event_sentence(node: dict[str, Any]) -> Markup:
    parts = [Markup("<strong>{}</strong>").format(event_label(node["event"]))]
    count, total = node.get("count"), node.get("sum")
    if total:
        parts.append(Markup.escape(_("total %(property)s %(op)s %(value)s") % {
            "property": total.get("prop", "total"), "op": count_op_labels()[total.get("op", "gte")],
            "value": value_text(total["value"])}))
    elif count and count.get("op") == "eq" and count.get("value") == 0:
        parts.append(Markup.escape(_("never")))
    elif count:
        parts.append(Markup.escape(_("%(op)s %(count)s times") % {
            "op": count_op_labels()[count.get("op", "gte")], "count": count.get("value", 1)}))
    else:
        parts.append(Markup.escape(_("at least once")))
    for flt in node.get("where", []):
        parts.append(Markup(_("where %(property)s %(comparison)s")) % {
            "property": Markup("<bdi dir=\"ltr\">{}</bdi>").format(flt["prop"]),
            "comparison": comparison(flt["op"], flt.get("value"))})
    if node.get("within_days") is not None:
        parts.append(Markup.escape(_("in the last %(days)s days") % {"days": value_text(node["within_days"])}))
    elif node.get("between"):
        start, end = (_moment(v) for v in node["between"])
        parts.append(Markup.escape(_("between %(start)s and %(end)s") % {"start": start, "end": end}))
    return Markup(", ").join(parts)


def _moment(value: str) -> str:
    if DATE.match(value):
        return value_text(value)
    return datetime.fromisoformat(value).strftime("%d/%m/%Y %H:%M")


@dataclass
class Line:
    """One node of a rule ready to show: its words and its children."""

    text: Markup
    children: list[Line]
    negated: bool = False


def readable(rule: dict[str, Any], names: Names) -> Line:
    """The rule as a tree of sentences."""
    children = [readable(child, names) for child in rule.get("all", rule.get("any", []))]
    if "not" in rule:
        children = [readable(rule["not"], names)]
    return Line(sentence(rule, names), children, "not" in rule)


# A rule that does not hold -----------------------------------------------------------------------


@dataclass(frozen=True)
class RuleProblem:
    """Where in the rule (a JSON path such as `$.all[1].within_days`) and what to say about it."""

    path: str
    message: str


def rule_problem(error: ValidationError) -> RuleProblem:
    """A rule's ValidationError (field `rule: $.all[1].within_days`) in the reader's language."""
    path = (error.field or "").removeprefix("rule").removeprefix(":").strip() or "$"
    tail = re.sub(r"\[\d+\]$", "", re.split(r"\.", path)[-1]) if path != "$" else "$"
    text = error.message
    by_tail = {
        "within_days": _("Enter a number of days, more than 0 and at most 3650."),
        "between": _("Enter two dates, the first before the second."),
        "campaigns": _("Enter a number of campaigns from 1 to 100."),
        "replenishment_due": _("Enter a number of days from 0 to 365."),
        "field": _("There is no such field in this workspace."),
        "stat": _("There is no such statistic."),
        "list": _("There is no such list in this workspace."),
        "tag": _("There is no such tag in this workspace."),
        "segment": _("A segment cannot include itself.") if "itself" in text
        else _("There is no such segment in this workspace."),
        "op": _("This comparison does not fit this value."),
        "prop": _("Enter a property name."),
        "all": _("A group needs at least one condition."),
        "any": _("A group needs at least one condition."),
    }
    if tail == "value":
        message = (_("Enter a date, like 31/12/1990.") if "date" in text
                   else _("Enter a number.") if any(w in text for w in ("number", "percentage", "days", "integer"))
                   else _("Choose a month.") if "month" in text
                   else _("Enter a value.") if "needs a" in text or "at least 1" in text
                   else _("Enter a value that fits this comparison."))
    elif tail == "$" and ("deeper" in text or "more than" in text):
        message = _("The rule is too large: at most 100 conditions, 12 levels deep.")
    else:
        message = by_tail.get(tail, error.text())
    return RuleProblem(path, message)


# What the builder offers ------------------------------------------------------------------------

# Operators the builder offers for each kind of value, in the order people look for them.
BUILDER_OPS = {
    "text": ["eq", "ne", "in", "not_in", "contains", "starts_with", "is_set", "is_not_set"],
    "number": ["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "is_set", "is_not_set"],
    "date": ["eq", "before", "after", "within_last_days", "more_than_days_ago", "in_month", "is_set", "is_not_set"],
    "datetime": ["before", "after", "within_last_days", "more_than_days_ago", "in_month", "is_set", "is_not_set"],
    "boolean": ["eq", "ne", "is_set", "is_not_set"],
}
PROPERTY_OPS = ["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "starts_with", "is_set", "is_not_set"]
COMMON_PROPERTIES = ["campaign_id", "url", "category", "sku", "product", "price", "quantity", "total", "order_id",
                     "title", "form_id", "currency"]


def builder_data(session: Session, workspace: Workspace, editing: int | None = None) -> dict[str, Any]:
    """Everything the rule builder offers in this workspace, labelled in the reader's language."""
    coded = coded_values()
    builtin = [{"key": key, "label": field_labels()[key], "type": kind,
                "choices": [[v, t] for v, t in coded.get(key, {}).items()]}
               for key, (_c, kind) in BUILTIN_FIELDS.items()]
    custom = [{"key": f.key, "label": f.label, "type": {"choice": "text"}.get(f.type, f.type),
               "choices": [[c, c] for c in f.choices or []]} for f in list_fields(session, workspace.id)]
    return {
        "kinds": kind_labels(), "ops": op_labels(), "countOps": count_op_labels(), "opsByType": BUILDER_OPS,
        "propertyOps": PROPERTY_OPS, "properties": COMMON_PROPERTIES,
        "fields": builtin, "customFields": custom,
        "events": type_labels(),
        "stats": [{"key": key, "label": label, "type": STATS[key].type, "money": STATS[key].scale != 1,
                   "choices": [[v, t] for v, t in coded.get(key, {}).items()]} for key, label in stat_labels().items()],
        "lists": [[g.id, g.name] for g, _n in groups.all_with_counts(session, workspace.id, "list")],
        "tags": [[g.id, g.name] for g, _n in groups.all_with_counts(session, workspace.id, "tag")],
        "segments": [[s.id, s.name] for s in list_segments(session, workspace.id) if s.id != editing],
        "categories": [[c.key, c.name or c.key] for c in list_categories(session, workspace.id) if c.consumable],
        "stages": stage_names(), "channels": channel_names(), "statuses": status_names(),
        "months": month_names(),
        "text": {
            "all": _("All of these"), "any": _("Any of these"), "not": _("Not"),
            "addCondition": _("Add condition"), "addGroup": _("Add group"), "remove": _("Remove"),
            "conditionKind": _("Kind of condition"), "groupMode": _("How the conditions combine"),
            "negate": _("Not (the opposite)"), "customFields": _("Custom fields"),
            "contactFields": _("Contact fields"), "value": _("Value"), "values": _("Values, separated by commas"),
            "days": _("Days"), "percent": _("Percent"), "currentMonth": _("the current month"),
            "ever": _("ever"), "withinDays": _("in the last … days"), "between": _("between dates"),
            "from": _("From"), "to": _("To"), "atLeastOnce": _("at least once"), "times": _("number of times"),
            "total": _("total of a property"), "addFilter": _("Add property filter"), "property": _("Property"),
            "otherEvent": _("Another type…"), "eventName": _("Event type, e.g. custom:quiz_done"),
            "ofLast": _("Of the last"), "campaignsReceived": _("campaigns received"), "opened": _("opened"),
            "clicked": _("clicked"), "status": _("Status"), "channel": _("Channel"), "anyCategory": _("Any category"),
            "category": _("Category"), "runsOutWithin": _("runs out within (days)"), "yes": _("Yes"), "no": _("No"),
            "none": _("None yet"), "empty": _("Add a condition to start."),
            "incomplete": _("Fill in every condition to see how many contacts match."),
            "counting": _("Counting…"), "invalid": _("Fix the marked condition to see the count."),
            "badJson": _("This is not valid JSON."), "failed": _("The count could not be fetched; try again."),
            "sample": _("For example"), "field": _("Field"), "event": _("Event"), "stat": _("Statistic"),
            "list": _("List"), "tag": _("Tag"), "segment": _("Segment"), "stages": _("Stages"),
            "measure": _("How many"), "window": _("When"), "comparison": _("Comparison"),
            "group": _("Group of conditions"),
        },
    }


__all__ = ["Line", "Names", "RuleProblem", "builder_data", "readable", "rule_problem", "sentence"]
