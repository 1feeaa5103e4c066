from datetime import date

import pytest
from sqlalchemy import func, select

from kesher.contacts import fields as field_service
from kesher.contacts import groups
from kesher.contacts import service as contacts
from kesher.contacts.models import Consent, Contact, ListMembership
from kesher.contacts.upsert import upsert_contacts
from kesher.errors import Conflict, ValidationError


def _inputs(session, ws, rows):
    return [contacts.build_input(session, ws.id, i, row) for i, row in enumerate(rows)]


def test_phone_is_stored_in_e164_and_upsert_merges(session, workspace):
    first = contacts.save_contact(session, workspace.id, {"phone": "050-1234567", "first_name": "דנה"})
    again = contacts.save_contact(session, workspace.id, {"phone": "+972 50 123 4567", "city": "חיפה"})
    assert first.status == "created" and again.status == "updated"
    assert again.contact_id == first.contact_id
    contact = contacts.get_contact(session, workspace.id, first.contact_id)
    assert (contact.phone, contact.first_name, contact.city) == ("+972501234567", "דנה", "חיפה")


def test_blank_values_never_erase_and_same_values_are_unchanged(session, workspace):
    contacts.save_contact(session, workspace.id, {"email": "A@Example.com", "first_name": "Avi"})
    outcome = contacts.save_contact(session, workspace.id, {"email": "a@example.com", "first_name": ""})
    assert outcome.status == "unchanged"
    assert contacts.get_contact(session, workspace.id, outcome.contact_id).first_name == "Avi"


def test_batch_merges_rows_naming_the_same_person(session, workspace):
    rows = [
        {"email": "x@example.com", "first_name": "X"},
        {"email": "x@example.com", "phone": "0521111111"},
        {"phone": "052-1111111", "city": "אילת"},
        {"email": "x@example.com"},
    ]
    outcomes = upsert_contacts(session, workspace.id, _inputs(session, workspace, rows))
    assert [o.status for o in outcomes] == ["created", "updated", "updated", "unchanged"]
    assert len({o.contact_id for o in outcomes}) == 1
    contact = contacts.get_contact(session, workspace.id, outcomes[0].contact_id)
    assert (contact.phone, contact.city) == ("+972521111111", "אילת")


def test_row_matching_two_existing_contacts_is_an_error_and_writes_nothing(session, workspace):
    contacts.save_contact(session, workspace.id, {"email": "one@example.com"})
    contacts.save_contact(session, workspace.id, {"phone": "0531234567"})
    outcome = upsert_contacts(session, workspace.id,
                              _inputs(session, workspace, [{"email": "one@example.com", "phone": "0531234567",
                                                            "first_name": "Both"}]))[0]
    assert outcome.status == "error" and outcome.errors[0].field == "phone"
    assert session.scalar(select(func.count()).where(Contact.first_name == "Both")) == 0


@pytest.mark.parametrize("row, field", [
    ({"email": "not-an-email"}, "email"),
    ({"phone": "12"}, "phone"),
    ({"email": "a@b.co", "first_name": "x" * 50_000}, "first_name"),
    ({"email": "a@b.co", "gender": "robot"}, "gender"),
    ({"email": "a@b.co", "birthday": "31/02/1950"}, "birthday"),
    ({"email": "a@b.co", "timezone": "Mars/Olympus"}, "timezone"),
    ({"first_name": "nobody"}, "email"),
    ({"email": "a@b.co", "shoe_size": 42}, "shoe_size"),
])
def test_bad_values_name_their_field(session, workspace, row, field):
    with pytest.raises(ValidationError) as err:
        contacts.save_contact(session, workspace.id, row)
    assert err.value.field == field
    assert session.scalar(select(func.count()).where(Contact.workspace_id == workspace.id)) == 0


