"""`kesher campaign ...`: create, check, send, follow, pause, resume and cancel campaigns."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError as PydanticError
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kesher.errors import KesherError, ValidationError

app = typer.Typer(help="Email campaigns: one message to an audience of lists and segments.", no_args_is_help=True)

WorkspaceOption = Annotated[str, typer.Option("--workspace", "-w",
                                              help="Workspace id or slug (needed when there are several).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
FINAL = ("sent", "cancelled")


def _cli() -> Any:
    from kesher import cli  # the shared helpers of the command line: database, workspace, errors

    return cli


def _out(campaign: Any, session: Any) -> dict[str, Any]:
    from kesher.campaigns.api import campaign_out

    return campaign_out(session, campaign).model_dump(mode="json")


def _spec(path: Path) -> Any:
    from kesher.campaigns.schemas import CampaignIn

    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise KesherError("cannot read {path}: {reason}", "file", path=str(path),
                          reason=exc.strerror or str(exc)) from None
    except ValueError as exc:
        raise ValidationError("{path} is not JSON: {detail}", "file", path=str(path), detail=str(exc)) from None
    try:
        return CampaignIn.model_validate(data)
    except PydanticError as exc:
        first = exc.errors()[0]
        raise ValidationError("is not valid: {detail}", ".".join(str(p) for p in first["loc"]),
                              detail=first["msg"]) from None


@app.command("create")
def create(file: Annotated[Path, typer.Argument(help="A JSON file: name, sender_id, audience, variants "
                                                     "(see docs/campaigns.md).")],
           workspace: WorkspaceOption = "", as_json: JsonOption = False) -> None:
    """Create a draft campaign from a JSON file."""
    from kesher.campaigns import service

    cli = _cli()
    with cli._in_workspace(workspace) as (session, ws):
        campaign = service.create_campaign(session, ws, _spec(file), actor="cli")
        out = _out(campaign, session)
    if as_json:
        print(json.dumps(out, ensure_ascii=False))
    else:
        cli.console.print(f"campaign {out['id']} created: {escape(out['name'])} (draft)")


@app.command("list")
def list_(workspace: WorkspaceOption = "", as_json: JsonOption = False) -> None:
    """The workspace's campaigns, newest first, with their progress."""
    from kesher.campaigns import service

    cli = _cli()
    with cli._in_workspace(workspace) as (session, ws):
        rows = [(c, service.progress(session, c)) for c in service.list_campaigns(session, ws.id)]
        data = [{"id": c.id, "name": c.name, "status": c.status, "sent": p.sent, "total": p.total} for c, p in rows]
    if as_json:
        print(json.dumps(data, ensure_ascii=False))
        return
    for row in data:
        cli.console.print(f"{row['id']:>5}  {row['status']:<10} {row['sent']:>9,}/{row['total']:<9,} "
                          f"{escape(row['name'])}")


@app.command("checks")
def checks(campaign_id: int, workspace: WorkspaceOption = "", online: Annotated[bool, typer.Option(
        help="Also try every link over the network.")] = False, as_json: JsonOption = False) -> None:
    """The pre-send checks; errors forbid sending. Exits 1 when there is an error."""
    from kesher.campaigns import service

    cli = _cli()
    with cli._in_workspace(workspace) as (session, ws):
        found = service.findings(session, ws, service.get_campaign(session, ws.id, campaign_id), online=online)
    rows = [{"variant": v, "level": f.level, "code": f.code, "field": f.field,
             "message": f.message.format(**f.params)} for v, f in found]
    if as_json:
        print(json.dumps(rows, ensure_ascii=False))
    else:
        colours = {"error": "red", "warning": "yellow", "advice": "cyan"}
        for row in rows:
            cli.console.print(f"[{colours.get(row['level'], 'white')}]{row['level']:<8}[/] {row['variant'] or '-'} "
                              f"{row['field']}: {escape(row['message'])}")
        if not rows:
            cli.console.print("no findings")
    if any(r["level"] == "error" for r in rows):
        raise typer.Exit(1)


@app.command("send")
def send(campaign_id: int, workspace: WorkspaceOption = "",
         at: Annotated[datetime | None, typer.Option("--at", help="Schedule instead: a time in the workspace's "
                                                      "timezone, e.g. 2026-12-01T10:00.")] = None,
         follow: Annotated[bool, typer.Option("--follow", help="Show progress until the campaign is sent.")] = False,
         here: Annotated[bool, typer.Option("--here", help="Send from this process instead of the worker.")] = False,
         ) -> None:
    """Send a campaign now (or schedule it with --at); --follow shows its progress."""
    from kesher.campaigns import service
    from kesher.config import get_settings

    cli = _cli()
    with cli._in_workspace(workspace) as (session, ws):
        campaign = service.send(session, ws, campaign_id, send_at=at, actor="cli")
        status, workspace_id = campaign.status, ws.id
    settings = get_settings()
    if status == "scheduled":
        cli.console.print(f"campaign {campaign_id} scheduled for {at}")
    elif not here:
        from kesher.campaigns.tasks import start_pass

        start_pass(settings, campaign_id)
    if here:
        from kesher.campaigns.sending import send_campaign

        db = cli._database(settings)
        report = send_campaign(db, settings, campaign_id)
        cli.console.print(f"sent {report.sent:,}, deferred {report.deferred:,}, failed {report.failed:,}, "
                          f"skipped {report.skipped:,}")
    if follow:
        _follow(cli, settings, workspace_id, campaign_id)


