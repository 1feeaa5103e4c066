"""The `kesher` command line."""

from __future__ import annotations

import csv
import json
import secrets
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kesher.accounts import service as accounts
from kesher.config import Settings, get_settings
from kesher.db import Database
from kesher.db.migrate import upgrade
from kesher.errors import KesherError

app = typer.Typer(help="Kesher: marketing automation and analytics.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
user_app = typer.Typer(help="Users who log in to the UI.", no_args_is_help=True)
key_app = typer.Typer(help="API keys.", no_args_is_help=True)
ws_app = typer.Typer(help="Workspaces.", no_args_is_help=True)
import_app = typer.Typer(help="Import data from files.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(key_app, name="apikey")
app.add_typer(ws_app, name="workspace")
app.add_typer(import_app, name="import")
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
) -> None:
    """Serve the UI and the API."""
    import uvicorn

    from kesher.web.app import create_app

    settings = get_settings()
    db = _database(settings)
    uvicorn.run(create_app(settings, db, with_worker=worker), host=host or settings.host, port=port or settings.port)


@app.command("worker")
def worker_command(workers: Annotated[int, typer.Option(help="Worker threads.")] = 2) -> None:
    """Run background jobs (imports, sends, periodic refreshes) until interrupted."""
    from kesher.worker import run_consumer

    settings = get_settings()
    _database(settings)
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
    db = _database(get_settings())
    try:
        with db.session() as session:
            ws = accounts.create_workspace(session, name, timezone=timezone, language=language)
    except KesherError as exc:
        raise _fail(exc) from None
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
    db = _database(get_settings())
    password = password or secrets.token_urlsafe(12)
    try:
        with db.session() as session:
            ws = accounts.get_workspace(session, workspace) if workspace else None
            user = accounts.create_user(session, email, password, name=name, workspace=ws, language=language)
    except KesherError as exc:
        raise _fail(exc) from None
    console.print(f"user {user.id} created: {user.email} / {password}")


@key_app.command("create")
def apikey_create(
    workspace: Annotated[str, typer.Option(help="Workspace id or slug.")],
    name: Annotated[str, typer.Option(help="What the key is for.")],
) -> None:
    """Create an API key. The key is shown once: store it now."""
    db = _database(get_settings())
    try:
        with db.session() as session:
            _, secret = accounts.create_api_key(session, accounts.get_workspace(session, workspace), name)
    except KesherError as exc:
        raise _fail(exc) from None
    console.print(secret)


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
        raise _fail(KesherError(f"{path} is not a file", "path"))
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
        job = importer.run_import(db, job.id, batch_size=settings.import_batch_size,
                                  progress=lambda j: bar.update(task, completed=j.rows_done))
    _report_import(db, job, as_json, errors_out)


def _report_import(db: Database, job, as_json: bool, errors_out: Path | None) -> None:  # type: ignore[no-untyped-def]
    from kesher.contacts import importer

    with db.session() as session:
        errors = [{"row": e.row, "column": e.column, "message": e.message} for e in importer.all_import_errors(session, job.id)]
    if errors_out:
        with errors_out.open("w", newline="", encoding="utf-8-sig") as fh:
            writer = csv.DictWriter(fh, ["row", "column", "message"])
            writer.writeheader()
            writer.writerows(errors)
    if as_json:
        print(json.dumps({"created": job.created, "updated": job.updated, "skipped": job.skipped, "errors": errors,
                          **({"message": job.message} if job.status == "failed" else {})}, ensure_ascii=False))
    else:
        console.print(f"import {job.id}: {job.status}: {job.message}")
        for e in errors[:20]:
            console.print(f"  row {e['row']}, {e['column'] or '-'}: {e['message']}")
        if len(errors) > 20:
            console.print(f"  … and {len(errors) - 20:,} more (use --errors-out FILE)")
    if job.status == "failed":
        raise typer.Exit(2)
    if errors:
        raise typer.Exit(1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
