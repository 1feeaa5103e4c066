"""Rules are checked before anything runs: a bad node is named by its JSON path, with what is wrong."""

from __future__ import annotations

from typing import Any

import pytest

from kesher.accounts.models import Workspace
from kesher.contacts import fields, groups
from kesher.errors import ValidationError
from kesher.segments import rules as R
from kesher.segments import service as segments

ARCHITECTURE_EXAMPLE = {"all": [
    {"field": "city", "op": "in", "value": ["חיפה", "תל אביב"]},
    {"event": "purchase", "where": [{"prop": "category", "op": "eq", "value": "vitamins"}],
     "within_days": 90, "count": {"op": "gte", "value": 2}},
    {"not": {"event": "email_open", "within_days": 60}},
    {"stat": "total_revenue", "op": "gte", "value": 200},
]}
NODE = "must be an object with exactly one of: " + ", ".join(R.LEAF_KEYS)


def refusal(rule: Any) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        R.parse_rule(rule)
    return caught.value


def test_the_architecture_example_parses_with_its_short_event_names():
    rule = R.parse_rule(ARCHITECTURE_EXAMPLE)
    assert isinstance(rule, R.AllOf)
    assert rule.all[2].not_.event == "email_opened"
    dumped = R.dump_rule(rule)
    assert dumped["all"][2] == {"not": {"event": "email_opened", "within_days": 60}}
    assert R.parse_rule(dumped) == rule
    assert [path for path, _ in R.walk(rule)] == ["$", "$.all[0]", "$.all[1]", "$.all[2]", "$.all[2].not", "$.all[3]"]


@pytest.mark.parametrize(("rule", "field", "message"), [
    ({"all": [{"field": "city", "op": "eq", "value": "x"}, {"event": "purchase", "within_days": 0}]},
     "rule: $.all[1].within_days", "greater than 0"),
    ({"event": "purchase", "within_days": 4000}, "rule: $.within_days", "less than or equal to 3650"),
    ({"all": [{"field": "city", "op": "eq"}]}, "rule: $.all[0].value", "eq needs a value"),
    ({"field": "city", "op": "is_set", "value": "x"}, "rule: $.value", "is_set takes no value"),
    ({"field": "city", "op": "in", "value": []}, "rule: $.value", "in needs a non-empty list of values"),
    ({"field": "city", "op": "contains", "value": 5}, "rule: $.value", "contains takes text"),
    ({"field": "city", "op": "like", "value": "x"}, "rule: $.op", "Input should be 'eq'"),
    ({"field": "birthday", "op": "in_month", "value": 13}, "rule: $.value", "in_month takes a month 1-12"),
    ({"field": "created_at", "op": "within_last_days", "value": -1}, "rule: $.value",
     "within_last_days takes a number of days between 0 and 3650"),
    ({"stat": "total_revenue", "op": "top_percent", "value": 0}, "rule: $.value",
     "top_percent takes a percentage above 0 and up to 100"),
    ({"field": "city", "op": "eq", "value": "x", "extra": 1}, "rule: $.extra", "Extra inputs are not permitted"),
    ({"any": []}, "rule: $.any", "at least 1 item"),
    ({"field": "city", "op": "eq", "value": "x", "stat": "total_revenue"}, "rule: $", NODE),
    ({}, "rule: $", NODE),
    ("everyone", "rule: $", NODE),
    (None, "rule: $", NODE),
    ({"any": [{"tag": "a"}, {"not": {"nothing": 1}}]}, "rule: $.any[1].not", NODE),
    ({"not": {"event": "purchase", "within_days": 5, "between": ["2026-01-01", "2026-02-01"]}}, "rule: $.not",
     "give within_days or between, not both"),
    ({"event": "purchase", "count": {"op": "gte", "value": 1}, "sum": {"value": 5}}, "rule: $",
     "give count or sum, not both"),
    ({"event": "purchase", "between": ["2026-02-01", "2026-01-01"]}, "rule: $",
     "between: the first time must come before the second"),
    ({"event": "purchase", "between": ["2026-02-01T10:00:00+02:00", "2026-02-01T10:00:00+02:00"]}, "rule: $",
     "between: the first time must come before the second"),
    ({"event": "purchase", "between": ["2026-01-01"]}, "rule: $.between[1]", "Field required"),
    ({"all": [{"event": "purchase", "count": {"op": "between", "value": 1}}]}, "rule: $.all[0].count.op",
     "Input should be 'eq'"),
    ({"event": "purchase", "sum": {"prop": "total", "op": "gte"}}, "rule: $.sum.value", "Field required"),
    ({"event": "purchase", "where": [{"prop": "category", "op": "in_month", "value": 3}]}, "rule: $.where[0]",
     "in_month does not apply to event properties"),
    ({"campaigns": 0}, "rule: $.campaigns", "greater than or equal to 1"),
    ({"all": [{"campaigns": 3, "action": "bounced"}]}, "rule: $.all[0].action", "Input should be 'opened'"),
    ({"stage": "sleeping"}, "rule: $.stage", "Input should be 'new'"),
    ({"consent": "fax"}, "rule: $.consent", "Input should be 'email'"),
    ({"replenishment_due": 400}, "rule: $.replenishment_due", "less than or equal to 365"),
    ({"segment": 0}, "rule: $.segment", "greater than or equal to 1"),
])
def test_a_bad_node_is_named_by_its_path(rule, field, message):
    error = refusal(rule)
    assert (error.field, message in error.message) == (field, True), error.message


