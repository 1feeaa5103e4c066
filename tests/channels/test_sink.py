"""The local mail sink keeps what is sent to it, and shows it parsed."""

import asyncio

import pytest

from kesher.channels.email import build_message
from kesher.channels.sink import get_mail, recent_mails, start_sink
from kesher.channels.smtp import Outgoing, SmtpPool
from kesher.config import Settings
from kesher.errors import NotFound
from tests.channels.conftest import wait_for


@pytest.fixture
def sink(database, free_port):
    settings = Settings(database_url=database.url, smtp_host="127.0.0.1", smtp_port=free_port())
    controller = start_sink(settings, database)
    yield settings
    controller.stop()


def test_the_sink_stores_each_mail_and_shows_it_parsed(sink, database):
    message = build_message(subject="ברוכים הבאים", html="<p>שלום <b>דנה</b></p>", text="שלום דנה", from_name="חנות הטבע",
                            from_email="shop@teva.co.il", reply_to=None, to="dana@example.com",
                            message_id="1.sink@teva.co.il", list_unsubscribe_mailto=None,
                            list_unsubscribe_url="https://kesher.example/u/1", feedback_id=None, dkim=None)

    async def send():
        async def commit(ids):
            return set(ids)

        async with SmtpPool(sink.smtp_host, sink.smtp_port, timeout=5, local_hostname="test.local") as pool:
            return await pool.deliver([Outgoing(1, "bounces+1@teva.co.il", "dana@example.com", message)], commit)

    with database.session() as s:
        before = recent_mails(s, limit=1)
    assert [o.status for o in asyncio.run(send())] == ["sent"]

    def caught():
        with database.session() as s:
            return [m for m in recent_mails(s, limit=5) if not before or m.id > before[0].id]

    [row] = wait_for(caught)
    assert (row.mail_from, row.recipients, row.subject) == ("bounces+1@teva.co.il", ["dana@example.com"], "ברוכים הבאים")
    with database.session() as s:
        mail = get_mail(s, row.id)
        assert mail.sender == "חנות הטבע <shop@teva.co.il>" and mail.to == "dana@example.com"
        assert mail.text.strip() == "שלום דנה" and "<b>דנה</b>" in mail.html
        assert ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click") in mail.headers
        assert mail.raw == message
        assert [m.id for m in recent_mails(s, limit=1, before_id=row.id)] == [m.id for m in before]
        with pytest.raises(NotFound):
            get_mail(s, row.id + 1000)
