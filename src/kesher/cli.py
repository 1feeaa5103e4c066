"""The `kesher` command line."""

from __future__ import annotations

import csv
import json
import secrets
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.orm import Session

from kesher.accounts import service as accounts
from kesher.accounts.models import Workspace
from kesher.campaigns import cli as campaign_cli
from kesher.config import DEFAULT_SECRET, Settings, get_settings
from kesher.db import Database
from kesher.db.migrate import upgrade
from kesher.errors import KesherError, ValidationError
from kesher.memory import settle

app = typer.Typer(help="Kesher: marketing automation and analytics.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
user_app = typer.Typer(help="Users who log in to the UI.", no_args_is_help=True)
key_app = typer.Typer(help="API keys.", no_args_is_help=True)
ws_app = typer.Typer(help="Workspaces.", no_args_is_help=True)
import_app = typer.Typer(help="Import data from files.", no_args_is_help=True)
events_app = typer.Typer(help="Events: what contacts did or were sent.", no_args_is_help=True)
rollups_app = typer.Typer(help="Per-contact aggregates kept from the events.", no_args_is_help=True)
segment_app = typer.Typer(help="Segments: contacts chosen by a rule, kept current as events arrive.",
                          no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(key_app, name="apikey")
app.add_typer(ws_app, name="workspace")
app.add_typer(import_app, name="import")
app.add_typer(events_app, name="events")
app.add_typer(rollups_app, name="rollups")
app.add_typer(segment_app, name="segment")
app.add_typer(campaign_cli.app, name="campaign")
console = Console()
err = Console(stderr=True)


def _database(settings: Settings) -> Database:
    settings.ensure_var_dirs()
    db = Database(settings.database_url)
    upgrade(db.engine)
    return db


def _fail(exc: KesherError, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc}")
    return typer.Exit(code)


@contextmanager
def _transaction() -> Iterator[Session]:
    """A transaction on the configured database; a KesherError inside becomes `error: ...` and exit code 2."""
    db = _database(get_settings())
    try:
        with db.session() as session:
            yield session
    except KesherError as exc:
        raise _fail(exc) from None


def _workspace_id(db: Database, ref: str | None) -> int:
    from kesher.accounts.models import Workspace
    from sqlalchemy import select

    with db.session() as session:
        if ref:
            return accounts.get_workspace(session, ref).id
        ids = list(session.scalars(select(Workspace.id).limit(2)))
    if len(ids) != 1:
        raise KesherError("name the workspace with --workspace (there are several, or none)", "workspace")
    return ids[0]


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 0,
    worker: Annotated[bool, typer.Option(help="Run the background worker in this process too.")] = True,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Processes answering requests; one per core uses them "
                                         "all. With more than one, the background worker runs in the process "
                                         "that watches them.")] = 1,
) -> None:
    """Serve the UI and the API."""
    settings = get_settings()
    try:
        _serve(settings, _database(settings), host, port, worker, workers)
    except KesherError as exc:
        raise _fail(exc) from None


def _serve(settings: Settings, db: Database, host: str = "", port: int = 0, worker: bool = True,
           workers: int = 1) -> None:
    import uvicorn

    from kesher.web.app import create_app

    host = host or settings.host
    if settings.secret_key == DEFAULT_SECRET and host not in ("127.0.0.1", "localhost", "::1"):
        err.print("[yellow]warning:[/yellow] KESHER_SECRET_KEY is the default; anyone could forge a login session. "
                  "Set it to a long random value.")
    if workers == 1:
        web = create_app(settings, db, with_worker=worker)
        settle()
        uvicorn.run(web, host=host, port=port or settings.port)
        return
    # Each process builds the app from the environment's settings (`serving_app`); the worker, which
    # must be the only one of a SQLite database, runs here, in the process that starts and watches them.
    if settings.mail_sink:
        raise KesherError("the local mail sink runs in one process: serve it with --workers 1", "workers")
    db.dispose()
    consumer = None
    if worker:
        from kesher.worker import start_consumer

        consumer = start_consumer(settings)
    try:
        uvicorn.run("kesher.web.app:serving_app", factory=True, host=host, port=port or settings.port,
                    workers=workers)
    finally:
        if consumer is not None:
            consumer.stop(graceful=True)


