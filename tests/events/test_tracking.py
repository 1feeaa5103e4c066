"""Website tracking: sites and their origins, the snippet, collect and identify from a shop's pages."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from kesher.contacts import service as contacts
from kesher.contacts.models import Contact
from kesher.events import rollups, tracking
from kesher.events.ingest import ingest
from kesher.events.models import CategoryStat, ContactRollup, Event
from tests.problems import problem

SHOP = "https://shop.example.co.il"
ELSEWHERE = "https://evil.example.com"
VISITOR = "0f3a9c1e7b2d4a5f8e6c0b1a2d3e4f50"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


@pytest.fixture
def site(database, workspace):
    with database.session() as s:
        return tracking.create_site(s, workspace.id, "החנות", [SHOP, "http://localhost:3000"])


@pytest.fixture
def web(app):
    """A browser on the shop's pages: every request carries the shop's Origin."""
    with TestClient(app, headers={"Origin": SHOP}) as client:
        yield client


def send(client, path: str, body: dict, **headers):
    # As the snippet sends it: JSON as text/plain, so browsers need no preflight.
    return client.post(path, content=json.dumps(body), headers={"Content-Type": "text/plain;charset=UTF-8", **headers})


def page_view(minutes: float = 0, url: str = f"{SHOP}/") -> dict:
    return {"type": "page_view", "ts": (T0 + timedelta(minutes=minutes)).isoformat(),
            "properties": {"url": url, "title": "ויטמינים"}}


def collect(client, site, *events, visitor: str = VISITOR, **headers):
    body = {"key": site.write_key, "anonymous_id": visitor, "events": list(events)}
    return send(client, "/t/collect", body, **headers)


def identify(client, site, visitor: str = VISITOR, **who):
    return send(client, "/t/identify", {"key": site.write_key, "anonymous_id": visitor, **who})


def stored(database, workspace) -> list[Event]:
    """The workspace's events, but those Kesher writes itself (a contact's change of stage)."""
    with database.session() as s:
        return list(s.scalars(select(Event).where(Event.workspace_id == workspace.id,
                                                  Event.type.not_in(rollups.SYSTEM_TYPES)).order_by(Event.id)))


def contact_by(database, workspace, **identity) -> Contact | None:
    with database.session() as s:
        return s.scalar(select(Contact).filter_by(workspace_id=workspace.id, **identity))


def rollup(database, contact_id: int) -> dict:
    with database.session() as s:
        row = s.get(ContactRollup, contact_id)
        return {column: getattr(row, column) for column in rollups.CONTACT_KINDS} if row else {}


# Sites ------------------------------------------------------------------------------------------


def test_sites_are_managed_through_the_api(api):
    response = api.post("/tracking/sites", json={"name": " החנות  שלי ", "allowed_origins": [
        "HTTPS://Shop.Example.co.il:443/", "http://localhost:3000", "https://shop.example.co.il",
        "https://חנות.co.il"]})
    assert response.status_code == 201, response.text
    site = response.json()
    assert site["name"] == "החנות שלי"
    assert site["allowed_origins"] == [SHOP, "http://localhost:3000", "https://xn--9dbd1a4b.co.il"]
    assert site["write_key"].startswith("pk_") and len(site["write_key"]) > 20
    assert f'src="http://testserver/t/kesher.js" data-key="{site["write_key"]}" async' in site["snippet"]

    assert [s["id"] for s in api.get("/tracking/sites").json()] == [site["id"]]
    response = api.patch(f"/tracking/sites/{site['id']}", json={"allowed_origins": ["https://www.shop.example.co.il"]})
    assert response.status_code == 200, response.text
    assert response.json()["allowed_origins"] == ["https://www.shop.example.co.il"]
    assert response.json()["name"] == "החנות שלי" and response.json()["write_key"] == site["write_key"]
    assert api.get(f"/tracking/sites/{site['id']}").json()["allowed_origins"] == ["https://www.shop.example.co.il"]

    assert api.delete(f"/tracking/sites/{site['id']}").status_code == 204
    problem(api.get(f"/tracking/sites/{site['id']}"), 404, "id")
    assert api.get("/tracking/sites").json() == []


@pytest.mark.parametrize("origin", [
    "shop.example.co.il", "https://shop.example.co.il/checkout", "ftp://shop.example.co.il", "https://*.example.co.il",
    "https://user@shop.example.co.il", "https://shop.example.co.il:99999", "https://shop.example.co.il?x=1", "null",
])
def test_an_origin_is_scheme_host_and_port_only(api, origin):
    body = problem(api.post("/tracking/sites", json={"name": "x", "allowed_origins": [SHOP, origin]}), 422,
                   "allowed_origins.1")
    assert "scheme://host[:port]" in body["detail"]
    assert api.get("/tracking/sites").json() == []


def test_another_workspaces_site_is_not_found(api, database, other_workspace):
    with database.session() as s:
        theirs = tracking.create_site(s, other_workspace.id, "theirs", [SHOP])
    problem(api.get(f"/tracking/sites/{theirs.id}"), 404)
    problem(api.patch(f"/tracking/sites/{theirs.id}", json={"name": "mine"}), 404)
    problem(api.delete(f"/tracking/sites/{theirs.id}"), 404)
    assert api.get("/tracking/sites").json() == []


# The snippet ------------------------------------------------------------------------------------


def test_the_snippet_is_javascript_cached_and_holds_no_secret(web, app, api_key):
    response = web.get("/t/kesher.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/javascript")
    assert response.headers["cache-control"] == "public, max-age=3600"
    assert response.headers["x-content-type-options"] == "nosniff"
    text = response.text
    assert len(response.content) < 6000
    for secret in (api_key, app.state.settings.secret_key, "ksr_"):
        assert secret not in text
    assert re.search(r"pk_[A-Za-z0-9_-]{8}", text) is None  # keys come from the page's data-key only
    assert "sendBeacon" in text and "keepalive" in text and "/t/collect" in text and "/t/identify" in text
    again = web.get("/t/kesher.js", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


# Collect ----------------------------------------------------------------------------------------


def test_events_from_an_allowed_origin_are_stored_with_exact_cors_headers(web, site, database, workspace):
    response = collect(web, site, page_view(), {"type": "cart_updated", "properties": {"total": 99.9}},
                       {"type": "custom:quiz_done", "properties": {"score": 7}})
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 3, "duplicates": 0, "errors": []}
    assert response.headers["access-control-allow-origin"] == SHOP
    assert "Origin" in response.headers["vary"]
    events = stored(database, workspace)
    assert [e.type for e in events] == ["page_view", "cart_updated", "custom:quiz_done"]
    assert {(e.anonymous_id, e.contact_id, e.source) for e in events} == {(VISITOR, None, "web")}
    assert events[0].ts == T0 and events[0].properties["title"] == "ויטמינים"

    other = collect(web, site, page_view(), Origin="http://localhost:3000")
    assert other.status_code == 200 and other.headers["access-control-allow-origin"] == "http://localhost:3000"


def test_the_preflight_answers_listed_origins_only(web, site):
    asks = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    for path in ("/t/collect", "/t/identify"):
        response = web.options(path, headers=asks)
        assert response.status_code == 204
        assert response.headers["access-control-allow-origin"] == SHOP
        assert response.headers["access-control-allow-methods"] == "POST"
        assert response.headers["access-control-allow-headers"].lower() == "content-type"
        assert int(response.headers["access-control-max-age"]) > 0
        refused = web.options(path, headers={**asks, "Origin": ELSEWHERE})
        assert refused.status_code == 403
        assert "access-control-allow-origin" not in refused.headers


def test_a_json_client_preflights_then_posts(web, site, database, workspace):
    preflight = web.options("/t/collect", headers={"Access-Control-Request-Method": "POST",
                                                   "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 204
    response = web.post("/t/collect", json={"key": site.write_key, "anonymous_id": VISITOR, "events": [page_view()]})
    assert response.status_code == 200, response.text
    assert len(stored(database, workspace)) == 1


@pytest.mark.parametrize("origin", [ELSEWHERE, "https://shop.example.co.il.evil.com", "http://shop.example.co.il",
                                    "null", None])
def test_another_origin_is_refused_and_nothing_is_stored(app, site, database, workspace, origin):
    client = TestClient(app, headers={"Origin": origin} if origin else {})
    response = collect(client, site, page_view())
    problem(response, 403, "Origin")
    assert "access-control-allow-origin" not in response.headers
    problem(identify(client, site, email="dana@example.co.il"), 403, "Origin")
    assert stored(database, workspace) == []
    assert contact_by(database, workspace, email="dana@example.co.il") is None


def test_an_unknown_key_is_401(web, site, database, workspace):
    for key in ("pk_nope", "ksr_" + site.write_key[3:]):
        response = send(web, "/t/collect", {"key": key, "anonymous_id": VISITOR, "events": [page_view()]})
        problem(response, 401, "key")
        assert "access-control-allow-origin" not in response.headers
        problem(send(web, "/t/identify", {"key": key, "anonymous_id": VISITOR, "email": "dana@example.co.il"}), 401)
    assert stored(database, workspace) == []


def test_a_deleted_site_stops_accepting(web, site, database, workspace):
    with database.session() as s:
        tracking.delete_site(s, workspace.id, site.id)
    problem(collect(web, site, page_view()), 401)


def test_only_behaviour_is_accepted_each_event_on_its_own(web, site, database, workspace):
    response = collect(web, site,
                       page_view(),
                       {"type": "purchase", "properties": {"order_id": "1", "total": 10}},
                       {"type": "email_opened", "properties": {"campaign_id": "c1"}},
                       {"type": "form_submitted", "properties": {"form_id": "newsletter"}},
                       {"type": "custom:Quiz Done"},
                       {"type": "page_view", "properties": {}},
                       {"type": "cart_abandoned", "contact": {"email": "dana@example.co.il"}},
                       "page_view")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 2
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (1, "type"), (2, "type"), (4, "type"), (5, "properties.url"), (6, "contact"), (7, "event")]
    assert "cannot be sent from a website" in body["errors"][0]["message"]
    assert [e.type for e in stored(database, workspace)] == ["page_view", "form_submitted"]


def test_sizes_are_limited(web, site, database, workspace):
    problem(collect(web, site, *[page_view(i) for i in range(tracking.MAX_EVENTS_PER_CALL + 1)]), 422, "events")
    big = page_view()
    big["properties"]["note"] = "א" * tracking.MAX_BODY_BYTES
    problem(collect(web, site, big), 413)
    problem(send(web, "/t/collect", {"key": site.write_key, "anonymous_id": "short", "events": [page_view()]}), 422,
            "anonymous_id")
    problem(web.post("/t/collect", content=b"{not json", headers={"Content-Type": "text/plain"}), 422)
    assert stored(database, workspace) == []
    assert collect(web, site, *[page_view(i) for i in range(tracking.MAX_EVENTS_PER_CALL)]).json()["accepted"] == 50


def test_a_browser_clock_far_off_is_replaced_by_the_time_of_arrival(web, site, database, workspace):
    future = {**page_view(), "ts": (datetime.now(UTC) + timedelta(days=30)).isoformat()}
    past = {**page_view(), "ts": "2001-01-01T00:00:00Z"}
    before = datetime.now(UTC)
    assert collect(web, site, future, past).json()["accepted"] == 2
    assert all(before - timedelta(seconds=1) <= e.ts <= datetime.now(UTC) for e in stored(database, workspace))


# Identify ---------------------------------------------------------------------------------------


def test_identify_gives_the_visitors_history_to_the_contact_once(web, site, database, workspace):
    assert collect(web, site, page_view(0), page_view(5, f"{SHOP}/cart")).json()["accepted"] == 2
    # An anonymous purchase (sent through the API, which may) shows that repeats count nothing twice.
    with database.session() as s:
        result = ingest(s, s.merge(workspace), [{
            "type": "purchase", "anonymous_id": VISITOR, "ts": (T0 + timedelta(minutes=6)).isoformat(),
            "properties": {"order_id": "A1", "items": [{"sku": "VIT-D", "category": "vitamins", "price": 49.9}]}}])
        assert result.accepted == 1
    with database.session() as s:
        tracking.create_site(s, workspace.id, "another site", ["https://blog.example.co.il"])

    response = identify(web, site, email=" Dana@Example.co.il ")
    assert response.status_code == 204 and response.content == b""
    assert response.headers["access-control-allow-origin"] == SHOP
    dana = contact_by(database, workspace, email="dana@example.co.il")
    assert dana is not None and dana.source == "web"
    assert {e.contact_id for e in stored(database, workspace)} == {dana.id}
    once = rollup(database, dana.id)
    assert once["last_visit_at"] == T0 + timedelta(minutes=5)
    assert (once["purchase_count"], once["revenue_minor"]) == (1, 4990)

    assert identify(web, site, email="dana@example.co.il").status_code == 204
    assert rollup(database, dana.id) == once
    with database.session() as s:
        assert s.get(CategoryStat, (dana.id, "vitamins")).purchase_count == 1
        rollups.rebuild(s, workspace.id)
    assert rollup(database, dana.id) == once


def test_later_events_of_an_identified_visitor_go_to_the_contact(web, site, database, workspace):
    collect(web, site, page_view(0))
    identify(web, site, phone="050-1234567")
    dana = contact_by(database, workspace, phone="+972501234567")
    assert dana is not None
    assert collect(web, site, page_view(30, f"{SHOP}/checkout")).json()["accepted"] == 1
    events = stored(database, workspace)
    assert [(e.contact_id, e.anonymous_id) for e in events] == [(dana.id, VISITOR)] * 2
    assert rollup(database, dana.id)["last_visit_at"] == T0 + timedelta(minutes=30)
    # Another visitor on another browser stays anonymous.
    collect(web, site, page_view(31), visitor="a" * 32)
    assert stored(database, workspace)[-1].contact_id is None


def test_identify_finds_an_existing_contact_and_says_nothing_of_it(web, site, database, workspace):
    with database.session() as s:
        existing = contacts.save_contact(s, workspace.id, {"email": "noa@example.co.il", "first_name": "נועה"})
    collect(web, site, page_view())
    known = identify(web, site, email="noa@example.co.il")
    unknown = identify(web, site, visitor="b" * 32, email="new@example.co.il")
    assert (known.status_code, known.content) == (unknown.status_code, unknown.content) == (204, b"")
    assert stored(database, workspace)[0].contact_id == existing.contact_id
    with database.session() as s:
        assert s.scalar(select(Contact.id).where(Contact.workspace_id == workspace.id,
                                                 Contact.email == "noa@example.co.il")) == existing.contact_id


def test_identify_checks_what_it_is_given(web, site, database, workspace):
    problem(identify(web, site, email="not-an-email"), 422, "email")
    problem(identify(web, site), 422, "email")
    problem(identify(web, site, email="dana@example.co.il", name="Dana"), 422, "name")
    with database.session() as s:
        assert s.scalar(select(Contact.id).where(Contact.workspace_id == workspace.id)) is None


def test_identify_stays_in_the_sites_workspace(web, site, database, workspace, other_workspace):
    with database.session() as s:
        ingest(s, s.merge(other_workspace), [{"type": "page_view", "anonymous_id": VISITOR,
                                              "properties": {"url": SHOP}}])
    collect(web, site, page_view())
    identify(web, site, email="dana@example.co.il")
    with database.session() as s:
        theirs = s.scalar(select(Event).where(Event.workspace_id == other_workspace.id))
        assert theirs.contact_id is None
        assert s.scalar(select(Contact.id).where(Contact.workspace_id == other_workspace.id)) is None


def test_a_workspace_that_creates_no_contacts_from_events_gets_none_from_sites(web, site, database, workspace):
    with database.session() as s:
        s.merge(workspace).settings = {"events_create_contacts": False}
    collect(web, site, page_view())
    assert identify(web, site, email="dana@example.co.il").status_code == 204
    assert contact_by(database, workspace, email="dana@example.co.il") is None
    assert stored(database, workspace)[0].contact_id is None
