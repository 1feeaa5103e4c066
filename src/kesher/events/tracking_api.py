"""Tracking over HTTP: the public routes a shop's visitors reach (`/t/...`), and the JSON API that
manages the sites (mounted at /api/v1).

The public routes take their JSON whatever the content type, so the snippet can send it as
text/plain: a "simple" request, which browsers send without a CORS preflight. Only the origins a
site lists get CORS headers back, and anything from another origin is refused before it is read.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from functools import lru_cache
from pathlib import Path as FilePath
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Path, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as ShapeError

from kesher.contacts.api import Region
from kesher.events import tracking
from kesher.events.models import TrackingSite
from kesher.events.schemas import IngestResult
from kesher.web.deps import ApiCaller, DbSession, api_caller, public_url, read_body
from kesher.web.problems import API_ERRORS, problem_doc

SCRIPT = FilePath(__file__).parents[1] / "web" / "static" / "kesher-track.js"
# Lets a page call kesher.track() and the rest before the script has loaded; the script replays the calls.
QUEUE_STUB = ('window.kesher=window.kesher||{q:[]};["page","track","identify","reset"].forEach(function(m){'
              'kesher[m]=kesher[m]||function(){kesher.q.push([m,[].slice.call(arguments)])}});')
PREFLIGHT_MAX_AGE = 7200  # the most Chromium keeps a preflight's answer

Model = TypeVar("Model", bound=BaseModel)


# The public routes ------------------------------------------------------------------------------

public_router = APIRouter(prefix="/t", tags=["tracking (public)"], responses={
    401: problem_doc("No tracking site has this write key"),
    403: problem_doc("The request's Origin is not one of the site's allowed origins"),
    413: problem_doc(f"The body is larger than {tracking.MAX_BODY_BYTES // 1024} KB"),
    422: problem_doc("Invalid input; `errors` names each field at fault"),
})
WriteKey = Annotated[str, Field(min_length=1, max_length=64, description="The site's public write key, `pk_...`")]
AnonymousId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{8,100}$",
                                   description="The visitor's id, kept by the snippet in the browser")]
Origin = Annotated[str, Header(description="Set by the browser; absent is refused like any other origin")]


class CollectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: WriteKey
    anonymous_id: AnonymousId
    events: Annotated[list[Any], Field(min_length=1, max_length=tracking.MAX_EVENTS_PER_CALL, description=(
        "Each `{type, ts, properties}`, checked on its own; types: page_view, cart_updated, cart_abandoned, "
        "form_submitted, custom:<name>"))]


class IdentifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: WriteKey
    anonymous_id: AnonymousId
    email: Annotated[str, Field(max_length=320)] | None = None
    phone: Annotated[str, Field(max_length=40, description="Used when no email is given")] | None = None


async def _body(request: Request) -> bytes:
    limit = tracking.MAX_BODY_BYTES
    return await read_body(request, limit, f"the body is larger than {limit // 1024} KB; send fewer events a call")


Body = Annotated[bytes, Depends(_body)]


def _parse(model: type[Model], body: bytes) -> Model:
    try:
        return model.model_validate_json(body)
    except ShapeError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None


def _cors(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def _documented(model: type[BaseModel]) -> dict[str, Any]:
    # The body is read by hand (see `_body`), so its schema is given to the OpenAPI document here.
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


@lru_cache(maxsize=1)
def _script() -> tuple[bytes, str]:
    body = SCRIPT.read_bytes()
    return body, f'"{hashlib.sha256(body).hexdigest()[:20]}"'


@public_router.get("/kesher.js", summary="The tracking snippet", response_class=Response,
                   responses={200: {"content": {"application/javascript": {}}}, 304: {"description": "Unchanged"}})
async def script(if_none_match: Annotated[str | None, Header()] = None) -> Response:
    body, etag = _script()
    # An hour in caches: a new version reaches every shop soon after an upgrade of Kesher.
    headers = {"Cache-Control": "public, max-age=3600", "ETag": etag, "X-Content-Type-Options": "nosniff"}
    if if_none_match == etag:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(body, media_type="application/javascript; charset=utf-8", headers=headers)


@public_router.post("/collect", summary="Behaviour events of one visitor, from the site's own pages",
                    openapi_extra=_documented(CollectIn))
def collect(body: Body, response: Response, session: DbSession, region: Region, origin: Origin = "") -> IngestResult:
    data = _parse(CollectIn, body)
    site = tracking.site_for(session, data.key, origin)
    result = tracking.collect(session, site, data.anonymous_id, data.events, region)
    response.headers.update(_cors(origin))
    return result


@public_router.post("/identify", summary="Name a visitor by email or phone; the visitor's history joins the contact",
                    description="Always 204 for a valid request, whether the contact existed or not.",
                    status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
                    openapi_extra=_documented(IdentifyIn))
def identify(body: Body, session: DbSession, region: Region, origin: Origin = "") -> Response:
    data = _parse(IdentifyIn, body)
    site = tracking.site_for(session, data.key, origin)
    tracking.identify(session, site, data.anonymous_id, email=data.email, phone=data.phone, region=region)
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=_cors(origin))


@public_router.options("/collect", include_in_schema=False)
@public_router.options("/identify", include_in_schema=False)
def preflight(session: DbSession, origin: Origin = "") -> Response:
    """A preflight carries no body, hence no write key: an origin any site lists may go on to the real request,
    which is checked against its own site."""
    if not tracking.origin_known(session, origin):
        return Response(status_code=status.HTTP_403_FORBIDDEN, headers={"Vary": "Origin"})
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers={
        **_cors(origin), "Access-Control-Allow-Methods": "POST", "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE)})


# The management API -----------------------------------------------------------------------------

router = APIRouter(tags=["tracking"], responses=API_ERRORS)
Caller = Annotated[ApiCaller, Depends(api_caller)]
SiteId = Annotated[int, Path(description="A tracking site id")]
Origins = Annotated[list[Annotated[str, Field(max_length=300)]], Field(
    max_length=tracking.MAX_ORIGINS, examples=[["https://shop.example.co.il", "https://www.shop.example.co.il"]],
    description="Where the site's pages are served from, each as scheme://host[:port]; only these may send")]


class SiteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=tracking.NAME_LIMIT, examples=["החנות"])]
    allowed_origins: Origins


class SitePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=tracking.NAME_LIMIT)] | None = None
    allowed_origins: Origins | None = Field(None, description="Replaces the list; an empty list pauses the site")


class SiteOut(BaseModel):
    id: int
    name: str
    write_key: str = Field(description="Public: it goes into the site's pages, and can only add behaviour events")
    allowed_origins: list[str]
    created_at: datetime
    snippet: str = Field(description="The HTML to put in every page of the site, before </head>")

    @classmethod
    def of(cls, site: TrackingSite, request: Request) -> SiteOut:
        snippet = (f"<script>{QUEUE_STUB}</script>\n"
                   f'<script src="{public_url(request, "/t/kesher.js")}" data-key="{site.write_key}" async></script>')
        return cls(id=site.id, name=site.name, write_key=site.write_key, allowed_origins=site.allowed_origins,
                   created_at=site.created_at, snippet=snippet)


@router.get("/tracking/sites", summary="The workspace's tracking sites")
def all_sites(request: Request, caller: Caller, session: DbSession) -> list[SiteOut]:
    return [SiteOut.of(s, request) for s in tracking.list_sites(session, caller.workspace_id)]


@router.post("/tracking/sites", summary="Add a site that sends behaviour with a public write key",
             status_code=status.HTTP_201_CREATED)
def create_site(body: SiteIn, request: Request, caller: Caller, session: DbSession) -> SiteOut:
    site = tracking.create_site(session, caller.workspace_id, body.name, body.allowed_origins, actor=caller.actor)
    return SiteOut.of(site, request)


@router.get("/tracking/sites/{site_id}", summary="A tracking site, with its write key and snippet")
def get_site(site_id: SiteId, request: Request, caller: Caller, session: DbSession) -> SiteOut:
    return SiteOut.of(tracking.get_site(session, caller.workspace_id, site_id), request)


@router.patch("/tracking/sites/{site_id}", summary="Rename a site or replace its allowed origins")
def update_site(site_id: SiteId, body: SitePatch, request: Request, caller: Caller, session: DbSession) -> SiteOut:
    site = tracking.update_site(session, caller.workspace_id, site_id, name=body.name, origins=body.allowed_origins,
                                actor=caller.actor)
    return SiteOut.of(site, request)


@router.delete("/tracking/sites/{site_id}", summary="Delete a site; its key stops working, its events stay",
               status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_site(site_id: SiteId, caller: Caller, session: DbSession) -> None:
    tracking.delete_site(session, caller.workspace_id, site_id, actor=caller.actor)
