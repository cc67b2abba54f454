"""End to end through the database: ingest + match + allocate + events, via the store layer.

Prints payments/s for 20,000 payments in batches of 500 (each batch one transaction, as a
poller or an ingest call commits it), beside a raw asyncpg `copy_records_to_table` of the
same rows, each batch's copy right after the batch, in each of a few rounds (a fresh tenant
each), then the best of each over the rounds. Uses DATABASE_URL if set (a scratch database
is created on that server and dropped), else an embedded PostgreSQL in a temporary directory.

    python bench/bench_ingest.py [--payments 20000] [--batch 500] [--documents 20000]
                                 [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from service import db
from service.actions.ingest import check_records, store_transactions
from service.config import Settings
from service.domain.records import check_document
from service.runtime import tune_garbage_collector
from service.store import connections as connections_store
from service.store import documents as documents_store
from service.store import tenants as tenants_store


async def _scratch_url() -> tuple[str, str | None, str | None]:
    base = os.environ.get("DATABASE_URL")
    if not base:
        data = Path(tempfile.mkdtemp(prefix="recon-bench-"))
        return db.database_url(Settings(database_url=None, data_dir=data)), None, None
    name = f"recon_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base)
    await admin.execute(f'create database "{name}"')
    await admin.close()
    return urlunsplit(urlsplit(base)._replace(path=f"/{name}")), base, name


async def _backend_pids(pool: asyncpg.Pool) -> list[int]:
    """The server processes behind every connection of the pool."""
    held = [await pool.acquire() for _ in range(pool.get_max_size())]
    try:
        return sorted({c.get_server_pid() for c in held})
    finally:
        for c in held:
            await pool.release(c)


def _cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """CPU time of this process and of the given server processes (theirs is -1 where
    /proc cannot tell, e.g. off Linux or for a server on another machine).

    The servers' comes from schedstat, in nanoseconds: it is summed over batches of tens
    of milliseconds, where the 10 ms ticks of /proc/<pid>/stat would be too coarse.
    """
    total = 0.0
    try:
        for pid in pids:
            total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        total = -1.0
    return time.process_time(), total


def _payment(i: int, rng: random.Random) -> dict[str, object]:
    roll = rng.random()
    if roll < 0.6:
        text = f"Szamla E-BENCH-{i:06d} koszonom"
    elif roll < 0.8:
        text = f"payment E-BENCH-{i:06d}"
    elif roll < 0.9:
        text = f"E-BENCH-{i:06d}befizetes"  # glued: suggested only
    else:
        text = f"unknown reference {rng.randint(1, 10**9)}"
    return {
        "provider_transaction_id": f"bench-{i}",
        "booking_date": date(2026, 11, 20),
        "amount": Decimal(1000 + i % 500),
        "currency": "HUF",
        "counterparty_name": f"Payer {i % 997}",
        "remittance_information": text,
    }


_CONNECTION = {
    "provider": "PUSH",
    "name": "bench",
    "status": "ACTIVE",
    "poll_interval_seconds": 3600,
    "match_against": ["INVOICE", "PROFORMA", "ORDER"],
    "match_keys": [
        "DOCUMENT_NUMBER",
        "ORDER_NUMBER",
        "PARTNER_IDENTIFIER",
        "VARIABLE_SYMBOL",
        "SPECIFIC_SYMBOL",
        "PAYMENT_KEY",
    ],
    "settings_encrypted": b"x",
}
_RAW_COLUMNS = [
    "tenant_id",
    "connection_id",
    "provider_transaction_id",
    "booking_date",
    "amount",
    "currency",
    "counterparty_name",
    "remittance_information",
]


@dataclass
class Round:
    pipeline: float  # seconds
    raw: float
    matched: int
    allocations: int
    events: int
    python_cpu: float
    database_cpu: float  # -1 where it cannot be read


async def _round(pool: asyncpg.Pool, number: int, args: argparse.Namespace) -> Round:
    """A fresh tenant with open documents; the pipeline, then the raw copy of the same rows."""
    async with pool.acquire() as conn:
        tenant = await tenants_store.create(conn, f"bench-{number}", "Bench", "PROFI")
        assert tenant is not None
        tid = tenant["id"]
        connection = await connections_store.create(conn, tid, _CONNECTION)
        raw_connection = await connections_store.create(conn, tid, {**_CONNECTION, "name": "raw"})
        docs = []
        for i in range(args.documents):
            checked = check_document(
                i,
                {
                    "kind": "INVOICE",
                    "number": f"E-BENCH-{i:06d}",
                    "total": Decimal(1000 + i % 500),
                    "currency": "HUF",
                },
            )
            assert isinstance(checked, dict)
            checked.pop("partner_external_id")
            checked["partner_id"] = None
            docs.append(checked)
        for start in range(0, len(docs), 2000):
            await documents_store.upsert_many(conn, tid, docs[start : start + 2000])
        # Statistics for the documents, as a live database would have them.
        await conn.execute("analyze documents, document_keys, document_reference_lengths")
    rng = random.Random(7)
    payments = [_payment(i, rng) for i in range(args.payments)]
    records, problems = check_records(payments)
    assert not problems

    rows = [
        (
            tid,
            raw_connection["id"],
            r["provider_transaction_id"],
            r["booking_date"],
            r["amount"],
            r["currency"],
            r["counterparty_name"],
            r["remittance_information"],
        )
        for r in records
    ]
    backends = await _backend_pids(pool)
    readable = _cpu_seconds(backends)[1] >= 0
    matched = 0
    pipeline = raw = 0.0
    python_cpu = database_cpu = 0.0
    # Batch by batch, the pipeline and then the raw copy of the same rows: the machine's
    # speed drifts within seconds, and so it drifts under both alike.
    for start in range(0, len(records), args.batch):
        cpu = _cpu_seconds(backends)
        began = time.perf_counter()
        async with pool.acquire() as conn, conn.transaction():
            _, _, outcome = await store_transactions(
                conn, tid, connection, records[start : start + args.batch]
            )
            matched += outcome.matched
        pipeline += time.perf_counter() - began
        after = _cpu_seconds(backends)
        python_cpu += after[0] - cpu[0]
        database_cpu += after[1] - cpu[1]
        began = time.perf_counter()
        async with pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table(
                "transactions", records=rows[start : start + args.batch], columns=_RAW_COLUMNS
            )
        raw += time.perf_counter() - began

    async with pool.acquire() as conn:
        events = await conn.fetchval("select count(*) from events where tenant_id = $1", tid)
        allocations = await conn.fetchval(
            "select count(*) from allocations where tenant_id = $1", tid
        )
    return Round(
        pipeline=pipeline,
        raw=raw,
        matched=matched,
        allocations=allocations,
        events=events,
        python_cpu=python_cpu,
        database_cpu=database_cpu if readable else -1.0,
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--payments", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--documents", type=int, default=20_000)
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds, each on a fresh tenant: the machine's speed drifts, so the pipeline and"
        " the raw copy are timed batch by batch in each and the best of each is compared",
    )
    args = parser.parse_args()
    url, admin_url, scratch = await _scratch_url()
    pool = await db.connect_pool(Settings(database_url=url, pool_max_size=4), url)
    try:
        async with pool.acquire() as conn:
            await db.migrate(conn)
        tune_garbage_collector()  # as the served application runs
        n = args.payments
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
        print(
            f"open documents: {args.documents:,}; payments: {n:,} in batches of {args.batch};"
            f" event loop: {loop}"
        )
        rounds = []
        for number in range(1, args.repeat + 1):
            r = await _round(pool, number, args)
            rounds.append(r)
            cpu = (
                f"; CPU: this process {r.python_cpu:.2f} s, its PostgreSQL backends"
                f" {r.database_cpu:.2f} s"
                if r.database_cpu >= 0
                else ""
            )
            print(
                f"round {number}: ingest+match+allocate+events {n / r.pipeline:,.0f} payments/s"
                f" ({r.pipeline:.2f} s; matched {r.matched:,}, allocations {r.allocations:,},"
                f" events {r.events:,}){cpu};"
                f" raw copy {n / r.raw:,.0f} rows/s ({r.raw:.2f} s): {r.raw / r.pipeline:.1%}"
            )
        async with pool.acquire() as conn:
            scans = await conn.fetch(
                "select relname, seq_scan, seq_tup_read from pg_stat_user_tables"
                " where relname in ('transactions', 'documents', 'allocations', 'events')"
                " order by 1"
            )
        print(
            "sequential scans:",
            ", ".join(
                f"{r['relname']} {r['seq_scan']} ({r['seq_tup_read']:,} rows)" for r in scans
            ),
        )
        pipeline = min(r.pipeline for r in rounds)
        raw = min(r.raw for r in rounds)
        print(f"best of {len(rounds)}:")
        print(f"ingest+match+allocate+events: {n / pipeline:,.0f} payments/s ({pipeline:.2f} s)")
        print(f"raw copy_records_to_table:    {n / raw:,.0f} rows/s ({raw:.2f} s)")
        print(f"pipeline / raw copy: {raw / pipeline:.1%}")
        # Each round times both batch by batch, so its own ratio is the one a slow spell of
        # a shared machine disturbs least.
        ratios = sorted(r.raw / r.pipeline for r in rounds)
        print(
            f"pipeline / raw copy within a round: median {statistics.median(ratios):.1%}"
            f" (from {ratios[0]:.1%} to {ratios[-1]:.1%})"
        )
    finally:
        await pool.close()
        if admin_url and scratch:
            admin = await asyncpg.connect(admin_url)
            await admin.execute(f'drop database "{scratch}" with (force)')
            await admin.close()


if __name__ == "__main__":
    # The event loop the service runs on: uvicorn takes uvloop when it is installed.
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