def nested(depth: int) -> dict[str, Any]:
    rule: dict[str, Any] = {"tag": "hot"}
    for _ in range(depth - 1):
        rule = {"not": rule}
    return rule


def test_depth_and_size_are_limited():
    assert R.parse_rule(nested(R.MAX_DEPTH))
    error = refusal(nested(R.MAX_DEPTH + 1))
    assert (error.field, error.message) == ("rule: $", f"nests deeper than {R.MAX_DEPTH} levels")
    leaves = [{"tag": f"t{i}"} for i in range(R.MAX_LEAVES)]
    assert R.parse_rule({"all": leaves})
    error = refusal({"any": [{"all": leaves[:60]}, {"all": [*leaves[60:], {"tag": "one more"}]}]})
    assert (error.field, error.message) == ("rule: $", f"has more than {R.MAX_LEAVES} conditions")
    assert refusal({"all": [*leaves, {"tag": "one more"}]}).field == "rule: $.all"


# Names are checked against the workspace when a rule is compiled ------------------------------


@pytest.fixture
def theirs(database, workspace, other_workspace) -> int:
    """`workspace` with a tag, a list and custom fields; returns the id of a segment of `other_workspace`."""
    with database.session() as s:
        groups.create(s, workspace.id, "tag", "hot")
        groups.create(s, workspace.id, "list", "Newsletter")
        fields.create_field(s, workspace.id, "score", "Score", "number")
        fields.create_field(s, workspace.id, "vip", "VIP", "boolean")
        other = s.get_one(Workspace, other_workspace.id)
        return segments.create_segment(s, other, "Theirs", {"field": "city", "op": "eq", "value": "Haifa"}).id


