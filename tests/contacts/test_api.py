"""The contacts REST API: round trips, merging, problems naming the field, isolation, paging, bulk."""

import base64
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from kesher.accounts import service as accounts
from kesher.accounts.models import Workspace
from kesher.contacts import fields as field_service
from kesher.contacts import groups, suppression
from kesher.contacts import service as contacts
from kesher.contacts.schemas import MAX_BULK
from kesher.errors import NotFound
from tests.problems import problem

FORMULA = '=HYPERLINK("http://x","y")'


def all_contacts(api) -> list[dict]:
    response = api.get("/contacts", params={"limit": 500})
    assert response.status_code == 200
    return response.json()["data"]


def test_contact_round_trip(api):
    assert api.post("/fields", json={"key": "plan", "label": "תוכנית", "type": "choice",
                                     "choices": ["basic", "pro"]}).status_code == 201
    vip = api.post("/lists", json={"name": "VIP", "description": "הלקוחות הטובים"}).json()
    body = {
        "email": "Dana@Example.co.il", "phone": "050-1234567", "first_name": "דנה", "birthday": "17/05/1990",
        "fields": {"plan": "pro"}, "consent": {"email": "granted"}, "lists": [vip["id"]], "tags": ["vip", "new"],
    }
    created = api.post("/contacts", json=body)
    assert created.status_code == 201, created.text
    contact = created.json()
    assert (contact["email"], contact["phone"], contact["birthday"]) == ("dana@example.co.il", "+972501234567",
                                                                          "1990-05-17")
    assert contact["fields"] == {"plan": "pro"}
    assert [g["name"] for g in contact["lists"]] == ["VIP"]
    assert [t["name"] for t in contact["tags"]] == ["new", "vip"]
    assert contact["consent"]["email"]["status"] == "granted"
    assert datetime.fromisoformat(contact["created_at"]).utcoffset().total_seconds() == 0

    assert api.get(f"/contacts/{contact['id']}").json() == contact
    patched = api.patch(f"/contacts/{contact['id']}", json={"city": "חיפה", "first_name": None,
                                                            "fields": {"plan": "basic"}})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["city"], patched.json()["first_name"], patched.json()["fields"]) == (
        "חיפה", None, {"plan": "basic"})
    assert api.get(f"/lists/{vip['id']}").json()["member_count"] == 1

    assert api.delete(f"/contacts/{contact['id']}").status_code == 204
    problem(api.get(f"/contacts/{contact['id']}"), 404, "id")
    assert api.get(f"/lists/{vip['id']}").json()["member_count"] == 0


def test_post_merges_by_identity_with_200_and_the_same_id(api):
    first = api.post("/contacts", json={"phone": "050-1234567", "first_name": "Avi"})
    assert first.status_code == 201
    merged = api.post("/contacts", json={"phone": "+972 50 123 4567", "email": "avi@example.com"})
    assert merged.status_code == 200
    assert merged.json()["id"] == first.json()["id"]
    assert (merged.json()["first_name"], merged.json()["email"]) == ("Avi", "avi@example.com")
    again = api.post("/contacts", json={"email": "AVI@example.com"})
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    assert len(all_contacts(api)) == 1


@pytest.mark.parametrize("method, path, payload, field", [
    ("post", "/contacts", {"email": "not-an-email"}, "email"),
    ("post", "/contacts", {"phone": "12"}, "phone"),
    ("post", "/contacts", {"email": "a@b.co", "first_name": "x" * 50_000}, "first_name"),
    ("post", "/contacts", {"email": "a@b.co", "fields": {"shoe_size": 42}}, "fields.shoe_size"),
    ("post", "/contacts", {"email": "a@b.co", "consent": {"email": "maybe"}}, "consent.email"),
    ("post", "/contacts", {"email": "a@b.co", "consent": {"pigeon": "granted"}}, "consent.pigeon"),
    ("post", "/contacts", {"email": "a@b.co", "shoe_size": 42}, "shoe_size"),
    ("post", "/contacts", {"first_name": "nobody"}, "email"),
    ("get", "/contacts?limit=0", None, "limit"),
    ("get", "/contacts?limit=501", None, "limit"),
    ("get", "/contacts?cursor=!!", None, "cursor"),
    ("get", "/contacts?consent=pigeon", None, "consent"),
    ("post", "/fields", {"key": "Bad Key", "label": "x", "type": "text"}, "key"),
    ("post", "/suppressions", {"channel": "email", "address": "a@b.co", "reason": "bored"}, "reason"),
    ("post", "/suppressions", {"channel": "sms", "address": "12"}, "address"),
])
def test_bad_input_is_a_problem_naming_the_field(api, method, path, payload, field):
    response = api.request(method.upper(), path, json=payload)
    problem(response, 422, field)
    assert all_contacts(api) == []


