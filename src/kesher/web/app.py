"""The FastAPI application: JSON API, UI pages and static files in one process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from kesher import __version__
from kesher.config import Settings, get_settings
from kesher.db import Database
from kesher.web import problems

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None, database: Database | None = None, *, with_worker: bool = False) -> FastAPI:
    settings = settings or get_settings()
    database = database or Database(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        consumer = sink = None
        if settings.mail_sink:
            from kesher.channels.sink import start_sink

            sink = start_sink(settings, database)
        if with_worker:
            from kesher.worker import start_consumer

            consumer = start_consumer(settings)
        yield
        if consumer is not None:
            consumer.stop(graceful=True)
        if sink is not None:
            sink.stop()

    app = FastAPI(
        title="Kesher", version=__version__, lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json", docs_url=f"{API_PREFIX}/docs", redoc_url=None,
    )
    app.state.settings = settings
    app.state.database = database
    app.add_middleware(SessionMiddleware, secret_key=settings.secret_key, session_cookie="kesher_session",
                       same_site="lax", https_only=settings.https)
    problems.install(app)
    _include_routers(app)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")
    return app


def serving_app() -> FastAPI:
    """The app as each process of `kesher serve --workers N` builds it, from the environment's settings."""
    from kesher.memory import settle

    app = create_app()
    settle()
    return app


def _include_routers(app: FastAPI) -> None:
    from kesher.accounts import views as account_views
    from kesher.channels import api as channels_api
    from kesher.channels import hooks as channel_hooks
    from kesher.contacts import api as contacts_api
    from kesher.contacts import views as contact_views
    from kesher.events import catalogue_api, catalogue_views, webhooks
    from kesher.events import api as events_api
    from kesher.events import tracking_api
    from kesher.events import views as event_views
    from kesher.messages import api as templates_api
    from kesher.messages import public as message_links
    from kesher.campaigns import api as campaigns_api
    from kesher.campaigns import views as campaign_views
    from kesher.channels import views as channel_views
    from kesher.segments import api as segments_api
    from kesher.segments import views as segment_views

    app.include_router(contacts_api.router, prefix=API_PREFIX)
    app.include_router(events_api.router, prefix=API_PREFIX)
    app.include_router(tracking_api.router, prefix=API_PREFIX)
    app.include_router(tracking_api.public_router)
    app.include_router(account_views.router)
    app.include_router(contact_views.router)
    app.include_router(catalogue_api.router, prefix=API_PREFIX)
    app.include_router(webhooks.router)
    app.include_router(catalogue_views.router)
    app.include_router(event_views.router)
    app.include_router(segments_api.router, prefix=API_PREFIX)
    app.include_router(segment_views.router)
    app.include_router(templates_api.router, prefix=API_PREFIX)
    app.include_router(channels_api.router, prefix=API_PREFIX)
    app.include_router(channel_hooks.router)
    app.include_router(message_links.router)
    app.include_router(campaigns_api.router, prefix=API_PREFIX)
    app.include_router(campaign_views.router)
    app.include_router(channel_views.router)