def _follow(cli: Any, settings: Any, workspace_id: int, campaign_id: int) -> None:
    from kesher.campaigns import service

    db = cli._database(settings)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=cli.err) as bar:
        task = bar.add_task(f"campaign {campaign_id}", total=None)
        while True:
            with db.session() as session:
                campaign = service.get_campaign(session, workspace_id, campaign_id)
                p = service.progress(session, campaign)
            done = p.sent + p.failed + p.skipped + p.cancelled
            bar.update(task, completed=done, total=p.total or None,
                       description=f"campaign {campaign_id} {p.status}: {p.sent:,} sent, {p.failed:,} failed")
            if p.status in FINAL or (p.status == "testing" and not p.queued and not p.sending):
                break
            time.sleep(1)
    cli.console.print(f"{p.status}: {p.sent:,} sent, {p.failed:,} failed, {p.skipped:,} skipped, "
                      f"{p.cancelled:,} cancelled")


def _change(action: str, campaign_id: int, workspace: str) -> None:
    from kesher.campaigns import service

    cli = _cli()
    with cli._in_workspace(workspace) as (session, ws):
        campaign = getattr(service, action)(session, ws, campaign_id, actor="cli")
        status = campaign.status
    if action == "resume" and status == "sending":
        from kesher.campaigns.tasks import start_pass
        from kesher.config import get_settings

        start_pass(get_settings(), campaign_id)
    cli.console.print(f"campaign {campaign_id}: {status}")


@app.command("pause")
def pause(campaign_id: int, workspace: WorkspaceOption = "") -> None:
    """Pause sending; messages not yet handed over wait, and nobody is skipped on resume."""
    _change("pause", campaign_id, workspace)


@app.command("resume")
def resume(campaign_id: int, workspace: WorkspaceOption = "") -> None:
    """Resume a paused campaign."""
    _change("resume", campaign_id, workspace)


@app.command("cancel")
def cancel(campaign_id: int, workspace: WorkspaceOption = "") -> None:
    """Cancel: no further message of the campaign is sent."""
    _change("cancel", campaign_id, workspace)


@app.command("status")
def status(campaign_id: int, workspace: WorkspaceOption = "", as_json: JsonOption = False) -> None:
    """Messages by state and by variant."""
    from kesher.campaigns import service

    cli = _cli()
    with cli._in_workspace(workspace) as (session, ws):
        p = service.progress(session, service.get_campaign(session, ws.id, campaign_id))
    if as_json:
        print(p.model_dump_json())
    else:
        cli.console.print(f"{p.status}: {p.sent:,} sent of {p.total:,}; {p.queued:,} queued, {p.sending:,} being "
                          f"sent, {p.failed:,} failed, {p.skipped:,} skipped, {p.cancelled:,} cancelled")


@app.command("report")
def report(campaign_id: int, workspace: WorkspaceOption = "", as_json: JsonOption = False) -> None:
    """What the campaign did: delivered, opened, clicked, unsubscribed, complaints, revenue."""
    from kesher.campaigns import report as reports
    from kesher.campaigns import service

    cli = _cli()
    with cli._in_workspace(workspace) as (session, ws):
        result = reports.report(session, service.get_campaign(session, ws.id, campaign_id))
    if as_json:
        print(json.dumps(result.as_dict(), ensure_ascii=False))
        return
    for f in [result.total, *result.variants]:
        cli.console.print(_report_lines(f, result.attribution_days))
    for link in result.links:
        cli.console.print(f"  {link.clicks:,} clicks by {link.clickers:,}: {link.url}")


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _report_lines(f: Any, days: int) -> str:
    head = f"variant {f.variant}: " if f.variant else ""
    return (f"{head}{f.sent:,} sent, {f.delivered:,} delivered ({_percent(f.delivery_rate)}), {f.bounced:,} bounced "
            f"({f.hard_bounced:,} hard)\n"
            f"  opened by {f.openers:,} ({_percent(f.open_rate)}; {f.opens:,} opens), clicked by {f.clickers:,} "
            f"({_percent(f.click_rate)}; click-to-open {_percent(f.click_to_open_rate)})\n"
            f"  automatic: {f.machine_openers:,} machine-only openers, {f.machine_opens:,} opens, "
            f"{f.machine_clicks:,} clicks (not in the rates)\n"
            f"  {f.unsubscribed:,} unsubscribed, {f.complained:,} complaints; {f.orders:,} orders, "
            f"₪{f.revenue:,.2f} within {days} days")
