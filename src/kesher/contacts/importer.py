"""Contact import jobs: from an uploaded CSV/XLSX to contacts, in batches, resumable after a crash.

Each batch is written and its checkpoint (`rows_done`, counts) committed in one transaction, so
a restarted job continues exactly where the last commit left it, and re-running a whole file
merges into the same contacts instead of duplicating them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import event, insert, or_, select, update
from sqlalchemy.orm import Session

from kesher.accounts.service import audit
from kesher.config import Settings, get_settings
from kesher.contacts import groups
from kesher.contacts.columns import Column, plan_columns
from kesher.contacts.fields import create_field, fields_by_key
from kesher.contacts.models import Contact, CustomField, ImportJob, ImportRowError
from kesher.contacts.rows import RowPlan, prepared
from kesher.contacts.spreadsheet import check_text, detect, open_rows
from kesher.contacts.upsert import Outcome, upsert_contacts
from kesher.db import Database
from kesher.db.base import utcnow
from kesher.db.upsert import refresh_statistics
from kesher.errors import KesherError, NotFound, ValidationError

STALE = timedelta(seconds=90)
STORED_VALUE = 200  # characters of a value an import error quotes
# Bigger batches spread each transaction's fixed costs thinner; on SQLite, whose pages live in
# the importing process, 5,000 rows would take that process over 300 MB.
BATCH_SIZE = {"postgresql": 5000, "sqlite": 2000}
PARALLEL_FROM_ROWS = 20_000
ANALYZE_FROM = 10_000  # new contacts; then each time the import has doubled them
PARALLEL_FROM_BYTES = 2 << 20
MAX_UPLOAD = 1 << 30
Progress = Callable[[ImportJob], None]


def save_upload(settings: Settings, filename: str, fileobj: BinaryIO) -> str:
    """Keep an uploaded file under the import folder; returns its path."""
    folder = Path(settings.import_dir)
    folder.mkdir(parents=True, exist_ok=True)
    safe = "".join(ch for ch in Path(filename).name if ch.isalnum() or ch in "._-") or "upload"
    path = folder.resolve() / f"{uuid.uuid4().hex}-{safe[-100:]}"  # absolute: a worker may run elsewhere
    with path.open("wb") as out:
        copied = 0
        while chunk := fileobj.read(1 << 20):
            copied += len(chunk)
            if copied > MAX_UPLOAD:
                out.close()
                path.unlink()
                raise ValidationError("the file is larger than 1 GB", "file")
            out.write(chunk)
    return str(path)


def create_import(
    session: Session, workspace_id: int, filename: str, path: str, *, list_name: str | None = None,
    mapping: dict[str, str] | None = None, actor: str = "system", settings: Settings | None = None,
    enqueue: bool = True,
) -> ImportJob:
    """Check the file and its columns now (so mistakes show at once), then queue the job.

    The job is queued only once the caller's transaction commits, so a worker never looks for
    a job that is not stored yet.
    """
    fmt = detect(path)
    with open_rows(path, fmt) as (headers, _):
        plan_columns(headers, fields_by_key(session, workspace_id), mapping)
    total = check_text(path, fmt) - 1 if fmt.kind == "csv" else None
    job = ImportJob(workspace_id=workspace_id, filename=filename[:300], path=path, status="queued",
                    options={"list": list_name, "mapping": mapping or {}, "actor": actor}, total_rows=total)
    session.add(job)
    session.flush()
    if enqueue:
        settings = settings or get_settings()
        job_id, url = job.id, session.get_bind().url.render_as_string(hide_password=False)

        def _enqueue(_session: Session) -> None:
            from kesher.worker import queue

            queue(settings).enqueue("import_contacts", url, job_id)

        event.listen(session, "after_commit", _enqueue, once=True)
    return job


def get_import(session: Session, workspace_id: int, import_id: int) -> ImportJob:
    job = session.scalar(select(ImportJob).where(ImportJob.workspace_id == workspace_id, ImportJob.id == import_id))
    if job is None:
        raise NotFound("no import {id}", "id", id=import_id)
    return job


def list_imports(session: Session, workspace_id: int, limit: int = 50) -> list[ImportJob]:
    stmt = select(ImportJob).where(ImportJob.workspace_id == workspace_id).order_by(ImportJob.id.desc()).limit(limit)
    return list(session.scalars(stmt))


def import_errors(
    session: Session, workspace_id: int, import_id: int, after_id: int = 0, limit: int = 200,
) -> list[ImportRowError]:
    get_import(session, workspace_id, import_id)
    stmt = (select(ImportRowError).where(ImportRowError.import_id == import_id, ImportRowError.id > after_id)
            .order_by(ImportRowError.id).limit(limit))
    return list(session.scalars(stmt))


def all_import_errors(session: Session, import_id: int, batch: int = 5000) -> Iterator[ImportRowError]:
    last = 0
    while rows := list(session.scalars(select(ImportRowError).where(
            ImportRowError.import_id == import_id, ImportRowError.id > last).order_by(ImportRowError.id).limit(batch))):
        yield from rows
        last = rows[-1].id


def _claim(db: Database, import_id: int) -> bool:
    """Take the job unless another worker holds it (its heartbeat is fresh) or it is finished."""
    now = utcnow()
    with db.session() as session:
        result = session.execute(
            update(ImportJob).where(
                ImportJob.id == import_id,
                or_(ImportJob.status == "queued",
                    (ImportJob.status == "running") & or_(ImportJob.heartbeat_at.is_(None),
                                                          ImportJob.heartbeat_at < now - STALE)),
            ).values(status="running", heartbeat_at=now)
        )
        return result.rowcount == 1  # type: ignore[attr-defined]


def resume_interrupted(db: Database, enqueue: Callable[[int], None]) -> list[int]:
    """Queue again every job a stopped worker left behind; the claim keeps each one single."""
    stale = utcnow() - STALE
    with db.session() as session:
        ids = list(session.scalars(select(ImportJob.id).where(or_(
            (ImportJob.status == "queued") & (ImportJob.created_at < stale),
            (ImportJob.status == "running") & or_(ImportJob.heartbeat_at.is_(None), ImportJob.heartbeat_at < stale),
        ))))
    for job_id in ids:
        enqueue(job_id)
    return ids


def run_import(db: Database, import_id: int, *, batch_size: int | None = None,
               progress: Progress | None = None) -> ImportJob:
    """Run (or resume) one import job to its end."""
    if not _claim(db, import_id):
        with db.session() as session:
            return session.get_one(ImportJob, import_id)
    try:
        _run(db, import_id, batch_size or get_settings().import_batch_size or BATCH_SIZE[db.dialect], progress)
    except KesherError as exc:
        _finish(db, import_id, "failed", exc.template, exc.params)
    except Exception as exc:
        _finish(db, import_id, "failed", "the import stopped: {reason}", {"reason": str(exc)[:500]})
        raise
    with db.session() as session:
        return session.get_one(ImportJob, import_id)


def _finish(db: Database, import_id: int, status: str, message: str, params: dict[str, Any] | None = None) -> None:
    with db.session() as session:
        job = session.get_one(ImportJob, import_id)
        job.status, job.message, job.params, job.finished_at = status, message, params or None, utcnow()
        audit(session, job.workspace_id, job.options.get("actor", "system"), f"import.{status}", "import", job.id,
              {"created": job.created, "updated": job.updated, "skipped": job.skipped, "failed": job.failed,
               "message": job.text("en")})


def _run(db: Database, import_id: int, batch_size: int, progress: Progress | None) -> None:
    with db.session() as session:
        job = session.get_one(ImportJob, import_id)
        workspace_id, path, options, start = job.workspace_id, job.path, dict(job.options), job.rows_done
        fmt = detect(path)
        check_text(path, fmt)
        custom = fields_by_key(session, workspace_id)
        with open_rows(path, fmt) as (headers, _):
            columns = plan_columns(headers, custom, options.get("mapping"))
        custom = _create_new_fields(session, workspace_id, columns, custom, options.get("actor", "system"))
        list_ids = [groups.get_or_create(session, workspace_id, "list", options["list"]).id] if options.get("list") else []
    plan = RowPlan.build(columns, custom, get_settings().default_phone_region)
    processes = _processes(path, job.total_rows)
    analyzed_at = ANALYZE_FROM // 2
    with open_rows(path, fmt) as (_, rows):
        for count, items in prepared(plan, islice(rows, start, None), batch_size, processes):
            with db.session() as session:
                job = session.get_one(ImportJob, import_id)
                job.skipped += count - len(items)
                outcomes = upsert_contacts(session, workspace_id, items, source="import", list_ids=list_ids,
                                           consent_source=f"import:{import_id}")
                _record(session, job, outcomes, plan)
                job.rows_done += count
                job.heartbeat_at = utcnow()
                if job.created >= analyzed_at * 2:
                    refresh_statistics(session, Contact.__table__, sampled=True)
                    analyzed_at = job.created
            if progress:
                progress(job)
    counts = {"created": f"{job.created:,}", "updated": f"{job.updated:,}", "skipped": f"{job.skipped:,}",
              "failed": f"{job.failed:,}"}
    _finish(db, import_id, "done", "{created} created, {updated} updated, {skipped} skipped, {failed} failed", counts)
    _discard_upload(path)


def _stored(params: dict[str, Any]) -> dict[str, Any] | None:
    """An error's parameters as an import report keeps them: a long value (a 50,000-character cell) cut short."""
    if not params:
        return None
    return {k: v if isinstance(v, int | float) or v is None else _cut(str(v)) for k, v in params.items()}


