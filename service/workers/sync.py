"""One sync of one connection: fetch from the source, store and match what came, advance
the cursor, all in one transaction; a failure is recorded and backed off, never raised."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from datetime import timedelta

from asyncpg import Pool, Record

from ..actions.connections import settings_context
from ..actions.ingest import check_records, store_transactions
from ..clock import Clock
from ..providers.base import DocumentHint, FetchRequest, Provider, ProviderError
from ..secrets import SettingsCipher
from ..store import connections as connections_store
from ..store import documents as documents_store
from ..store import events as events_store
from ..store import sync_runs as sync_runs_store
from ..telemetry import tracer

__all__ = ["LeaseLost", "Syncer", "backoff"]

log = logging.getLogger(__name__)

_HINTS = 200
_MAX_BACKOFF = timedelta(hours=1)


class LeaseLost(Exception):
    """Another replica took the connection over (our lease ran out); what we fetched is
    dropped, the new holder fetches it again from the stored cursor."""


def backoff(
    failures: int, interval: int, retry_after: float | None, rng: random.Random
) -> timedelta:
    """Exponential from a short first retry, capped, with ±20 % jitter so replicas and
    connections that failed together do not retry together."""
    base = min(float(interval), 30.0) * 2 ** max(0, failures - 1)
    cap = max(float(interval), _MAX_BACKOFF.total_seconds())
    delay = min(base, cap) * rng.uniform(0.8, 1.2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return timedelta(seconds=delay)


class Syncer:
    def __init__(
        self,
        pool: Pool,
        cipher: SettingsCipher,
        providers: dict[str, Provider],
        clock: Clock,
        owner: str,
        timeout: float = 60.0,
    ) -> None:
        self._pool = pool
        self._cipher = cipher
        self._providers = providers
        self._clock = clock
        self._owner = owner
        self._timeout = timeout
        self._rng = random.Random()

    async def run(self, claimed: Record) -> Record:
        """Sync a connection this process holds the lease of; returns the SyncRun row."""
        connection_id, tenant_id = claimed["id"], claimed["tenant_id"]
        started = self._clock.now()
        async with self._pool.acquire() as conn:
            await sync_runs_store.abandon_running(conn, connection_id, started)
            run = await sync_runs_store.start(conn, tenant_id, connection_id, started)
        try:
            with tracer.start_as_current_span(f"sync {claimed['provider']}") as span:
                span.set_attribute("recon.connection_id", connection_id)
                return await self._sync(claimed, run["id"])
        except LeaseLost:
            log.warning(
                "connection %s: lease lost during sync; the new holder syncs it", connection_id
            )
            return await self._close_run(run["id"], "FAILED", error="lease lost to another process")
        except Exception as exc:  # the poller never dies: every failure becomes a record
            message = _describe(exc)
            if not isinstance(exc, ProviderError | TimeoutError):
                ref = uuid.uuid4().hex[:12]
                log.exception("connection %s: sync failed (ref %s)", connection_id, ref)
                message = f"internal error (ref {ref}); the operators have it in the log"
            return await self._fail(claimed, run["id"], message, getattr(exc, "retry_after", None))

    async def _sync(self, claimed: Record, run_id: int) -> Record:
        connection_id, tenant_id = claimed["id"], claimed["tenant_id"]
        provider = self._providers[claimed["provider"]]
        settings = json.loads(
            self._cipher.decrypt(
                bytes(claimed["settings_encrypted"]),
                settings_context(tenant_id, claimed["provider"], connection_id),
            )
        )
        hints: list[DocumentHint] = []
        if provider.wants_documents:
            async with self._pool.acquire() as conn:
                hints = [
                    DocumentHint(**dict(r))
                    for r in await documents_store.open_hints(conn, tenant_id, _HINTS)
                ]
        now = self._clock.now()
        request = FetchRequest(connection_id, settings, claimed["sync_cursor"], now, hints)
        result = await asyncio.wait_for(provider.fetch(request), self._timeout)
        records, problems = check_records(result.records)
        async with self._pool.acquire() as conn, conn.transaction():
            locked = await connections_store.lock_leased(conn, connection_id, self._owner)
            if locked is None:
                raise LeaseLost
            new, _, outcome = await store_transactions(conn, tenant_id, locked, records)
            rejected = "; ".join(p.describe() for p in problems[:10]) or None
            if rejected and len(problems) > 10:
                rejected += f"; and {len(problems) - 10} more"
            await connections_store.finish_sync(
                conn,
                connection_id,
                {
                    "cursor": result.cursor,
                    "last_sync_at": now,
                    "next_sync_at": now + timedelta(seconds=locked["poll_interval_seconds"]),
                    "last_error": f"rejected records: {rejected}" if rejected else None,
                    "failure_count": 0,
                },
            )
            return await sync_runs_store.finish(
                conn,
                run_id,
                {
                    "status": "SUCCEEDED",
                    "finished_at": self._clock.now(),
                    "fetched": len(result.records),
                    "inserted": len(new),
                    "duplicates": len(records) - len(new),
                    "matched": outcome.matched,
                    "error": f"rejected records: {rejected}" if rejected else None,
                },
            )

    async def _fail(
        self, claimed: Record, run_id: int, message: str, retry_after: float | None
    ) -> Record:
        failures = claimed["failure_count"] + 1
        now = self._clock.now()
        delay = backoff(failures, claimed["poll_interval_seconds"], retry_after, self._rng)
        async with self._pool.acquire() as conn, conn.transaction():
            if await connections_store.lock_leased(conn, claimed["id"], self._owner) is not None:
                await connections_store.finish_sync(
                    conn,
                    claimed["id"],
                    {"next_sync_at": now + delay, "last_error": message, "failure_count": failures},
                )
            await events_store.append_many(
                conn,
                claimed["tenant_id"],
                [
                    {
                        "type": "SYNC_FAILED",
                        "connection_id": claimed["id"],
                        "payload": {"error": message},
                    }
                ],
            )
            return await sync_runs_store.finish(
                conn, run_id, {"status": "FAILED", "finished_at": now, "error": message}
            )

    async def _close_run(self, run_id: int, status: str, *, error: str) -> Record:
        async with self._pool.acquire() as conn:
            return await sync_runs_store.finish(
                conn, run_id, {"status": status, "finished_at": self._clock.now(), "error": error}
            )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "the source did not answer in time"
    return (str(exc) or type(exc).__name__)[:500]
