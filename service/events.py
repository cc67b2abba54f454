"""Live events for this process: one LISTEN connection, one outbox read per tenant, fan-out.

Every replica runs one `EventHub`. It holds a dedicated connection that LISTENs on
`recon_events`; a notification (payload: tenant id) only says "this tenant may have new rows".
On each wake-up, and on a timer that covers lost notifications, the hub reads the new rows of
each tenant that has subscribers here, once per tenant, and offers them to every local
subscriber of that tenant through a bounded queue. A read stopped by the outbox's ordering
cut (store/events.py) is repeated as soon as PostgreSQL's oldest running writer has moved
past the held row, which the hub checks with one query for all tenants. A subscriber whose
queue is full is dropped with `SubscriberOverrun`, so one slow client never stalls the
others; it resumes from its last cursor.

A subscriber with a cursor replays from the table, joins (from then on every new row reaches
its queue), reads from the table whatever was committed between its replay and the hub's
position, then takes live rows, dropping any id it has already delivered: no gap, no
duplicate (`EventHub.stream`). Replaying the bulk before joining keeps a long replay from
filling the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from asyncpg import Pool, Record

from .store import events as events_store

__all__ = [
    "Delivery",
    "EventHub",
    "HubStats",
    "HubStopped",
    "StreamEnded",
    "SubscriberOverrun",
]

log = logging.getLogger(__name__)

# While a read is held back by the ordering cut, how often the hub asks PostgreSQL whether
# the older writer has finished (one query for all tenants; a commit that releases the rows
# need not notify, it may write no events).
_HELD_PROBE = 0.01
# A subscriber's own catch-up read that is held back retries on a backoff (a rare path).
_HELD_RETRY_MIN = 0.005
_HELD_RETRY_MAX = 0.1
_RECONNECT_MIN = 0.1
_RECONNECT_MAX = 5.0
# How often an idle LISTEN connection proves it is still alive (a silent network drop
# would otherwise leave the hub deaf until the next poll).
_LISTENER_CHECK = 15.0


def _set_on_close(event: asyncio.Event, _conn: object) -> None:
    event.set()


class StreamEnded(Exception):
    """The live stream ended for one subscriber; `last_id` is where it should resume."""

    def __init__(self, last_id: int | None) -> None:
        super().__init__(last_id)
        self.last_id = last_id


class SubscriberOverrun(StreamEnded):
    """The subscriber fell behind by more than its queue holds and was dropped."""


class HubStopped(StreamEnded):
    """The process is shutting down (or the hub is not running)."""


@dataclass(frozen=True, slots=True, eq=False)
class Delivery:
    """One outbox row on its way to a subscriber.

    `memo` is shared by everything delivered from the same read (for the hub: every local
    subscriber of the tenant), so the API can load related rows once per read, not once per
    subscriber.
    """

    id: int
    type: str
    row: Record
    memo: dict[str, Any]


@dataclass(slots=True)
class HubStats:
    """Counters for metrics and tests."""

    notifications: int = 0
    reads: int = 0
    delivered: int = 0
    overruns: int = 0
    reconnects: int = 0


class _Subscriber:
    __slots__ = ("ended", "live", "queue", "tenant_id", "types")

    def __init__(self, tenant_id: int, types: frozenset[str] | None, queue_size: int) -> None:
        self.tenant_id = tenant_id
        self.types = types
        self.queue: asyncio.Queue[Delivery | None] = asyncio.Queue(maxsize=max(1, queue_size))
        self.ended: type[StreamEnded] | None = None
        # Past the replay: from here on every new row reaches this subscriber.
        self.live = False

    def wants(self, kind: str) -> bool:
        return self.types is None or kind in self.types

    def end(self, reason: type[StreamEnded]) -> None:
        """Stop this subscriber: forget what is queued and wake it so it raises `reason`."""
        if self.ended is not None:
            return
        self.ended = reason
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


@dataclass(eq=False)
class _Tenant:
    subscribers: set[_Subscriber] = field(default_factory=set)
    # Every row above this id reaches each registered subscriber through its queue;
    # None until the first subscriber has fixed it.
    position: int | None = None
    init_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class EventHub:
    """Per-process fan-out of the event outbox to live subscribers.

    `queue_size` (events a subscriber may fall behind before it is dropped) is read when a
    subscriber joins, so it can be tuned on a running hub.
    """

    def __init__(
        self,
        pool: Pool,
        dsn: str,
        *,
        # Above the events of one maximal ingest batch (1,000 payments make up to ~3,000), so a
        # subscriber that keeps up is never dropped for a burst; entries are shared references.
        queue_size: int = 5000,
        poll_interval: float = 1.0,
        page_size: int = 500,
        max_parallel_reads: int = 4,
        channel: str = events_store.CHANNEL,
    ) -> None:
        self.queue_size = queue_size
        self.stats = HubStats()
        self._pool = pool
        self._dsn = dsn
        self._poll_interval = poll_interval
        self._page_size = page_size
        self._read_slots = asyncio.Semaphore(max_parallel_reads)
        self._replay_slots = asyncio.Semaphore(max_parallel_reads)
        self._channel = channel
        self._tenants: dict[int, _Tenant] = {}
        self._dirty: set[int] = set()
        # Tenants whose last read stopped at a held row -> that row's transaction id.
        self._held: dict[int, int] = {}
        self._reading: set[int] = set()
        self._again: set[int] = set()
        self._read_tasks: set[asyncio.Task[None]] = set()
        self._poll_now = False
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._listener_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, connect_timeout: float = 5.0) -> None:
        """Start listening and reading; waits briefly for the first LISTEN to be in place."""
        if self._running:
            return
        self._running = True
        self._tasks = [
            asyncio.create_task(self._listen_forever(), name="events-listen"),
            asyncio.create_task(self._read_forever(), name="events-read"),
        ]
        try:
            await asyncio.wait_for(self._listener_ready.wait(), connect_timeout)
        except TimeoutError:
            # Not fatal: the listener keeps retrying and the timer reads meanwhile.
            log.warning("event listener not connected after %.0f s; retrying", connect_timeout)

    async def stop(self) -> None:
        """End every subscription (they raise HubStopped) and close the LISTEN connection."""
        if not self._running:
            return
        self._running = False
        for state in self._tenants.values():
            for sub in state.subscribers:
                sub.end(HubStopped)
        self._tenants.clear()
        tasks = [*self._tasks, *self._read_tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    @property
    def running(self) -> bool:
        return self._running

    @property
    def subscriber_count(self) -> int:
        return sum(len(state.subscribers) for state in self._tenants.values())

    def live_count(self, tenant_id: int | None = None) -> int:
        """Subscribers (of one tenant, or all) that every row committed from now on reaches."""
        states = self._tenants.values() if tenant_id is None else [self._tenants.get(tenant_id)]
        return sum(sub.live for state in states if state for sub in state.subscribers)

    @property
    def listener_pid(self) -> int | None:
        """Backend pid of the LISTEN connection, None while disconnected."""
        conn = self._listener
        if conn is None or conn.is_closed():
            return None
        return int(conn.get_server_pid())

    # -- subscribing -----------------------------------------------------------------------

    async def stream(
        self, tenant_id: int, after: int | None, types: Iterable[str] | None = None
    ) -> AsyncGenerator[Delivery, None]:
        """The tenant's events after `after` (None: from now on), oldest first, then live.

        Raises SubscriberOverrun or HubStopped (with the last delivered id) when the live
        part ends; runs until the caller stops iterating otherwise.
        """
        if not self._running:
            raise HubStopped(after)
        wanted = frozenset(types) if types else None
        type_list = sorted(wanted) if wanted else None
        last = after
        if after is not None:
            # Catch up from the table before joining, so a long replay never fills the queue.
            position = after
            while True:
                page = await self._read(tenant_id, position, type_list)
                memo: dict[str, Any] = {}
                for row in page.rows:
                    position = last = row["id"]
                    yield Delivery(row["id"], row["type"], row, memo)
                if page.held or len(page.rows) < self._page_size:
                    break
            if not self._running:
                raise HubStopped(last)
        sub = _Subscriber(tenant_id, wanted, self.queue_size)
        state = self._tenants.setdefault(tenant_id, _Tenant())
        state.subscribers.add(sub)
        try:
            start = await self._start_position(tenant_id, state)
            if last is None:
                last = start
            elif last < start:
                # Rows committed between our replay and the hub's position: from the table.
                catch_up = self._replay_upto(sub, last, start, type_list)
                async with contextlib.aclosing(catch_up):
                    async for delivery in catch_up:
                        last = delivery.id
                        yield delivery
            sub.live = True
            while True:
                item = await sub.queue.get()
                if item is None or sub.ended is not None:
                    raise (sub.ended or HubStopped)(last)
                if item.id <= last:
                    continue  # already replayed from the table
                last = item.id
                yield item
        finally:
            self._leave(sub)

    async def _start_position(self, tenant_id: int, state: _Tenant) -> int:
        """Where the live part begins for a subscriber that has just registered."""
        if state.position is not None:
            return state.position
        async with state.init_lock:
            if state.position is None:
                async with self._pool.acquire() as conn:
                    head = await events_store.last_id(conn, tenant_id)
                # The hub may have forgotten this tenant while we waited (everyone left).
                if self._tenants.get(tenant_id) is state and state.position is None:
                    state.position = head
                    # A wake-up that came while we asked was skipped (no position yet).
                    self._dirty.add(tenant_id)
                    self._wake.set()
                return head
            return state.position

    async def _replay_upto(
        self, sub: _Subscriber, after: int, upto: int, types: list[str] | None
    ) -> AsyncGenerator[Delivery, None]:
        """Every row in (after, upto], waiting out rows held back by the ordering cut."""
        position = after
        delay = _HELD_RETRY_MIN
        while sub.ended is None:  # once ended, the live loop reports why
            page = await self._read(sub.tenant_id, position, types, upto)
            memo: dict[str, Any] = {}
            for row in page.rows:
                position = row["id"]
                yield Delivery(row["id"], row["type"], row, memo)
            if page.held:
                if not page.rows:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _HELD_RETRY_MAX)
                continue
            if len(page.rows) < self._page_size:
                return

    def _leave(self, sub: _Subscriber) -> None:
        state = self._tenants.get(sub.tenant_id)
        if state is None:
            return
        state.subscribers.discard(sub)
        if not state.subscribers:
            # Nobody here follows this tenant any more: stop reading it.
            del self._tenants[sub.tenant_id]
            self._dirty.discard(sub.tenant_id)
            self._held.pop(sub.tenant_id, None)

    async def _read(
        self, tenant_id: int, after: int, types: list[str] | None, upto: int | None = None
    ) -> events_store.Page:
        """A subscriber's own read (replay); bounded, so a reconnect storm leaves the pool
        to requests."""
        async with self._replay_slots, self._pool.acquire() as conn:
            return await events_store.read_after(
                conn, tenant_id, after, self._page_size, types, upto
            )

    # -- notifications ---------------------------------------------------------------------

    def wake(self, tenant_id: int | None = None) -> None:
        """Read now, as on a notification: the tenant's rows, or every followed tenant's."""
        self._dirty.update(self._tenants if tenant_id is None else [tenant_id])
        self._dirty.intersection_update(self._tenants)
        self._wake.set()

    def _on_notify(self, conn: object, pid: int, channel: str, payload: str) -> None:
        self.stats.notifications += 1
        try:
            tenant_id = int(payload)
        except ValueError:
            tenant_id = None
        if tenant_id in self._tenants:
            self._dirty.add(tenant_id)
        self._wake.set()

    async def _listen_forever(self) -> None:
        delay = _RECONNECT_MIN
        first = True
        while self._running:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self._dsn, server_settings={"application_name": "recon-events-listener"}
                )
                lost = asyncio.Event()
                conn.add_termination_listener(functools.partial(_set_on_close, lost))
                await conn.add_listener(self._channel, self._on_notify)
                self._listener = conn
                if not first:
                    self.stats.reconnects += 1
                    log.info("event listener reconnected")
                first = False
                delay = _RECONNECT_MIN
                # Notifications sent while we were away are gone: look at every tenant.
                self._poll_now = True
                self._wake.set()
                self._listener_ready.set()
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), _LISTENER_CHECK)
                    if not lost.is_set():
                        await conn.fetchval("select 1", timeout=_LISTENER_CHECK / 3)
                log.warning("event listener connection lost; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: the timer keeps reading, we retry
                log.warning("event listener failed (%s); retrying in %.1f s", exc, delay)
            finally:
                self._listener = None
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECONNECT_MAX)

    # -- reading and fan-out ---------------------------------------------------------------

    async def _read_forever(self) -> None:
        """Decide which tenants to read, and start their reads; never waits for one to end."""
        loop = asyncio.get_running_loop()
        next_poll = loop.time() + self._poll_interval
        while self._running:
            timeout = next_poll - loop.time()
            if self._held:
                timeout = min(timeout, _HELD_PROBE)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, timeout))
            self._wake.clear()
            due, self._dirty = self._dirty, set()
            if self._held:
                due.update(await self._released())
            if loop.time() >= next_poll or self._poll_now:
                next_poll = loop.time() + self._poll_interval
                self._poll_now = False
                due.update(await self._tenants_with_news())
            for tenant_id in due:
                self._held.pop(tenant_id, None)
                self._schedule(tenant_id)

    async def _released(self) -> set[int]:
        """Held tenants whose held row no running writer can precede any more."""
        try:
            async with self._pool.acquire() as conn:
                xmin = await events_store.current_xmin(conn)
        except Exception:
            log.exception("reading the oldest running transaction failed")
            return set()
        return {t for t, xid in self._held.items() if xid < xmin}

    async def _tenants_with_news(self) -> set[int]:
        """Followed tenants with rows past their position: one query covers lost wake-ups."""
        positions = {t: s.position for t, s in self._tenants.items() if s.position is not None}
        if not positions:
            return set()
        try:
            async with self._pool.acquire() as conn:
                heads = await events_store.last_ids(conn, list(positions))
        except Exception:
            log.exception("polling the event outbox failed")
            return set()
        return {t for t, head in heads.items() if head > positions[t]}

    def _schedule(self, tenant_id: int) -> None:
        # One read per tenant at a time; a wake-up during a read asks for one more after it.
        if tenant_id in self._reading:
            self._again.add(tenant_id)
            return
        if tenant_id not in self._tenants:
            return
        self._reading.add(tenant_id)
        task = asyncio.create_task(self._read_tenant(tenant_id))
        self._read_tasks.add(task)
        task.add_done_callback(functools.partial(self._read_done, tenant_id))

    def _read_done(self, tenant_id: int, task: asyncio.Task[None]) -> None:
        self._read_tasks.discard(task)
        self._reading.discard(tenant_id)
        if tenant_id in self._again:
            self._again.discard(tenant_id)
            self._dirty.add(tenant_id)
            self._wake.set()

    async def _read_tenant(self, tenant_id: int) -> None:
        """Read the tenant's new rows once and offer them to each of its subscribers."""
        try:
            async with self._read_slots:
                while True:
                    state = self._tenants.get(tenant_id)
                    if state is None or state.position is None:
                        return
                    position = state.position
                    self.stats.reads += 1
                    async with self._pool.acquire() as conn:
                        page = await events_store.read_after(
                            conn, tenant_id, position, self._page_size
                        )
                    if self._tenants.get(tenant_id) is not state or state.position != position:
                        return  # everyone left meanwhile
                    if page.rows:
                        self._fan_out(state, page.rows)
                    if page.held_xid is not None:
                        # Read again once the writers older than that row have finished.
                        self._held[tenant_id] = page.held_xid
                        self._wake.set()
                        return
                    if len(page.rows) < self._page_size:
                        return
        except asyncio.CancelledError:
            raise
        except Exception:
            # Database trouble: the next poll finds the tenant's rows again.
            log.exception("reading events of tenant %s failed", tenant_id)

    def _fan_out(self, state: _Tenant, rows: list[Record]) -> None:
        # No await in here: registering and advancing the position stay atomic, which is
        # what lets a new subscriber trust `state.position`.
        memo: dict[str, Any] = {}
        subscribers = list(state.subscribers)
        for row in rows:
            delivery = Delivery(row["id"], row["type"], row, memo)
            for sub in subscribers:
                if sub.ended is not None or not sub.wants(delivery.type):
                    continue
                try:
                    sub.queue.put_nowait(delivery)
                except asyncio.QueueFull:
                    self.stats.overruns += 1
                    state.subscribers.discard(sub)
                    sub.end(SubscriberOverrun)
                else:
                    self.stats.delivered += 1
        state.position = rows[-1]["id"]
