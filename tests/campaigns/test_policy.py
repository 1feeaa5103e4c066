"""The policy gate: consent, suppression, frequency caps, quiet hours and Shabbat."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from kesher.accounts.models import Workspace
from kesher.contacts.models import Contact
from kesher.contacts.service import save_contact, set_consent
from kesher.contacts.suppression import suppress
from kesher.errors import ValidationError
from kesher.policy import gate

# Asia/Jerusalem is UTC+2 in winter: 2026-11-27 is a Friday.
FRIDAY_NOON = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def _workspace(**policy) -> Workspace:
    return Workspace(name="w", slug="w", timezone="Asia/Jerusalem", settings={"policy": policy})


def test_email_has_no_quiet_hours_by_default_and_sms_waits_for_the_morning() -> None:
    night = datetime(2026, 11, 24, 21, 30, tzinfo=UTC)  # 23:30 in Jerusalem
    ws = _workspace()
    assert gate.next_allowed(ws, "email", night) == night
    assert gate.next_allowed(ws, "sms", night) == datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # 08:00 local
    early = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)  # 06:00 local, the same morning
    assert gate.next_allowed(ws, "sms", early) == datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


def test_shabbat_holds_messages_until_saturday_night() -> None:
    ws = _workspace(shabbat=True, quiet_channels=["email"])
    friday_evening = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)  # 17:00 local
    assert gate.next_allowed(ws, "email", friday_evening) == datetime(2026, 11, 28, 18, 0, tzinfo=UTC)  # 20:00 Sat
    assert gate.next_allowed(ws, "email", FRIDAY_NOON) == FRIDAY_NOON  # 12:00 local: before Shabbat


def test_bad_policy_names_its_field() -> None:
    with pytest.raises(ValidationError) as caught:
        gate.parse_policy({"cap_messages": 0})
    assert caught.value.field == "policy.cap_messages"


def _contact(session, workspace, email, consent="granted"):
    contact_id = save_contact(session, workspace.id, {"email": email}).contact_id
    if consent:
        set_consent(session, workspace.id, contact_id, "email", consent, source="test")
    return session.get_one(Contact, contact_id)


def test_reachable_needs_consent_and_no_suppression(session, workspace) -> None:
    ok = _contact(session, workspace, "ok@example.com")
    _contact(session, workspace, "never@example.com", consent=None)
    _contact(session, workspace, "left@example.com", consent="unsubscribed")
    bounced = _contact(session, workspace, "bounced@example.com")
    suppress(session, workspace.id, "email", "bounced@example.com", "hard_bounce")
    found = set(session.scalars(select(Contact.id).where(*gate.reachable(workspace.id, "email"))))
    assert found == {ok.id}
    assert bounced.id not in found


def test_over_cap_counts_sent_messages_and_asks_less_of_those_who_want_less(session, workspace) -> None:
    from kesher.channels.models import OutboxMessage
    from kesher.policy.models import ContactPreference

    a = _contact(session, workspace, "a@example.com")
    b = _contact(session, workspace, "b@example.com")
    c = _contact(session, workspace, "c@example.com")
    now = datetime.now(UTC)
    for i, (contact, ago) in enumerate([(a, 1), (a, 2), (b, 3), (c, 60 * 24 * 3)]):
        session.add(OutboxMessage(workspace_id=workspace.id, key=f"t:{i}", channel="email", contact_id=contact.id,
                                  address=contact.email, status="sent", sent_at=now - timedelta(minutes=ago)))
    session.add(ContactPreference(contact_id=c.id, workspace_id=workspace.id, less_mail=True))
    session.flush()
    ws = session.get_one(Workspace, workspace.id)
    # Default: 2 a day; "send me less": 1 a week.
    assert gate.over_cap(session, ws, "email", [a.id, b.id, c.id], now) == {a.id, c.id}
    assert gate.over_cap(session, ws, "sms", [a.id, b.id, c.id], now) == set()
