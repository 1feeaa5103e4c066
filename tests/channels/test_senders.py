"""Sender identities through the API: checked fields, DKIM records (never the key), workspaces apart."""

import base64

import dkim
from cryptography.hazmat.primitives import serialization

from kesher.channels import senders
from kesher.channels.email import build_message
from tests.problems import problem

SHOP = {"name": "חנות הטבע", "email": "Shop@Teva.co.il", "reply_to": "help@teva.co.il", "address": "הרצל 1, חיפה"}


def ok(response, status: int = 200):
    assert response.status_code == status, response.text
    return response.json()


def test_sender_round_trip(api):
    created = ok(api.post("/senders", json=SHOP), 201)
    assert (created["name"], created["email"], created["reply_to"], created["address"], created["dkim"]) == (
        "חנות הטבע", "shop@teva.co.il", "help@teva.co.il", "הרצל 1, חיפה", None)
    assert ok(api.get(f"/senders/{created['id']}")) == created
    assert ok(api.get("/senders")) == [created]
    changed = ok(api.patch(f"/senders/{created['id']}", json={"name": "טבע", "reply_to": None}))
    assert (changed["name"], changed["reply_to"], changed["email"]) == ("טבע", None, "shop@teva.co.il")
    assert api.delete(f"/senders/{created['id']}").status_code == 204
    problem(api.get(f"/senders/{created['id']}"), 404)


def test_bad_senders_are_refused_naming_the_field(api):
    problem(api.post("/senders", json={**SHOP, "email": "not an address"}), 422, "email")
    problem(api.post("/senders", json={**SHOP, "name": "  "}), 422, "name")
    problem(api.post("/senders", json={**SHOP, "reply_to": "nope@"}), 422, "reply_to")
    problem(api.post("/senders", json={**SHOP, "address": "x" * 501}), 422, "address")
    problem(api.post("/senders", json={**SHOP, "colour": "red"}), 422, "colour")
    ok(api.post("/senders", json=SHOP), 201)
    problem(api.post("/senders", json={**SHOP, "email": "shop@teva.co.il"}), 409, "email")
    assert len(ok(api.get("/senders"))) == 1


def test_a_dkim_key_gives_the_dns_record_to_publish_and_signs_mail(api, database, workspace):
    sender = ok(api.post("/senders", json=SHOP), 201)
    problem(api.post(f"/senders/{sender['id']}/dkim", json={"selector": "no spaces"}), 422, "selector")
    record = ok(api.post(f"/senders/{sender['id']}/dkim", json={"selector": "K2026"}), 201)
    assert (record["name"], record["type"]) == ("k2026._domainkey.teva.co.il", "TXT")
    assert record["value"].startswith("v=DKIM1; k=rsa; p=")
    public = serialization.load_der_public_key(base64.b64decode(record["value"].split("p=")[1]))
    assert public.key_size == 2048
    shown = ok(api.get(f"/senders/{sender['id']}"))
    assert shown["dkim"] == record
    assert "PRIVATE" not in str(ok(api.get("/senders"))) and "PRIVATE" not in str(shown)

    with database.session() as s:
        key = senders.dkim_key(senders.get_sender(s, workspace.id, sender["id"]))
    raw = build_message(subject="שלום", html="<p>שלום</p>", text="שלום", from_name="חנות הטבע",
                        from_email="shop@teva.co.il", reply_to=None, to="dana@example.com", message_id="1.x@teva.co.il",
                        list_unsubscribe_mailto=None, list_unsubscribe_url="https://k.example/u/1", feedback_id=None,
                        dkim=key)
    assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: record["value"].encode()
                       if name == b"k2026._domainkey.teva.co.il." else None)

    # A new domain makes the key useless: it goes, and the record with it.
    moved = ok(api.patch(f"/senders/{sender['id']}", json={"email": "shop@teva.com"}))
    assert moved["dkim"] is None


def test_workspaces_do_not_see_each_other_s_senders(api, database, other_workspace):
    with database.session() as s:
        theirs = senders.create_sender(s, other_workspace.id, name="Other", email="other@example.com")
    assert ok(api.get("/senders")) == []
    problem(api.get(f"/senders/{theirs.id}"), 404)
    problem(api.patch(f"/senders/{theirs.id}", json={"name": "mine"}), 404)
    problem(api.post(f"/senders/{theirs.id}/dkim", json={"selector": "k1"}), 404)
    problem(api.delete(f"/senders/{theirs.id}"), 404)


def test_a_sender_campaigns_use_cannot_be_deleted(api, database, workspace):
    from kesher.campaigns.models import Campaign

    sender = ok(api.post("/senders", json=SHOP), 201)
    with database.session() as s:
        s.add(Campaign(workspace_id=workspace.id, name="מבצע", sender_id=sender["id"]))
    problem(api.delete(f"/senders/{sender['id']}"), 409, "id")
    assert ok(api.get(f"/senders/{sender['id']}"))["id"] == sender["id"]
