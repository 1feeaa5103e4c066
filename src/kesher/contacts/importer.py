"""Contact import jobs: from an uploaded CSV/XLSX to contacts, in batches, resumable after a crash.

Each batch is written and its checkpoint (`rows_done`, counts) committed in one transaction, so
a restarted job continues exactly where the last commit left it, and re-running a whole file
merges into the same contacts instead of duplicating them.
"""

from __future__ import annotations

import shutil
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
from kesher.contacts.models import CustomField, ImportJob, ImportRowError
from kesher.contacts.service import build_input
from kesher.contacts.spreadsheet import FileFormat, RowProblem, check_text, detect, open_rows
from kesher.contacts.upsert import ContactInput, Outcome, upsert_contacts
from kesher.db import Database
from kesher.db.base import utcnow
from kesher.errors import KesherError, NotFound, ValidationError

STALE = timedelta(seconds=90)
MAX_UPLOAD = 1 << 30
_YES = {"1", "true", "yes", "y", "כן", "v", "✓", "granted"}
_NO = {"0", "false", "no", "n", "לא", "denied"}
Progress = Callable[[ImportJob], None]


def save_upload(settings: Settings, filename: str, fileobj: BinaryIO) -> str:
    """Keep an uploaded file under the import folder; returns its path."""
    folder = Path(settings.import_dir)
    folder.mkdir(parents=True, exist_ok=True)
    safe = "".join(ch for ch in Path(filename).name if ch.isalnum() or ch in "._-") or "upload"
    path = folder / f"{uuid.uuid4().hex}-{safe[-100:]}"
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
        raise NotFound(f"no import {import_id}", "id")
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


def resume_interrupted(db: Database, settings: Settings) -> list[int]:
    """Queue again every job a stopped worker left behind; the claim keeps each one single."""
    from kesher.worker import queue

    with db.session() as session:
        stale = utcnow() - STALE
        ids = list(session.scalars(select(ImportJob.id).where(
            or_(ImportJob.status == "queued", ImportJob.status == "running"),
            or_(ImportJob.heartbeat_at.is_(None), ImportJob.heartbeat_at < stale))))
    for job_id in ids:
        queue(settings).enqueue("import_contacts", db.url, job_id)
    return ids


def run_import(db: Database, import_id: int, *, batch_size: int = 2000, progress: Progress | None = None) -> ImportJob:
    """Run (or resume) one import job to its end."""
    if not _claim(db, import_id):
        with db.session() as session:
            return session.get_one(ImportJob, import_id)
    try:
        _run(db, import_id, batch_size, progress)
    except KesherError as exc:
        _finish(db, import_id, "failed", exc.message)
    except Exception as exc:
        _finish(db, import_id, "failed", f"the import stopped: {exc}")
        raise
    with db.session() as session:
        return session.get_one(ImportJob, import_id)


def _finish(db: Database, import_id: int, status: str, message: str) -> None:
    with db.session() as session:
        job = session.get_one(ImportJob, import_id)
        job.status, job.message, job.finished_at = status, message, utcnow()
        audit(session, job.workspace_id, job.options.get("actor", "system"), f"import.{status}", "import", job.id,
              {"created": job.created, "updated": job.updated, "skipped": job.skipped, "failed": job.failed,
               "message": message})


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
    batches = _Batches(columns, custom, workspace_id)
    with open_rows(path, fmt) as (_, rows):
        rows = islice(rows, start, None)
        while chunk := list(islice(rows, batch_size)):
            with db.session() as session:
                job = session.get_one(ImportJob, import_id)
                batches.write(session, job, chunk, list_ids, source=f"import:{import_id}")
                job.rows_done += len(chunk)
                job.heartbeat_at = utcnow()
            if progress:
                progress(job)
    parts = f"{job.created:,} created, {job.updated:,} updated, {job.skipped:,} skipped, {job.failed:,} failed"
    _finish(db, import_id, "done", parts)


def _create_new_fields(
    session: Session, workspace_id: int, columns: list[Column], custom: dict[str, CustomField], actor: str,
) -> dict[str, CustomField]:
    for column in columns:
        if column.new_field and column.field_key not in custom:
            custom[column.field_key] = create_field(session, workspace_id, column.field_key,  # type: ignore[index]
                                                    column.header[:200], "text", actor=actor)
    return custom


class _Batches:
    """Turns rows into contact inputs and writes one batch with its outcomes."""

    def __init__(self, columns: list[Column], custom: dict[str, CustomField], workspace_id: int) -> None:
        self.columns = [c for c in columns if c.target != "skip"]
        self.width = len(columns)
        self.custom = custom
        self.workspace_id = workspace_id
        self.header_of = {("fields." + c.field_key if c.target == "field" else c.target): c.header for c in self.columns}

    def item(self, session: Session, number: int, cells: list[Any]) -> ContactInput | None:
        if cells and isinstance(cells[0], RowProblem):
            return ContactInput(number, {}, errors=[ValidationError(f"the row cannot be read: {cells[0].message}", "")])
        if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
            return None
        data: dict[str, Any] = {"fields": {}, "consent": {}}
        errors: list[ValidationError] = []
        if any(c not in (None, "") for c in cells[self.width:]):
            errors.append(ValidationError(f"the row has {len(cells)} cells but the header has {self.width}", ""))
        for column in self.columns:
            value = cells[column.index] if column.index < len(cells) else None
            if column.target == "field":
                data["fields"][column.field_key] = value
            elif column.target.startswith("consent."):
                status = _consent(value, column.target)
                if isinstance(status, ValidationError):
                    errors.append(status)
                elif status:
                    data["consent"][column.target.split(".", 1)[1]] = status
            else:
                data[column.target] = value
        item = build_input(session, self.workspace_id, number, data, known_fields=self.custom)
        item.errors = errors + item.errors
        return item

    def write(self, session: Session, job: ImportJob, chunk: list[tuple[int, list[Any]]], list_ids: list[int],
              source: str) -> None:
        items = [i for n, cells in chunk if (i := self.item(session, n, cells)) is not None]
        job.skipped += len(chunk) - len(items)
        outcomes = upsert_contacts(session, job.workspace_id, items, source="import", list_ids=list_ids,
                                   consent_source=source)
        self._count(session, job, outcomes)

    def _count(self, session: Session, job: ImportJob, outcomes: list[Outcome]) -> None:
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
                            "column": self.header_of.get(e.field or "", e.field or "")[:200], "message": e.message[:1000]}
                           for e in outcome.errors]
        if errors:
            session.execute(insert(ImportRowError.__table__), errors)


def _consent(value: Any, column: str) -> str | ValidationError | None:
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip().lower()
    if text in _YES:
        return "granted"
    if text in _NO:
        return "denied"
    return ValidationError(f"{str(value)[:40]!r} is not yes/no (כן/לא)", column)
