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

from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey
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
        return RedisHuey("kesher", url=location)
    if kind == "immediate":
        return MemoryHuey("kesher", immediate=True)
    raise ValueError(f"KESHER_QUEUE must be sqlite, redis or immediate, not {kind!r}")


@lru_cache(maxsize=8)
def _queue(kind: str, location: str) -> Queue:
    huey = _make_huey(kind, location)
    tasks = {"import_contacts": huey.task(name="import_contacts", retries=2, retry_delay=5)(_import_contacts)}
    return Queue(huey, tasks)


def queue(settings: Settings) -> Queue:
    location = {"sqlite": settings.queue_path, "redis": settings.redis_url}.get(settings.queue, "")
    return _queue(settings.queue, location)


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
    return consumer


def _resume(settings: Settings) -> None:
    from kesher.contacts.importer import resume_interrupted

    resumed = resume_interrupted(database(settings.database_url), settings)
    if resumed:
        log.info("resumed interrupted imports %s", resumed)


def run_consumer(settings: Settings, workers: int = 2) -> None:
    """`kesher worker`: run until interrupted."""
    huey = queue(settings).huey
    _resume(settings)
    Consumer(huey, workers=workers, worker_type="thread").run()