def test_bad_consent_status_names_the_field(api):
    contact = api.post("/contacts", json={"email": "c@example.com"}).json()
    url = f"/contacts/{contact['id']}/consent"
    problem(api.put(f"{url}/email", json={"status": "maybe", "source": "form"}), 422, "status")
    problem(api.put(f"{url}/pigeon", json={"status": "granted", "source": "form"}), 422, "channel")
    problem(api.put(f"{url}/email", json={"status": "granted", "source": "form", "ip": "300.1.1.1"}), 422, "ip")
    assert api.get(url).json() == {}


def test_a_failed_request_keeps_nothing(api):
    problem(api.post("/contacts", json={"email": "bad", "tags": ["ghost"]}), 422, "email")
    problem(api.post("/contacts/bulk", json={"contacts": [{"email": "a@example.com"}], "tags": ["t", ""]}), 422,
            "tags")
    assert api.get("/tags").json() == [] and all_contacts(api) == []


def test_missing_invalid_or_revoked_key_is_401(app, database, workspace):
    with database.session() as s:
        key, secret = accounts.create_api_key(s, s.merge(workspace), "old")
        accounts.revoke_api_key(s, workspace.id, key.id)
    base = "http://testserver/api/v1"
    for headers in ({}, {"Authorization": "Bearer ksr_nonsense"}, {"Authorization": f"Bearer {secret}"},
                    {"Authorization": "Basic dXNlcjpwYXNz"}):
        with TestClient(app, base_url=base, headers=headers) as client:
            problem(client.get("/contacts"), 401, "Authorization")
            problem(client.post("/contacts", json={"email": "x@example.com"}), 401, "Authorization")


def test_another_workspaces_ids_answer_404_as_if_missing(api, database, other_workspace):
    with database.session() as s:
        ws = other_workspace.id
        theirs = contacts.save_contact(s, ws, {"email": "their@example.com"}).contact_id
        their_list = groups.create(s, ws, "list", "Theirs").id
        their_tag = groups.create(s, ws, "tag", "theirs").id
        their_field = field_service.create_field(s, ws, "secret", "Secret", "text").id
        their_suppression = suppression.suppress(s, ws, "email", "gone@example.com").id
    mine = api.post("/contacts", json={"email": "mine@example.com"}).json()["id"]
    my_list = api.post("/lists", json={"name": "Mine"}).json()["id"]
    my_tag = api.post("/tags", json={"name": "mine"}).json()["id"]

    def same_as_missing(call, their_id, field="id"):
        answers = [call(their_id), call(10**12)]
        for response in answers:
            problem(response, 404, field)
        assert answers[0].json()["title"] == answers[1].json()["title"]

    same_as_missing(lambda i: api.get(f"/contacts/{i}"), theirs)
    same_as_missing(lambda i: api.patch(f"/contacts/{i}", json={"city": "x"}), theirs)
    same_as_missing(lambda i: api.delete(f"/contacts/{i}"), theirs)
    same_as_missing(lambda i: api.get(f"/contacts/{i}/consent"), theirs)
    same_as_missing(lambda i: api.put(f"/contacts/{i}/consent/email", json={"status": "granted", "source": "x"}),
                    theirs)
    def group_routes(kind, their_group, my_group):
        same_as_missing(lambda i: api.get(f"/{kind}/{i}"), their_group)
        same_as_missing(lambda i: api.patch(f"/{kind}/{i}", json={"name": "Hacked"}), their_group)
        same_as_missing(lambda i: api.delete(f"/{kind}/{i}"), their_group)
        same_as_missing(lambda i: api.post(f"/{kind}/{i}/contacts", json={"contact_ids": [mine]}), their_group)
        same_as_missing(lambda i: api.request("DELETE", f"/{kind}/{i}/contacts", json={"contact_ids": [mine]}),
                        their_group)
        same_as_missing(lambda i: api.post(f"/{kind}/{my_group}/contacts", json={"contact_ids": [i]}), theirs,
                        "contact_ids")

    group_routes("lists", their_list, my_list)
    same_as_missing(lambda i: api.patch(f"/lists/{i}", json={"topic": True}), their_list)
    group_routes("tags", their_tag, my_tag)
    same_as_missing(lambda i: api.post("/contacts", json={"email": "new@example.com", "lists": [i]}), their_list,
                    "lists")
    same_as_missing(lambda i: api.post("/contacts", json={"email": "new@example.com", "tags": [i]}), their_tag,
                    "tags")
    same_as_missing(lambda i: api.get("/contacts", params={"list_id": i}), their_list, "list_id")
    same_as_missing(lambda i: api.get("/contacts", params={"tag_id": i}), their_tag, "tag_id")
    same_as_missing(lambda i: api.get(f"/fields/{i}"), their_field)
    same_as_missing(lambda i: api.delete(f"/fields/{i}"), their_field)
    same_as_missing(lambda i: api.delete(f"/suppressions/{i}"), their_suppression)

    assert [c["id"] for c in all_contacts(api)] == [mine]
    assert [g["id"] for g in api.get("/lists").json()] == [my_list]
    assert api.get("/fields").json() == [] and api.get("/suppressions").json()["data"] == []
    with database.session() as s:
        assert contacts.get_contact(s, ws, theirs).city is None
        assert groups.get(s, ws, "list", their_list).name == "Theirs"
        assert groups.topic_ids(s.get_one(Workspace, ws)) == []
        assert groups.get(s, ws, "tag", their_tag).name == "theirs"
        assert field_service.get_field(s, ws, their_field).key == "secret"
        assert suppression.is_suppressed(s, ws, "email", "gone@example.com")


