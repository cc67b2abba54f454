"""The outbox under concurrent writers, and the per-process hub that fans it out.

Readers must never hand out a row past one that can still appear below it; the hub must
deliver every row exactly once to every subscriber, drop a slow one without delaying the
rest, and survive losing its LISTEN connection.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import asyncpg
import pytest

from service import db
from service.events import Delivery, EventHub, HubStopped, SubscriberOverrun
from service.store import events as events_store
from service.store.pagination import decode_cursor, encode_cursor

from .conftest import GQL, MakeTenant, TenantHandle

EVENTS = """
query($after: String, $first: Int, $types: [PaymentEventType!]) {
  events(after: $after, first: $first, types: $types) {
    edges { cursor node { type } } pageInfo { hasNextPage endCursor }
  }
}
"""
RAW_INSERT = "insert into events (tenant_id, type) values ($1, 'PAYMENT_RECEIVED') returning id"


async def _ids(pool: asyncpg.Pool, tenant_id: int, after: int = 0) -> list[int]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "select id from events where tenant_id = $1 and id > $2 order by id", tenant_id, after
        )
    return [r["id"] for r in rows]


async def _append(pool: asyncpg.Pool, tenant_id: int, n: int = 1) -> list[int]:
    """Commit n events in one transaction; their ids."""
    before = max(await _ids(pool, tenant_id), default=0)
    async with pool.acquire() as conn, conn.transaction():
        await events_store.append_many(conn, tenant_id, [{"type": "PAYMENT_RECEIVED"}] * n)
    return await _ids(pool, tenant_id, before)


async def _read(pool: asyncpg.Pool, tenant_id: int, after: int = 0) -> list[int]:
    async with pool.acquire() as conn:
        rows = await events_store.list_after(conn, tenant_id, after, 1000, None)
    return [r["id"] for r in rows]


async def _query(gql: GQL, t: TenantHandle, after: int = 0) -> list[int]:
    body = await gql(EVENTS, {"after": encode_cursor(after), "first": 100}, t.token())
    assert not body.get("errors"), body
    return [decode_cursor(e["cursor"]) or 0 for e in body["data"]["events"]["edges"]]


@pytest.fixture
async def conns(database_url: str) -> AsyncIterator[Callable[[], Any]]:
    """Raw connections of their own (a writer holding a transaction open must not be pooled)."""
    opened: list[asyncpg.Connection] = []

    async def make() -> asyncpg.Connection:
        conn = await asyncpg.connect(database_url)
        await db._init_connection(conn)  # the pool's json codecs, for append_many
        opened.append(conn)
        return conn

    yield make
    for conn in opened:
        await conn.close()


# -- reading the outbox ------------------------------------------------------------------


async def test_paged_query_walks_the_outbox_in_order(
    gql: GQL, make_tenant: MakeTenant, pool: asyncpg.Pool
) -> None:
    t = await make_tenant()
    written = await _append(pool, t.id, 5)
    cursor, seen = None, []
    while True:
        body = await gql(EVENTS, {"after": cursor, "first": 2}, t.token())
        page = body["data"]["events"]
        seen += [decode_cursor(e["cursor"]) for e in page["edges"]]
        cursor = page["pageInfo"]["endCursor"]
        if not page["pageInfo"]["hasNextPage"]:
            break
    assert seen == written
    body = await gql(EVENTS, {"after": "bm9wZQ"}, t.token())
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    body = await gql(EVENTS, {}, t.token(role="INVOICER"))
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_reader_does_not_pass_a_lower_id_still_being_written(
    gql: GQL, make_tenant: MakeTenant, pool: asyncpg.Pool, conns: Callable[[], Any]
) -> None:
    """Writer 1 takes a lower id and stays open; writer 2 commits a higher id (raw inserts,
    so nothing serializes them): the reader holds the higher id back until writer 1 ends."""
    t = await make_tenant()
    w1, w2 = await conns(), await conns()
    tx1 = w1.transaction()
    await tx1.start()
    low = await w1.fetchval(RAW_INSERT, t.id)
    async with w2.transaction():
        high = await w2.fetchval(RAW_INSERT, t.id)
    assert low < high
    assert await _read(pool, t.id) == []
    assert await _query(gql, t) == []
    await tx1.commit()
    assert await _read(pool, t.id) == [low, high]
    assert await _query(gql, t) == [low, high]


async def test_second_writer_of_a_tenant_waits_for_the_first(
    make_tenant: MakeTenant, pool: asyncpg.Pool, conns: Callable[[], Any]
) -> None:
    """append_many serializes a tenant's writers, so ids commit in order."""
    t, other = await make_tenant(), await make_tenant()
    w1, w2, w3 = await conns(), await conns(), await conns()
    tx1 = w1.transaction()
    await tx1.start()
    await events_store.append_many(w1, t.id, [{"type": "PAYMENT_RECEIVED"}])

    async def second() -> None:
        async with w2.transaction():
            await events_store.append_many(w2, t.id, [{"type": "PAYMENT_MATCHED"}])

    blocked = asyncio.create_task(second())
    # Another tenant's writer is not held up.
    async with w3.transaction():
        await events_store.append_many(w3, other.id, [{"type": "PAYMENT_RECEIVED"}])
    done, _ = await asyncio.wait([blocked], timeout=0.3)
    assert not done, "the second writer of the tenant went ahead of the first"
    await tx1.commit()
    await asyncio.wait_for(blocked, 5)
    async with pool.acquire() as conn:
        rows = await conn.fetch("select type from events where tenant_id = $1 order by id", t.id)
    assert [r["type"] for r in rows] == ["PAYMENT_RECEIVED", "PAYMENT_MATCHED"]