@app.command()
def demo(
    contacts: Annotated[int, typer.Option(min=0, help="Demo contacts to load (up to a million and more).")] = 5000,
    events: Annotated[int | None, typer.Option(min=0, help="Events of shop history to load (about; 0 for none). "
                                               "Default: the shop's natural year of behaviour.")] = None,
    seed: Annotated[int, typer.Option(help="The same seed loads the same contacts.")] = 42,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve the UI and the API afterwards.")] = False,
    workspace_name: Annotated[str, typer.Option(help="Name of the demo workspace when it is created.")] = "",
) -> None:
    """Load a demo shop (Hebrew customers, lists, tags, a year of behaviour) with an admin user; safe to run again."""
    from kesher.demo import load

    settings = get_settings()
    db = _database(settings)
    try:
        access = load.ensure_access(db, name=workspace_name or load.DEMO_NAME)
        settle()
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, disable=not err.is_terminal) as bar:
            task = bar.add_task("loading demo contacts", total=contacts)
            result = load.load_contacts(db, access.workspace_id, contacts, seed,
                                        progress=lambda done: bar.update(task, completed=done))
            history = None
            if events != 0 and contacts:
                task = bar.add_task("loading their history", total=events)
                history = load.load_events(db, access.workspace_id, contacts, events, seed,
                                           progress=lambda n: bar.advance(task, n))
    except KesherError as exc:
        raise _fail(exc) from None
    if history is not None:
        console.print(f"events: {history.accepted:,} stored, {history.duplicates:,} already there")
    console.print(f"workspace: {escape(access.workspace_name)} ({access.workspace_slug})")
    console.print(f"contacts: {result.loaded:,} loaded ({result.created:,} new, {result.updated:,} updated, "
                  f"{result.unchanged:,} unchanged)")
    if result.failed:
        err.print(f"[red]{result.failed:,} contacts failed[/red], the first: {escape(str(result.first_error))}")
    # Soft wrap: a password or key broken over two lines would be copied wrong.
    console.print(f"log in at http://{settings.host}:{settings.port} as {access.email} / {access.password}",
                  soft_wrap=True)
    if access.api_key:
        console.print(f"API key (shown once, store it now): {access.api_key}", soft_wrap=True)
    if serve_after:
        if settings.smtp_host in ("127.0.0.1", "localhost") and not settings.smtp_username:
            # No mail server configured: campaigns go to the local sink, and the UI's Mailbox shows them.
            settings = settings.model_copy(update={"mail_sink": True})
            console.print(f"mail sink: every email sent goes to {settings.smtp_host}:{settings.smtp_port} "
                          "and shows under Campaigns > Mailbox")
        _serve(settings, db)


@app.command("worker")
def worker_command(workers: Annotated[int, typer.Option(help="Worker threads.")] = 2) -> None:
    """Run background jobs (imports, sends, periodic refreshes) until interrupted."""
    from kesher.worker import run_consumer

    settings = get_settings()
    _database(settings)
    settle()
    run_consumer(settings, workers)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema to the latest version."""
    settings = get_settings()
    _database(settings)
    console.print(f"database is up to date: {Database(settings.database_url).engine.url.render_as_string()}")


@ws_app.command("create")
def workspace_create(name: str, timezone: str = "Asia/Jerusalem", language: str = "he") -> None:
    """Create a workspace."""
    with _transaction() as session:
        ws = accounts.create_workspace(session, name, timezone=timezone, language=language)
    console.print(f"workspace {ws.id} ({ws.slug}) created")


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Option(help="Login email.")],
    password: Annotated[str, typer.Option(help="At least 8 characters; generated and printed when omitted.")] = "",
    workspace: Annotated[str, typer.Option(help="Workspace id or slug to join.")] = "",
    name: str = "",
    language: Annotated[str, typer.Option(help="he or en.")] = "he",
) -> None:
    """Create a user who can log in to the UI."""
    password = password or secrets.token_urlsafe(12)
    with _transaction() as session:
        ws = accounts.get_workspace(session, workspace) if workspace else None
        user = accounts.create_user(session, email, password, name=name, workspace=ws, language=language)
    console.print(f"user {user.id} created: {user.email} / {password}")


@key_app.command("create")
def apikey_create(
    workspace: Annotated[str, typer.Option(help="Workspace id or slug.")],
    name: Annotated[str, typer.Option(help="What the key is for.")],
) -> None:
    """Create an API key. The key is shown once: store it now."""
    with _transaction() as session:
        _, secret = accounts.create_api_key(session, accounts.get_workspace(session, workspace), name)
    console.print(secret)


@key_app.command("list")
def apikey_list(workspace: Annotated[str, typer.Option(help="Workspace id or slug.")]) -> None:
    """List a workspace's API keys (their names and first characters; the keys themselves are not kept)."""
    with _transaction() as session:
        keys = accounts.list_api_keys(session, accounts.get_workspace(session, workspace).id)
    for key in keys:
        used = key.last_used_at.isoformat(timespec="minutes") if key.last_used_at else "never"
        state = f"revoked {key.revoked_at.isoformat(timespec='minutes')}" if key.revoked_at else "active"
        console.print(f"{key.id}\t{key.prefix}…\t{escape(key.name)}\tlast used {used}\t{state}")


