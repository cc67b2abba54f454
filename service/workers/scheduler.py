"""The poll scheduler: each process leases due connections (FOR UPDATE SKIP LOCKED) and
syncs them, so across replicas every connection is polled by exactly one process at a time.
A process that dies loses its leases when they run out. Stopping finishes the syncs in
flight and gives the leases back."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from contextlib import suppress

from asyncpg import Pool, Record

from ..clock import Clock
from ..config import Settings
from ..errors import Conflict, NotFound
from ..providers.base import Provider
from ..secrets import SettingsCipher
from ..store import connections as connections_store
from .consent import check_consents
from .sync import Syncer

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)

# Consents are checked this many ticks apart (they move in days, not seconds).
_CONSENT_EVERY = 30


class Scheduler:
    def __init__(
        self,
        pool: Pool,
        settings: Settings,
        cipher: SettingsCipher,
        providers: dict[str, Provider],
        clock: Clock,
    ) -> None:
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._pool = pool
        self._settings = settings
        self._providers = providers
        self._clock = clock
        self._syncer = Syncer(
            pool, cipher, providers, clock, self.owner, settings.sync_timeout_seconds
        )
        self._slots = asyncio.Semaphore(settings.sync_concurrency)
        self._running: set[asyncio.Task[Record]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name="recon-scheduler")

    async def stop(self, grace: float = 25.0) -> None:
        """Take no new work, let syncs in flight finish (bounded), release every lease."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with suppress(asyncio.CancelledError):
                await self._loop_task
        if self._running:
            _, pending = await asyncio.wait(self._running, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        async with self._pool.acquire() as conn:
            released = await connections_store.release_leases(conn, self.owner)
        log.info("scheduler stopped; released %d lease(s)", released)

    def wake(self) -> None:
        """Look for due work now (a connection was created or changed)."""
        self._wake.set()

    async def tick(self) -> int:
        """Claim what is due and start syncing it; returns how many syncs were started."""
        free = self._settings.sync_concurrency - len(self._running)
        if free <= 0 or self._stopping:
            return 0
        async with self._pool.acquire() as conn:
            claimed = await connections_store.claim_due(
                conn,
                self.owner,
                self._clock.now(),
                self._settings.lease_seconds,
                free,
                list(self._providers),
            )
        for row in claimed:
            task = asyncio.create_task(self._run(row), name=f"sync-{row['id']}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return len(claimed)

    async def _run(self, row: Record) -> Record:
        async with self._slots:
            return await self._syncer.run(row)

    async def _loop(self) -> None:
        ticks = 0
        while not self._stopping:
            try:
                await self.tick()
                if ticks % _CONSENT_EVERY == 0:
                    await check_consents(self._pool, self._clock.now())
            except Exception:  # a database blip must not end polling for good
                log.exception("scheduler tick failed; retrying")
            ticks += 1
            self._wake.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.scheduler_tick_seconds)

    async def sync_now(self, tenant_id: int, connection_id: int) -> Record:
        """Run one sync of the connection now, in this request; CONFLICT if one is running."""
        async with self._pool.acquire() as conn:
            current = await connections_store.by_id(conn, tenant_id, connection_id)
            if current is None:
                raise NotFound(f"connection {connection_id} not found")
            if current["provider"] not in self._providers:
                raise Conflict(
                    f"connection {connection_id} is a {current['provider']} connection: its"
                    " source delivers payments itself (ingestTransactions), nothing to poll"
                )
            if current["status"] != "ACTIVE":
                raise Conflict(
                    f"connection {connection_id} is {current['status']}; only active"
                    " connections sync"
                )
            row = await connections_store.claim_one(
                conn,
                tenant_id,
                connection_id,
                self.owner,
                self._clock.now(),
                self._settings.lease_seconds,
            )
        if row is None:
            raise Conflict(f"a sync of connection {connection_id} is already running")
        return await self._syncer.run(row)