def test_cursor_pages_walk_every_contact_exactly_once(api):
    result = api.post("/contacts/bulk", json={"contacts": [{"email": f"p{i}@example.com"} for i in range(11)]})
    assert result.json()["created"] == 11
    seen, cursor, pages = [], None, 0
    while True:
        page = api.get("/contacts", params={"limit": 4, **({"cursor": cursor} if cursor else {})}).json()
        seen += [c["id"] for c in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 11 == len(set(seen)) and seen == sorted(seen, reverse=True)


def test_search_filters(api):
    list_id = api.post("/lists", json={"name": "Newsletter"}).json()["id"]
    api.post("/contacts/bulk", json={"lists": [list_id], "tags": ["import"], "contacts": [
        {"email": "haifa@example.com", "first_name": "רונית", "city": "חיפה", "consent": {"email": "granted"}},
        {"email": "eilat@example.com", "first_name": "משה", "city": "אילת", "phone": "052-7654321"},
    ]})
    api.post("/contacts", json={"email": "alone@example.com"})
    tag_id = api.get("/tags").json()[0]["id"]

    def emails(**params):
        return sorted(c["email"] for c in api.get("/contacts", params=params).json()["data"])

    assert emails(city="חיפה") == ["haifa@example.com"]
    assert emails(consent="email") == ["haifa@example.com"]
    assert emails(q="משה") == emails(q="052-765") == ["eilat@example.com"]
    assert emails(list_id=list_id) == emails(tag_id=tag_id) == ["eilat@example.com", "haifa@example.com"]
    assert len(emails()) == 3


def test_bulk_reports_each_item_and_keeps_only_the_good_ones(api):
    api.post("/fields", json={"key": "orders", "label": "הזמנות", "type": "number"})
    list_id = api.post("/lists", json={"name": "Bulk"}).json()["id"]
    items = [
        {"email": "a@example.com", "first_name": "A", "fields": {"orders": 2}},  # 0 created
        {"email": "nope"},  # 1 bad email
        {"email": "A@Example.com", "city": "חיפה"},  # 2 same person as 0, adds a city
        {"email": "x@example.com", "first_name": {"not": "text"}},  # 3 wrong JSON type
        {"email": "b@example.com", "shoe_size": 44},  # 4 unknown field
        {"first_name": "nobody"},  # 5 no identity
        {"phone": 527654321},  # 6 created; a JSON number missing its leading zero
        {"phone": "052-7654321"},  # 7 same as 6, nothing new
        {"email": "c@example.com", "fields": {"orders": "many"}},  # 8 bad custom value
        "not an object",  # 9
    ]
    response = api.post("/contacts/bulk", json={"contacts": items, "lists": [list_id]})
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["created"], result["updated"], result["unchanged"]) == (2, 1, 1)
    assert [(e["index"], e["field"]) for e in result["errors"]] == [
        (1, "email"), (3, "first_name"), (4, "shoe_size"), (5, "email"), (8, "fields.orders"), (9, None)]
    assert all(e["message"] for e in result["errors"])
    stored = {c["email"] or c["phone"]: c for c in all_contacts(api)}
    assert set(stored) == {"a@example.com", "+972527654321"}
    assert (stored["a@example.com"]["city"], stored["a@example.com"]["fields"]) == ("חיפה", {"orders": 2.0})
    assert api.get(f"/lists/{list_id}").json()["member_count"] == 2


