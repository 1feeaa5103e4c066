"""Bounces and complaints that come back by mail, and the one rule that applies them."""

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiosmtplib
import pytest
from sqlalchemy import select

from kesher.accounts.models import Workspace
from kesher.channels.bounces import apply_bounce, bounce_address, read_bounce_address
from kesher.channels.dsn import read_reports, start_bounce_listener
from kesher.config import Settings
from kesher.contacts import service as contacts
from kesher.contacts.models import Suppression
from kesher.events.ingest import ingest
from kesher.events.models import Event
from tests.channels.conftest import CAMPAIGN, SECRET

FIXTURES = Path(__file__).parent / "fixtures"
HARD = {"action": "failed", "status": "5.1.1",
        "diagnostic": "550 5.1.1 <dana@example.com>: Recipient address rejected: User unknown in virtual mailbox table"}
SOFT = {"action": "failed", "status": "4.2.2", "diagnostic": "452 4.2.2 <dana@example.com>: Mailbox full"}
DELAYED = {"action": "delayed", "status": "4.4.1", "diagnostic": "451 4.4.1 try again later"}


def dsn(row, verp: str | None = None, **fields) -> bytes:
    text = (FIXTURES / "dsn.eml").read_text()
    values = {"verp": verp or bounce_address(row.id, "teva.co.il", SECRET), "recipient": row.address,
              "message_id": row.message_id, **HARD, **fields}
    return text.format(**values).encode()


def arf(row, feedback_type: str = "abuse") -> bytes:
    text = (FIXTURES / "arf.eml").read_text()
    return text.format(to="fbl@teva.co.il", verp=bounce_address(row.id, "teva.co.il", SECRET), recipient=row.address,
                       message_id=row.message_id, feedback_type=feedback_type).encode()


@pytest.fixture
def listener(database, free_port):
    settings = Settings(database_url=database.url, secret_key=SECRET, bounce_port=free_port(),
                        bounce_domain="teva.co.il")
    controller = start_bounce_listener(settings, database, hostname="127.0.0.1")
    yield settings
    controller.stop()


def mail(settings, raw: bytes, to: str) -> None:
    """Send as a remote MTA sends a report: from the null sender, `MAIL FROM:<>`."""
    async def send() -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=settings.bounce_port, start_tls=False,
                                   local_hostname="mx.example.com") as client:
            await client.ehlo()
            assert (await client.execute_command(b"MAIL", b"FROM:<>")).code == 250
            await client.rcpt(to)
            assert (await client.data(raw)).code == 250

    asyncio.run(send())


def events_of(database, contact_id: int, kind: str) -> list[Event]:
    with database.session() as s:
        return list(s.scalars(select(Event).where(Event.contact_id == contact_id, Event.type == kind)))


def suppression(database, workspace, address: str) -> str | None:
    with database.session() as s:
        return s.scalar(select(Suppression.reason).where(Suppression.workspace_id == workspace.id,
                                                         Suppression.address == address))


# The signed bounce address ---------------------------------------------------------------------------


def test_bounce_address_leads_back_to_its_message_and_a_forged_one_nowhere():
    address = bounce_address(123, "teva.co.il", SECRET)
    assert address.startswith("bounces+123.") and address.endswith("@teva.co.il")
    assert read_bounce_address(address, SECRET) == 123
    assert read_bounce_address(f"<{address.upper()}>", SECRET) == 123  # some servers change the case
    assert read_bounce_address(address.replace("bounces+123.", "bounces+124."), SECRET) is None
    assert read_bounce_address(address, "another-secret") is None
    token = address.split("+")[1].split("@")[0]
    altered = token[:-1] + ("a" if token[-1] != "a" else "b")
    assert read_bounce_address(f"bounces+{altered}@teva.co.il", SECRET) is None
    # The addresses of messages already sent go on reading: the token is the same as ever.
    assert bounce_address(123456, "b.example", "secret") == "bounces+123456.gnuzc5pley7j7sb2@b.example"
    assert read_bounce_address(bounce_address(99, "b.example", "x" * 100), "x" * 100) == 99
    assert read_bounce_address("someone@teva.co.il", SECRET) is None


# Reading reports ------------------------------------------------------------------------------------


def test_a_dsn_reads_as_a_hard_or_soft_bounce_by_its_status(sent_message):
    row = sent_message()
    [hard] = read_reports(dsn(row))
    assert (hard.kind, hard.address) == ("hard", "dana@example.com")
    assert "5.1.1" in hard.reason and "User unknown" in hard.reason
    [soft] = read_reports(dsn(row, **SOFT))
    assert (soft.kind, soft.reason) == ("soft", "smtp; 452 4.2.2 <dana@example.com>: Mailbox full")
    assert read_reports(dsn(row, **DELAYED)) == []  # still trying: a warning, not a bounce


# End to end through the listener ---------------------------------------------------------------------


