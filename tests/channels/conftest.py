"""Real SMTP servers on loopback for the channels tests, and contacts with messages in the outbox."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from kesher.channels import outbox
from kesher.channels.models import OutboxMessage
from kesher.contacts import service as contacts

SECRET = "test-secret"  # the `app` fixture's secret key
CAMPAIGN = 90017  # not a campaign id the outbox tests count


@dataclass
class Recipient:
    """A test server's answers: RCPT replies by the recipient's local part, and a final reply after the dot."""

    rcpt: dict[str, str] = field(default_factory=dict)
    after_dot: dict[str, str] = field(default_factory=dict)
    received: list[Any] = field(default_factory=list)
    pipelining: bool = False  # offer PIPELINING (RFC 2920); aiosmtpd reads pipelined commands either way

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        session.host_name = hostname
        # `responses` ends with aiosmtpd's own last line, "250 HELP".
        return [*responses[:-1], "250-PIPELINING", responses[-1]] if self.pipelining else responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        reply = self.rcpt.get(address.partition("@")[0])
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        reply = self.after_dot.get(envelope.rcpt_tos[0].partition("@")[0])
        if reply:
            return reply
        self.received.append(envelope)
        return "250 2.0.0 queued"


@pytest.fixture
def smtp_server(free_port) -> Iterator[Callable[..., tuple[Controller, Recipient]]]:
    """Start an aiosmtpd server on loopback (keyword arguments go to aiosmtpd's Controller and SMTP)."""
    started: list[Controller] = []

    def start(handler: Recipient | None = None, port: int | None = None, **smtp: Any) -> tuple[Controller, Recipient]:
        handler = handler or Recipient()
        controller = Controller(handler, hostname="127.0.0.1", port=port or free_port(), **smtp)
        controller.start()
        started.append(controller)
        return controller, handler

    yield start
    for controller in started:
        if not controller.loop.is_closed():  # a test may have stopped it already
            controller.stop()


def wait_for(condition: Callable[[], Any], seconds: float = 5.0) -> Any:
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return result


@pytest.fixture
def sent_message(database, workspace) -> Callable[..., OutboxMessage]:
    """A contact and a message in the outbox already sent to it, as the outbox leaves them."""

    def make(email: str = "dana@example.com", campaign_id: int | None = CAMPAIGN) -> OutboxMessage:
        with database.session() as s:
            contact_id = contacts.save_contact(s, workspace.id, {"email": email, "first_name": "דנה"}).contact_id
            row = OutboxMessage(workspace_id=workspace.id, key=f"test:{email}:{time.monotonic_ns()}", channel="email",
                                campaign_id=campaign_id, contact_id=contact_id, address=email, status="sent")
            s.add(row)
            s.flush()
            row.message_id = outbox.message_id(row.id, "teva.co.il")
            return row

    return make
