"""Jinja2 for UI pages: every page gets the user, workspace, language, direction and `_`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from kesher.web.deps import UiContext
from kesher.web.i18n import _, current_language, direction, ngettext

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.add_extension("jinja2.ext.i18n")
templates.env.install_gettext_callables(_, ngettext, newstyle=True)  # type: ignore[attr-defined]


def render(request: Request, template: str, ctx: UiContext | None, status_code: int = 200, **data: Any) -> HTMLResponse:
    language = ctx.language if ctx else current_language.get()
    context = {"ctx": ctx, "lang": language, "dir": direction(language), **data}
    return templates.TemplateResponse(request, template, context, status_code=status_code)
