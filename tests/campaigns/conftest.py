"""A real SMTP server on loopback that records what it accepts and can refuse on cue, and a ready campaign."""

from __future__ import annotations

import email
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy.orm import Session

from kesher.accounts.models import Workspace
from kesher.campaigns import service
from kesher.campaigns.schemas import CampaignIn
from kesher.channels import senders
from kesher.config import Settings
from kesher.contacts import groups
from kesher.contacts.service import save_contact, set_consent
from kesher.db import Database


@dataclass
class Received:
    to: str
    mail_from: str
    data: bytes
    at: float

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


@dataclass
class SmtpServer:
    """What the server received, and `replies`: recipient -> list of replies to give at end of data, in turn
    ("454 4.7.0 throttling", "550 5.1.1 no such user"); when a recipient's list is used up it accepts."""

    port: int
    received: list[Received] = field(default_factory=list)
    replies: dict[str, list[str]] = field(default_factory=dict)
    refused: list[tuple[str, str]] = field(default_factory=list)
    delay: float = 0.0
    on_receive: Callable[[Received], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def counts(self) -> Counter[str]:
        with self.lock:
            return Counter(r.to for r in self.received)


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        import asyncio

        to = envelope.rcpt_tos[0]
        with self.server.lock:
            queue = self.server.replies.get(to)
            if queue:
                reply = queue.pop(0)
                self.server.refused.append((to, reply))
                return reply
            # Taken when its end of data arrives, as a mail server that queues it then would; the reply
            # may still be lost (the client killed meanwhile), which is the case that must not resend.
            item = Received(to, envelope.mail_from, envelope.original_content or envelope.content, time.monotonic())
            self.server.received.append(item)
        if self.server.on_receive:
            self.server.on_receive(item)
        if self.server.delay:
            await asyncio.sleep(self.server.delay)
        return "250 2.0.0 OK"


@pytest.fixture
def smtp_server(free_port: Callable[[], int]) -> Iterator[SmtpServer]:
    server = SmtpServer(free_port())
    controller = Controller(_Handler(server), hostname="127.0.0.1", port=server.port)
    controller.start()
    yield server
    controller.stop()


@pytest.fixture
def send_settings(database: Database, smtp_server: SmtpServer) -> Settings:
    return Settings(database_url=database.url, smtp_port=smtp_server.port, secret_key="test-secret",
                    public_url="https://kesher.test", send_lease_seconds=5, send_retry_seconds=0.2, send_batch=20,
                    smtp_connections=4)


BODY = """<p>שלום [[שם פרטי|חבר/ה]],</p>
<p>הקולקציה החדשה כאן: <a href="https://shop.example.co.il/new">לחנות</a></p>"""


def make_campaign(session: Session, workspace: Workspace, n: int, *, subject: str = "פרסומת: מבצע החורף בחנות",
                  consent: bool = True, **extra: Any) -> tuple[int, list[int]]:
    """A sender, a list of `n` contacts with email consent, and a draft campaign to it; (campaign id, contact ids)."""
    sender = senders.create_sender(session, workspace.id, name="חנות הדוגמה", email="news@shop.example.co.il",
                                   address="רחוב הרצל 1, תל אביב")
    the_list = groups.create(session, workspace.id, "list", f"newsletter {n}")
    ids = []
    for i in range(n):
        contact_id = save_contact(session, workspace.id, {"email": f"person{i}@example.com", "first_name": f"דנה{i}"}).contact_id
        if consent:
            set_consent(session, workspace.id, contact_id, "email", "granted", source="test")
        ids.append(contact_id)
    groups.add_contacts(session, workspace.id, "list", the_list.id, ids)
    variants = extra.pop("variants", [{"subject": subject, "html": BODY}])
    spec = CampaignIn.model_validate({"name": f"winter {n}", "sender_id": sender.id, "audience": {"lists": [the_list.id]},
                                      "variants": variants, **extra})
    campaign = service.create_campaign(session, session.get_one(Workspace, workspace.id), spec)
    return campaign.id, ids
