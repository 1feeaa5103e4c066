"""The events REST API: sending batches, exploring events, a contact's rollups, isolation."""

from datetime import UTC, datetime, timedelta, timezone

from fastapi.testclient import TestClient

from kesher.contacts import service as contacts
from kesher.events.schemas import MAX_EVENTS
from tests.problems import problem

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def at(days: float = 0) -> str:
    return (T0 + timedelta(days=days)).isoformat()


def explore(api, **params) -> list[dict]:
    response = api.get("/events", params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_a_batch_answers_counts_and_errors_by_index(api):
    response = api.post("/events", json={"events": [
        {"type": "purchase", "contact": {"email": "dana@example.co.il"}, "ts": at(), "idempotency_key": "o-1",
         "properties": {"order_id": "1", "items": [{"sku": "A", "price": 49.9, "quantity": 2}]}},
        {"type": "purchase", "contact": {"email": "dana@example.co.il"}, "ts": at(), "idempotency_key": "o-1",
         "properties": {"order_id": "1"}},
        {"type": "purchase", "contact": {"email": "dana@example.co.il"}},
        17,
    ]})
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 1, "duplicates": 1, "errors": [
        {"index": 2, "field": "properties.order_id", "message": "Field required"},
        {"index": 3, "field": "event", "message": response.json()["errors"][1]["message"]}]}
    contact_id = explore(api, type="purchase")[0]["contact_id"]
    rollups = api.get(f"/contacts/{contact_id}/rollups").json()
    assert (rollups["purchase_count"], rollups["revenue_minor"], rollups["total_revenue"]) == (1, 9980, 99.8)


def test_a_malformed_batch_is_refused_whole(api):
    problem(api.post("/events", json={"events": [{"type": "email_opened", "anonymous_id": "v"}] * (MAX_EVENTS + 1)}),
            422, "events")
    problem(api.post("/events", json={"events": "nope"}), 422, "events")
    problem(api.post("/events", json=[{"type": "email_opened"}]), 422)
    assert explore(api) == []


def test_without_a_valid_key_is_401(app):
    for headers in ({}, {"Authorization": "Bearer ksr_nonsense"}):
        with TestClient(app, base_url="http://testserver/api/v1", headers=headers) as client:
            problem(client.post("/events", json={"events": []}), 401, "Authorization")
            problem(client.get("/events"), 401, "Authorization")
            problem(client.get("/contacts/1/rollups"), 401, "Authorization")


def test_explorer_filters(api):
    dana = api.post("/contacts", json={"email": "dana@example.co.il"}).json()["id"]
    avi = api.post("/contacts", json={"email": "avi@example.co.il"}).json()["id"]
    result = api.post("/events", json={"events": [
        {"type": "email_sent", "contact": {"id": dana}, "ts": at(0), "properties": {"campaign_id": "c1"}},
        {"type": "email_opened", "contact": {"id": dana}, "ts": at(1), "properties": {"campaign_id": "c1"}},
        {"type": "email_opened", "contact": {"id": avi}, "ts": at(2), "properties": {"campaign_id": "c2"}},
        {"type": "custom:quiz", "contact": {"id": avi}, "ts": at(3), "properties": {"score": 7, "level": "גבוה"}},
        {"type": "page_view", "anonymous_id": "v-1", "ts": at(4), "properties": {"url": "https://shop.example/"}},
    ]}).json()
    assert (result["accepted"], result["errors"]) == (5, [])

    def types(**params):
        return [e["type"] for e in explore(api, **params) if e["type"] != "stage_changed"]

    assert types() == ["page_view", "custom:quiz", "email_opened", "email_opened", "email_sent"]
    assert types(type="email_opened") == ["email_opened", "email_opened"]
    assert types(contact_id=dana) == ["email_opened", "email_sent"]
    assert types(since=at(1), until=at(3)) == ["email_opened", "email_opened"]
    assert types(since=T0.astimezone(timezone(timedelta(hours=2))).isoformat(), until=at(0.5)) == ["email_sent"]
    assert types(property="campaign_id=c1") == ["email_opened", "email_sent"]
    assert types(property=["campaign_id=c1", "contact=x"]) == []
    assert types(property="score=7") == types(property="level=גבוה") == ["custom:quiz"]
    assert types(type="email_sent", property="campaign_id=c2") == []
    event = explore(api, type="email_sent")[0]
    assert (event["contact_id"], event["properties"], event["source"]) == (dana, {"campaign_id": "c1"}, "api")
    assert datetime.fromisoformat(event["ts"]) == T0


