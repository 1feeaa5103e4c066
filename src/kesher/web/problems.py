"""Errors as `application/problem+json` (RFC 9457), each naming the field at fault."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from kesher.errors import KesherError

MEDIA_TYPE = "application/problem+json"


class Problem(BaseModel):
    """An error (RFC 9457 problem details), naming the field at fault when there is one."""

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None
    errors: list[dict[str, str | None]] = Field(default_factory=list, description="[{field, message}]")


def problem_doc(description: str) -> dict[str, Any]:
    """An error response for the OpenAPI document: described, with the Problem schema, sent as problem+json."""
    return {"description": description, "model": Problem,
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


# The errors every route under /api/v1 can answer.
API_ERRORS: dict[int | str, dict[str, Any]] = {
    401: problem_doc("No API key, or an invalid or revoked one"),
    404: problem_doc("Not found in this workspace"),
    422: problem_doc("Invalid input; `errors` names each field at fault"),
}


def problem(status: int, title: str, detail: str, errors: list[dict[str, Any]] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE)


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(KesherError)
    async def kesher_error(request: Request, exc: KesherError) -> JSONResponse:
        title = type(exc).__name__.replace("Error", " error").strip()
        errors = [{"field": exc.field, "message": exc.message}] if exc.field else None
        return problem(exc.status, title, str(exc), errors, field=exc.field)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _loc(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem(422, "Invalid request", detail, errors, field=errors[0]["field"] if errors else None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        if exc.status_code == 401 and not request.url.path.startswith("/api/"):
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return problem(exc.status_code, "HTTP error", str(exc.detail))
