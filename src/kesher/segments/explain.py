"""Why is this contact in (or out of) this segment? Each node of the rule, true or false, with evidence.

Every leaf is evaluated for the one contact by the same compiler that builds the segment (so the
answer can never disagree with the membership), and the facts behind it are read beside it: the
field's value, the matching events with their dates, the rollup used, the list or tag and when the
contact joined it, the consent and its time, the last campaigns and what the contact did with them.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, case, select
from sqlalchemy.orm import Session

from kesher.accounts.models import Workspace
from kesher.contacts.models import Consent, ContactList, ContactTag, ListMembership, Tag
from kesher.db.base import utcnow
from kesher.segments import rules as R
from kesher.segments.compiler import (BUILTIN_FIELDS, CATEGORIES, CATEGORY_STATS, CONTACTS, EVENTS, FIELD_VALUES,
                                      ITEM_PROPS, ITEMS, RECEIPTS, ROLLUPS, STATS, Compiler, Scope, compiler)

SHOWN_EVENTS = 5


@dataclass
class Finding:
    """One node of a rule as it stands for one contact."""

    path: str
    kind: str  # all, any, not, field, event, stat, list, tag, segment, consent, campaigns, stage, replenishment_due
    rule: dict[str, Any]
    matched: bool
    evidence: dict[str, Any] = field(default_factory=dict)
    children: list[Finding] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "rule": self.rule, "matched": self.matched,
                "evidence": _jsonable(self.evidence), "children": [child.as_json() for child in self.children]}


def explain(session: Session, workspace: Workspace, rule: Any, contact_id: int, now: datetime | None = None) -> Finding:
    """The rule's tree for one contact of the workspace: every node's result and the facts behind each leaf."""
    comp = compiler(session, workspace, now or utcnow(), Scope.ids(session, [contact_id]))
    return _Explainer(session, comp, contact_id).node(R.parse_rule(rule), "$")


def _kind(rule: Any) -> str:
    return {R.AllOf: "all", R.AnyOf: "any", R.NotOf: "not", R.FieldLeaf: "field", R.EventLeaf: "event",
            R.StatLeaf: "stat", R.ListLeaf: "list", R.TagLeaf: "tag", R.SegmentLeaf: "segment",
            R.ConsentLeaf: "consent", R.CampaignsLeaf: "campaigns", R.StageLeaf: "stage",
            R.ReplenishmentLeaf: "replenishment_due"}[type(rule)]


@dataclass
class _Explainer:
    session: Session
    comp: Compiler
    contact_id: int

    def node(self, rule: Any, path: str) -> Finding:
        kind = _kind(rule)
        children: list[Finding] = []
        if kind == "all":
            children = [self.node(child, f"{path}.all[{i}]") for i, child in enumerate(rule.all)]
            matched = all(child.matched for child in children)
        elif kind == "any":
            children = [self.node(child, f"{path}.any[{i}]") for i, child in enumerate(rule.any)]
            matched = any(child.matched for child in children)
        elif kind == "not":
            children = [self.node(rule.not_, f"{path}.not")]
            matched = not children[0].matched
        else:
            matched = self.holds(rule, path)
        evidence = {} if children else getattr(self, f"evidence_{kind}")(rule)
        return Finding(path, kind, R.dump_rule(rule), matched, evidence, children)

    def holds(self, rule: Any, path: str) -> bool:
        c, r = CONTACTS.c, ROLLUPS.c
        test = case((self.comp.compile(rule, path), True), else_=False)
        found = self.session.scalar(select(test).select_from(CONTACTS.outerjoin(ROLLUPS, r.contact_id == c.id))
                                    .where(c.workspace_id == self.comp.workspace.id, c.id == self.contact_id))
        return bool(found)

    # Evidence, one method per leaf -----------------------------------------------------------

    def evidence_field(self, leaf: R.FieldLeaf) -> dict[str, Any]:
        if leaf.field in BUILTIN_FIELDS:
            column, _ = BUILTIN_FIELDS[leaf.field]
            value = self.session.scalar(select(column).where(CONTACTS.c.id == self.contact_id))
            return {"field": leaf.field, "value": value}
        custom = self.comp.custom_fields()[leaf.field]
        fv = FIELD_VALUES.c
        row = self.session.execute(select(fv.value_text, fv.value_number, fv.value_date, fv.value_bool)
                                   .where(fv.contact_id == self.contact_id, fv.field_id == custom.id)).first()
        value = None if row is None else next((v for v in row if v is not None), None)
        return {"field": leaf.field, "label": custom.label, "value": value}

    def evidence_stat(self, leaf: R.StatLeaf) -> dict[str, Any]:
        stat = STATS[leaf.stat]
        c, r = CONTACTS.c, ROLLUPS.c
        value = self.session.scalar(select(stat.sql()).select_from(CONTACTS.outerjoin(ROLLUPS, r.contact_id == c.id))
                                    .where(c.id == self.contact_id))
        if value is not None and stat.scale != 1:
            value = round(float(value) / stat.scale, 2)
        return {"stat": leaf.stat, "value": value}

    def evidence_stage(self, leaf: R.StageLeaf) -> dict[str, Any]:
        row = self.session.execute(select(ROLLUPS.c.stage, ROLLUPS.c.stage_changed_at)
                                   .where(ROLLUPS.c.contact_id == self.contact_id)).first()
        return {"stage": row[0] if row else None, "since": row[1] if row else None}

    def evidence_event(self, leaf: R.EventLeaf) -> dict[str, Any]:
        """The matching events, newest first (a few), and how many or how much they come to."""
        e = EVENTS.c
        conditions = [e.contact_id == self.contact_id, e.type == leaf.event, *self.comp.window(e.ts, leaf)]
        item_filters = [f for f in leaf.where if leaf.event == "purchase" and f.prop in ITEM_PROPS]
        for flt in leaf.where:
            if flt not in item_filters:
                conditions.append(self.comp.property_filter(leaf.event, flt, ""))
        if item_filters:
            pi = ITEMS.c
            lines = select(pi.event_id).where(pi.contact_id == self.contact_id, *[
                self.comp.compare(pi[ITEM_PROPS[f.prop][0]], ITEM_PROPS[f.prop][1], f.op, f.value)
                for f in item_filters])
            conditions.append(e.id.in_(lines))
        rows = self.session.execute(select(e.id, e.type, e.ts, e.properties, e.amount_minor).where(*conditions)
                                    .order_by(e.ts.desc(), e.id.desc())).all()
        evidence: dict[str, Any] = {
            "count": len(rows),
            "events": [{"id": row.id, "type": row.type, "ts": row.ts, "properties": row.properties}
                       for row in rows[:SHOWN_EVENTS]]}
        if leaf.within_days is not None:
            evidence["since"] = self.comp.now - timedelta(days=leaf.within_days)
        if leaf.sum is not None and leaf.sum.prop in ("total", "amount"):
            evidence["sum"] = round(sum((row.amount_minor or 0) for row in rows) / 100, 2)
        return evidence

    def evidence_list(self, leaf: R.ListLeaf) -> dict[str, Any]:
        lm = typing.cast(Table, ListMembership.__table__).c
        list_id = self.comp.named(ContactList, leaf.list, "list")
        added = self.session.scalar(select(lm.added_at).where(lm.list_id == list_id, lm.contact_id == self.contact_id))
        return {"list_id": list_id, "added_at": added}

    def evidence_tag(self, leaf: R.TagLeaf) -> dict[str, Any]:
        ct = typing.cast(Table, ContactTag.__table__).c
        tag_id = self.comp.named(Tag, leaf.tag, "tag")
        added = self.session.scalar(select(ct.added_at).where(ct.tag_id == tag_id, ct.contact_id == self.contact_id))
        return {"tag_id": tag_id, "added_at": added}

    def evidence_consent(self, leaf: R.ConsentLeaf) -> dict[str, Any]:
        cs = typing.cast(Table, Consent.__table__).c
        row = self.session.execute(select(cs.status, cs.source, cs.changed_at)
                                   .where(cs.contact_id == self.contact_id, cs.channel == leaf.consent)).first()
        return {"channel": leaf.consent, "status": row.status if row else None,
                "source": row.source if row else None, "changed_at": row.changed_at if row else None}

    def evidence_campaigns(self, leaf: R.CampaignsLeaf) -> dict[str, Any]:
        rc = RECEIPTS.c
        rows = self.session.execute(select(rc.campaign_id, rc.sent_at, rc.first_open_at, rc.first_click_at)
                                    .where(rc.contact_id == self.contact_id, rc.sent_at.is_not(None))
                                    .order_by(rc.sent_at.desc(), rc.campaign_id.desc()).limit(leaf.campaigns)).all()
        return {"received": len(rows), "campaigns": [
            {"campaign_id": row.campaign_id, "sent_at": row.sent_at, "opened_at": row.first_open_at,
             "clicked_at": row.first_click_at} for row in rows]}

    def evidence_segment(self, leaf: R.SegmentLeaf) -> dict[str, Any]:
        from kesher.segments.models import Segment

        segment = self.session.get(Segment, leaf.segment)
        assert segment is not None  # the rule compiled, so it exists
        inner = self.node(R.parse_rule(segment.rule), f"(segment {segment.id})")
        return {"segment_id": segment.id, "name": segment.name, "explanation": inner.as_json()}

    def evidence_replenishment_due(self, leaf: R.ReplenishmentLeaf) -> dict[str, Any]:
        cs, cat = CATEGORY_STATS.c, CATEGORIES.c
        rows = self.session.execute(
            select(cs.category, cs.last_purchase_at, cat.usage_days)
            .join(CATEGORIES, and_(cat.workspace_id == cs.workspace_id, cat.key == cs.category))
            .where(cs.contact_id == self.contact_id, cat.consumable.is_(True), cat.usage_days.is_not(None),
                   *([cs.category == leaf.category] if leaf.category else []))
            .order_by(cs.category)).all()
        return {"categories": [{"category": row.category, "last_purchase_at": row.last_purchase_at,
                                "usage_days": row.usage_days,
                                "runs_out_at": row.last_purchase_at + timedelta(days=row.usage_days)}
                               for row in rows]}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


__all__ = ["Finding", "explain"]
