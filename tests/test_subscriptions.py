"""Subscription.paymentEvents over real WebSockets: replay, live, no gap, no duplicate.

A small graphql-transport-ws client (below) talks to the real server; payments go in through
GraphQL. Nothing here sleeps to synchronise: every wait is for a message or for the hub to
report a subscriber live, each with a timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from graphql import build_schema, parse, subscribe
from graphql.execution.executor import Executor
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from service.app import create_app
from service.config import Settings
from service.events import EventHub
from service.store.pagination import decode_cursor

from .conftest import GQL, MakeTenant, Server, TenantHandle
from .test_ingest import INGEST, PushConnection, tx

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"

EVENTS = """
subscription($after: String, $types: [PaymentEventType!]) {
  paymentEvents(after: $after, types: $types) {
    cursor type occurredAt
    transaction { id providerTransactionId amount matchState }
    document { number paymentState }
  }
}
"""
DOCS = "mutation($i: [DocumentInput!]!) { upsertDocuments(input: $i) { documents { id } } }"
PAGE = """
query($after: String, $first: Int) {
  events(after: $after, first: $first) { edges { cursor node { type } } pageInfo { hasNextPage endCursor } }
}
"""


class WS:
    """A minimal graphql-transport-ws (or legacy graphql-ws) client for one socket."""

    def __init__(self, conn: ClientConnection, protocol: str) -> None:
        self.conn = conn
        self.protocol = protocol
        self._ids = itertools.count(1)

    async def send(self, message: dict[str, Any]) -> None:
        await self.conn.send(json.dumps(message))

    async def recv(self, within: float = 10.0) -> dict[str, Any]:
        while True:
            raw = await asyncio.wait_for(self.conn.recv(), within)
            message: dict[str, Any] = json.loads(raw)
            if message.get("type") in ("ka", "ping", "pong"):
                continue
            return message

    async def init(self, token: str | None) -> dict[str, Any]:
        await self.send(
            {
                "type": "connection_init",
                "payload": {"Authorization": f"Bearer {token}"} if token else {},
            }
        )
        return await self.recv()

    async def subscribe(self, variables: dict[str, Any] | None = None, query: str = EVENTS) -> str:
        op = str(next(self._ids))
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        payload = {"query": query, "variables": variables or {}}
        await self.send({"id": op, "type": kind, "payload": payload})
        return op

    async def event(self, within: float = 10.0) -> dict[str, Any]:
        """The next event; fails on anything else."""
        message = await self.recv(within)
        assert message["type"] in ("next", "data"), message
        assert not message["payload"].get("errors"), message
        event: dict[str, Any] = message["payload"]["data"]["paymentEvents"]
        return event

    async def events(self, n: int, within: float = 10.0) -> list[dict[str, Any]]:
        return [await self.event(within) for _ in range(n)]

    async def closed_with(self, within: float = 10.0) -> int | None:
        """Read until the server closes the socket; its close code."""
        try:
            while True:
                await asyncio.wait_for(self.conn.recv(), within)
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None


@asynccontextmanager
async def ws(
    url: str, token: str | None = None, *, protocol: str = TRANSPORT_WS, init: bool = True
) -> AsyncIterator[WS]:
    async with connect(url, subprotocols=[protocol], open_timeout=10) as conn:  # type: ignore[list-item]
        client = WS(conn, protocol)
        if init:
            ack = await client.init(token)
            assert ack["type"] == "connection_ack", ack
        yield client


@dataclass
class Node:
    """A service instance of this module's own, so tests can see and tune its hub."""

    server: Server
    app: Starlette

    @property
    def hub(self) -> EventHub:
        hub: EventHub = self.app.state.hub
        return hub

    @property
    def ws(self) -> str:
        return self.server.ws


