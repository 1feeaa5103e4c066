"""The worker side of a campaign: claim messages, pass them through the policy gate, render, hand over.

One pass (`send_campaign`) runs until the campaign has nothing due, is paused or cancelled, or its
pace says to wait longer than a short sleep; the scheduler (`campaigns.tasks`) starts passes. Any
number of passes, in any number of processes, can work on one campaign: the outbox hands each
message to one of them, and a message is recorded as sent, by the pass that still holds it, before
its SMTP end-of-data is written (see `channels.outbox`). What happened to each message becomes an
event (`email_sent`, or a bounce) in a second step, a few thousand messages at a time, that a crash
cannot skip: rows not yet `recorded` are recorded by the next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from kesher.accounts.models import Workspace
from kesher.campaigns import service, throttle
from kesher.campaigns.models import Campaign
from kesher.channels import bounces, outbox, senders
from kesher.channels.email import DkimKey, build_message
from kesher.channels.smtp import Outcome, Outgoing, SmtpPool
from kesher.config import Settings
from kesher.db import Database
from kesher.db.base import utcnow
from kesher.db.session import passing_through
from kesher.events.ingest import ingest
from kesher.messages.context import contexts
from kesher.messages.render import Renderer
from kesher.messages.tracking import Tracking, add_utm
from kesher.policy import gate

log = logging.getLogger("kesher.sending")

# Waits shorter than this are slept through; longer ones end the pass and the scheduler starts another.
MAX_NAP = timedelta(seconds=20)
# Events of sent messages are stored once this many wait, or this many seconds after the last time:
# storing 2,000 at a time costs a fifth less a message than storing each batch's. On PostgreSQL they
# are stored by a thread of the pass while it goes on sending (see `_record_when_due`).
RECORD_EVERY = 2_000
RECORD_SECONDS = 5.0
# SQLite has one writer: passes in one process take turns where they count and record.
_SQLITE_TURN = threading.Lock()


@dataclass
class Report:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    withheld: int = 0
    stopped: str = ""


@dataclass
class _Prepared:
    """What a pass computes once: the sender, a renderer per variant, the tracking links."""

    workspace: Workspace
    campaign: Campaign
    renderers: dict[str, Renderer]
    from_names: dict[str, str]
    sender_email: str
    sender_address: str
    reply_to: str | None
    domain: str
    dkim: DkimKey | None
    tracking: Tracking
    utm: dict[str, str]
    limits: list[throttle.Window] = field(default_factory=list)
    uses: frozenset[str] = frozenset()  # what the variants' templates read (`Renderer.uses`)


def base_url(settings: Settings) -> str:
    return (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")


def _prepare(db: Database, settings: Settings, campaign_id: int) -> _Prepared | None:
    with db.session() as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None or campaign.status != "sending":
            return None
        workspace = session.get_one(Workspace, campaign.workspace_id)
        sender = senders.get_sender(session, workspace.id, campaign.sender_id)
        variants = service.variants_of(session, campaign.id)
        renderers = {v.label: Renderer(service.content_of(campaign, v, workspace.language)) for v in variants}
        domain = sender.email.rsplit("@", 1)[1]
        dkim = senders.dkim_key(sender)
        session.expunge(campaign)
        session.expunge(workspace)
        return _Prepared(
            workspace, campaign, renderers, {v.label: v.from_name or sender.name for v in variants}, sender.email,
            sender.address, sender.reply_to, domain, dkim, Tracking(base_url(settings), settings.secret_key),
            dict(campaign.utm or {}), throttle.windows(campaign),
            frozenset().union(*(renderer.uses for renderer in renderers.values())))


def _outgoing(p: _Prepared, settings: Settings, claimed: list[outbox.Claimed], people: dict[int, dict[str, Any]],
              failures: dict[int, str]) -> list[Outgoing]:
    ready = []
    bounce_domain = settings.bounce_domain or p.domain
    for message in claimed:
        track = p.tracking
        context = dict(people.get(message.contact_id) or {})
        context["sender"] = {"name": p.from_names[message.variant or "A"], "email": p.sender_email,
                             "address": p.sender_address}
        context["unsubscribe_url"] = track.unsubscribe_url(message.id)
        context["preferences_url"] = track.preferences_url(message.id)
        utm = p.utm

        def link(url: str, _id: int = message.id) -> str:
            return track.click_url(_id, add_utm(url, utm) if utm else url)

        try:
            rendered = p.renderers[message.variant or "A"].render(context, link=link, pixel_url=track.open_url(message.id))
            body = build_message(
                subject=rendered.subject, html=rendered.html, text=rendered.text,
                from_name=p.from_names[message.variant or "A"], from_email=p.sender_email, reply_to=p.reply_to,
                to=message.address, message_id=outbox.message_id(message.id, p.domain),
                list_unsubscribe_mailto=track.unsubscribe_mailto(message.id, bounce_domain),
                list_unsubscribe_url=context["unsubscribe_url"],
                feedback_id=f"{p.campaign.id}:{p.workspace.id}:campaign:kesher", dkim=p.dkim)
        except Exception as exc:  # noqa: BLE001 - one contact's bad data must not stop the campaign
            log.warning("campaign %s: message %s could not be built: %s", p.campaign.id, message.id, exc)
            failures[message.id] = f"could not be built: {exc}"
            continue
        mail_from = bounces.bounce_address(message.id, bounce_domain, settings.secret_key)
        ready.append(Outgoing(message.id, mail_from, message.address, body))
    return ready


class Pass:
    """One pass over a campaign by one worker; `run` returns what it did."""

    def __init__(self, db: Database, settings: Settings, campaign_id: int, *, stop: threading.Event | None = None) -> None:
        self.db, self.settings, self.campaign_id = db, settings, campaign_id
        self.token = secrets.token_hex(16)
        self.lease = timedelta(seconds=settings.send_lease_seconds)
        self.batch = settings.send_batch
        self.stop = stop or threading.Event()
        self.report = Report()
        self.nap = 0.0  # grows while the server answers 4xx, so the pace slows
        self.sqlite = db.dialect == "sqlite"
        self.recorded: set[int] = set()  # messages of the current batch recorded as sent before their dot
        self.to_record = 0  # messages sent or failed since their events were last stored
        self.record_at = 0.0  # time.monotonic() by which they are stored, whatever their number
        self.recording: Future[None] | None = None  # the events being stored meanwhile (PostgreSQL)
        self.connection: Connection  # the waves' commits go through it (see `_wave_connection`)

    def _turn(self) -> Any:
        return _SQLITE_TURN if self.sqlite else _NoLock()

    async def run(self) -> Report:
        prepared = _prepare(self.db, self.settings, self.campaign_id)
        if prepared is None:
            self.report.stopped = "not sending"
            return self.report
        pool = SmtpPool(self.settings.smtp_host, self.settings.smtp_port, security=self.settings.smtp_security,
                        username=self.settings.smtp_username, password=self.settings.smtp_password,
                        connections=self.settings.smtp_connections, timeout=self.settings.smtp_timeout)
        # The waves' commits, one every few messages, share one connection for the whole pass.
        with self._wave_connection(autocommit=not prepared.limits), ThreadPoolExecutor(1) as recorder:
            async with pool:
                while not self.stop.is_set():
                    self._record_when_due(prepared, recorder)
                    wait = await self._one_batch(prepared, pool)
                    if wait is None:
                        continue
                    if wait > MAX_NAP or wait < timedelta(0):
                        break
                    await asyncio.sleep(wait.total_seconds())
            if self.recording is not None:
                self.recording.result()
        self._record(prepared)
        return self.report

    def _record_when_due(self, p: _Prepared, recorder: ThreadPoolExecutor) -> None:
        """Store the events of what was sent once enough wait or enough time has passed.

        On PostgreSQL a thread stores them while the pass goes on sending: storing is mostly waiting
        for the server, on the other core, and the pass's next batches are rendered meanwhile. One
        at a time; whatever it raised is raised here. SQLite has one writer, so there the pass
        stores them itself, between batches.
        """
        if self.recording is not None:
            if not self.recording.done():
                return
            self.recording.result()
            self.recording = None
        if self.to_record < RECORD_EVERY and time.monotonic() < self.record_at:
            return
        self.to_record, self.record_at = 0, time.monotonic() + RECORD_SECONDS
        if self.sqlite:
            self._record(p)
        else:
            self.recording = recorder.submit(self._record, p, once=True)

    async def _one_batch(self, p: _Prepared, pool: SmtpPool) -> timedelta | None:
        """Send one batch; None to go on at once, or how long to wait (negative: the pass is over)."""
        now = utcnow()
        with self._turn(), self.db.session() as session, passing_through(session):
            campaign = session.get_one(Campaign, self.campaign_id)
            if campaign.status != "sending":
                self.report.stopped = campaign.status
                return timedelta(-1)
            room = throttle.room(session, campaign.id, p.limits, now)
            limit = self.batch if room.messages is None else min(self.batch, room.messages)
            claimed = outbox.claim(session, campaign.id, self.token, limit=limit, lease=self.lease, now=now)
            if not claimed:
                if room.messages == 0 and room.free_at is not None:
                    return room.free_at - now
                due = outbox.next_due(session, campaign.id)
                if due is None:
                    service.finish_if_done(session, campaign, now)
                    self.report.stopped = campaign.status
                    return timedelta(-1)
                return max(due - now, timedelta(milliseconds=50))
            claimed = self._gate(session, p, claimed, now)
            people = contexts(session, p.workspace.id, [m.contact_id for m in claimed], uses=p.uses) if claimed else {}
        if not claimed:
            return None
        failures: dict[int, str] = {}
        ready = _outgoing(p, self.settings, claimed, people, failures)
        self.recorded = set()
        outcomes = await pool.deliver(ready, self._commit(p)) if ready else []
        self._settle(p, outcomes, failures)
        if self.nap:
            return timedelta(seconds=self.nap)
        return None

    def _gate(self, session: Any, p: _Prepared, claimed: list[outbox.Claimed], now: datetime) -> list[outbox.Claimed]:
        """Consent, suppression and caps again at send time: they may have changed since the audience was written."""
        allowed_at = gate.next_allowed(p.workspace, p.campaign.channel, now)
        if allowed_at > now:
            outbox.release(session, [m.id for m in claimed], self.token, allowed_at)
            return []
        reachable = gate.reachable_among(session, p.workspace.id, p.campaign.channel, [m.contact_id for m in claimed])
        gone = [m.id for m in claimed if m.contact_id not in reachable]
        if gone:
            self.report.skipped += len(outbox.finish(session, gone, self.token, "skipped",
                                                     "no consent, suppressed or no address at send time"))
        capped = gate.over_cap(session, p.workspace, p.campaign.channel, sorted(reachable), now)
        over = [m.id for m in claimed if m.contact_id in capped]
        if over:
            self.report.skipped += len(outbox.finish(session, over, self.token, "skipped", "frequency cap"))
        return [m for m in claimed if m.contact_id in reachable and m.contact_id not in capped]

    @contextlib.contextmanager
    def _wave_connection(self, *, autocommit: bool) -> Iterator[None]:
        """With `autocommit`, each wave's one statement is its own transaction: no BEGIN and COMMIT
        round trips to PostgreSQL, which took more than half of a wave's time there.

        On PostgreSQL the waves' statements are planned once, generically: each names its messages by
        their ids (and the campaign by its own), which a generic plan finds by the primary key as
        well as a custom one, and planning each wave afresh (the engine's default, db/session.py)
        cost the server a third of the wave's time."""
        with self.db.engine.connect() as connection:
            if autocommit:
                connection.execution_options(isolation_level="AUTOCOMMIT")
            generic = connection.dialect.name == "postgresql"
            if generic:
                self._setting(connection, "SET plan_cache_mode = force_generic_plan")
            self.connection = connection
            try:
                yield
            finally:
                if generic and not connection.invalidated:
                    self._setting(connection, "RESET plan_cache_mode")  # before it goes back to the pool

    @staticmethod
    def _setting(connection: Connection, statement: str) -> None:
        connection.exec_driver_sql(statement)
        if connection.in_transaction():  # not in autocommit: committed, so that it lasts (and is not rolled back)
            connection.commit()

    def _commit(self, p: _Prepared) -> Any:
        async def commit(ids: list[int]) -> set[int]:
            now = utcnow()
            # Once per wave of a few messages, on the pass's connection, without a Session's bookkeeping.
            with self._turn():
                if not p.limits:  # nothing sent before counts: one statement, its own transaction, checks and records
                    recorded = outbox.mark_sent(self.connection, ids, self.token, now, p.domain,
                                                campaign_id=self.campaign_id)
                else:
                    with self.connection.begin():
                        recorded = self._counted(p, ids, now)
            self.recorded |= recorded
            return recorded
        return commit

    def _counted(self, p: _Prepared, ids: list[int], now: datetime) -> set[int]:
        """Record what the pace and windows allow of `ids`, the campaign locked so that passes count in turn."""
        if throttle.lock(self.connection, self.campaign_id) != "sending":
            return set()
        room = throttle.room(self.connection, self.campaign_id, p.limits, now)
        allowed = ids if room.messages is None else ids[:room.messages]
        return outbox.mark_sent(self.connection, allowed, self.token, now, p.domain)

    def _settle(self, p: _Prepared, outcomes: list[Outcome], failures: dict[int, str]) -> None:
        """Put every message that was not sent where it belongs: back in the queue, failed, or corrected."""
        now = utcnow()
        by_status: dict[str, list[Outcome]] = {}
        for outcome in outcomes:
            by_status.setdefault(outcome.status, []).append(outcome)
        # What `_record` will find: the sent and the failed (withheld and deferred messages go back to the queue).
        self.to_record += len(failures) + len(by_status.get("sent", [])) + len(by_status.get("failed", []))
        with self._turn(), self.db.session() as session:
            if failures:
                for message_id, error in failures.items():
                    outbox.finish(session, [message_id], self.token, "failed", error)
                self.report.failed += len(failures)
            sent = by_status.get("sent", [])
            late = [o for o in sent if o.code is not None and o.code >= 400]
            for o in late:  # recorded as sent, then refused at the end of data
                outbox.unsend(session, o.id, f"{o.code} {o.text}", now, permanent=o.code >= 500,
                              base=self.settings.send_retry_seconds)
                if o.code >= 500:
                    self.report.failed += 1
                else:
                    self.report.deferred += 1
            self.report.sent += len(sent) - len(late)
            withheld = [o.id for o in by_status.get("withheld", [])]
            if withheld:
                outbox.release(session, withheld, self.token, now + timedelta(milliseconds=200))
                self.report.withheld += len(withheld)
            deferred = by_status.get("deferred", [])
            for o in deferred:
                reason = f"{o.code or ''} {o.text}".strip()
                if o.id in self.recorded:  # recorded as sent, then the connection was gone before its dot
                    outbox.unsend(session, o.id, reason, now, permanent=False, base=self.settings.send_retry_seconds)
                else:
                    outbox.defer(session, [o.id], self.token, reason, now, base=self.settings.send_retry_seconds)
            self.report.deferred += len(deferred)
            failed = by_status.get("failed", [])
            for o in failed:
                outbox.finish(session, [o.id], self.token, "failed", f"{o.code} {o.text}")
            self.report.failed += len(failed)
        # A server that asks us to slow down (4xx) gets a slower pace: a pause between batches that
        # doubles while it keeps asking, and smaller batches; both recover as it accepts again.
        if deferred or late:
            self.nap = min(max(self.nap * 2, 1.0), 60.0)
            self.batch = max(self.batch // 2, 1)
        elif self.nap:
            self.nap = self.nap / 2 if self.nap > 0.25 else 0.0
            self.batch = min(self.batch * 2, self.settings.send_batch)

    def _record(self, p: _Prepared, *, once: bool = False) -> None:
        """Store the events of sent and failed messages not yet recorded (also those of a pass that died):
        all of them, or with `once` up to RECORD_EVERY."""
        while True:
            with self._turn(), self.db.session() as session:
                rows = outbox.unrecorded(session, self.campaign_id, RECORD_EVERY)
                if not rows:
                    return
                workspace = session.get_one(Workspace, p.workspace.id)
                events = [{"type": "email_sent", "contact": {"id": r.contact_id}, "ts": r.sent_at,
                           "idempotency_key": f"sent:{r.key}",
                           "properties": {"campaign_id": str(self.campaign_id), "message_id": r.message_id,
                                          "variant": r.variant}}
                          for r in rows if r.status == "sent"]
                if events:
                    ingest(session, workspace, events, source="campaign")
                for r in rows:
                    if r.status == "failed" and _permanent_refusal(r.error):
                        bounces.apply_bounce(session, workspace, r.contact_id, r.address,
                                             "hard", reason=r.error, campaign_id=str(self.campaign_id),
                                             message_id=r.message_id, key=f"refused:{r.key}")
                outbox.mark_recorded(session, [r.id for r in rows])
            if once:
                return


def _permanent_refusal(error: str) -> bool:
    """A 5xx about the mailbox (550, 551, 553) is a hard bounce; other failures (our own) are not."""
    return error[:3] in ("550", "551", "553")


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def send_campaign(db: Database, settings: Settings, campaign_id: int, *, stop: threading.Event | None = None) -> Report:
    """Run one pass over the campaign in this thread (the worker's task)."""
    report = asyncio.run(Pass(db, settings, campaign_id, stop=stop).run())
    log.info("campaign %s: %s", campaign_id, report)
    return report
