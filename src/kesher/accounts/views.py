"""UI routes of accounts: log in and out, switch workspace, switch language."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from kesher.accounts import service
from kesher.errors import AuthError
from kesher.web.deps import UiContext, csrf_protect, transaction, ui_context
from kesher.web.i18n import LANGUAGES
from kesher.web.pages import redirect, render

router = APIRouter(dependencies=[Depends(csrf_protect)], include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "") -> HTMLResponse:
    return render(request, "accounts/login.html", None, next=next, email="", error=False)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request, email: str = Form(""), password: str = Form(""), next: str = Form(""),
    session: Session = transaction,
) -> Response:
    try:
        user = service.authenticate_user(session, email, password)
    except AuthError:
        return render(request, "accounts/login.html", None, status_code=401, next=next, email=email, error="password")
    if not service.user_workspaces(session, user.id):
        return render(request, "accounts/login.html", None, status_code=403, next=next, email=email,
                      error="no_workspace")
    language = request.session.get("language") or user.language
    # A new session on every login, so a token planted before login is worth nothing after it.
    request.session.clear()
    request.session.update({"user_id": user.id, "language": language})
    return redirect(next)


@router.post("/logout")
def logout(request: Request) -> RedirectResponse:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@router.post("/workspace")
def switch_workspace(
    request: Request, workspace_id: int = Form(...), ctx: UiContext = Depends(ui_context),
) -> RedirectResponse:
    if any(w.id == workspace_id for w in ctx.workspaces):
        request.session["workspace_id"] = workspace_id
    # The page on screen belongs to the old workspace, so start again at its contacts.
    return redirect("/contacts")


@router.post("/language")
def switch_language(request: Request, language: str = Form(...), next: str = Form("")) -> RedirectResponse:
    if language in LANGUAGES:
        request.session["language"] = language
    return redirect(next)
