"""Background work on Huey: SQLite queue by default, Redis for many workers, or immediate (tests).

Tasks take the database URL as an argument, so one queue can serve any process that can reach
the database, and nothing depends on global settings read at import time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey, crontab
from huey.consumer import Consumer

from kesher.config import Settings
from kesher.db import Database

log = logging.getLogger("kesher.worker")


@lru_cache(maxsize=8)
def database(url: str) -> Database:
    return Database(url)


def _import_contacts(database_url: str, import_id: int) -> None:
    from kesher.contacts import importer

    importer.run_import(database(database_url), import_id)


def _refresh_lifecycle(database_url: str) -> None:
    from kesher.events import lifecycle

    moved = lifecycle.refresh_all(database(database_url))
    log.info("lifecycle refreshed: %s contacts changed stage", moved)


def _refresh_segments(database_url: str) -> None:
    from kesher.segments import membership

    moves = membership.refresh_all(database(database_url))
    log.info("segments refreshed: %s contacts entered, %s left", moves.entered, moves.exited)


def _send_campaign(database_url: str, campaign_id: int) -> None:
    from kesher.campaigns.sending import send_campaign
    from kesher.config import get_settings

    send_campaign(database(database_url), get_settings(), campaign_id)


def _tick_campaigns(database_url: str, start: Any) -> None:
    from kesher.campaigns.tasks import tick
    from kesher.config import get_settings

    db = database(database_url)
    tick(db, start, passes=get_settings().send_passes if db.dialect != "sqlite" else 1)


@dataclass(frozen=True)
class Queue:
    huey: Huey
    tasks: dict[str, Any]

    def enqueue(self, name: str, *args: Any) -> None:
        self.tasks[name](*args)


def _make_huey(kind: str, location: str) -> Huey:
    if kind == "sqlite":
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        return SqliteHuey("kesher", filename=location)
    if kind == "redis":
        url, _, name = location.partition("#")
        return RedisHuey(name or "kesher", url=url)
    if kind == "immediate":
        return MemoryHuey("kesher", immediate=True)
    raise ValueError(f"KESHER_QUEUE must be sqlite, redis or immediate, not {kind!r}")


@lru_cache(maxsize=8)
def _queue(kind: str, location: str, database_url: str, lifecycle_cron: str, segments_cron: str) -> Queue:
    huey = _make_huey(kind, location)
    tasks = {"import_contacts": huey.task(name="import_contacts", retries=2, retry_delay=5)(_import_contacts),
             "send_campaign": huey.task(name="send_campaign")(_send_campaign)}

    # Periodic tasks take no arguments, so this one holds the database it refreshes; the lock
    # keeps a slow run from overlapping the next. A run that loses a deadlock to a concurrent
    # ingest on PostgreSQL is tried again shortly (each chunk commits, so a retry redoes little).
    @huey.periodic_task(crontab(*lifecycle_cron.split()), name="refresh_lifecycle", retries=2, retry_delay=30)
    def refresh_lifecycle() -> None:
        with huey.lock_task("refresh_lifecycle"):
            _refresh_lifecycle(database_url)

    # Events move segment members as they arrive; this moves those whom only time moves ("no open in
    # 60 days", a top percentage). Each segment commits on its own, so a retry redoes little.
    @huey.periodic_task(crontab(*segments_cron.split()), name="refresh_segments", retries=2, retry_delay=30)
    def refresh_segments() -> None:
        with huey.lock_task("refresh_segments"):
            _refresh_segments(database_url)

    # A job whose worker died is taken up again once its heartbeat is stale, not at the next start.
    @huey.periodic_task(crontab(minute="*"), name="resume_imports")
    def resume_imports() -> None:
        from kesher.contacts.importer import resume_interrupted

        resume_interrupted(database(database_url), lambda job: tasks["import_contacts"](database_url, job))

    # Scheduled campaigns, A/B decisions, and a sending pass for each campaign with due messages that
    # no worker holds: after a restart this is what takes a campaign up again.
    @huey.periodic_task(crontab(minute="*"), name="tick_campaigns")
    def tick_campaigns() -> None:
        with huey.lock_task("tick_campaigns"):
            _tick_campaigns(database_url, lambda campaign: tasks["send_campaign"](database_url, campaign))

    return Queue(huey, tasks)


def queue(settings: Settings) -> Queue:
    location = {"sqlite": settings.queue_path, "redis": f"{settings.redis_url}#{settings.queue_name}"}.get(settings.queue, "")
    return _queue(settings.queue, location, settings.database_url, settings.lifecycle_cron, settings.segments_cron)


class InProcessConsumer(Consumer):
    """A consumer that runs beside a web server: it leaves signal handling to the server."""

    def _set_signal_handlers(self) -> None:
        pass


def start_consumer(settings: Settings, workers: int = 2) -> Consumer | None:
    """Start worker threads in this process; None when the queue runs tasks immediately."""
    huey = queue(settings).huey
    if huey.immediate:
        return None
    consumer = InProcessConsumer(huey, workers=workers, worker_type="thread")
    consumer.start()
    _resume(settings)
    _listen_for_bounces(settings)
    return consumer


def _listen_for_bounces(settings: Settings) -> None:
    """Take bounces, complaints and unsubscribe mails by SMTP when `bounce_port` is set (it stays up
    for the life of the process)."""
    if settings.bounce_port:
        from kesher.channels.dsn import start_bounce_listener

        start_bounce_listener(settings, database(settings.database_url))


def _resume(settings: Settings) -> None:
    from kesher.contacts.importer import resume_interrupted

    url = settings.database_url
    db = database(url)
    resumed = resume_interrupted(db, lambda job: queue(settings).enqueue("import_contacts", url, job))
    if resumed:
        log.info("resumed interrupted imports %s", resumed)
    if db.dialect == "sqlite":  # this is its only worker: what is claimed was claimed by one that died
        from kesher.channels import outbox

        with db.session() as session:
            released = outbox.release_all(session)
        if released:
            log.info("gave back %s messages a stopped worker had claimed", released)
    _tick_campaigns(url, lambda campaign: queue(settings).enqueue("send_campaign", url, campaign))


def run_consumer(settings: Settings, workers: int = 2) -> None:
    """`kesher worker`: run until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    huey = queue(settings).huey
    _resume(settings)
    _listen_for_bounces(settings)
    Consumer(huey, workers=workers, worker_type="thread").run()