def test_bulk_of_more_than_the_limit_is_refused_whole(api):
    response = api.post("/contacts/bulk", json={"contacts": [{"email": f"{i}@x.co"} for i in range(MAX_BULK + 1)]})
    problem(response, 422, "contacts")
    assert all_contacts(api) == []


def test_formula_looking_values_are_plain_text(api):
    api.post("/fields", json={"key": "note", "label": "הערה", "type": "text"})
    payload = {"external_id": "=1+2", "first_name": FORMULA, "city": "@SUM(A1)", "fields": {"note": "-2+3"}}
    contact = api.post("/contacts", json=payload).json()
    again = api.get(f"/contacts/{contact['id']}").json()
    for body in (contact, again, all_contacts(api)[0]):
        assert (body["external_id"], body["first_name"], body["city"], body["fields"]) == (
            "=1+2", FORMULA, "@SUM(A1)", {"note": "-2+3"})


def test_lists_and_tags(api):
    created = api.post("/lists", json={"name": "  חברי   מועדון "})
    assert created.status_code == 201
    club = created.json()
    assert (club["name"], club["member_count"]) == ("חברי מועדון", 0)
    problem(api.post("/lists", json={"name": "חברי מועדון"}), 409, "name")
    problem(api.post("/lists", json={"name": " "}), 422, "name")
    problem(api.patch(f"/lists/{club['id']}", json={"description": "x" * 1001}), 422, "description")
    renamed = api.patch(f"/lists/{club['id']}", json={"name": "Club", "description": "members"}).json()
    assert (renamed["name"], renamed["description"]) == ("Club", "members")

    ids = [api.post("/contacts", json={"email": f"m{i}@example.com"}).json()["id"] for i in range(3)]
    assert api.post(f"/lists/{club['id']}/contacts", json={"contact_ids": ids}).json()["member_count"] == 3
    assert api.request("DELETE", f"/lists/{club['id']}/contacts", json={"contact_ids": ids[:2]}).json()[
        "member_count"] == 1
    problem(api.post(f"/lists/{club['id']}/contacts", json={"contact_ids": []}), 422, "contact_ids")
    assert [(g["name"], g["member_count"]) for g in api.get("/lists").json()] == [("Club", 1)]

    tag = api.post("/tags", json={"name": "vip"}).json()
    assert api.post(f"/tags/{tag['id']}/contacts", json={"contact_ids": ids}).json()["member_count"] == 3
    assert api.patch(f"/tags/{tag['id']}", json={"name": "VIP"}).json()["name"] == "VIP"
    tagged = api.post("/contacts", json={"email": "m0@example.com", "tags": [tag["id"], "new"]}).json()
    assert [t["name"] for t in tagged["tags"]] == ["VIP", "new"]
    assert {t["name"]: t["member_count"] for t in api.get("/tags").json()} == {"VIP": 3, "new": 1}

    assert api.delete(f"/lists/{club['id']}").status_code == 204
    assert api.delete(f"/tags/{tag['id']}").status_code == 204
    problem(api.get(f"/lists/{club['id']}"), 404, "id")
    assert len(all_contacts(api)) == 3


def topics(database, workspace) -> list[int]:
    with database.session() as s:
        return groups.topic_ids(s.get_one(Workspace, workspace.id))