@key_app.command("revoke")
def apikey_revoke(
    key_id: Annotated[int, typer.Argument(help="The key's id, from `kesher apikey list`.")],
    workspace: Annotated[str, typer.Option(help="Workspace id or slug.")],
) -> None:
    """Revoke an API key: requests with it are refused from now on."""
    with _transaction() as session:
        accounts.revoke_api_key(session, accounts.get_workspace(session, workspace).id, key_id)
    console.print(f"API key {key_id} revoked")


@user_app.command("add")
def user_add(
    email: Annotated[str, typer.Option(help="The user's login email.")],
    workspace: Annotated[str, typer.Option(help="Workspace id or slug to add the user to.")],
    role: Annotated[str, typer.Option(help="admin or member.")] = "admin",
) -> None:
    """Give an existing user access to another workspace."""
    with _transaction() as session:
        accounts.add_member(session, accounts.get_user(session, email), accounts.get_workspace(session, workspace),
                            role)
    console.print(f"{email} can now use workspace {workspace}")


@user_app.command("password")
def user_password(
    email: Annotated[str, typer.Option(help="The user's login email.")],
    password: Annotated[str, typer.Option(help="At least 8 characters; generated and printed when omitted.")] = "",
) -> None:
    """Set a user's password (to a generated one, printed, when none is given)."""
    password = password or secrets.token_urlsafe(12)
    with _transaction() as session:
        accounts.set_password(session, email, password)
    console.print(f"new password for {email}: {password}", soft_wrap=True)


@import_app.command("contacts")
def import_contacts(
    path: Annotated[Path, typer.Argument(help="A CSV (UTF-8, UTF-8 with BOM or Windows-1255) or XLSX file.")],
    workspace: Annotated[str, typer.Option(help="Workspace id or slug (needed when there are several).")] = "",
    list_name: Annotated[str, typer.Option("--list", help="Add every imported contact to this list.")] = "",
    map_: Annotated[list[str], typer.Option("--map", help='Map a column by hand: "column=field"; field may be '
                                            'a contact field, consent.email, a custom field key, custom:NEW or skip.')] = [],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    errors_out: Annotated[Path | None, typer.Option(help="Write every row error to this CSV file.")] = None,
) -> None:
    """Import contacts; new rows are created, known ones merged. Exit 1 if any row failed, 2 if the file did."""
    from kesher.contacts import importer
    from kesher.contacts.columns import parse_map_option

    settings = get_settings()
    db = _database(settings)
    if not path.is_file():
        raise _fail(KesherError("{path} is not a file", "path", path=str(path)))
    try:
        ws_id = _workspace_id(db, workspace)
        with db.session() as session:
            job = importer.create_import(session, ws_id, path.name, str(path.resolve()), list_name=list_name or None,
                                         mapping=parse_map_option(map_), actor="cli", enqueue=False)
    except KesherError as exc:
        raise _fail(exc) from None
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, disable=as_json or not err.is_terminal) as bar:
        task = bar.add_task(f"importing {path.name}", total=job.total_rows)
        settle()
        job = importer.run_import(db, job.id, batch_size=settings.import_batch_size,
                                  progress=lambda j: bar.update(task, completed=j.rows_done))
    _report_import(db, job, as_json, errors_out)


