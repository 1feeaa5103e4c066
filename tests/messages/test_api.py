"""The templates API: CRUD, refusals naming the field, previews and checks, isolation between workspaces."""

from __future__ import annotations

from kesher.contacts import service as contacts
from kesher.messages import service
from tests.problems import problem

TEMPLATE = {"name": "ניוזלטר", "subject": "פרסומת: [[שם פרטי]], המבצע של החודש כבר כאן",
            "html": "<h1>שלום [[שם פרטי|חבר/ה]]</h1><p>[[מספר נעליים|?]]</p>", "preheader": "קדימון"}


def ok(response, status: int = 200):
    assert response.status_code == status, response.text
    return response.json()


def test_template_round_trip(api):
    ok(api.post("/fields", json={"key": "shoe_size", "label": "מספר נעליים", "type": "number"}), 201)
    created = ok(api.post("/templates", json=TEMPLATE), 201)
    assert (created["name"], created["language"], created["text"]) == ("ניוזלטר", "he", None)
    assert ok(api.get(f"/templates/{created['id']}")) == created
    assert ok(api.get("/templates")) == [created]
    changed = ok(api.patch(f"/templates/{created['id']}", json={"name": " חודשי  ", "text": "שלום [[שם פרטי]]"}))
    assert (changed["name"], changed["text"], changed["html"]) == ("חודשי", "שלום [[שם פרטי]]", TEMPLATE["html"])
    problem(api.post("/templates", json={**TEMPLATE, "name": "חודשי"}), 409, "name")
    assert api.delete(f"/templates/{created['id']}").status_code == 204
    problem(api.get(f"/templates/{created['id']}"), 404, "id")


def test_a_bad_template_is_refused_naming_the_field_and_nothing_is_saved(api):
    ok(api.post("/fields", json={"key": "shoe_size", "label": "מספר נעליים", "type": "number"}), 201)
    body = problem(api.post("/templates", json={**TEMPLATE, "html": "<p>\n{{ ''.__class__.__mro__ }}</p>"}), 422, "html")
    assert "line 2" in body["detail"] and "_" in body["detail"]
    body = problem(api.post("/templates", json={**TEMPLATE, "subject": "שלום [[לא קיים]]"}), 422, "subject")
    assert "[[לא קיים]]" in body["detail"]
    problem(api.post("/templates", json={**TEMPLATE, "text": "{% if %}"}), 422, "text")
    problem(api.post("/templates", json={**TEMPLATE, "language": "fr"}), 422, "language")
    problem(api.post("/templates", json={**TEMPLATE, "name": "  "}), 422, "name")
    problem(api.post("/templates", json={"name": "x"}), 422, "html")
    assert ok(api.get("/templates")) == []
    saved = ok(api.post("/templates", json=TEMPLATE), 201)
    problem(api.patch(f"/templates/{saved['id']}", json={"html": "{{ cycler.__init__.__globals__ }}"}), 422, "html")
    assert ok(api.get(f"/templates/{saved['id']}"))["html"] == TEMPLATE["html"]


def test_preview_as_a_contact_or_the_sample_contact(api):
    dana = ok(api.post("/contacts", json={"email": "dana@example.com", "first_name": "דנה"}), 201)["id"]
    body = {"subject": "היי [[שם פרטי]]", "html": '<p>שלום [[שם פרטי]]</p><a href="https://shop.example.co.il/">לחנות</a>'}
    mine = ok(api.post("/templates/preview", json={**body, "contact_id": dana,
                                                  "sender": {"name": "החנות", "address": "הרצל 1"}}))
    assert mine["subject"] == "היי דנה" and "החנות · הרצל 1" in mine["html"] and 'dir="rtl"' in mine["html"]
    assert mine["links"] == ["https://shop.example.co.il/"] and "שלום דנה" in mine["text"]
    sample = ok(api.post("/templates/preview", json={**body, "language": "en"}))
    assert sample["subject"] == "היי Dana" and 'dir="ltr"' in sample["html"]
    problem(api.post("/templates/preview", json={**body, "contact_id": 10**12}), 404, "contact_id")
    problem(api.post("/templates/preview", json={**body, "html": "{{ x"}), 422, "html")


def test_checks_report_findings_and_whether_the_message_may_be_sent(api):
    body = {"subject": "מבצע חינם", "html": "<p>שלום</p>", "advertising": True, "sender_name": "החנות",
            "sender_email": "news@shop.example.co.il", "sender_address": ""}
    answer = ok(api.post("/templates/checks", json=body))
    assert answer["sendable"] is False
    errors = {f["code"]: f for f in answer["findings"] if f["level"] == "error"}
    assert set(errors) == {"subject_not_marked", "sender_address_missing"}
    assert errors["sender_address_missing"]["field"] == "sender_address"
    assert set(errors["subject_not_marked"]["text"]) == {"en", "he"}
    assert "subject_spam_words" in {f["code"] for f in answer["findings"]}
    fine = ok(api.post("/templates/checks", json={**body, "subject": "פרסומת: דנה, ההטבות של החודש מחכות לך",
                                                  "sender_address": "רחוב הרצל 1, תל אביב"}))
    assert fine["sendable"] is True
    problem(api.post("/templates/checks", json={**body, "advertising": "maybe"}), 422, "advertising")


def test_another_workspaces_templates_and_contacts_are_not_found(api, database, other_workspace):
    with database.session() as s:
        theirs = contacts.save_contact(s, other_workspace.id, {"email": "them@example.com"}).contact_id
        template = service.create_template(s, other_workspace.id, {"name": "שלהם", "html": "<p>x</p>"})
    problem(api.get(f"/templates/{template.id}"), 404, "id")
    problem(api.delete(f"/templates/{template.id}"), 404, "id")
    problem(api.post("/templates/preview", json={"html": "<p>x</p>", "contact_id": theirs}), 404, "contact_id")
    assert ok(api.get("/templates")) == []