def _cut(text: str) -> str:
    return text[:STORED_VALUE] + "…" if len(text) > STORED_VALUE else text


def _discard_upload(path: str) -> None:
    """An uploaded file is kept only until its import is done; a file named on the command line is the user's."""
    uploads = Path(get_settings().import_dir).resolve()
    if Path(path).resolve().is_relative_to(uploads):
        Path(path).unlink(missing_ok=True)


def _processes(path: str, total_rows: int | None) -> int:
    """Worker processes for checking rows: none for small files, where starting them costs more."""
    configured = get_settings().import_processes
    if configured >= 0:
        return configured
    big = (total_rows or 0) >= PARALLEL_FROM_ROWS or Path(path).stat().st_size >= PARALLEL_FROM_BYTES
    # The writing process is the slower side, so one core stays with it (and the database).
    return max(1, min((os.cpu_count() or 1) - 1, 4)) if big else 0


def _create_new_fields(
    session: Session, workspace_id: int, columns: list[Column], custom: dict[str, CustomField], actor: str,
) -> dict[str, CustomField]:
    for column in columns:
        if column.new_field and column.field_key not in custom:
            custom[column.field_key] = create_field(session, workspace_id, column.field_key,  # type: ignore[index]
                                                    column.header[:200], "text", actor=actor)
    return custom


def _record(session: Session, job: ImportJob, outcomes: list[Outcome], plan: RowPlan) -> None:
    """Add a batch's outcomes to the job's counts and keep its errors."""
    header_of = plan.header_of
    errors = []
    for outcome in outcomes:
        if outcome.status == "created":
            job.created += 1
        elif outcome.status == "updated":
            job.updated += 1
        elif outcome.status == "unchanged":
            job.skipped += 1
        else:
            job.failed += 1
            errors += [{"import_id": job.id, "workspace_id": job.workspace_id, "row": outcome.ref,
                        "column": header_of.get(e.field or "", e.field or "")[:200], "message": e.template[:1000],
                        "params": _stored(e.params)}
                       for e in outcome.errors]
    if errors:
        session.execute(insert(ImportRowError.__table__), errors)
