"""Real service processes against one database: leases across replicas, and a poller killed
mid-run (SIGKILL) that loses nothing and counts nothing twice after a restart."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from service import db
from service.actions.connections import connect
from service.actions.documents import upsert_documents
from service.clock import Clock
from service.config import Settings
from service.store import tenants as tenants_store

from .conftest import TenantHandle
from .test_pollers import _sources


@pytest.fixture
async def fresh(
    database_url: str, settings: Settings
) -> AsyncIterator[tuple[str, asyncpg.Pool, Settings]]:
    """A database of its own, so no other test's connections get polled here."""
    name = f"recon_rep_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'create database "{name}"')
    url = urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))
    local = settings.model_copy(update={"database_url": url})
    pool = await db.connect_pool(local, url)
    async with pool.acquire() as conn:
        await db.migrate(conn)
    yield url, pool, local
    await pool.close()
    await admin.execute(f'drop database "{name}" with (force)')
    await admin.close()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def spawn(settings: Settings, tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(url: str) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
        env.update(
            DATABASE_URL=url,
            RECON_DATA_DIR=str(settings.data_dir),  # same settings key as the test's connections
            RECON_PORT=str(_port()),
            RECON_LEASE_SECONDS="3",
            RECON_SCHEDULER_TICK_SECONDS="0.2",
            RECON_LOG_LEVEL="WARNING",
        )
        log = open(tmp_path / f"serve-{len(procs)}.log", "w")  # noqa: SIM115 - lives with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


async def _tenant(pool: asyncpg.Pool, settings: Settings) -> TenantHandle:
    async with pool.acquire() as conn:
        row = await tenants_store.create(conn, f"r-{uuid.uuid4().hex[:8]}", "Replica test", "PROFI")
    return TenantHandle(id=row["id"], slug=row["slug"], settings=settings)


async def _wait_for(pool: asyncpg.Pool, sql: str, *args: object, within: float = 30) -> object:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        async with pool.acquire() as conn:
            value = await conn.fetchval(sql, *args)
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {sql}")


async def test_two_processes_poll_each_connection_once_per_interval(
    fresh: tuple[str, asyncpg.Pool, Settings], spawn: Callable[[str], subprocess.Popen[str]]
) -> None:
    url, pool, settings = fresh
    t = await _tenant(pool, settings)
    sources = _sources(settings, Clock())
    ids = []
    for i in range(4):
        row, _ = await connect(
            pool,
            t.scope(),
            sources,
            {
                "provider": "SANDBOX",
                "name": f"s{i}",
                "poll_interval_seconds": 10,
                "settings": {"delaySeconds": 0.3},
            },
        )
        ids.append(row["id"])
    a, b = spawn(url), spawn(url)
    # Two intervals' worth of polls (each connection twice), however slow the machine is.
    await _wait_for(
        pool,
        "select count(*) >= 8 from sync_runs where status = 'SUCCEEDED'",
        within=60,
    )
    for proc in (a, b):
        proc.send_signal(signal.SIGTERM)
    for proc in (a, b):
        proc.wait(timeout=30)
    async with pool.acquire() as conn:
        runs = await conn.fetch(
            "select connection_id, started_at, finished_at, status from sync_runs order by connection_id, started_at"
        )
        leases = await conn.fetchval(
            "select count(*) from bank_connections where lease_owner is not null"
        )
    assert leases == 0  # both gave their leases back on SIGTERM
    by_connection: dict[int, list[asyncpg.Record]] = {}
    for r in runs:
        by_connection.setdefault(r["connection_id"], []).append(r)
    assert set(by_connection) == set(ids)
    for cid, rs in by_connection.items():
        assert len(rs) >= 1, (cid, rs)
        assert all(r["status"] == "SUCCEEDED" for r in rs), rs
        for earlier, later in itertools.pairwise(rs):
            # Never two at once, and the next one only after the poll interval.
            assert later["started_at"] >= earlier["finished_at"]
            assert (later["started_at"] - earlier["started_at"]).total_seconds() >= 9.9
    assert sum(len(rs) for rs in by_connection.values()) >= 8


async def test_a_poller_killed_mid_run_loses_and_doubles_nothing(
    fresh: tuple[str, asyncpg.Pool, Settings], spawn: Callable[[str], subprocess.Popen[str]]
) -> None:
    url, pool, settings = fresh
    t = await _tenant(pool, settings)
    await upsert_documents(
        pool,
        t.scope(),
        [
            {"kind": "INVOICE", "number": f"K-{i:03d}", "total": str(100 + i), "currency": "HUF"}
            for i in range(30)
        ],
        max_batch=100,
    )
    row, _ = await connect(
        pool,
        t.scope(),
        _sources(settings, Clock()),
        {
            "provider": "SANDBOX",
            "name": "slow",
            "poll_interval_seconds": 10,
            "settings": {"delaySeconds": 2, "paymentsPerMinute": 60, "maxPerFetch": 100},
        },
    )
    cid = row["id"]
    first = spawn(url)
    await _wait_for(
        pool, "select count(*) from sync_runs where connection_id = $1 and status = 'RUNNING'", cid
    )
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval("select count(*) from transactions where connection_id = $1", cid)
            == 0
        )
        assert (
            await conn.fetchval("select sync_cursor from bank_connections where id = $1", cid)
            is None
        )
    second = spawn(url)
    await _wait_for(
        pool,
        "select count(*) from sync_runs where connection_id = $1 and status = 'SUCCEEDED'",
        cid,
        within=40,
    )
    second.send_signal(signal.SIGTERM)
    second.wait(timeout=30)
    async with pool.acquire() as conn:
        runs = await conn.fetch(
            "select status, error, inserted, duplicates from sync_runs where connection_id = $1 order by id",
            cid,
        )
        stored = await conn.fetchval(
            "select count(*) from transactions where connection_id = $1", cid
        )
        distinct = await conn.fetchval(
            "select count(distinct provider_transaction_id) from transactions where connection_id = $1",
            cid,
        )
        cursor = await conn.fetchval("select sync_cursor from bank_connections where id = $1", cid)
        received = await conn.fetchval(
            "select count(*) from events where tenant_id = $1 and type = 'PAYMENT_RECEIVED'", t.id
        )
        mismatched = await conn.fetchval(
            """select count(*) from documents d where d.tenant_id = $1 and d.paid_amount <> coalesce(
                 (select sum(a.amount) from allocations a where a.document_id = d.id and a.reversed_at is null), 0)""",
            t.id,
        )
    assert runs[0]["status"] == "FAILED" and "interrupted" in runs[0]["error"]
    succeeded = [r for r in runs if r["status"] == "SUCCEEDED"]
    assert stored == distinct == sum(r["inserted"] for r in succeeded) == cursor["seq"] > 0
    assert received == stored and mismatched == 0