def _report_import(db: Database, job, as_json: bool, errors_out: Path | None) -> None:  # type: ignore[no-untyped-def]
    from kesher.contacts import importer

    with db.session() as session:
        errors = [{"row": e.row, "column": e.column, "message": e.text("en")}
                  for e in importer.all_import_errors(session, job.id)]
    if errors_out:
        with errors_out.open("w", newline="", encoding="utf-8-sig") as fh:
            writer = csv.DictWriter(fh, ["row", "column", "message"])
            writer.writeheader()
            writer.writerows(errors)
    if as_json:
        print(json.dumps({"created": job.created, "updated": job.updated, "skipped": job.skipped, "errors": errors,
                          **({"message": job.text("en")} if job.status == "failed" else {})}, ensure_ascii=False))
    else:
        console.print(f"import {job.id}: {job.status}: {job.text('en')}")
        for e in errors[:20]:
            console.print(f"  row {e['row']}, {e['column'] or '-'}: {e['message']}")
        if len(errors) > 20:
            console.print(f"  … and {len(errors) - 20:,} more (use --errors-out FILE)")
    if job.status == "failed":
        raise typer.Exit(2)
    if errors:
        raise typer.Exit(1)


@events_app.command("import")
def events_import(
    path: Annotated[Path, typer.Argument(help="A JSONL file: one event a line, as POST /api/v1/events takes it.")],
    workspace: Annotated[str, typer.Option(help="Workspace id or slug (needed when there are several).")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    history: Annotated[bool, typer.Option("--history", help="Past events in bulk: store them all, then compute "
                                          "rollups, stages and segments once (several times faster).")] = False,
) -> None:
    """Import events, 1,000 lines a transaction. Exit 1 if any line failed, 2 if the file could not be read.

    Events with an idempotency key already imported count as duplicates, so a file can be run again.
    """
    from kesher.events import service as events

    settings = get_settings()
    db = _database(settings)
    try:
        ws_id = _workspace_id(db, workspace)
        size = path.stat().st_size
        with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err,
                      disable=as_json or not err.is_terminal) as bar:
            task = bar.add_task(f"importing {path.name}", total=size)
            settle()
            totals = events.import_jsonl(db, ws_id, path, region=settings.default_phone_region, history=history,
                                         progress=lambda done: bar.update(task, completed=done))
    except KesherError as exc:
        raise _fail(exc) from None
    except OSError as exc:
        raise _fail(KesherError("cannot read {path}: {reason}", "path", path=str(path),
                                reason=exc.strerror or str(exc))) from None
    errors = [{"line": e.line, "field": e.field, "message": e.message} for e in totals.errors]
    if as_json:
        print(json.dumps({"accepted": totals.accepted, "duplicates": totals.duplicates, "errors": errors},
                         ensure_ascii=False))
    else:
        console.print(f"{path.name}: {totals.accepted:,} accepted, {totals.duplicates:,} duplicates, "
                      f"{len(errors):,} failed")
        for e in errors[:20]:
            console.print(f"  line {e['line']}, {e['field']}: {escape(e['message'])}")
        if len(errors) > 20:
            console.print(f"  … and {len(errors) - 20:,} more (use --json)")
    if errors:
        raise typer.Exit(1)


@rollups_app.command("rebuild")
def rollups_rebuild(
    workspace: Annotated[str, typer.Option(help="Workspace id or slug; every workspace when omitted.")] = "",
) -> None:
    """Recompute every contact's rollups from the stored events (after a fix or a manual change)."""
    from sqlalchemy import select

    from kesher.accounts.models import Workspace
    from kesher.events import rollups

    with _transaction() as session:
        chosen = [accounts.get_workspace(session, workspace)] if workspace else \
            list(session.scalars(select(Workspace).order_by(Workspace.id)))
    for ws in chosen:
        started = time.perf_counter()
        with _transaction() as session:
            rollups.rebuild(session, ws.id)
        console.print(f"{escape(ws.name)} ({ws.slug}): rollups rebuilt in {time.perf_counter() - started:.2f}s")


# Segments ------------------------------------------------------------------------------------------