def test_a_hard_bounce_dsn_becomes_one_event_and_a_suppression(listener, sent_message, database, workspace):
    row = sent_message()
    verp = bounce_address(row.id, "teva.co.il", SECRET)
    mail(listener, dsn(row), verp)
    mail(listener, dsn(row), verp)  # delivered twice: counted once
    [event] = events_of(database, row.contact_id, "email_bounced")
    assert event.properties["bounce_type"] == "hard"
    assert event.properties["campaign_id"] == str(CAMPAIGN) and event.campaign_id == str(CAMPAIGN)
    assert event.properties["message_id"] == row.message_id
    assert "User unknown" in event.properties["reason"]
    assert event.source == "dsn"
    assert suppression(database, workspace, "dana@example.com") == "hard_bounce"


def test_a_soft_bounce_dsn_is_recorded_without_suppressing(listener, sent_message, database, workspace):
    row = sent_message()
    mail(listener, dsn(row, **SOFT), bounce_address(row.id, "teva.co.il", SECRET))
    [event] = events_of(database, row.contact_id, "email_bounced")
    assert event.properties["bounce_type"] == "soft"
    assert suppression(database, workspace, "dana@example.com") is None


def test_a_dsn_with_a_forged_address_changes_nothing(listener, sent_message, database, workspace):
    row = sent_message()
    forged = f"bounces+{row.id}.aaaaaaaaaaaaaaaa@teva.co.il"
    mail(listener, dsn(row, verp=forged), forged)
    mail(listener, dsn(row, verp="someone@teva.co.il"), "postmaster@teva.co.il")  # only an unsigned Message-ID
    assert events_of(database, row.contact_id, "email_bounced") == []
    assert suppression(database, workspace, "dana@example.com") is None


def test_an_arf_complaint_suppresses_and_unsubscribes(listener, sent_message, database, workspace):
    row = sent_message()
    mail(listener, arf(row), "fbl@teva.co.il")
    mail(listener, arf(row), "fbl@teva.co.il")
    [event] = events_of(database, row.contact_id, "email_complained")
    assert event.properties == {"campaign_id": str(CAMPAIGN), "message_id": row.message_id}
    assert suppression(database, workspace, "dana@example.com") == "complaint"
    with database.session() as s:
        assert contacts.contact_detail(s, workspace.id, row.contact_id).consent["email"].status == "unsubscribed"


def test_a_mail_to_the_list_unsubscribe_address_unsubscribes(listener, sent_message, database, workspace):
    from kesher.messages.tracking import Tracking

    row = sent_message()
    mailto = Tracking("", SECRET).unsubscribe_mailto(row.id, "teva.co.il")
    address = mailto.removeprefix("mailto:").split("?")[0]
    mail(listener, b"Subject: unsubscribe\r\n\r\nunsubscribe\r\n", address)
    mail(listener, b"Subject: unsubscribe\r\n\r\nunsubscribe\r\n", address.replace("+", "+x"))  # forged
    with database.session() as s:
        assert contacts.contact_detail(s, workspace.id, row.contact_id).consent["email"].status == "unsubscribed"
    [event] = events_of(database, row.contact_id, "unsubscribed")
    assert event.properties["channel"] == "email" and event.properties["campaign_id"] == str(CAMPAIGN)


def test_a_not_spam_report_is_no_complaint(sent_message):
    assert read_reports(arf(sent_message(), feedback_type="not-spam")) == []


# The soft bounce rule --------------------------------------------------------------------------------


def soft_bounces(database, workspace, contact_id: int, count: int, start: datetime) -> list[str | None]:
    suppressed = []
    for n in range(count):
        with database.session() as s:
            applied = apply_bounce(s, s.get_one(Workspace, workspace.id), contact_id, "dana@example.com", "soft",
                                   key=f"soft:{contact_id}:{start.isoformat()}:{n}", reason="452 4.2.2 mailbox full",
                                   ts=start + timedelta(days=n))
            suppressed.append(applied.suppressed)
    return suppressed


def test_three_soft_bounces_in_a_row_suppress_two_do_not(sent_message, database, workspace):
    row = sent_message()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert soft_bounces(database, workspace, row.contact_id, 2, start) == [None, None]
    assert suppression(database, workspace, "dana@example.com") is None
    assert soft_bounces(database, workspace, row.contact_id, 1, start + timedelta(days=2)) == ["soft_bounces"]
    assert suppression(database, workspace, "dana@example.com") == "soft_bounces"


def test_an_open_between_soft_bounces_starts_the_count_again(sent_message, database, workspace):
    row = sent_message()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    soft_bounces(database, workspace, row.contact_id, 2, start)
    with database.session() as s:
        ingest(s, s.get_one(Workspace, workspace.id), [{"type": "email_opened", "contact": {"id": row.contact_id},
                                                         "ts": start + timedelta(days=2)}])
    assert soft_bounces(database, workspace, row.contact_id, 2, start + timedelta(days=3)) == [None, None]
    assert soft_bounces(database, workspace, row.contact_id, 1, start + timedelta(days=5)) == ["soft_bounces"]


def test_the_same_bounce_applied_twice_counts_once(sent_message, database, workspace):
    row = sent_message()
    for _ in range(3):
        with database.session() as s:
            applied = apply_bounce(s, s.get_one(Workspace, workspace.id), row.contact_id, row.address, "soft",
                                   key="refused:same", reason="451")
    assert applied.event == "duplicate" and applied.suppressed is None
    assert len(events_of(database, row.contact_id, "email_bounced")) == 1