@pytest.fixture(scope="module")
async def node(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Node]:
    app = create_app(settings)
    srv = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(srv.serve())
    await _until(lambda: srv.started, "the second service did not start")
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield Node(Server(url=f"http://127.0.0.1:{port}", settings=settings), app)
    srv.should_exit = True
    await task


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _until(check: Any, what: str, within: float = 10.0) -> None:
    """Wait for an in-process condition (a counter, a flag), polling it; fail after `within`."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(what)
        await asyncio.sleep(0.005)


@asynccontextmanager
async def live(
    node: Node, t: TenantHandle, variables: dict[str, Any] | None = None, role: str = "OWNER"
) -> AsyncIterator[WS]:
    """A socket with one paymentEvents subscription that is live on `node`.

    A subscription without `after` starts when the server has registered it; writing before
    that could legitimately fall before its start, so wait for the hub to say it is live.
    """
    before = node.hub.live_count(t.id)
    async with ws(node.ws, t.token(role=role)) as client:
        await client.subscribe(variables)
        await _until(lambda: node.hub.live_count(t.id) > before, "the subscription never went live")
        yield client


def codes(message: dict[str, Any]) -> list[str | None]:
    errors = (
        message["payload"]
        if isinstance(message["payload"], list)
        else message["payload"].get("errors") or []
    )
    return [e.get("extensions", {}).get("code") for e in errors]


async def _docs(gql: GQL, t: TenantHandle, *numbers: str, total: str = "1000") -> None:
    body = await gql(
        DOCS,
        {
            "i": [
                {"kind": "INVOICE", "number": n, "total": total, "currency": "HUF"} for n in numbers
            ]
        },
        t.token(),
    )
    assert not body.get("errors"), body


async def _pay(gql: GQL, t: TenantHandle, c: str, *records: dict[str, Any]) -> None:
    body = await gql(INGEST, {"c": c, "i": list(records)}, t.token())
    assert not body.get("errors"), body


async def _outbox(pool: asyncpg.Pool, tenant: TenantHandle, after: int = 0) -> list[int]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "select id from events where tenant_id = $1 and id > $2 order by id", tenant.id, after
        )
    return [r["id"] for r in rows]


def ids(events: list[dict[str, Any]]) -> list[int]:
    return [decode_cursor(e["cursor"]) or 0 for e in events]


# -- delivery ----------------------------------------------------------------------------


async def test_live_events_after_an_ingest(
    node: Node,
    http: httpx.AsyncClient,
    gql: GQL,
    make_tenant: MakeTenant,
    push_connection: PushConnection,
    pool: asyncpg.Pool,
) -> None:
    t = await make_tenant()
    await _docs(gql, t, "E-LIVE-1")
    c = await push_connection(t)
    async with live(node, t, role="ACCOUNTANT") as sub:
        # Written through the same process the subscriber is on.
        response = await http.post(
            node.server.graphql,
            json={
                "query": INGEST,
                "variables": {
                    "c": c,
                    "i": [tx("live-1", "1000", remittanceInformation="invoice E-LIVE-1")],
                },
            },
            headers={"Authorization": f"Bearer {t.token()}"},
        )
        assert not response.json().get("errors"), response.text
        got = await sub.events(3)
    assert [e["type"] for e in got] == ["PAYMENT_RECEIVED", "PAYMENT_MATCHED", "DOCUMENT_PAID"]
    assert {e["transaction"]["providerTransactionId"] for e in got} == {"live-1"}
    # Each event shows its transaction as it is now: matched, and the document paid.
    assert got[1]["transaction"]["matchState"] == "MATCHED"
    assert got[2]["document"] == {"number": "E-LIVE-1", "paymentState": "PAID"}
    assert ids(got) == await _outbox(pool, t)
    # The same cursors as the paged query hands out.
    page = await gql(PAGE, {"first": 10}, t.token())
    assert [e["cursor"] for e in page["data"]["events"]["edges"]] == [e["cursor"] for e in got]


async def test_replay_then_live_without_gap_or_duplicate_under_concurrent_writers(
    server: Server,
    gql: GQL,
    make_tenant: MakeTenant,
    push_connection: PushConnection,
    pool: asyncpg.Pool,
) -> None:
    t = await make_tenant()
    await _docs(gql, t, *(f"E-RACE-{i}" for i in range(0, 200, 3)), total="500")
    c = await push_connection(t)
    await _pay(gql, t, c, tx("seed-1"), tx("seed-2"), tx("seed-3"))
    page = await gql(PAGE, {"first": 1}, t.token())
    start = page["data"]["events"]["pageInfo"]["endCursor"]  # replay the other seed events

    async def writer(w: int) -> None:
        for i in range(25):
            n = w * 25 + i
            # Every third payment pays an invoice: PAYMENT_MATCHED and DOCUMENT_PAID too.
            await _pay(gql, t, c, tx(f"race-{n}", "500", remittanceInformation=f"E-RACE-{n}"))

    received: list[list[int]] = []
    writers = asyncio.gather(*(writer(w) for w in range(8)))
    cursor = start
    async with ws(server.ws, t.token()) as first:
        await first.subscribe({"after": cursor})
        got = await first.events(60)
        received.append(ids(got))
        cursor = got[-1]["cursor"]
        assert not writers.done()  # really midway
    # Disconnected mid-stream, while the writers go on; resume from the last cursor.
    async with ws(server.ws, t.token()) as second:
        await second.subscribe({"after": cursor})
        await writers
        expected = await _outbox(pool, t, decode_cursor(start) or 0)
        rest: list[int] = []
        while len(received[0]) + len(rest) < len(expected):
            rest += ids([await second.event()])
        received.append(rest)
        # Nothing beyond: the next thing on the socket is the answer to a query sent now.
        await second.subscribe({}, query="{ viewer { role } }")
        assert (await second.recv())["type"] == "next"
    union = received[0] + received[1]
    assert union == expected  # in order, none missing, none twice
    assert len(expected) > 200 + 2
    assert all(a < b for a, b in itertools.pairwise(union))


async def test_tenants_see_only_their_own_events(
    server: Server,
    node: Node,
    gql: GQL,
    make_tenant: MakeTenant,
    push_connection: PushConnection,
    pool: asyncpg.Pool,
) -> None:
    a, b = await make_tenant(), await make_tenant()
    ca, cb = await push_connection(a), await push_connection(b)
    async with live(node, b) as sub_b:
        await _pay(gql, a, ca, tx("a-1"), tx("a-2"))
        await _pay(gql, b, cb, tx("b-1"))
        [event] = await sub_b.events(1)
        assert event["transaction"]["providerTransactionId"] == "b-1"
        assert ids([event]) == await _outbox(pool, b)
        # A replay from the very beginning of the id space still holds only B's events.
    async with ws(server.ws, b.token()) as replay:
        await replay.subscribe({"after": "djE6MA"})  # encode_cursor(0)
        assert ids(await replay.events(1)) == await _outbox(pool, b)


async def test_types_filter(
    server: Server, node: Node, gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection
) -> None:
    t = await make_tenant()
    await _docs(gql, t, "E-TYPE-1", "E-TYPE-2")
    c = await push_connection(t)
    async with live(node, t, {"types": ["DOCUMENT_PAID"]}) as sub:
        await _pay(gql, t, c, tx("x-0"), tx("x-1", remittanceInformation="E-TYPE-1"))
        await _pay(gql, t, c, tx("x-2", remittanceInformation="E-TYPE-2"))
        got = await sub.events(2)
    assert [(e["type"], e["document"]["number"]) for e in got] == [
        ("DOCUMENT_PAID", "E-TYPE-1"),
        ("DOCUMENT_PAID", "E-TYPE-2"),
    ]
    async with ws(server.ws, t.token()) as replay:
        await replay.subscribe({"after": "djE6MA", "types": ["PAYMENT_RECEIVED"]})
        got = await replay.events(3)
        assert {e["type"] for e in got} == {"PAYMENT_RECEIVED"}
        assert [e["transaction"]["providerTransactionId"] for e in got] == ["x-0", "x-1", "x-2"]


async def test_legacy_graphql_ws_protocol_delivers_too(
    server: Server, gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection
) -> None:
    t = await make_tenant()
    c = await push_connection(t)
    await _pay(gql, t, c, tx("legacy-1"))
    async with ws(server.ws, t.token(), protocol=LEGACY_WS) as legacy:
        await legacy.subscribe({"after": "djE6MA"})
        [event] = await legacy.events(1)
    assert event["type"] == "PAYMENT_RECEIVED"


# -- who may subscribe ---------------------------------------------------------------------


@pytest.mark.parametrize("role", ["INVOICER", "OPERATOR"])
async def test_roles_without_bank_data_are_refused(
    server: Server, make_tenant: MakeTenant, role: str
) -> None:
    t = await make_tenant()
    async with ws(server.ws, t.token(role=role)) as client:
        await client.subscribe()
        message = await client.recv()
    assert message["type"] == "error", message
    assert codes(message) == ["FORBIDDEN"]


async def test_bad_or_missing_token_closes_4403_and_subscribe_before_init_4401(
    server: Server, make_tenant: MakeTenant
) -> None:
    t = await make_tenant()
    for token in (None, "not-a-token", t.token() + "x"):
        async with ws(server.ws, init=False) as client:
            await client.send(
                {
                    "type": "connection_init",
                    "payload": {"authorization": f"Bearer {token}"} if token else {},
                }
            )
            assert await client.closed_with() == 4403
    async with ws(server.ws, init=False) as client:
        await client.subscribe()
        assert await client.closed_with() == 4401
    async with ws(server.ws, init=False, protocol=LEGACY_WS) as legacy:
        await legacy.subscribe()
        assert await legacy.closed_with() == 4401


async def test_bad_cursor_is_bad_user_input(server: Server, make_tenant: MakeTenant) -> None:
    t = await make_tenant()
    async with ws(server.ws, t.token()) as client:
        await client.subscribe({"after": "bm9wZQ"})
        message = await client.recv()
    assert codes(message) == ["BAD_USER_INPUT"], message


# -- falling behind, other processes, shutdown ---------------------------------------------


async def test_slow_subscriber_is_told_where_to_resume_and_the_fast_one_is_not_held_up(
    node: Node, gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection
) -> None:
    t = await make_tenant()
    c = await push_connection(t)
    default = node.hub.queue_size
    node.hub.queue_size = 3  # the next subscriber can fall at most 3 events behind
    try:
        async with live(node, t) as slow:
            node.hub.queue_size = default
            async with live(node, t) as fast:
                # One transaction of 10 payments: more than the slow one may fall behind.
                await _pay(gql, t, c, *(tx(f"burst-{i}") for i in range(10)))
                got = await fast.events(10, within=5)
                message = await slow.recv()
                assert codes(message) == ["RATE_LIMITED"], message
                error = message["payload"]["errors"][0]
                assert (
                    "fell" in error["message"] and error["extensions"]["after"] in error["message"]
                )
                assert (await slow.recv())["type"] == "complete"
                # Resuming where it was told to: everything, once.
                await slow.subscribe({"after": error["extensions"]["after"]})
                again = await slow.events(10)
    finally:
        node.hub.queue_size = default
    assert [e["cursor"] for e in again] == [e["cursor"] for e in got]
    assert node.hub.stats.overruns >= 1


async def test_a_subscriber_on_another_process_gets_events_written_here_and_shutdown_closes_it(
    server: Server,
    settings: Settings,
    gql: GQL,
    http: httpx.AsyncClient,
    make_tenant: MakeTenant,
    push_connection: PushConnection,
    pool: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    env.update(
        DATABASE_URL=str(settings.database_url),
        RECON_PORT=str(port),
        RECON_JWT_SECRET=str(settings.jwt_secret),
        RECON_DATA_DIR=str(settings.data_dir),
        RECON_WORKERS="false",
        RECON_LOG_LEVEL="WARNING",
    )
    with (tmp_path / "serve.log").open("w") as log:
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once; it runs beside the test
            [sys.executable, "-m", "service.cli", "serve"], env=env, stdout=log, stderr=log
        )
    try:
        other = f"http://127.0.0.1:{port}"

        async def ready() -> bool:
            try:
                return (await http.get(f"{other}/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        deadline = time.monotonic() + 30
        while not await ready():
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the second process never became ready"
            await asyncio.sleep(0.1)
        t = await make_tenant()
        c = await push_connection(t)
        async with ws(f"ws://127.0.0.1:{port}/graphql", t.token()) as sub:
            await sub.subscribe({"after": "djE6MA"})
            await _pay(gql, t, c, tx("far-1"))  # through this process, not the other one
            [first] = await sub.events(1)
            await _pay(gql, t, c, tx("far-2"))
            [second] = await sub.events(1)
            assert [
                first["transaction"]["providerTransactionId"],
                second["transaction"]["providerTransactionId"],
            ] == ["far-1", "far-2"]
            assert ids([first, second]) == await _outbox(pool, t)
            # SIGTERM: the socket closes with "service restart", so clients reconnect and resume.
            proc.send_signal(signal.SIGTERM)
            assert await sub.closed_with(within=20) == 1012
        # uvicorn re-raises the signal once it has shut down cleanly.
        assert await asyncio.to_thread(proc.wait, 30) in (0, -signal.SIGTERM)
        assert "Traceback" not in (tmp_path / "serve.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def test_a_long_subscription_does_not_keep_a_memo_entry_per_event() -> None:
    """graphql-core 3.3.2 shares the subscription executor's subfield memo with each event's
    copy; service.api.subscriptions gives every event a memo of its own."""
    import service.api.subscriptions  # noqa: F401 - installs the fix, as the app does

    schema = build_schema(
        "type Query { x: Int } type T { a: Int } type E { t: T } type Subscription { ev: E }"
    )

    async def source(*_: Any) -> AsyncIterator[dict[str, Any]]:
        for i in range(300):
            yield {"ev": {"t": {"a": i}}}

    field = schema.subscription_type.fields["ev"]  # type: ignore[union-attr]
    field.subscribe = source
    field.resolve = lambda payload, _info: payload["ev"]
    executors: list[Executor[Any]] = []
    build = Executor.build_per_event_executor

    def spy(self: Executor[Any], payload: Any) -> Executor[Any]:
        executors.append(self)
        return build(self, payload)

    Executor.build_per_event_executor = spy  # type: ignore[method-assign]
    try:
        stream = subscribe(schema, parse("subscription { ev { t { a } } }"))
        if asyncio.iscoroutine(stream):
            stream = await stream
        sizes = []
        async for n, result in aenumerate(stream):  # type: ignore[arg-type]
            assert result.data == {"ev": {"t": {"a": n}}}
            sizes.append(len(executors[0]._relevant_sub_fields))
    finally:
        Executor.build_per_event_executor = build  # type: ignore[method-assign]
    assert len(sizes) == 300
    assert sizes[-1] == sizes[9]  # flat, not one more entry per event


async def aenumerate(items: AsyncIterator[Any]) -> AsyncIterator[tuple[int, Any]]:
    n = 0
    async for item in items:
        yield n, item
        n += 1


async def test_a_subscription_ends_when_its_token_expires(
    node: Node,
    gql: GQL,
    make_tenant: MakeTenant,
    push_connection: PushConnection,
    settings: Settings,
) -> None:
    from service.auth import Role, issue_token

    t = await make_tenant()
    c = await push_connection(t)
    short = issue_token(
        settings.model_copy(update={"token_ttl_seconds": 2}), t.slug, Role.OWNER, "brief"
    )
    before = node.hub.live_count(t.id)
    async with ws(node.ws, short) as client:
        await client.subscribe({"types": ["PAYMENT_RECEIVED"]})
        await _until(lambda: node.hub.live_count(t.id) > before, "the subscription never went live")
        await _pay(gql, t, c, tx("exp-1", "10"))
        first = await client.event()
        await asyncio.sleep(2.5)
        await _pay(gql, t, c, tx("exp-2", "10"))
        ended = await client.recv()
        assert codes(ended) == ["UNAUTHENTICATED"], ended
        # It says where to resume: right after the last event it delivered.
        assert ended["payload"]["errors"][0]["extensions"]["after"] == first["cursor"]
        # Nothing else is answered on the socket either.
        op = await client.subscribe(query="{ viewer { subject } }")
        answer = await client.recv()
        while answer.get("id") != op:
            answer = await client.recv()
        assert codes(answer) == ["UNAUTHENTICATED"], answer
