"""The segments REST API: CRUD, presets, preview, members, explanations, isolation, rules refused by JSON path."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, update

from kesher.accounts.models import Workspace
from kesher.contacts import groups
from kesher.contacts import service as contacts
from kesher.contacts.models import Contact
from kesher.segments import service as segments
from kesher.web.i18n import translations
from tests.problems import problem

HAIFA = {"field": "city", "op": "eq", "value": "Haifa"}
BUYERS = {"event": "purchase", "within_days": 30, "count": {"op": "gte", "value": 2}}


def ok(response, status: int = 200):
    assert response.status_code == status, response.text
    return response.json()


def add_contact(api, **fields) -> int:
    return ok(api.post("/contacts", json=fields), 201)["id"]


def buy(api, email: str, times: int) -> None:
    ts = datetime.now(UTC) - timedelta(days=1)
    events = [{"type": "purchase", "contact": {"email": email}, "ts": ts.isoformat(),
               "properties": {"order_id": f"{email}-{n}", "total": 50}} for n in range(times)]
    assert ok(api.post("/events", json={"events": events}))["errors"] == []


def test_segment_round_trip(api):
    dana = add_contact(api, email="dana@example.co.il", city="Haifa")
    add_contact(api, email="avi@example.com", city="Tel Aviv")
    created = ok(api.post("/segments", json={"name": " Haifa  people ", "description": "north", "rule": HAIFA}), 201)
    assert (created["name"], created["description"], created["rule"], created["preset"]) == (
        "Haifa people", "north", HAIFA, None)
    assert created["member_count"] == 1 and created["refreshed_at"] is not None
    assert ok(api.get(f"/segments/{created['id']}")) == created
    assert ok(api.get("/segments")) == [created]
    assert [c["id"] for c in ok(api.get(f"/segments/{created['id']}/members"))["data"]] == [dana]

    changed = ok(api.patch(f"/segments/{created['id']}", json={"rule": {"not": HAIFA}}))
    assert (changed["name"], changed["member_count"]) == ("Haifa people", 1)
    assert [c["email"] for c in ok(api.get(f"/segments/{created['id']}/members"))["data"]] == ["avi@example.com"]
    renamed = ok(api.patch(f"/segments/{created['id']}", json={"name": "Not Haifa", "description": ""}))
    assert (renamed["name"], renamed["description"], renamed["rule"]) == ("Not Haifa", "", {"not": HAIFA})

    assert api.delete(f"/segments/{created['id']}").status_code == 204
    problem(api.get(f"/segments/{created['id']}"), 404, "id")
    assert ok(api.get("/segments")) == []
    assert ok(api.get(f"/contacts/{dana}"))["city"] == "Haifa"  # its contacts stay


def test_names_are_unique_and_a_segment_in_use_is_not_deleted(api):
    first = ok(api.post("/segments", json={"name": "Haifa", "rule": HAIFA}), 201)
    problem(api.post("/segments", json={"name": "Haifa", "rule": BUYERS}), 409, "name")
    user = ok(api.post("/segments", json={"name": "Haifa buyers", "rule": {"all": [{"segment": first["id"]}, BUYERS]}}),
              201)
    body = problem(api.delete(f"/segments/{first['id']}"), 409, "id")
    assert "Haifa buyers" in body["detail"]
    loop = problem(api.patch(f"/segments/{first['id']}", json={"rule": {"segment": user["id"]}}), 422)
    assert loop["field"].startswith("rule: ") and "refers back to itself" in loop["detail"]
    assert api.delete(f"/segments/{user['id']}").status_code == 204
    assert api.delete(f"/segments/{first['id']}").status_code == 204


def test_refresh_on_demand_reports_who_entered_and_who_left(api, database, workspace):
    add_contact(api, email="stays@example.com", city="Haifa")
    leaves = add_contact(api, email="leaves@example.com", city="Haifa")
    segment = ok(api.post("/segments", json={"name": "Haifa", "rule": HAIFA}), 201)
    with database.session() as s:  # behind the segments' back, as a bulk SQL fix would
        s.execute(update(Contact).where(Contact.id == leaves).values(city="Eilat"))
        s.execute(insert(Contact).values(workspace_id=workspace.id, email="new@example.com", city="Haifa"))
    assert ok(api.get(f"/segments/{segment['id']}"))["member_count"] == 2

    refreshed = ok(api.post(f"/segments/{segment['id']}/refresh"))
    assert (refreshed["id"], refreshed["entered"], refreshed["exited"], refreshed["member_count"]) == (
        segment["id"], 1, 1, 2)
    assert datetime.fromisoformat(refreshed["refreshed_at"]) > datetime.fromisoformat(segment["refreshed_at"])
    emails = {c["email"] for c in ok(api.get(f"/segments/{segment['id']}/members"))["data"]}
    assert emails == {"stays@example.com", "new@example.com"}
    again = ok(api.post(f"/segments/{segment['id']}/refresh"))
    assert (again["entered"], again["exited"]) == (0, 0)


def test_preview_counts_and_samples_without_saving(api):
    add_contact(api, email="first@example.com", city="Haifa", first_name="דנה", last_name="כהן")
    add_contact(api, phone="050-1234567", city="Haifa")
    add_contact(api, email="far@example.com", city="Eilat")
    body = ok(api.post("/segments/preview", json={"rule": HAIFA}))
    assert body["count"] == 2
    assert [(c["name"], c["email"], c["phone"]) for c in body["sample"]] == [
        ("+972501234567", None, "+972501234567"), ("דנה כהן", "first@example.com", None)]  # newest first
    assert len(ok(api.post("/segments/preview", json={"rule": HAIFA, "limit": 1}))["sample"]) == 1
    assert ok(api.post("/segments/preview", json={"rule": {"field": "city", "op": "eq", "value": "Nowhere"}})) == {
        "count": 0, "sample": []}
    problem(api.post("/segments/preview", json={"rule": HAIFA, "limit": 101}), 422, "limit")
    assert ok(api.get("/segments")) == []


def test_members_pages_walk_every_member_exactly_once(api):
    members = [add_contact(api, email=f"m{n}@example.com", city="Haifa") for n in range(7)]
    add_contact(api, email="out@example.com", city="Eilat")
    segment = ok(api.post("/segments", json={"name": "Haifa", "rule": HAIFA}), 201)
    seen, cursor, pages = [], None, 0
    while True:
        page = ok(api.get(f"/segments/{segment['id']}/members",
                          params={"limit": 3, **({"cursor": cursor} if cursor else {})}))
        seen += [c["id"] for c in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(members, reverse=True) and pages == 3
    assert set(page["data"][0]) >= {"id", "email", "phone", "first_name", "city", "fields", "created_at"}
    problem(api.get(f"/segments/{segment['id']}/members", params={"cursor": "!!"}), 422, "cursor")
    problem(api.get(f"/segments/{segment['id']}/members", params={"limit": 501}), 422, "limit")


def test_custom_fields_come_with_the_members(api):
    ok(api.post("/fields", json={"key": "plan", "label": "Plan", "type": "text"}), 201)
    add_contact(api, email="pro@example.com", fields={"plan": "pro"})
    segment = ok(api.post("/segments", json={"name": "Pro", "rule": {"field": "plan", "op": "eq", "value": "pro"}}),
                 201)
    assert [c["fields"] for c in ok(api.get(f"/segments/{segment['id']}/members"))["data"]] == [{"plan": "pro"}]


def test_explain_shows_each_condition_with_its_evidence(api):
    dana = add_contact(api, email="dana@example.co.il", city="Haifa")
    avi = add_contact(api, email="avi@example.com", city="Haifa")
    buy(api, "dana@example.co.il", 2)
    buy(api, "avi@example.com", 1)
    rule = {"all": [HAIFA, BUYERS]}
    segment = ok(api.post("/segments", json={"name": "Haifa buyers", "rule": rule}), 201)
    assert segment["member_count"] == 1

    inside = ok(api.get(f"/segments/{segment['id']}/explain/{dana}"))
    assert (inside["contact_id"], inside["segment_id"], inside["matched"], inside["member"]) == (
        dana, segment["id"], True, True)
    tree = inside["explanation"]
    assert (tree["path"], tree["kind"], tree["matched"]) == ("$", "all", True)
    city, bought = tree["children"]
    assert (city["path"], city["kind"], city["evidence"]) == ("$.all[0]", "field", {"field": "city", "value": "Haifa"})
    assert (bought["path"], bought["kind"], bought["rule"]["event"]) == ("$.all[1]", "event", "purchase")
    assert bought["evidence"]["count"] == 2 and len(bought["evidence"]["events"]) == 2

    outside = ok(api.get(f"/segments/{segment['id']}/explain/{avi}"))
    assert (outside["matched"], outside["member"]) == (False, False)
    assert [c["matched"] for c in outside["explanation"]["children"]] == [True, False]
    assert outside["explanation"]["children"][1]["evidence"]["count"] == 1

    adhoc = ok(api.post("/segments/explain", json={"rule": {"any": [BUYERS, {"not": HAIFA}]}, "contact_id": avi}))
    assert (adhoc["segment_id"], adhoc["member"], adhoc["matched"]) == (None, None, False)
    assert [c["path"] for c in adhoc["explanation"]["children"]] == ["$.any[0]", "$.any[1]"]
    assert adhoc["explanation"]["children"][1]["children"][0]["path"] == "$.any[1].not"

    problem(api.get(f"/segments/{segment['id']}/explain/{2**40}"), 404, "contact_id")
    problem(api.post("/segments/explain", json={"rule": HAIFA, "contact_id": 2**40}), 404, "contact_id")
    problem(api.post("/segments/explain", json={"rule": {"stat": "nope", "op": "gt", "value": 1},
                                                "contact_id": dana}), 422, "rule: $.stat")


def test_a_contacts_segments_with_when_it_entered(api):
    dana = add_contact(api, email="dana@example.co.il", city="Haifa")
    haifa = ok(api.post("/segments", json={"name": "Haifa", "rule": HAIFA}), 201)
    ok(api.post("/segments", json={"name": "Buyers", "rule": BUYERS}), 201)
    everyone = ok(api.post("/segments", json={"name": "All", "rule": {"field": "email", "op": "is_set"}}), 201)
    found = ok(api.get(f"/contacts/{dana}/segments"))
    assert [(s["id"], s["name"]) for s in found] == [(everyone["id"], "All"), (haifa["id"], "Haifa")]
    assert all(datetime.fromisoformat(s["entered_at"]) <= datetime.now(UTC) for s in found)
    problem(api.get(f"/contacts/{2**40}/segments"), 404, "id")


def test_presets_in_english_and_hebrew_with_the_rule_for_this_workspace(api):
    presets = {p["key"]: p for p in ok(api.get("/segments/presets"))}
    assert set(presets) == set(segments.PRESETS)
    loyal = presets["loyal"]
    assert loyal["name"] == {"en": "Loyal customers", "he": translations("he").gettext("Loyal customers")}
    assert loyal["description"]["en"].startswith("At least") and loyal["params"] == []
    assert loyal["rule"] == {"stat": "purchase_count", "op": "gte", "value": 3}
    assert presets["vip"]["rule"] == {"stat": "total_revenue", "op": "top_percent", "value": 10}
    assert (presets["clicked_link"]["params"], presets["clicked_link"]["rule"]) == (["campaign_id", "url"], None)


def test_segments_from_presets(api):
    dormant = ok(api.post("/segments", json={"preset": "dormant"}), 201)
    assert (dormant["preset"], dormant["rule"]) == ("dormant", {"stage": "dormant"})
    assert dormant["name"] == translations("he").gettext("Dormant")  # in the workspace's language
    named = ok(api.post("/segments", json={"preset": "clicked_link", "name": "Spring clickers", "description": "x",
                                           "params": {"campaign_id": "spring", "url": "https://shop.example/sale"}}),
               201)
    assert (named["name"], named["description"], named["preset"]) == ("Spring clickers", "x", "clicked_link")
    assert named["rule"]["where"][0] == {"prop": "campaign_id", "op": "eq", "value": "spring"}
    problem(api.post("/segments", json={"preset": "clicked_link", "name": "No campaign"}), 422, "params.campaign_id")
    problem(api.post("/segments", json={"preset": "clicked_link", "params": {"campaign_id": "c", "url": " "}}), 422,
            "params.url")
    problem(api.post("/segments", json={"preset": "nope"}), 422, "preset")
    assert len(ok(api.get("/segments"))) == 2


@pytest.mark.parametrize("rule, field", [
    ({"all": [HAIFA, {"event": "purchase", "within_days": -1}]}, "rule: $.all[1].within_days"),
    ({"all": [HAIFA, {"event": "purchase", "count": {"op": "about", "value": 2}}]}, "rule: $.all[1].count.op"),
    ({"any": [{"not": {"field": "city", "op": "in", "value": []}}]}, "rule: $.any[0].not.value"),
    ({"field": "city", "op": "eq", "value": "Haifa", "stat": "total_revenue"}, "rule: $"),
    ({"city": "Haifa"}, "rule: $"),
    ("Haifa", "rule: $"),
    (None, "rule: $"),
    ({"all": []}, "rule: $.all"),
    ({"field": "shoe_size", "op": "eq", "value": 42}, "rule: $.field"),
    ({"field": "birthday", "op": "contains", "value": "05"}, "rule: $.op"),
    ({"all": [HAIFA, {"list": "No such list"}]}, "rule: $.all[1].list"),
    ({"stat": "total_revenue", "op": "gte", "value": "lots"}, "rule: $.value"),
    ({"event": "purchase", "where": [{"prop": "total", "op": "gt", "value": "x"}]}, "rule: $.where[0].value"),
    ({"segment": 2**40}, "rule: $.segment"),
])
def test_invalid_rules_are_refused_naming_the_json_path(api, rule, field):
    body = problem(api.post("/segments", json={"name": "Bad", "rule": rule}), 422, field)
    assert body["errors"] == [{"field": field, "message": body["errors"][0]["message"]}]
    problem(api.post("/segments/preview", json={"rule": rule}), 422, field)
    good = ok(api.post("/segments", json={"name": "Good", "rule": HAIFA}), 201)
    problem(api.patch(f"/segments/{good['id']}", json={"name": "Renamed", "rule": rule}), 422, field)
    assert [(s["name"], s["rule"]) for s in ok(api.get("/segments"))] == [("Good", HAIFA)]  # nothing partial kept


@pytest.mark.parametrize("payload, field", [
    ({"rule": HAIFA}, "name"),
    ({"name": "x"}, "rule"),
    ({"name": "x", "rule": HAIFA, "preset": "vip"}, "rule"),
    ({"name": "x", "rule": HAIFA, "params": {"campaign_id": "c"}}, "params"),
    ({"name": "", "rule": HAIFA}, "name"),
    ({"name": "x" * 201, "rule": HAIFA}, "name"),
    ({"name": "x", "rule": HAIFA, "colour": "red"}, "colour"),
])
def test_bad_requests_name_the_field(api, payload, field):
    problem(api.post("/segments", json=payload), 422, field)
    assert ok(api.get("/segments")) == []


def test_another_workspaces_segments_and_contacts_answer_404(api, database, other_workspace):
    mine = add_contact(api, email="mine@example.com", city="Haifa")
    with database.session() as s:
        ws = s.get(Workspace, other_workspace.id)
        theirs = contacts.save_contact(s, ws.id, {"email": "theirs@example.com", "city": "Haifa"}).contact_id
        segment = segments.create_segment(s, ws, "Their Haifa", HAIFA).id
        list_id = groups.create(s, ws.id, "list", "Their list").id
    assert ok(api.get("/segments")) == []
    own = ok(api.post("/segments", json={"name": "Haifa", "rule": HAIFA}), 201)
    assert own["member_count"] == 1  # their Haifa contact is not counted
    assert ok(api.post("/segments/preview", json={"rule": HAIFA}))["count"] == 1

    for method, path in [("get", f"/segments/{segment}"), ("patch", f"/segments/{segment}"),
                         ("delete", f"/segments/{segment}"), ("post", f"/segments/{segment}/refresh"),
                         ("get", f"/segments/{segment}/members"), ("get", f"/segments/{segment}/explain/{mine}")]:
        problem(api.request(method.upper(), path, json={"name": "mine now"} if method == "patch" else None), 404, "id")
    problem(api.get(f"/segments/{own['id']}/explain/{theirs}"), 404, "contact_id")
    problem(api.post("/segments/explain", json={"rule": HAIFA, "contact_id": theirs}), 404, "contact_id")
    problem(api.get(f"/contacts/{theirs}/segments"), 404, "id")
    problem(api.post("/segments", json={"name": "Theirs", "rule": {"segment": segment}}), 422, "rule: $.segment")
    problem(api.post("/segments", json={"name": "Theirs", "rule": {"list": list_id}}), 422, "rule: $.list")
    problem(api.post("/segments", json={"name": "Theirs", "rule": {"list": "Their list"}}), 422, "rule: $.list")
    with database.session() as s:
        assert segments.get_segment(s, other_workspace.id, segment).name == "Their Haifa"


def test_the_openapi_document_lists_the_segment_paths(api):
    paths = ok(api.get("/openapi.json"))["paths"]
    assert {"/api/v1/segments", "/api/v1/segments/presets", "/api/v1/segments/preview", "/api/v1/segments/explain",
            "/api/v1/segments/{segment_id}", "/api/v1/segments/{segment_id}/refresh",
            "/api/v1/segments/{segment_id}/members", "/api/v1/segments/{segment_id}/explain/{contact_id}",
            "/api/v1/contacts/{contact_id}/segments"} <= set(paths)