async def test_early_xid_with_a_late_id_is_not_handed_out_past_a_held_row(
    gql: GQL, make_tenant: MakeTenant, pool: asyncpg.Pool, conns: Callable[[], Any]
) -> None:
    """The trap of a plain `xid < xmin` filter: a writer that got its transaction id early
    but its event id late commits a row the filter would hand out while a lower id is held
    back; a reader that resumed from it would never see the lower one."""
    t = await make_tenant()
    early, blocker, late = await conns(), await conns(), await conns()
    tx_early, tx_blocker = early.transaction(), blocker.transaction()
    await tx_early.start()
    await early.fetchval("select pg_current_xact_id()")  # xid taken first
    await tx_blocker.start()
    await blocker.fetchval("select pg_current_xact_id()")  # an unrelated writer, still running
    async with late.transaction():
        await events_store.append_many(late, t.id, [{"type": "PAYMENT_RECEIVED"}])
    await events_store.append_many(early, t.id, [{"type": "PAYMENT_MATCHED"}])
    await tx_early.commit()
    low, high = await _ids(pool, t.id)
    async with pool.acquire() as conn:
        naive = await conn.fetch(
            "select id from events where tenant_id = $1"
            " and xid < pg_snapshot_xmin(pg_current_snapshot()) order by id",
            t.id,
        )
    assert [r["id"] for r in naive] == [high]  # what a filter would hand out: a skip of `low`
    assert await _read(pool, t.id) == []
    assert await _query(gql, t) == []
    await tx_blocker.rollback()
    assert await _read(pool, t.id) == [low, high]
    assert await _query(gql, t) == [low, high]


async def test_concurrent_writers_never_make_a_reader_skip(
    make_tenant: MakeTenant, pool: asyncpg.Pool, conns: Callable[[], Any]
) -> None:
    """Eight writers with transactions of random length, some taking their xid early, and an
    unrelated writer coming and going; a reader that resumes from the last id it saw ends
    with every id, in order, once."""
    t = await make_tenant()
    rng = random.Random(7)
    writers = [await conns() for _ in range(8)]
    noise = await conns()
    done = asyncio.Event()

    async def write(conn: asyncpg.Connection, w: int) -> None:
        for i in range(30):
            async with conn.transaction():
                if rng.random() < 0.5:
                    await conn.fetchval("select pg_current_xact_id()")
                    await asyncio.sleep(rng.random() * 0.004)
                await events_store.append_many(
                    conn, t.id, [{"type": "PAYMENT_RECEIVED", "payload": {"w": w, "i": i}}]
                )
                await asyncio.sleep(rng.random() * 0.002)

    async def disturb() -> None:
        while not done.is_set():
            async with noise.transaction():
                await noise.fetchval("select pg_current_xact_id()")
                await asyncio.sleep(rng.random() * 0.01)

    seen: list[int] = []

    async def read() -> None:
        while True:
            finished = done.is_set()
            seen.extend(await _read(pool, t.id, seen[-1] if seen else 0))
            if finished:
                return
            await asyncio.sleep(0.001)

    reader, disturber = asyncio.create_task(read()), asyncio.create_task(disturb())
    await asyncio.gather(*(write(c, w) for w, c in enumerate(writers)))
    done.set()
    await asyncio.gather(reader, disturber)
    seen.extend(await _read(pool, t.id, seen[-1] if seen else 0))
    assert seen == await _ids(pool, t.id)
    assert len(seen) == 8 * 30