@pytest.mark.parametrize(("rule", "field", "message"), [
    ({"all": [{"tag": "hot"}, {"list": "Nope"}]}, "rule: $.all[1].list", "no list 'Nope' in this workspace"),
    ({"any": [{"list": "Newsletter"}, {"not": {"tag": "cold"}}]}, "rule: $.any[1].not.tag",
     "no tag 'cold' in this workspace"),
    ({"tag": 2**62}, "rule: $.tag", f"no tag {2**62} in this workspace"),
    ({"any": [{"field": "shoe_size", "op": "eq", "value": 42}]}, "rule: $.any[0].field",
     "no field 'shoe_size': neither a contact field nor a custom field of this workspace"),
    ({"not": {"stat": "ltv", "op": "gt", "value": 1}}, "rule: $.not.stat", "no stat 'ltv'; stats are: total_revenue"),
    ({"segment": "THEIRS"}, "rule: $.segment", "no segment THEIRS in this workspace"),
    ({"field": "birthday", "op": "eq", "value": "31/02/2020"}, "rule: $.value", "needs a date, e.g. 2026-03-31"),
    ({"field": "created_at", "op": "after", "value": "soon"}, "rule: $.value", "needs a date or a time"),
    ({"field": "created_at", "op": "in", "value": ["2026-01-01"]}, "rule: $.op", "in does not apply to a datetime"),
    ({"field": "city", "op": "within_last_days", "value": 3}, "rule: $.op",
     "within_last_days does not apply to a text value"),
    ({"field": "vip", "op": "lt", "value": True}, "rule: $.op", "lt does not apply to a boolean field"),
    ({"field": "score", "op": "top_percent", "value": 10}, "rule: $.op",
     "top_percent does not apply to a number field"),
    ({"field": "score", "op": "eq", "value": "high"}, "rule: $.value", "needs a number"),
    ({"stat": "total_revenue", "op": "eq", "value": "lots"}, "rule: $.value", "needs a number"),
    ({"stat": "open_rate", "op": "within_last_days", "value": 3}, "rule: $.op", "does not apply to a number value"),
    ({"stat": "last_open_at", "op": "top_percent", "value": 10}, "rule: $.op",
     "top_percent ranks numbers; last_open_at is a datetime"),
    ({"stat": "loyalty", "op": "top_percent", "value": 10}, "rule: $.op",
     "top_percent ranks numbers; loyalty is a text"),
    ({"event": "purchase", "where": [{"prop": "category", "op": "eq", "value": "a"},
                                     {"prop": "price", "op": "contains", "value": "1"}]},
     "rule: $.where[1].op", "contains does not apply to a number value"),
    ({"event": "purchase", "where": [{"prop": "total", "op": "gt", "value": "a lot"}]}, "rule: $.where[0].value",
     "needs a number"),
    ({"event": "custom:quiz", "where": [{"prop": "score", "op": "in", "value": [1, "a"]}]},
     "rule: $.where[0].value", "needs a number"),
    ({"event": "purchase", "where": [{"prop": "category", "op": "eq", "value": "x"}], "sum": {"prop": "order_id",
                                                                                            "value": 1}},
     "rule: $.sum.prop", "cannot add up 'order_id' together with filters on purchase lines"),
])
def test_names_and_types_are_checked_against_the_workspace(database, workspace, theirs, rule, field, message):
    rule = {**rule, "segment": theirs} if rule.get("segment") == "THEIRS" else rule
    with database.session() as s, pytest.raises(ValidationError) as caught:
        segments.checked_rule(s, s.get_one(Workspace, workspace.id), rule)
    error = caught.value
    assert (error.field, message.replace("THEIRS", str(theirs)) in error.message) == (field, True), error.message


def test_a_segment_may_not_refer_back_to_itself(database, workspace):
    with database.session() as s:
        ws = s.get_one(Workspace, workspace.id)
        first = segments.create_segment(s, ws, "First", {"field": "city", "op": "eq", "value": "Haifa"})
        second = segments.create_segment(s, ws, "Second", {"not": {"segment": first.id}})
        with pytest.raises(ValidationError) as caught:
            segments.update_segment(s, ws, first.id, rule={"segment": first.id})
        assert (caught.value.field, caught.value.message) == ("rule: $.segment",
                                                              f"segment {first.id} refers back to itself")
        with pytest.raises(ValidationError) as caught:
            segments.update_segment(s, ws, first.id, rule={"all": [{"segment": second.id}]})
        assert caught.value.field == f"rule: (segment {second.id}).not.segment"