def test_lists_offered_as_topics_keep_their_order_until_withdrawn_or_deleted(api, database, workspace):
    news = api.post("/lists", json={"name": "חדשות", "topic": True})
    assert news.status_code == 201 and news.json()["topic"] is True
    news = news.json()
    vip = api.post("/lists", json={"name": "VIP"}).json()
    deals = api.post("/lists", json={"name": "מבצעים"}).json()
    assert vip["topic"] is False
    assert api.patch(f"/lists/{deals['id']}", json={"topic": True}).json()["topic"] is True
    assert topics(database, workspace) == [news["id"], deals["id"]]
    assert {g["name"]: g["topic"] for g in api.get("/lists").json()} == {"VIP": False, "חדשות": True, "מבצעים": True}
    assert api.get(f"/lists/{vip['id']}").json()["topic"] is False

    # Withdrawn and offered again, a topic comes last; a patch that does not name `topic` leaves it.
    assert api.patch(f"/lists/{news['id']}", json={"topic": False}).json()["topic"] is False
    assert api.patch(f"/lists/{news['id']}", json={"topic": True}).json()["topic"] is True
    assert api.patch(f"/lists/{news['id']}", json={"topic": True}).json()["topic"] is True
    assert api.patch(f"/lists/{deals['id']}", json={"name": "הנחות"}).json()["topic"] is True
    assert topics(database, workspace) == [deals["id"], news["id"]]
    with database.session() as s:
        trail = accounts.audit_trail(s, workspace.id, "list", news["id"])
        assert [(e.action, e.changes) for e in reversed(trail)] == [
            ("list.created", {"name": "חדשות"}), ("list.topic_changed", {"topic": [False, True]}),
            ("list.topic_changed", {"topic": [True, False]}), ("list.topic_changed", {"topic": [False, True]})]

    assert api.delete(f"/lists/{deals['id']}").status_code == 204
    assert topics(database, workspace) == [news["id"]]
    with database.session() as s:
        assert accounts.audit_trail(s, workspace.id, "list", deals["id"])[0].changes == {
            "name": "הנחות", "topic": [True, False]}
    assert [(g["name"], g["topic"]) for g in api.get("/lists").json()] == [("VIP", False), ("חדשות", True)]


@pytest.mark.parametrize("method, payload", [
    ("post", {"name": "Club", "topic": "maybe"}),
    ("post", {"name": "Club", "topic": "true"}),
    ("post", {"name": "Club", "topic": 1}),
    ("post", {"name": "Club", "topic": None}),
    ("patch", {"topic": "maybe"}),
    ("patch", {"name": "Renamed", "topic": [True]}),
])
def test_a_topic_must_be_true_or_false(api, database, workspace, method, payload):
    club = api.post("/lists", json={"name": "Existing"}).json()
    path = "/lists" if method == "post" else f"/lists/{club['id']}"
    problem(api.request(method.upper(), path, json=payload), 422, "topic")
    assert [(g["name"], g["topic"]) for g in api.get("/lists").json()] == [("Existing", False)]
    assert topics(database, workspace) == []


def test_a_workspace_offers_only_its_own_lists(api, database, workspace, other_workspace):
    with database.session() as s:
        theirs = groups.create(s, other_workspace.id, "list", "Theirs").id
        groups.offer_as_topic(s, other_workspace.id, theirs, True)
        # Another workspace's list cannot be offered here, even through the service.
        with pytest.raises(NotFound):
            groups.offer_as_topic(s, workspace.id, theirs, True)
    mine = api.post("/lists", json={"name": "Mine", "topic": True}).json()["id"]
    assert [(g["id"], g["topic"]) for g in api.get("/lists").json()] == [(mine, True)]
    assert api.delete(f"/lists/{mine}").status_code == 204
    assert topics(database, workspace) == [] and topics(database, other_workspace) == [theirs]


def test_all_lists_reads_the_topics_once_however_many_lists(api, database):
    def statements() -> int:
        seen: list[str] = []

        def count_it(conn, cursor, statement, *args):  # noqa: ANN001 - SQLAlchemy's listener signature
            seen.append(statement)

        event.listen(database.engine, "before_cursor_execute", count_it)
        try:
            assert api.get("/lists").status_code == 200
        finally:
            event.remove(database.engine, "before_cursor_execute", count_it)
        return len(seen)

    api.post("/lists", json={"name": "first", "topic": True})
    one = statements()
    for n in range(5):
        api.post("/lists", json={"name": f"more {n}", "topic": n % 2 == 0})
    assert sum(g["topic"] for g in api.get("/lists").json()) == 4
    assert statements() == one