# -- the hub -------------------------------------------------------------------------------


@pytest.fixture
async def hub(pool: asyncpg.Pool, database_url: str) -> AsyncIterator[EventHub]:
    """A hub on a channel nobody notifies and a slow timer: it reads only when told to."""
    h = EventHub(pool, database_url, poll_interval=60, channel=f"silent_{uuid.uuid4().hex[:8]}")
    await h.start()
    yield h
    await h.stop()


class Follower:
    """Consumes one hub stream in the background and records what arrives."""

    def __init__(self, hub: EventHub, tenant_id: int, after: int | None = None) -> None:
        self.hub = hub
        self.got: list[int] = []
        self.error: BaseException | None = None
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self._run(hub.stream(tenant_id, after)))

    async def _run(self, stream: AsyncGenerator[Delivery, None]) -> None:
        try:
            async with aclosing(stream):
                async for delivery in stream:
                    self.got.append(delivery.id)
                    self.changed.set()
        except (SubscriberOverrun, HubStopped) as exc:
            self.error = exc
            self.changed.set()

    async def until(self, n: int, within: float = 5.0) -> list[int]:
        deadline = time.monotonic() + within
        while len(self.got) < n and self.error is None:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.0, deadline - time.monotonic()))
        return self.got

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def _live(hub: EventHub, tenant_id: int, after: int | None = None) -> Follower:
    before = hub.live_count(tenant_id)
    follower = Follower(hub, tenant_id, after)
    deadline = time.monotonic() + 5
    while hub.live_count(tenant_id) <= before:
        assert time.monotonic() < deadline, "the subscriber never went live"
        await asyncio.sleep(0.002)
    return follower


async def test_hub_drops_rows_a_subscriber_already_replayed(
    hub: EventHub, make_tenant: MakeTenant, pool: asyncpg.Pool
) -> None:
    t = await make_tenant()
    head = await _append(pool, t.id)
    watcher = await _live(hub, t.id)  # the hub now follows t from `head`
    first = await _append(pool, t.id, 3)  # not read by the hub yet: nobody woke it
    resumed = await _live(hub, t.id, after=head[-1])  # replays them from the table
    assert await resumed.until(3) == first
    hub.wake(t.id)  # the hub reads them now and offers them to both
    assert await watcher.until(3) == first
    last = await _append(pool, t.id)
    hub.wake(t.id)
    assert await resumed.until(4) == first + last  # no second copy of what it replayed
    assert await watcher.until(4) == first + last
    await asyncio.gather(watcher.close(), resumed.close())


async def test_hub_fills_the_gap_between_replay_and_live_even_when_rows_are_held(
    hub: EventHub, make_tenant: MakeTenant, pool: asyncpg.Pool, conns: Callable[[], Any]
) -> None:
    t = await make_tenant()
    blocker = await conns()
    tx_blocker = blocker.transaction()
    await tx_blocker.start()
    await blocker.fetchval("select pg_current_xact_id()")
    held = await _append(pool, t.id)  # committed, but held back while the blocker runs
    watcher = await _live(hub, t.id)  # live from the newest row: `held` is its past
    late = Follower(hub, t.id, after=0)  # its replay stops before `held`, then it waits
    deadline = time.monotonic() + 5
    while hub.subscriber_count < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.002)
    assert late.got == []
    await tx_blocker.rollback()
    assert await late.until(1) == held
    more = await _append(pool, t.id)
    hub.wake(t.id)
    assert await late.until(2) == held + more
    assert await watcher.until(1) == more
    await asyncio.gather(watcher.close(), late.close())