WorkspaceOption = Annotated[str, typer.Option("--workspace",
                                               help="Workspace id or slug (needed when there are several).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
RuleOption = Annotated[Path, typer.Option("--rule", help="A JSON file holding the rule (see docs/segments.md).")]
EXPORT_BATCH = 2000


@contextmanager
def _in_workspace(ref: str) -> Iterator[tuple[Session, Workspace]]:
    """A transaction in the named workspace (or the only one); a KesherError inside exits 2, as in `_transaction`."""
    db = _database(get_settings())
    try:
        workspace_id = _workspace_id(db, ref)
        with db.session() as session:
            yield session, session.get_one(Workspace, workspace_id)
    except KesherError as exc:
        raise _fail(exc) from None


def _read_rule(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise KesherError("cannot read {path}: {reason}", "rule", path=str(path),
                          reason=exc.strerror or str(exc)) from None
    except ValueError as exc:
        raise ValidationError("{path} is not JSON: {reason}", "rule", path=str(path), reason=str(exc)) from None


def _segment_json(segment: Any) -> dict[str, Any]:
    from kesher.segments.schemas import SegmentOut

    return SegmentOut.model_validate(segment).model_dump(mode="json")


@segment_app.command("count")
def segment_count(rule: RuleOption, workspace: WorkspaceOption = "", as_json: JsonOption = False) -> None:
    """Count the contacts a rule matches now, and show how long it took. Nothing is saved."""
    from kesher.segments import membership

    with _in_workspace(workspace) as (session, ws):
        data = _read_rule(rule)
        started = time.perf_counter()
        found = membership.count(session, ws, data)
        took = time.perf_counter() - started
    if as_json:
        print(json.dumps({"count": found, "seconds": round(took, 3)}))
    else:
        console.print(f"{found:,} contacts match ({took * 1000:.0f} ms)")


@segment_app.command("list")
def segment_list(workspace: WorkspaceOption = "", as_json: JsonOption = False) -> None:
    """List the segments: id, name, members, and when each was last refreshed in full."""
    from kesher.segments import service as segments

    with _in_workspace(workspace) as (session, ws):
        found = segments.list_segments(session, ws.id)
    if as_json:
        print(json.dumps([_segment_json(s) for s in found], ensure_ascii=False))
        return
    for s in found:
        refreshed = s.refreshed_at.isoformat(timespec="minutes") if s.refreshed_at else "never"
        console.print(f"{s.id}\t{escape(s.name)}\t{s.member_count:,} members\trefreshed {refreshed}")


@segment_app.command("presets")
def segment_presets() -> None:
    """List the presets `kesher segment create --preset` starts from."""
    from kesher.segments.service import PRESETS
    from kesher.web.i18n import translations

    english = translations("en")
    for preset in PRESETS.values():
        params = f" (--param {', --param '.join(p + '=...' for p in preset.params)})" if preset.params else ""
        console.print(f"{preset.key}\t{english.gettext(preset.name)}: {english.gettext(preset.description)}{params}",
                      soft_wrap=True)


def _params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValidationError("{pair!r}: write a parameter as name=value", "param", pair=pair)
        params[key.strip()] = value.strip()
    return params


@segment_app.command("create")
def segment_create(
    name: Annotated[str, typer.Option(help="The segment's name (with --preset, default: the preset's name).")] = "",
    rule: Annotated[Path | None, typer.Option(help="A JSON file holding the rule (see docs/segments.md).")] = None,
    preset: Annotated[str, typer.Option(help="Start from a preset instead (see `kesher segment presets`).")] = "",
    param: Annotated[list[str], typer.Option(help="A preset's parameter as name=value, e.g. campaign_id=spring; "
                                             "repeat for more.")] = [],
    description: Annotated[str, typer.Option(help="What the segment is for.")] = "",
    workspace: WorkspaceOption = "",
    as_json: JsonOption = False,
) -> None:
    """Save a segment from a rule file or a preset; its members are computed at once."""
    from kesher.segments import service as segments

    with _in_workspace(workspace) as (session, ws):
        if (rule is None) == (not preset):
            raise ValidationError("give --rule FILE or --preset KEY (one of them)", "rule")
        if rule is not None:
            if not name.strip():
                raise ValidationError("a segment needs a name (--name)", "name")
            segment = segments.create_segment(session, ws, name, _read_rule(rule), description=description,
                                              actor="cli")
        else:
            segment = segments.create_from_preset(session, ws, preset, name=name or None, params=_params(param),
                                                  actor="cli")
            if description:
                segment = segments.update_segment(session, ws, segment.id, description=description, actor="cli")
    if as_json:
        print(json.dumps(_segment_json(segment), ensure_ascii=False))
    else:
        console.print(f"segment {segment.id} created: {escape(segment.name)} ({segment.member_count:,} members)")


@segment_app.command("refresh")
def segment_refresh(
    segment_id: Annotated[int | None, typer.Argument(help="A segment id; every segment when omitted.")] = None,
    workspace: Annotated[str, typer.Option(help="Workspace id or slug (needed with an ID when there are several); "
                                           "without an ID, every workspace's segments when omitted.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Re-evaluate segments in full now and show who entered and who left (the worker does this hourly).

    Exit 1 if a segment could not be refreshed (the others still are).
    """
    from sqlalchemy import select

    from kesher.segments import membership
    from kesher.segments import service as segments

    db = _database(get_settings())
    try:
        one = (_workspace_id(db, workspace), segment_id) if segment_id is not None else None
        with db.session() as session:
            if one is not None:
                targets = [segments.get_segment(session, *one)]
            else:
                chosen = [accounts.get_workspace(session, workspace).id] if workspace else \
                    list(session.scalars(select(Workspace.id).order_by(Workspace.id)))
                targets = [s for ws_id in chosen for s in segments.list_segments(session, ws_id)]
    except KesherError as exc:
        raise _fail(exc) from None
    done, failed = [], 0
    for target in targets:
        started = time.perf_counter()
        try:
            with db.session() as session:
                segment = segments.get_segment(session, target.workspace_id, target.id)
                moves = membership.refresh(session, segment)
                session.refresh(segment)
        except KesherError as exc:
            failed += 1
            err.print(f"[red]error:[/red] segment {target.id} ({escape(target.name)}): {escape(str(exc))}")
            continue
        row = {"id": segment.id, "name": segment.name, "entered": moves.entered, "exited": moves.exited,
               "member_count": segment.member_count, "seconds": round(time.perf_counter() - started, 3)}
        done.append(row)
        if not as_json:
            console.print(f"{row['id']}\t{escape(segment.name)}: {moves.entered:,} entered, {moves.exited:,} left, "
                          f"{segment.member_count:,} members ({row['seconds']:.2f}s)")
    if as_json:
        print(json.dumps(done, ensure_ascii=False))
    if failed:
        raise typer.Exit(1)


def _export_columns(session: Session, workspace_id: int, spec: str) -> list[Any]:
    from kesher.contacts import export
    from kesher.contacts.fields import list_fields

    known = [*export.BUILTIN_COLUMNS, *(export.CUSTOM_PREFIX + f.key for f in list_fields(session, workspace_id))]
    keys = [key.strip() for key in spec.split(",") if key.strip()]
    unknown = [key for key in keys if key not in known]
    if unknown:
        raise ValidationError("no column {column!r}; columns are: {columns}", "columns", column=unknown[0],
                              columns=", ".join(known))
    if not keys:
        raise ValidationError("name at least one column; columns are: {columns}", "columns", columns=", ".join(known))
    return [export.Column(key, key) for key in keys]


@segment_app.command("export")
def segment_export(
    out: Annotated[Path, typer.Option(help="The file to write.")],
    segment_id: Annotated[int | None, typer.Argument(help="A segment id: its stored members.")] = None,
    rule: Annotated[Path | None, typer.Option(help="Instead of a segment: a JSON file holding a rule; the "
                                              "contacts it matches now.")] = None,
    columns: Annotated[str, typer.Option(help="Comma-separated: built-in fields (email, phone, first_name, ...) "
                                         "and custom fields as fields.<key>.")] = "first_name,last_name,email,phone",
    fmt: Annotated[str, typer.Option("--format", help="csv (UTF-8 with BOM) or xlsx.")] = "csv",
    workspace: WorkspaceOption = "",
) -> None:
    """Export a segment's members (or a rule's matches) to CSV or Excel, streamed in batches."""
    from kesher.contacts import export
    from kesher.contacts import service as contacts
    from kesher.contacts.models import Contact
    from kesher.db import utcnow
    from kesher.segments import membership
    from kesher.segments import service as segments
    from kesher.segments.compiler import compiler
    from kesher.segments.rules import parse_rule

    with _in_workspace(workspace) as (session, ws):
        if (segment_id is None) == (rule is None):
            raise ValidationError("give a segment ID or --rule FILE (one of them)", "rule")
        if fmt not in ("csv", "xlsx"):
            raise ValidationError("must be csv or xlsx", "format")
        chosen = _export_columns(session, ws.id, columns)
        if segment_id is not None:
            segment = segments.get_segment(session, ws.id, segment_id)
            title, where = segment.name, membership.members_of(segment.id)
        elif rule is not None:
            # Re-evaluated with each batch: for a large export, save the rule as a segment and export that.
            title = "Contacts"
            where = Contact.id.in_(compiler(session, ws, utcnow()).members(parse_rule(_read_rule(rule))))
        flt = contacts.ContactFilter(where=[where])
        total = contacts.count(session, ws.id, flt)
        zone, right_to_left = ws.timezone, ws.language == "he"
        started = time.perf_counter()
        try:
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=err, disable=not err.is_terminal) as bar:
                task = bar.add_task(f"exporting to {out.name}", total=total)
                if fmt == "csv":
                    with out.open("wb") as fh:
                        for chunk in export.csv_chunks(session, ws.id, flt, chosen, zone, batch=EXPORT_BATCH):
                            fh.write(chunk)
                            bar.advance(task, EXPORT_BATCH)
                else:
                    export.write_xlsx(session, ws.id, flt, chosen, zone, out, title=title, right_to_left=right_to_left,
                                      batch=EXPORT_BATCH)
                bar.update(task, completed=total)
        except OSError as exc:
            raise KesherError("cannot write {path}: {reason}", "out", path=str(out),
                              reason=exc.strerror or str(exc)) from None
    console.print(f"{total:,} contacts exported to {escape(str(out))} in {time.perf_counter() - started:.1f}s")


def _print_finding(node: dict[str, Any], depth: int = 0) -> None:
    mark = "[green]yes[/green]" if node["matched"] else "[red]no[/red]"
    what = node["kind"] if node["children"] else json.dumps(node["rule"], ensure_ascii=False)
    console.print(f"{'  ' * depth}{mark}  {escape(node['path'])}  {escape(what)}", soft_wrap=True)
    evidence = {k: v for k, v in node["evidence"].items() if k != "explanation"}
    if evidence:
        console.print(f"{'  ' * (depth + 2)}{escape(json.dumps(evidence, ensure_ascii=False))}", soft_wrap=True)
    inner = [node["evidence"]["explanation"]] if "explanation" in node["evidence"] else []
    for child in [*node["children"], *inner]:
        _print_finding(child, depth + 1)


@segment_app.command("explain")
def segment_explain(
    segment_id: Annotated[int, typer.Argument(help="A segment id.")],
    contact_id: Annotated[int, typer.Argument(help="A contact id.")],
    workspace: WorkspaceOption = "",
    as_json: JsonOption = False,
) -> None:
    """Why a contact is in a segment or not: each condition, true or false, with the facts behind it."""
    from kesher.contacts import service as contacts
    from kesher.segments import service as segments
    from kesher.segments.explain import explain
    from kesher.segments.schemas import ExplainOut

    with _in_workspace(workspace) as (session, ws):
        segment = segments.get_segment(session, ws.id, segment_id)
        try:
            contacts.get_contact(session, ws.id, contact_id)
        except KesherError as exc:
            raise KesherError(exc.template, "contact_id", **exc.params) from None
        finding = explain(session, ws, segment.rule, contact_id)
        member = any(s.id == segment.id for s, _ in segments.segments_of_contact(session, ws.id, contact_id))
    result = ExplainOut.of(finding, contact_id, segment.id, member).model_dump(mode="json")
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
        return
    console.print(f"contact {contact_id} is {'' if member else 'not '}a member of segment {segment.id} "
                  f"({escape(segment.name)}); the rule {'matches' if finding.matched else 'does not match'} now")
    _print_finding(result["explanation"])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
