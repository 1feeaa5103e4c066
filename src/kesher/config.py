"""Settings, read once from the environment and an optional `.env` file.

Every setting is `KESHER_<NAME>`; nothing else in the code reads the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


DEFAULT_SECRET = "change-me-in-production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KESHER_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///var/kesher.db"
    queue: str = Field("sqlite", description="Huey backend: sqlite, redis or immediate")
    queue_path: str = "var/queue.db"
    queue_name: str = Field("kesher", description="the Redis queue's name: installations sharing one Redis "
                                                  "need different names")
    redis_url: str = "redis://127.0.0.1:6379/0"
    secret_key: str = DEFAULT_SECRET
    https: bool = Field(False, description="served over HTTPS: session cookies are then sent over HTTPS only")
    public_url: str = Field("", description="the address people and stores reach Kesher by, e.g. "
                                            "https://kesher.example.co.il; default: the address of each request")
    default_timezone: str = "Asia/Jerusalem"
    default_language: str = "he"
    default_phone_region: str = "IL"
    import_batch_size: int = Field(0, ge=0, description="rows an import writes per transaction; 0 = by database")
    import_processes: int = Field(-1, description="processes that check rows of big imports; -1 = automatic")
    import_dir: str = "var/imports"
    lifecycle_cron: str = Field("0 * * * *", description="when stages, RFM and engagement are refreshed "
                                "(cron: minute hour day month weekday)")
    # A quarter past, so the hour's lifecycle refresh (stages that only time moves) has landed.
    segments_cron: str = Field("15 * * * *", description="when every segment is re-evaluated in full, which moves "
                               "the members that only time moves (cron: minute hour day month weekday)")
    # Outgoing mail: the SMTP server (relay or provider) every email goes through.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_security: str = Field("none", description="none, starttls or tls")
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_connections: int = Field(8, description="SMTP connections each worker process keeps open")
    smtp_timeout: float = 30.0
    # The local mail sink: catches every mail on smtp_port and shows it in the UI (`make demo`).
    mail_sink: bool = Field(False, description="run the local mail sink in the web process")
    # Bounces (DSNs) arrive by SMTP here; 0 = not listening. Return-Path addresses use bounce_domain.
    bounce_port: int = 0
    bounce_domain: str = Field("", description="domain of the Return-Path (bounces+<token>@domain); "
                                                "default: each sender's own domain")
    # Campaign sending: messages a worker claims at a time, how long a claim lasts before another worker
    # may take the messages over (a worker that died), and the first back-off after a temporary failure.
    send_batch: int = Field(200, ge=1, le=5000)
    send_lease_seconds: float = Field(300, gt=0)
    send_retry_seconds: float = Field(60, gt=0)
    send_passes: int = Field(1, ge=1, le=64, description="workers that share one campaign at a time; set it to the "
                                                         "number of worker processes (PostgreSQL only)")
    host: str = "127.0.0.1"
    port: int = 8000
    # Set by tests that must fail instead of skipping when PostgreSQL is missing.
    ci: bool = Field(False, validation_alias="CI")
    test_postgres_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

    def ensure_var_dirs(self) -> None:
        for path in (self.queue_path, self.import_dir + "/x"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        if self.database_url.startswith("sqlite:///"):
            Path(self.database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    return Settings()