def test_custom_fields(api):
    created = api.post("/fields", json={"key": "loyalty", "label": "מועדון", "type": "choice",
                                        "choices": ["gold", "silver"]})
    assert created.status_code == 201
    field = created.json()
    problem(api.post("/fields", json={"key": "loyalty", "label": "again", "type": "text"}), 409, "key")
    problem(api.post("/fields", json={"key": "email", "label": "Email", "type": "text"}), 422, "key")
    problem(api.post("/fields", json={"key": "size", "label": "Size", "type": "colour"}), 422, "type")
    assert api.get("/fields").json() == [field] and api.get(f"/fields/{field['id']}").json() == field
    contact = api.post("/contacts", json={"email": "f@example.com", "fields": {"loyalty": "gold"}}).json()
    assert api.delete(f"/fields/{field['id']}").status_code == 204
    assert api.get(f"/contacts/{contact['id']}").json()["fields"] == {}
    problem(api.post("/contacts", json={"email": "f@example.com", "fields": {"loyalty": "gold"}}), 422,
            "fields.loyalty")


def test_consent_is_recorded_with_its_proof(api, database, workspace):
    contact = api.post("/contacts", json={"phone": "0541234567"}).json()
    url = f"/contacts/{contact['id']}/consent"
    response = api.put(f"{url}/sms", json={"status": "granted", "source": "checkout form", "ip": "203.0.113.9",
                                            "text_shown": "אני מסכים/ה לקבל הודעות"})
    assert response.status_code == 200, response.text
    assert api.get(url).json() == {"sms": response.json()}
    consent = response.json()
    assert (consent["channel"], consent["status"], consent["source"], consent["ip"]) == (
        "sms", "granted", "checkout form", "203.0.113.9")
    api.put(f"{url}/sms", json={"status": "unsubscribed", "source": "reply STOP"})
    assert api.get(url).json()["sms"]["status"] == "unsubscribed"
    with database.session() as s:
        trail = accounts.audit_trail(s, workspace.id, "contact", contact["id"])
    actors = {e.actor for e in trail if e.action == "consent.changed"}
    assert len(actors) == 1 and actors.pop().startswith("api_key:")


def test_suppressions(api):
    email = api.post("/suppressions", json={"channel": "email", "address": "Gone@Example.com", "note": "asked"})
    assert email.status_code == 201
    assert (email.json()["address"], email.json()["reason"]) == ("gone@example.com", "manual")
    sms = api.post("/suppressions", json={"channel": "sms", "address": "050-1234567", "reason": "complaint"}).json()
    assert sms["address"] == "+972501234567"
    assert [r["id"] for r in api.get("/suppressions", params={"channel": "sms"}).json()["data"]] == [sms["id"]]
    first = api.get("/suppressions", params={"limit": 1}).json()
    assert [r["id"] for r in first["data"]] == [email.json()["id"]] and first["next_after_id"] == email.json()["id"]
    second = api.get("/suppressions", params={"limit": 1, "after_id": first["next_after_id"]}).json()
    assert [r["id"] for r in second["data"]] == [sms["id"]] and second["next_after_id"] is None
    assert api.delete(f"/suppressions/{sms['id']}").status_code == 204
    assert [r["id"] for r in api.get("/suppressions").json()["data"]] == [email.json()["id"]]


def test_openapi_lists_the_paths_and_every_reference_resolves(api):
    response = api.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    for path in ("/contacts", "/contacts/bulk", "/contacts/{contact_id}", "/contacts/{contact_id}/consent/{channel}",
                 "/lists/{list_id}/contacts", "/tags/{tag_id}/contacts", "/fields/{field_id}",
                 "/suppressions/{suppression_id}"):
        assert "/api/v1" + path in doc["paths"]
    create = doc["paths"]["/api/v1/contacts"]["post"]
    assert {"200", "201", "401", "422"} <= set(create["responses"]) and create["tags"] == ["contacts"]

    def refs(node):
        if isinstance(node, dict):
            yield from ([node["$ref"]] if "$ref" in node else [])
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    names = {ref.rsplit("/", 1)[1] for ref in refs(doc)}
    assert {"ContactFields", "Problem"} <= names <= set(doc["components"]["schemas"])


@pytest.mark.parametrize("path", [f"/contacts/{2**64}", f"/lists/{2**64}", f"/contacts?list_id={2**64}",
                                  "/contacts?cursor=" + base64.urlsafe_b64encode(str(2**70).encode()).decode()])
def test_numbers_no_row_can_have_are_a_clear_422(api, path):
    response = api.get(path)
    assert response.status_code == 422 and response.headers["content-type"].startswith("application/problem+json")