def test_custom_fields_are_typed(session, workspace):
    field_service.create_field(session, workspace.id, "orders", "הזמנות", "number")
    field_service.create_field(session, workspace.id, "plan", "Plan", "choice", ["basic", "pro"])
    out = contacts.save_contact(session, workspace.id,
                                {"email": "f@example.com", "fields": {"orders": "3", "plan": "pro"}})
    detail = contacts.contact_detail(session, workspace.id, out.contact_id)
    assert detail.fields == {"orders": 3.0, "plan": "pro"}
    with pytest.raises(ValidationError) as err:
        contacts.save_contact(session, workspace.id, {"email": "f@example.com", "fields": {"plan": "gold"}})
    assert err.value.field == "fields.plan"
    again = contacts.save_contact(session, workspace.id, {"email": "f@example.com", "fields": {"orders": 3}})
    assert again.status == "unchanged"


def test_update_refuses_an_identity_owned_by_another_contact(session, workspace):
    a = contacts.save_contact(session, workspace.id, {"email": "a@example.com"}).contact_id
    contacts.save_contact(session, workspace.id, {"email": "b@example.com"})
    with pytest.raises(Conflict) as err:
        contacts.update_contact(session, workspace.id, a, {"email": "B@example.com"})
    assert err.value.field == "email"
    contacts.update_contact(session, workspace.id, a, {"birthday": "01/02/1950", "language": "en"})
    contact = contacts.get_contact(session, workspace.id, a)
    assert (contact.birthday, contact.language) == (date(1950, 2, 1), "en")


def test_bulk_consent_never_overrides_an_unsubscribe(session, workspace):
    cid = contacts.save_contact(session, workspace.id, {"email": "u@example.com"}).contact_id
    contacts.set_consent(session, workspace.id, cid, "email", "unsubscribed", source="link")
    upsert_contacts(session, workspace.id, _inputs(session, workspace, [
        {"email": "u@example.com", "consent": {"email": "granted", "sms": "granted"}}]))
    states = dict(session.execute(select(Consent.channel, Consent.status).where(Consent.contact_id == cid)).all())
    assert states == {"email": "unsubscribed", "sms": "granted"}


def test_workspaces_do_not_see_each_other(session, workspace, other_workspace):
    mine = contacts.save_contact(session, workspace.id, {"email": "same@example.com"}).contact_id
    theirs = contacts.save_contact(session, other_workspace.id, {"email": "same@example.com"}).contact_id
    assert mine != theirs
    with pytest.raises(Exception) as err:
        contacts.get_contact(session, workspace.id, theirs)
    assert "no contact" in str(err.value)
    their_list = groups.create(session, other_workspace.id, "list", "VIP")
    with pytest.raises(Exception):
        groups.add_contacts(session, workspace.id, "list", their_list.id, [mine])
    with pytest.raises(Exception):
        groups.add_contacts(session, other_workspace.id, "list", their_list.id, [mine])
    assert session.scalar(select(func.count()).select_from(ListMembership)
                          .where(ListMembership.list_id == their_list.id)) == 0


def test_search_pages_by_cursor_and_finds_by_name_phone_email(session, workspace):
    for i in range(7):
        contacts.save_contact(session, workspace.id, {"email": f"p{i}@example.com", "first_name": f"שם{i}",
                                                      "phone": f"05412345{i:02d}"})
    page, cursor = contacts.search(session, workspace.id, contacts.ContactFilter(), limit=3)
    seen = [c.id for c in page]
    while cursor:
        page, cursor = contacts.search(session, workspace.id, contacts.ContactFilter(), cursor=cursor, limit=3)
        seen += [c.id for c in page]
    assert len(seen) == 7 == len(set(seen)) and seen == sorted(seen, reverse=True)
    assert [c.email for c in contacts.search(session, workspace.id, contacts.ContactFilter(q="שם3"))[0]] == ["p3@example.com"]
    assert len(contacts.search(session, workspace.id, contacts.ContactFilter(q="054-123"))[0]) == 7
    assert len(contacts.search(session, workspace.id, contacts.ContactFilter(q="P5@"))[0]) == 1
