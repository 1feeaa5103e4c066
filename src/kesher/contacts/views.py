"""UI routes of contacts: the contacts table and export, the contact card, lists and tags, imports."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.datastructures import FormData

from kesher.accounts.models import AuditEntry
from kesher.accounts.service import audit_trail
from kesher.contacts import export, groups, importer, service
from kesher.contacts.fields import list_fields
from kesher.contacts.models import CHANNELS, CONSENT_STATUSES, CustomField
from kesher.contacts.normalize import IDENTITY_FIELDS, TEXT_LIMITS
from kesher.db import Database
from kesher.errors import Conflict, KesherError, NotFound, ValidationError
from kesher.segments.membership import members_of
from kesher.segments.service import list_segments
from kesher.web.deps import UiContext, csrf_protect, database, transaction, ui_context
from kesher.web.i18n import _
from kesher.web.pages import is_partial, redirect, render

PAGE_SIZE = 50
DEFAULT_COLUMNS = ("first_name", "last_name", "email", "phone", "city", "created_at")
EDITABLE = ("first_name", "last_name", "email", "phone", "external_id", "gender", "birthday", "city", "language",
            "timezone")
PLURAL = {"list": "lists", "tag": "tags"}


class PageRoute(APIRoute):
    """A route whose NotFound (another workspace's id, a deleted row) shows the 404 page, not JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                return await handler(request)
            except NotFound:
                return render(request, "not_found.html", None, status_code=404)

        return page


router = APIRouter(dependencies=[Depends(csrf_protect)], route_class=PageRoute, include_in_schema=False)


async def form_data(request: Request) -> FormData:
    """The posted form, for forms whose fields depend on the workspace (custom fields)."""
    return await request.form()


def field_labels() -> dict[str, str]:
    return {
        "first_name": _("First name"), "last_name": _("Last name"), "email": _("Email"), "phone": _("Phone"),
        "city": _("City"), "gender": _("Gender"), "birthday": _("Birthday"), "language": _("Language"),
        "timezone": _("Time zone"), "external_id": _("External ID"), "source": _("Source"),
        "created_at": _("Joined"), "updated_at": _("Last changed"),
    }


def _columns(session: Session, workspace_id: int) -> dict[str, str]:
    """Every column the table and exports can show: key -> header, built-in fields first."""
    labels = field_labels()
    available = {key: labels[key] for key in export.BUILTIN_COLUMNS}
    available.update({export.CUSTOM_PREFIX + f.key: f.label for f in list_fields(session, workspace_id)})
    return available


def _chosen(request: Request, workspace_id: int, available: dict[str, str]) -> list[export.Column]:
    saved = request.session.get("columns", {}).get(str(workspace_id)) or DEFAULT_COLUMNS
    keys = [key for key in saved if key in available] or DEFAULT_COLUMNS
    return [export.Column(key, available[key]) for key in keys]


@dataclass
class TableFilter(service.ContactFilter):
    """The table's filter: the service's, and the segment whose members it shows."""

    segment: int | None = None


def contact_filter(
    q: str = "", list_id: str = "", tag_id: str = "", city: str = "", consent: str = "", segment: str = "",
) -> TableFilter:
    """The table's filter from its query string; a blank select means "any"."""
    segment_id = int(segment) if segment.isdigit() else None
    return TableFilter(
        q=q.strip() or None, list_id=int(list_id) if list_id.isdigit() else None,
        tag_id=int(tag_id) if tag_id.isdigit() else None, city=city.strip() or None,
        consent=consent if consent in CHANNELS else None, segment=segment_id,
        where=[members_of(segment_id)] if segment_id is not None else [],
    )


def _query(flt: service.ContactFilter, **extra: str) -> str:
    # `where` holds SQL conditions, not text: the segment they come from is in the address instead.
    params = {k: v for k, v in vars(flt).items() if k != "where" and v not in (None, "", {})}
    params.update({k: v for k, v in extra.items() if v})
    return urlencode(params)


# Contacts table and export ----------------------------------------------------------------------


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/contacts", status_code=303)


@router.get("/contacts", response_class=HTMLResponse)
def contacts_page(
    request: Request, cursor: str = "", back: str = "", flt: service.ContactFilter = Depends(contact_filter),
    ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> HTMLResponse:
    ws = ctx.workspace.id
    available = _columns(session, ws)
    columns = _chosen(request, ws, available)
    try:
        contacts, next_cursor = service.search(session, ws, flt, cursor=cursor or None, limit=PAGE_SIZE)
    except ValidationError:  # a cursor mangled in the address bar: start again at the first page
        cursor, back = "", ""
        contacts, next_cursor = service.search(session, ws, flt, limit=PAGE_SIZE)
    fields = [f for f in list_fields(session, ws) if export.CUSTOM_PREFIX + f.key in {c.key for c in columns}]
    custom = service.custom_values(session, [c.id for c in contacts], fields)
    # Keyset pages have no numbers: `back` carries the cursors of the pages before this one ("-" is the
    # first page), so Previous costs no extra query.
    trail = [b for b in back.split(".") if b]
    data = {
        "flt": flt, "contacts": contacts, "columns": columns, "custom": custom,
        "total": service.count(session, ws, flt), "query": _query(flt),
        "next_query": _query(flt, cursor=next_cursor or "", back=".".join([*trail, cursor or "-"])) if next_cursor else None,
        "prev_query": _query(flt, cursor="" if trail[-1] == "-" else trail[-1], back=".".join(trail[:-1])) if trail else None,
    }
    if is_partial(request) and request.headers.get("HX-Target") == "results":
        response = render(request, "contacts/_results.html", ctx, **data)
    else:
        response = render(request, "contacts/index.html", ctx, available=available, chosen_keys=[c.key for c in columns],
                          lists=groups.all_with_counts(session, ws, "list"),
                          tags=groups.all_with_counts(session, ws, "tag"), segments=list_segments(session, ws), **data)
    response.headers["Vary"] = "HX-Request"
    return response


@router.post("/contacts/columns")
def choose_columns(
    request: Request, columns: list[str] = Form([]), next: str = Form(""),
    ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> RedirectResponse:
    available = _columns(session, ctx.workspace.id)
    saved = dict(request.session.get("columns", {}))
    saved[str(ctx.workspace.id)] = [key for key in available if key in columns] or list(DEFAULT_COLUMNS)
    request.session["columns"] = saved
    return redirect(next)


@router.get("/contacts/export.{fmt}")
def export_contacts(
    request: Request, fmt: Literal["csv", "xlsx"], flt: service.ContactFilter = Depends(contact_filter),
    ctx: UiContext = Depends(ui_context), session: Session = transaction, db: Database = Depends(database),
) -> Response:
    ws, zone = ctx.workspace.id, ctx.workspace.timezone
    columns = _chosen(request, ws, _columns(session, ws))
    name = f"contacts-{date.today().isoformat()}.{fmt}"
    if fmt == "csv":
        def body() -> Iterator[bytes]:
            # Its own session: the rows are read while the response streams, after the handler returned.
            with db.sessions() as reader:
                yield from export.csv_chunks(reader, ws, flt, columns, zone)

        return StreamingResponse(body(), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": f'attachment; filename="{name}"'})
    handle, path = tempfile.mkstemp(suffix=".xlsx", prefix="kesher-export-")
    os.close(handle)
    try:
        with db.sessions() as reader:
            export.write_xlsx(reader, ws, flt, columns, zone, path, title=_("Contacts"),
                              right_to_left=ctx.language == "he")
    except BaseException:
        os.unlink(path)
        raise
    return FileResponse(path, filename=name, background=BackgroundTask(os.unlink, path),
                        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


# Contact card -------------------------------------------------------------------------------------


def _form_values(detail: service.ContactDetail) -> dict[str, str]:
    """What the edit form shows for a stored contact, as the text each input holds."""
    values = {key: _text(getattr(detail.contact, key)) for key in EDITABLE}
    values.update({export.CUSTOM_PREFIX + key: _text(v) for key, v in detail.fields.items()})
    return values


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value.isoformat() if isinstance(value, date) else str(value)


def _posted(form: FormData, fields: list[CustomField]) -> dict[str, Any]:
    data: dict[str, Any] = {key: str(form.get(key, "")) for key in EDITABLE}
    data["fields"] = {f.key: str(form.get(export.CUSTOM_PREFIX + f.key, "")) for f in fields}
    return data


def _card(
    request: Request, ctx: UiContext, session: Session, contact_id: int, *, values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None, status_code: int = 200,
) -> HTMLResponse:
    ws = ctx.workspace.id
    detail = service.contact_detail(session, ws, contact_id)
    fields = list_fields(session, ws)
    return render(
        request, "contacts/card.html", ctx, status_code=status_code, detail=detail,
        values=values or _form_values(detail), errors=errors or {}, fields=fields, labels=field_labels(),
        history=_history(ctx, audit_trail(session, ws, "contact", contact_id), fields),
        list_names=[g.name for g, _n in groups.all_with_counts(session, ws, "list")],
        tag_names=[g.name for g, _n in groups.all_with_counts(session, ws, "tag")],
        channels=CHANNELS, statuses=CONSENT_STATUSES,
    )


def _problems(errors: list[KesherError], data: dict[str, Any], fields: list[CustomField]) -> dict[str, str]:
    """What to say next to each wrong field (the first problem of a field wins)."""
    by_key = {f.key: f for f in fields}
    return {e.field or "": _wording(e, data, by_key) for e in reversed(errors)}


def _wording(error: KesherError, data: dict[str, Any], fields: dict[str, CustomField]) -> str:
    """The problem in the reader's language; the service's own (English) words only when none fits."""
    name = error.field or ""
    if error.status == 409:
        return _("Another contact already has this value.")
    if name in IDENTITY_FIELDS and not any(data.get(k) for k in IDENTITY_FIELDS):
        return _("A contact needs an email, a phone or an external ID.")
    if name.startswith(export.CUSTOM_PREFIX):
        field = fields.get(name.removeprefix(export.CUSTOM_PREFIX))
        by_type = {"number": _("Enter a number."), "date": _("Enter a date, like 31/12/1990."),
                   "boolean": _("Choose yes or no."), "choice": _("Choose one of the options."),
                   "text": _("This text is too long.")}
        return by_type.get(field.type if field else "", error.text())
    by_field = {"email": _("Enter a valid email address, like dana@example.com."),
                "phone": _("Enter a valid phone number, like 050-1234567."),
                "birthday": _("Enter a real date of birth."),
                "timezone": _("Enter a known time zone, like Asia/Jerusalem."),
                "gender": _("Choose one of the options."), "language": _("Choose one of the options.")}
    if name in by_field:
        return by_field[name]
    if name in TEXT_LIMITS:
        return _("This is too long: at most %(limit)s characters.") % {"limit": TEXT_LIMITS[name]}
    return error.text()


def _history(ctx: UiContext, entries: list[AuditEntry], fields: list[CustomField]) -> list[dict[str, Any]]:
    """Audit entries as people read them: who, what, and each change with translated names and values."""
    actions = {"contact.created": _("Contact created"), "contact.updated": _("Contact updated"),
               "consent.changed": _("Consent changed")}
    labels = {**field_labels(), "channel": _("Channel"), "status": _("Status"), "ip": _("IP address"),
              **{export.CUSTOM_PREFIX + f.key: f.label for f in fields}}
    values = {"female": _("Female"), "male": _("Male"), "other": _("Other"), "he": _("Hebrew"), "en": _("English"),
              "granted": _("Granted"), "pending": _("Pending"), "denied": _("Denied"),
              "unsubscribed": _("Unsubscribed"), "sms": _("SMS"), "whatsapp": _("WhatsApp")}
    coded = {"gender", "language", "status", "channel"}

    def show(key: str, value: Any) -> str:
        if value is None or value == "":
            return "—"
        return values.get(value, str(value)) if key in coded else str(value)

    rows = []
    for entry in entries:
        flat: dict[str, Any] = {}
        for key, change in entry.changes.items():
            if isinstance(change, dict):  # custom fields given when the contact was created
                flat.update({export.CUSTOM_PREFIX + k: v for k, v in change.items()})
            else:
                flat[key] = change
        changes = [
            {"label": labels.get(key, key), "old": show(key, change[0]), "new": show(key, change[1])}
            if isinstance(change, list) and len(change) == 2 else {"label": labels.get(key, key), "new": show(key, change)}
            for key, change in flat.items()
        ]
        rows.append({"at": entry.at, "by": _("You") if entry.actor == ctx.actor else entry.actor,
                     "action": actions.get(entry.action, entry.action), "changes": changes})
    return rows


@router.get("/contacts/new", response_class=HTMLResponse)
def new_contact_page(
    request: Request, ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> HTMLResponse:
    return render(request, "contacts/new.html", ctx, values={}, errors={}, labels=field_labels(),
                  fields=list_fields(session, ctx.workspace.id))


@router.post("/contacts/new", response_class=HTMLResponse)
def create_contact(
    request: Request, form: FormData = Depends(form_data), ctx: UiContext = Depends(ui_context),
    session: Session = transaction,
) -> Response:
    ws, region = ctx.workspace.id, request.app.state.settings.default_phone_region
    fields = list_fields(session, ws)
    data = _posted(form, fields)
    errors = _problems(list(service.build_input(session, ws, 0, data, region).errors), data, fields)
    if not errors:
        try:
            outcome = service.save_contact(session, ws, data, actor=ctx.actor, region=region)
        except KesherError as exc:
            errors = _problems([exc], data, fields)
    if errors:
        session.rollback()
        return render(request, "contacts/new.html", ctx, status_code=422, values=dict(form), errors=errors,
                      labels=field_labels(), fields=fields)
    return redirect(f"/contacts/{outcome.contact_id}")


@router.get("/contacts/{contact_id}", response_class=HTMLResponse)
def contact_card(
    request: Request, contact_id: int, ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> HTMLResponse:
    return _card(request, ctx, session, contact_id)


@router.post("/contacts/{contact_id}", response_class=HTMLResponse)
def update_contact(
    request: Request, contact_id: int, form: FormData = Depends(form_data), ctx: UiContext = Depends(ui_context),
    session: Session = transaction,
) -> Response:
    ws, region = ctx.workspace.id, request.app.state.settings.default_phone_region
    service.get_contact(session, ws, contact_id)
    fields = list_fields(session, ws)
    data = _posted(form, fields)
    # Validate everything first, so every wrong field is marked at once, not only the first.
    errors = _problems(list(service.build_input(session, ws, 0, data, region).errors), data, fields)
    if not errors:
        try:
            service.update_contact(session, ws, contact_id, data, actor=ctx.actor, region=region)
        except KesherError as exc:
            errors = _problems([exc], data, fields)
    if errors:
        session.rollback()  # update_contact may have changed some attributes before it failed
        return _card(request, ctx, session, contact_id, values=dict(form), errors=errors, status_code=422)
    return redirect(f"/contacts/{contact_id}?saved=1")


@router.post("/contacts/{contact_id}/consent")
def change_consent(
    request: Request, contact_id: int, channel: str = Form(...), status: str = Form(...),
    ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> Response:
    service.set_consent(session, ctx.workspace.id, contact_id, channel, status, source="ui",
                        ip=request.client.host if request.client else None, actor=ctx.actor)
    return redirect(f"/contacts/{contact_id}#consent")


@router.post("/contacts/{contact_id}/delete")
def delete_contact(
    contact_id: int, ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> RedirectResponse:
    service.delete_contact(session, ctx.workspace.id, contact_id, actor=ctx.actor)
    return redirect("/contacts")


def _groups_block(request: Request, ctx: UiContext, session: Session, contact_id: int, error: str = "") -> Response:
    if not is_partial(request):
        return redirect(f"/contacts/{contact_id}")
    ws = ctx.workspace.id
    return render(request, "contacts/_groups.html", ctx, detail=service.contact_detail(session, ws, contact_id),
                  list_names=[g.name for g, _n in groups.all_with_counts(session, ws, "list")],
                  tag_names=[g.name for g, _n in groups.all_with_counts(session, ws, "tag")], group_error=error)


@router.post("/contacts/{contact_id}/{plural}")
def add_to_group(
    request: Request, contact_id: int, plural: Literal["lists", "tags"], name: str = Form(""),
    ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> Response:
    kind = plural.removesuffix("s")
    service.get_contact(session, ctx.workspace.id, contact_id)
    try:
        group = groups.get_or_create(session, ctx.workspace.id, kind, name, actor=ctx.actor)
    except ValidationError:
        return _groups_block(request, ctx, session, contact_id, _("Type a name first."))
    groups.add_contacts(session, ctx.workspace.id, kind, group.id, [contact_id], actor=ctx.actor)
    return _groups_block(request, ctx, session, contact_id)


@router.post("/contacts/{contact_id}/{plural}/{group_id}/remove")
def remove_from_group(
    request: Request, contact_id: int, plural: Literal["lists", "tags"], group_id: int,
    ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> Response:
    service.get_contact(session, ctx.workspace.id, contact_id)
    groups.remove_contacts(session, ctx.workspace.id, plural.removesuffix("s"), group_id, [contact_id], actor=ctx.actor)
    return _groups_block(request, ctx, session, contact_id)


# Lists and tags ---------------------------------------------------------------------------------


def _kind(request: Request) -> str:
    return "list" if request.url.path.startswith("/lists") else "tag"


def _groups_page(request: Request, ctx: UiContext, session: Session, error: str = "", status_code: int = 200) -> HTMLResponse:
    kind = _kind(request)
    topics = set(groups.topic_ids(ctx.workspace)) if kind == "list" else set()
    return render(request, "groups/index.html", ctx, status_code=status_code, kind=kind, plural=PLURAL[kind],
                  rows=groups.all_with_counts(session, ctx.workspace.id, kind), topics=topics, error=error)


def _group_error(kind: str, exc: KesherError) -> str:
    if exc.status == 409:
        return _("That name is taken.")
    return _("A name is required, at most %(limit)s characters.") % {"limit": groups.NAME_LIMIT[kind]}


@router.get("/lists", response_class=HTMLResponse)
@router.get("/tags", response_class=HTMLResponse)
def groups_page(request: Request, ctx: UiContext = Depends(ui_context), session: Session = transaction) -> HTMLResponse:
    return _groups_page(request, ctx, session)


@router.post("/lists", response_class=HTMLResponse)
@router.post("/tags", response_class=HTMLResponse)
def create_group(
    request: Request, name: str = Form(""), topic: bool = Form(False), ctx: UiContext = Depends(ui_context),
    session: Session = transaction,
) -> Response:
    kind = _kind(request)
    try:
        group = groups.create(session, ctx.workspace.id, kind, name, actor=ctx.actor)
    except (ValidationError, Conflict) as exc:
        session.rollback()
        return _groups_page(request, ctx, session, _group_error(kind, exc), exc.status)
    if kind == "list" and topic:
        groups.offer_as_topic(session, ctx.workspace.id, group.id, True, actor=ctx.actor)
    return redirect(f"/{PLURAL[kind]}")


@router.post("/lists/{group_id}/rename", response_class=HTMLResponse)
@router.post("/tags/{group_id}/rename", response_class=HTMLResponse)
def rename_group(
    request: Request, group_id: int, name: str = Form(""), ctx: UiContext = Depends(ui_context),
    session: Session = transaction,
) -> Response:
    kind = _kind(request)
    try:
        groups.rename(session, ctx.workspace.id, kind, group_id, name, actor=ctx.actor)
    except (ValidationError, Conflict) as exc:
        session.rollback()
        return _groups_page(request, ctx, session, _group_error(kind, exc), exc.status)
    return redirect(f"/{PLURAL[kind]}")


@router.post("/lists/{group_id}/topic")
def offer_list_as_topic(
    group_id: int, topic: bool = Form(False), ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> RedirectResponse:
    groups.offer_as_topic(session, ctx.workspace.id, group_id, topic, actor=ctx.actor)
    return redirect("/lists")


@router.post("/lists/{group_id}/delete")
@router.post("/tags/{group_id}/delete")
def delete_group(
    request: Request, group_id: int, ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> RedirectResponse:
    kind = _kind(request)
    groups.remove(session, ctx.workspace.id, kind, group_id, actor=ctx.actor)
    return redirect(f"/{PLURAL[kind]}")


# Imports ----------------------------------------------------------------------------------------

ERROR_PAGE = 200


@router.get("/imports", response_class=HTMLResponse)
def imports_page(request: Request, ctx: UiContext = Depends(ui_context), session: Session = transaction) -> HTMLResponse:
    return render(request, "imports/index.html", ctx, jobs=importer.list_imports(session, ctx.workspace.id))


def _new_import(request: Request, ctx: UiContext, session: Session, error: str = "", status_code: int = 200) -> HTMLResponse:
    return render(request, "imports/new.html", ctx, status_code=status_code, error=error,
                  lists=groups.all_with_counts(session, ctx.workspace.id, "list"))


@router.get("/imports/new", response_class=HTMLResponse)
def new_import_page(request: Request, ctx: UiContext = Depends(ui_context), session: Session = transaction) -> HTMLResponse:
    return _new_import(request, ctx, session)


@router.post("/imports", response_class=HTMLResponse)
def start_import(
    request: Request, file: UploadFile = File(...), list_name: str = Form(""), new_list: str = Form(""),
    ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> Response:
    settings = request.app.state.settings
    if not file.filename:
        return _new_import(request, ctx, session, _("Choose a CSV or Excel file."), 422)
    path = None
    try:
        path = importer.save_upload(settings, file.filename, file.file)
        job = importer.create_import(session, ctx.workspace.id, file.filename, path,
                                     list_name=new_list.strip() or list_name.strip() or None, mapping=None,
                                     actor=ctx.actor, settings=settings)
    except KesherError as exc:
        session.rollback()
        if path:
            os.unlink(path)
        return _new_import(request, ctx, session, exc.text(), 422)
    return redirect(f"/imports/{job.id}")


@router.get("/imports/{import_id}", response_class=HTMLResponse)
def import_page(
    request: Request, import_id: int, ctx: UiContext = Depends(ui_context), session: Session = transaction,
) -> HTMLResponse:
    job = importer.get_import(session, ctx.workspace.id, import_id)
    finished = job.status in ("done", "failed")
    errors = importer.import_errors(session, ctx.workspace.id, import_id, limit=ERROR_PAGE) if finished else []
    template = "imports/_progress.html" if is_partial(request) else "imports/detail.html"
    return render(request, template, ctx, job=job, errors=errors, more=len(errors) == ERROR_PAGE)


@router.get("/imports/{import_id}/errors", response_class=HTMLResponse)
def import_error_rows(
    request: Request, import_id: int, after: int = Query(0), ctx: UiContext = Depends(ui_context),
    session: Session = transaction,
) -> HTMLResponse:
    errors = importer.import_errors(session, ctx.workspace.id, import_id, after_id=after, limit=ERROR_PAGE)
    return render(request, "imports/_error_rows.html", ctx, job_id=import_id, errors=errors,
                  more=len(errors) == ERROR_PAGE)
