"""Jinja2 for UI pages: every page gets the user, workspace, language, direction, `_` and the CSRF token."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from kesher.web.deps import UiContext, csrf_token
from kesher.web.i18n import _, current_language, direction, ngettext, pick_language

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.add_extension("jinja2.ext.i18n")
templates.env.install_gettext_callables(_, ngettext, newstyle=True)  # type: ignore[attr-defined]


def local_time(value: datetime | None, timezone: str = "Asia/Jerusalem") -> str:
    """A stored UTC time as the workspace reads it (Israeli order: day/month/year)."""
    return value.astimezone(ZoneInfo(timezone)).strftime("%d/%m/%Y %H:%M") if value else ""


templates.env.filters["local_time"] = local_time


def render(request: Request, template: str, ctx: UiContext | None, status_code: int = 200, **data: Any) -> HTMLResponse:
    language = ctx.language if ctx else pick_language(request.session.get("language"))
    # Set here too: templates are rendered in the handler's thread, which may not see the dependency's value.
    current_language.set(language)
    context = {"ctx": ctx, "lang": language, "dir": direction(language), "csrf_token": csrf_token(request), **data}
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def is_partial(request: Request) -> bool:
    """True for an HTMX request that swaps part of a page (a history restore wants the whole page)."""
    return request.headers.get("HX-Request") == "true" and request.headers.get("HX-History-Restore-Request") != "true"


def redirect(target: str | None, default: str = "/contacts") -> RedirectResponse:
    """A 303 to `target` when it is a path on this site, else to `default` (no open redirects)."""
    safe = target if target and target.startswith("/") and not target.startswith(("//", "/\\")) else default
    return RedirectResponse(safe, status_code=303)
