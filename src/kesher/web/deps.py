"""Request dependencies: the database session, the API caller's workspace, the UI user."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from kesher.accounts import service as accounts
from kesher.accounts.models import User, Workspace
from kesher.db import Database
from kesher.errors import AuthError, BodyTooLarge
from kesher.web.i18n import current_language, pick_language

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer ksr_...`")


def database(request: Request) -> Database:
    return request.app.state.database  # type: ignore[no-any-return]


def db_session(db: Database = Depends(database)) -> Iterator[Session]:
    """One transaction per request: committed when the handler returns, rolled back on any error."""
    with db.session() as session:
        yield session


# Function scope: the transaction commits when the handler returns, before the response is sent,
# so a client never hears "saved" for a write that then fails, and its next request sees the write.
transaction = Depends(db_session, scope="function")
DbSession = Annotated[Session, transaction]


@dataclass
class ApiCaller:
    workspace_id: int
    key_id: int

    @property
    def actor(self) -> str:
        return f"api_key:{self.key_id}"


def api_caller(
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer), session: Session = transaction,
) -> ApiCaller:
    if credentials is None:
        raise AuthError("send an API key as `Authorization: Bearer <key>`", "Authorization")
    key = accounts.authenticate_api_key(session, credentials.credentials)
    return ApiCaller(key.workspace_id, key.id)


@dataclass
class UiContext:
    """Who is looking at a UI page, in which workspace and language."""

    user: User
    workspace: Workspace
    workspaces: list[Workspace]
    language: str

    @property
    def actor(self) -> str:
        return f"user:{self.user.id}"


def _load_ui_context(request: Request, session: Session = transaction) -> UiContext:
    user_id = request.session.get("user_id")
    user = session.get(User, user_id) if user_id else None
    if user is None or not user.is_active:
        raise HTTPException(401, "login required")
    workspaces = accounts.user_workspaces(session, user.id)
    if not workspaces:
        raise HTTPException(403, "this user belongs to no workspace")
    chosen = next((w for w in workspaces if w.id == request.session.get("workspace_id")), workspaces[0])
    request.session["workspace_id"] = chosen.id
    language = pick_language(request.session.get("language"), user.language)
    return UiContext(user, chosen, workspaces, language)


async def ui_context(ctx: UiContext = Depends(_load_ui_context)) -> UiContext:
    """The page's user, workspace and language; unauthenticated is a 401 (the UI redirects to /login).

    The language is set here, in an async dependency, because a sync one runs in a copy of the
    request's context and a context variable set there never reaches the handler.
    """
    current_language.set(ctx.language)
    return ctx


CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


def csrf_token(request: Request) -> str:
    """The session's anti-forgery token, made on first use; every UI form sends it back."""
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return str(token)


async def csrf_protect(request: Request) -> None:
    """Reject a UI POST whose token (form field or HTMX header) is not the session's."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    sent = request.headers.get(CSRF_HEADER) or (await request.form()).get(CSRF_FIELD)
    expected = request.session.get("csrf")
    if not expected or not isinstance(sent, str) or not secrets.compare_digest(sent, str(expected)):
        raise HTTPException(403, "the form's security token is missing or stale; reload the page and try again")


async def read_body(request: Request, limit: int, too_large: str) -> bytes:
    """The body exactly as sent, refused unread when it declares more than `limit` bytes and cut off
    when it sends more; `too_large` says what the caller should do instead."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(too_large, "body")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(too_large, "body")
    return bytes(body)


def public_url(request: Request, path: str) -> str:
    """The full address of `path` as people and stores outside reach it: KESHER_PUBLIC_URL when set
    (behind a proxy the request's own host may be an internal one), else this request's address."""
    base = request.app.state.settings.public_url or str(request.base_url)
    return base.rstrip("/") + path