def test_explorer_rejects_bad_filters_naming_them(api):
    problem(api.get("/events", params={"since": "2026-03-01T09:00:00"}), 422, "since")
    problem(api.get("/events", params={"until": "yesterday"}), 422, "until")
    problem(api.get("/events", params={"property": "campaign_id"}), 422, "property")
    problem(api.get("/events", params={"property": 'a"b=1'}), 422, "property")
    problem(api.get("/events", params={"limit": 501}), 422, "limit")
    problem(api.get("/events", params={"cursor": "!!"}), 422, "cursor")


def test_pages_walk_every_event_once_newest_first(api):
    events = [{"type": "custom:tick", "anonymous_id": "v", "ts": at(i), "properties": {"i": i}} for i in range(11)]
    assert api.post("/events", json={"events": events}).json()["accepted"] == 11
    seen, cursor, pages = [], None, 0
    while True:
        page = api.get("/events", params={"limit": 4, **({"cursor": cursor} if cursor else {})}).json()
        seen += [e["id"] for e in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 11 == len(set(seen)) and seen == sorted(seen, reverse=True)


def test_another_workspaces_contact_is_404_as_if_missing(api, database, other_workspace):
    with database.session() as s:
        theirs = contacts.save_contact(s, other_workspace.id, {"email": "their@example.com"}).contact_id
    for contact_id in (theirs, 10**12):
        problem(api.get("/events", params={"contact_id": contact_id}), 404, "contact_id")
        problem(api.get(f"/contacts/{contact_id}/rollups"), 404, "id")
    problem(api.get("/events", params={"contact_id": 2**64}), 422, "contact_id")
    problem(api.get(f"/contacts/{2**64}/rollups"), 422, "contact_id")
    result = api.post("/events", json={"events": [{"type": "email_opened", "contact": {"id": theirs}}]}).json()
    assert (result["accepted"], result["errors"][0]["field"]) == (0, "contact.id")


def test_rollups_of_a_contact(api):
    contact = api.post("/contacts", json={"email": "dana@example.co.il"}).json()["id"]
    empty = api.get(f"/contacts/{contact}/rollups").json()
    assert (empty["purchase_count"], empty["total_revenue"], empty["avg_order_value"], empty["categories"]) == (
        0, 0, None, [])
    me = {"id": contact}
    api.post("/events", json={"events": [
        {"type": "email_sent", "contact": me, "ts": at(0), "properties": {"campaign_id": f"c{i}"}} for i in range(4)
    ] + [
        {"type": "purchase", "contact": me, "ts": at(1), "properties": {"order_id": "1", "total": 100,
                                                                         "items": [{"sku": "A", "category": "vitamins"}]}},
        {"type": "purchase", "contact": me, "ts": at(4), "properties": {"order_id": "2", "total": 50.5}},
        {"type": "purchase", "contact": me, "ts": at(7), "properties": {"order_id": "3", "total": 20}},
        {"type": "refund", "contact": me, "ts": at(8), "properties": {"order_id": "3", "amount": 20}},
    ]})
    r = api.get(f"/contacts/{contact}/rollups").json()
    assert (r["contact_id"], r["sent_count"], r["purchase_count"], r["revenue_minor"], r["refunds_minor"]) == (
        contact, 4, 3, 17050, 2000)
    assert (r["total_revenue"], r["avg_order_value"], r["avg_days_between_purchases"]) == (150.5, 56.83, 3.0)
    assert [(c["category"], c["purchase_count"]) for c in r["categories"]] == [("vitamins", 1)]
    assert len(r["last_campaigns"]) == 3
    assert datetime.fromisoformat(r["last_purchase_at"]) == T0 + timedelta(days=7)


def test_openapi_documents_the_event_routes(api):
    doc = api.get("/openapi.json").json()
    post = doc["paths"]["/api/v1/events"]["post"]
    assert {"200", "401", "422"} <= set(post["responses"]) and post["tags"] == ["events"]
    body = post["requestBody"]["content"]["application/json"]
    assert body["examples"]["mixed"]["value"]["events"][0]["type"] == "purchase"
    batch = doc["components"]["schemas"]["EventsBatch"]["properties"]["events"]
    assert batch["items"] == {"$ref": "#/components/schemas/EventIn"} and batch["maxItems"] == MAX_EVENTS
    assert {"EventIn", "ContactRef", "IngestResult", "EventPage", "RollupsOut"} <= set(doc["components"]["schemas"])
    assert "/api/v1/contacts/{contact_id}/rollups" in doc["paths"]