async def test_hub_delivers_a_held_row_as_soon_as_the_older_writer_ends(
    hub: EventHub, make_tenant: MakeTenant, pool: asyncpg.Pool, conns: Callable[[], Any]
) -> None:
    """No notification and no poll (this hub has neither): the hub's own check of the oldest
    running writer releases the row."""
    t = await make_tenant()
    follower = await _live(hub, t.id)
    blocker = await conns()
    tx_blocker = blocker.transaction()
    await tx_blocker.start()
    await blocker.fetchval("select pg_current_xact_id()")
    held = await _append(pool, t.id)
    hub.wake(t.id)
    deadline = time.monotonic() + 5
    while t.id not in hub._held:  # read, and held back
        assert time.monotonic() < deadline
        await asyncio.sleep(0.002)
    assert follower.got == []
    await tx_blocker.rollback()
    assert await follower.until(1, within=2) == held
    await follower.close()


async def test_hub_reads_a_tenant_once_for_all_its_subscribers(
    hub: EventHub, make_tenant: MakeTenant, pool: asyncpg.Pool
) -> None:
    t = await make_tenant()
    followers = [await _live(hub, t.id) for _ in range(20)]
    reads = hub.stats.reads
    written = await _append(pool, t.id, 3)
    hub.wake(t.id)
    for f in followers:
        assert await f.until(3) == written
    assert hub.stats.reads - reads <= 2  # one read, or two if the first met a held row
    await asyncio.gather(*(f.close() for f in followers))
    assert hub.subscriber_count == 0


async def test_slow_subscriber_is_dropped_and_never_delays_the_others(
    hub: EventHub, make_tenant: MakeTenant, pool: asyncpg.Pool
) -> None:
    t = await make_tenant()
    hub.queue_size = 5
    fast = await _live(hub, t.id)
    slow_stream = hub.stream(t.id, None)
    first_item = asyncio.create_task(anext(slow_stream))  # joins, then never reads again
    deadline = time.monotonic() + 5
    while hub.live_count(t.id) < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.002)
    written: list[int] = []
    for i in range(12):
        written += await _append(pool, t.id)
        hub.wake(t.id)
        # The fast one gets each row while the slow one sits on a full queue.
        assert await fast.until(i + 1, within=2) == written
    assert fast.error is None
    assert hub.stats.overruns == 1
    slow_first = (await first_item).id
    with pytest.raises(SubscriberOverrun) as ended:
        await anext(slow_stream)
    assert ended.value.last_id == slow_first == written[0]
    # Resuming from the cursor it was given loses nothing and repeats nothing.
    resumed = Follower(hub, t.id, after=ended.value.last_id)
    assert await resumed.until(11) == written[1:]
    await asyncio.gather(fast.close(), resumed.close())


async def test_hub_reconnects_its_listener_and_catches_up(
    make_tenant: MakeTenant, pool: asyncpg.Pool, database_url: str
) -> None:
    hub = EventHub(pool, database_url, poll_interval=60)  # notifications only
    await hub.start()
    try:
        t = await make_tenant()
        follower = await _live(hub, t.id)
        pid = hub.listener_pid
        assert pid is not None
        async with pool.acquire() as conn:
            assert await conn.fetchval("select pg_terminate_backend($1)", pid)
        # Written while the listener is down: its notification may be lost for good.
        written = await _append(pool, t.id)
        assert await follower.until(1, within=10) == written
        deadline = time.monotonic() + 10
        while hub.stats.reconnects < 1:
            assert time.monotonic() < deadline, "the listener did not reconnect"
            await asyncio.sleep(0.01)
        assert hub.listener_pid not in (None, pid)
        # And notifications wake it again.
        more = await _append(pool, t.id)
        assert await follower.until(2, within=10) == written + more
        await follower.close()
    finally:
        await hub.stop()


async def test_stop_ends_every_subscription_with_its_resume_position(
    make_tenant: MakeTenant, pool: asyncpg.Pool, database_url: str
) -> None:
    hub = EventHub(pool, database_url, poll_interval=60)
    await hub.start()
    t = await make_tenant()
    follower = await _live(hub, t.id)
    idle = await _live(hub, t.id)
    written = await _append(pool, t.id)
    assert await follower.until(1) == written
    assert await idle.until(1) == written
    await hub.stop()
    await asyncio.wait_for(asyncio.gather(follower.task, idle.task), 5)
    for f in (follower, idle):
        assert isinstance(f.error, HubStopped) and f.error.last_id == written[0]
    assert hub.subscriber_count == 0 and hub.listener_pid is None
    with pytest.raises(HubStopped):
        await anext(hub.stream(t.id, None))
