"""Settings from the environment (`DATABASE_URL`, `RECON_*`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECON_", extra="ignore")

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "RECON_DATABASE_URL")
    )
    data_dir: Path = Path(".recon")
    host: str = "127.0.0.1"
    port: int = 8000
    jwt_secret: str | None = None
    jwks_url: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    token_ttl_seconds: int = 30 * 24 * 3600
    # AES-256-GCM key for connection settings, base64; generated into the data dir when unset.
    encryption_key: str | None = None
    pool_min_size: int = 1
    pool_max_size: int = 10
    max_page_size: int = 200
    max_query_depth: int = 12
    max_batch_size: int = 1000
    max_upload_bytes: int = 10 * 1024 * 1024
    graphiql: bool = True
    # How far back `upsertDocuments` re-examines unmatched payments.
    rematch_window_days: int = 90
    log_level: str = "INFO"
    # Where users reach this service (consent redirects); defaults to host and port.
    public_url: str | None = None
    # Pollers: how many syncs run at once in this process, how long a lease lasts, and how
    # often the scheduler looks for due connections.
    sync_concurrency: int = 4
    lease_seconds: int = 120
    scheduler_tick_seconds: float = 1.0
    sync_timeout_seconds: float = 60.0
    workers: bool = True
    # Offer the simulated bank (SANDBOX connections).
    sandbox: bool = True
    # "console" prints spans; unset leaves tracing to a provider the deployment installs.
    tracing: str | None = None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
