"""Pollers: leases across replicas, cursors with the payments, failures, shutdown, consent."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from service.actions.connections import Sources, connect
from service.clock import Clock
from service.config import Settings
from service.providers.registry import polled_providers
from service.secrets import SettingsCipher, encryption_key
from service.workers.consent import check_consents
from service.workers.scheduler import Scheduler

from .conftest import GQL, MakeTenant, TenantHandle
from .test_matching_api import DOCS, inv


def _sources(settings: Settings, clock: Clock) -> Sources:
    return Sources(SettingsCipher(encryption_key(settings)), polled_providers(settings), clock)


async def _sandbox(
    pool: asyncpg.Pool, settings: Settings, t: TenantHandle, clock: Clock, **sandbox: Any
) -> int:
    row, _ = await connect(
        pool,
        t.scope(),
        _sources(settings, clock),
        {
            "provider": "SANDBOX",
            "name": "sbx",
            "poll_interval_seconds": 60,
            "settings": {"paymentsPerMinute": 60, "maxPerFetch": 100, **sandbox},
        },
    )
    return int(row["id"])


def _scheduler(pool: asyncpg.Pool, settings: Settings, clock: Clock, **overrides: Any) -> Scheduler:
    s = settings.model_copy(update={"lease_seconds": 30, **overrides})
    return Scheduler(
        pool, s, SettingsCipher(encryption_key(settings)), dict(polled_providers(settings)), clock
    )


async def _sync_in_flight(
    pool: asyncpg.Pool, settings: Settings, t: TenantHandle
) -> tuple[int, Scheduler]:
    """A sandbox connection whose (half-second) sync a scheduler tick has just started."""
    clock = Clock()
    cid = await _sandbox(pool, settings, t, clock, delaySeconds=0.5)
    scheduler = _scheduler(pool, settings, clock)
    assert await scheduler.tick() == 1
    return cid, scheduler


async def _drain(*schedulers: Scheduler) -> None:
    for s in schedulers:
        if s._running:
            await asyncio.gather(*s._running)


async def test_sync_stores_matches_and_advances_the_cursor(
    gql: GQL, make_tenant: MakeTenant, pool: asyncpg.Pool, settings: Settings
) -> None:
    t = await make_tenant()
    await gql(DOCS, {"i": [inv(f"E-2026-{i:04d}", str(1000 + i)) for i in range(1, 21)]}, t.token())
    clock = Clock()
    cid = await _sandbox(pool, settings, t, clock)
    scheduler = _scheduler(pool, settings, clock)
    first = await scheduler.sync_now(t.id, cid)
    assert first["status"] == "SUCCEEDED" and first["fetched"] == 60 and first["inserted"] == 60
    assert first["matched"] > 0 and first["duplicates"] == 0
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "select sync_cursor, next_sync_at, lease_owner, last_sync_at from bank_connections where id = $1",
            cid,
        )
        stored = await conn.fetchval(
            "select count(*) from transactions where connection_id = $1", cid
        )
    assert row["sync_cursor"]["seq"] == 60 and row["lease_owner"] is None and stored == 60
    # Nothing new arrived in the (frozen) minute since: a second run fetches nothing.
    again = await scheduler.sync_now(t.id, cid)
    assert (again["fetched"], again["inserted"]) == (0, 0)
    clock.advance(timedelta(seconds=30))
    third = await scheduler.sync_now(t.id, cid)
    assert third["inserted"] == 30
    body = await gql(
        "query($c: ID!) { syncRuns(connectionId: $c) { edges { node { status fetched inserted matched } } } }",
        {"c": str(cid)},
        t.token("ACCOUNTANT"),
    )
    assert [e["node"]["inserted"] for e in body["data"]["syncRuns"]["edges"]] == [30, 0, 60]


async def test_each_connection_is_polled_once_per_interval_across_replicas(
    make_tenant: MakeTenant, pool: asyncpg.Pool, settings: Settings
) -> None:
    t = await make_tenant()
    clock = Clock()
    ids = [await _sandbox(pool, settings, t, clock, delaySeconds=0.05) for _ in range(6)]
    a, b = _scheduler(pool, settings, clock), _scheduler(pool, settings, clock)
    rounds = 3
    for _ in range(rounds):
        # Both replicas look for work at the same moment, several times, within one interval.
        for _ in range(3):
            await asyncio.gather(a.tick(), b.tick())
        await _drain(a, b)
        clock.advance(timedelta(seconds=61))
    async with pool.acquire() as conn:
        runs = await conn.fetch(
            "select connection_id, count(*) as n from sync_runs where connection_id = any($1) group by 1",
            ids,
        )
    assert sorted(r["n"] for r in runs) == [rounds] * len(ids)


async def test_failures_back_off_and_are_recorded(
    gql: GQL, make_tenant: MakeTenant, pool: asyncpg.Pool, settings: Settings
) -> None:
    t = await make_tenant()
    clock = Clock()
    cid = await _sandbox(pool, settings, t, clock, fail="bank unavailable")
    scheduler = _scheduler(pool, settings, clock)
    delays = []
    for _ in range(3):
        before = clock.now()
        run = await scheduler.sync_now(t.id, cid)
        assert run["status"] == "FAILED" and "bank unavailable" in run["error"]
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                "select next_sync_at, failure_count, last_error, lease_owner from bank_connections where id = $1",
                cid,
            )
        delays.append((row["next_sync_at"] - before).total_seconds())
        assert row["lease_owner"] is None
    assert row["failure_count"] == 3 and "bank unavailable" in row["last_error"]
    assert delays[0] < delays[1] < delays[2], delays
    body = await gql(
        "{ events(types: [SYNC_FAILED]) { edges { node { type connection { id lastError } } } } }",
        token=t.token(),
    )
    assert len(body["data"]["events"]["edges"]) == 3


async def test_a_malformed_record_is_reported_and_the_rest_lands(
    make_tenant: MakeTenant, pool: asyncpg.Pool, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.providers.sandbox import SandboxBank

    real = SandboxBank._payment

    def sometimes_broken(self: SandboxBank, seed: int, seq: int, request: Any) -> dict[str, Any]:
        record = real(self, seed, seq, request)
        if seq == 3:
            record["currency"] = "???"
        return record

    monkeypatch.setattr(SandboxBank, "_payment", sometimes_broken)
    t = await make_tenant()
    clock = Clock()
    cid = await _sandbox(pool, settings, t, clock, paymentsPerMinute=10)
    run = await _scheduler(pool, settings, clock).sync_now(t.id, cid)
    assert run["status"] == "SUCCEEDED" and (run["fetched"], run["inserted"]) == (10, 9)
    assert "record 3" in run["error"] and "currency" in run["error"]


async def test_shutdown_finishes_in_flight_syncs_and_releases_leases(
    make_tenant: MakeTenant, pool: asyncpg.Pool, settings: Settings
) -> None:
    cid, scheduler = await _sync_in_flight(pool, settings, await make_tenant())
    await asyncio.sleep(0.1)
    await scheduler.stop()
    async with pool.acquire() as conn:
        run = await conn.fetchrow("select status from sync_runs where connection_id = $1", cid)
        lease = await conn.fetchval("select lease_owner from bank_connections where id = $1", cid)
    assert run["status"] == "SUCCEEDED" and lease is None


async def test_consent_lifecycle_with_moved_time(
    gql: GQL, make_tenant: MakeTenant, pool: asyncpg.Pool
) -> None:
    t = await make_tenant()
    body = await gql(
        'mutation { connectBankSync(input: {provider: SANDBOX, settings: {consent: true}, redirectUri: "https://app.example/back"}) { consentRedirectUrl connection { id status consent { status } } } }',
        token=t.token(),
    )
    payload = body["data"]["connectBankSync"]
    cid = payload["connection"]["id"]
    assert payload["connection"]["status"] == "PENDING_CONSENT" and payload["consentRedirectUrl"]
    assert "redirect_uri=https://app.example/back" in payload["consentRedirectUrl"]
    body = await gql(
        "mutation($c: ID!) { completeConsent(connectionId: $c) { status consent { status daysLeft validUntil } } }",
        {"c": cid},
        t.token(),
    )
    done = body["data"]["completeConsent"]
    assert (
        done["status"] == "ACTIVE"
        and done["consent"]["status"] == "VALID"
        and done["consent"]["daysLeft"] in (89, 90)
    )

    clock = Clock()
    assert await check_consents(pool, clock.now() + timedelta(days=10)) == 0
    later = clock.now() + timedelta(days=82, hours=1)
    assert await check_consents(pool, later) >= 1
    assert await check_consents(pool, later + timedelta(hours=1)) == 0  # once, also on a rerun
    assert await check_consents(pool, clock.now() + timedelta(days=88, hours=1)) >= 1
    assert await check_consents(pool, clock.now() + timedelta(days=89)) == 0
    expired_at = clock.now() + timedelta(days=90, minutes=1)
    assert await check_consents(pool, expired_at) >= 1
    body = await gql(
        "{ events(types: [CONSENT_EXPIRING, CONSENT_EXPIRED]) { edges { node { type connection { id status } } } } }",
        token=t.token(),
    )
    mine = [
        e["node"]["type"]
        for e in body["data"]["events"]["edges"]
        if e["node"]["connection"]["id"] == cid
    ]
    assert mine == ["CONSENT_EXPIRING", "CONSENT_EXPIRING", "CONSENT_EXPIRED"]
    body = await gql(
        "query($c: ID!) { connection(id: $c) { status consent { status } } }", {"c": cid}, t.token()
    )
    assert body["data"]["connection"] == {
        "status": "CONSENT_EXPIRED",
        "consent": {"status": "EXPIRED"},
    }
    # Polling stops: the expired connection is not claimed, however late it is.
    from service.store import connections as connections_store

    async with pool.acquire() as conn:
        claimed = await connections_store.claim_due(
            conn, "probe", expired_at + timedelta(days=1), 30, 100, ["SANDBOX"]
        )
    assert int(cid) not in [r["id"] for r in claimed]
    # Renewal: a new consent at the bank, then ACTIVE again.
    body = await gql(
        "mutation($c: ID!) { renewConsent(connectionId: $c) { consentRedirectUrl } }",
        {"c": cid},
        t.token("ADMIN"),
    )
    assert body["data"]["renewConsent"]["consentRedirectUrl"]
    body = await gql(
        "mutation($c: ID!) { completeConsent(connectionId: $c) { status consent { status } } }",
        {"c": cid},
        t.token(),
    )
    assert body["data"]["completeConsent"] == {"status": "ACTIVE", "consent": {"status": "VALID"}}
    body = await gql(
        "mutation($c: ID!) { renewConsent(connectionId: $c) { consentRedirectUrl } }",
        {"c": cid},
        t.token("ACCOUNTANT"),
    )
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_disconnect_stops_polling_keeps_data_and_tells_subscribers(
    gql: GQL, make_tenant: MakeTenant, pool: asyncpg.Pool, settings: Settings
) -> None:
    t = await make_tenant()
    clock = Clock()
    cid = await _sandbox(pool, settings, t, clock)
    await _scheduler(pool, settings, clock).sync_now(t.id, cid)
    body = await gql(
        "mutation($c: ID!) { disconnectBankSync(connectionId: $c) { status } }",
        {"c": str(cid)},
        t.token(),
    )
    assert body["data"]["disconnectBankSync"]["status"] == "DISCONNECTED"
    body = await gql(
        "mutation($c: ID!) { syncNow(connectionId: $c) { id } }", {"c": str(cid)}, t.token()
    )
    assert body["errors"][0]["extensions"]["code"] == "CONFLICT"
    body = await gql(
        "{ transactions { totalCount } events(types: [CONNECTION_DISCONNECTED]) { edges { node { type } } } }",
        token=t.token(),
    )
    assert body["data"]["transactions"]["totalCount"] == 60
    assert len(body["data"]["events"]["edges"]) == 1


async def test_settings_are_never_returned(gql: GQL, make_tenant: MakeTenant) -> None:
    t = await make_tenant()
    body = await gql(
        'mutation { connectBankSync(input: {provider: SANDBOX, settings: {token: "s3cret-token-value"}}) { connection { id } } }',
        token=t.token(),
    )
    assert "s3cret" not in json.dumps(body)
    body = await gql('{ __type(name: "BankConnection") { fields { name } } }', token=t.token())
    assert "settings" not in [f["name"] for f in body["data"]["__type"]["fields"]]


async def test_sandbox_consent_page_links_back_safely(http: object, server: object) -> None:
    import httpx

    assert isinstance(http, httpx.AsyncClient)
    base = server.url  # type: ignore[attr-defined]
    page = await http.get(
        f"{base}/sandbox-bank/consent/sbx-1",
        params={"redirect_uri": "https://app.example/back?x=1"},
    )
    assert page.status_code == 200 and 'href="https://app.example/back?x=1"' in page.text
    evil = await http.get(
        f"{base}/sandbox-bank/consent/<script>", params={"redirect_uri": "javascript:alert(1)"}
    )
    assert "javascript:" not in evil.text and "<script>" not in evil.text


async def test_replicas_checking_consents_together_send_each_reminder_once(
    gql: GQL, make_tenant: MakeTenant, pool: asyncpg.Pool
) -> None:
    t = await make_tenant()
    body = await gql(
        "mutation { connectBankSync(input: {provider: SANDBOX, settings: {consent: true}}) { connection { id } } }",
        token=t.token(),
    )
    cid = body["data"]["connectBankSync"]["connection"]["id"]
    await gql(
        "mutation($c: ID!) { completeConsent(connectionId: $c) { status } }", {"c": cid}, t.token()
    )
    now = Clock().now()
    for moment in (now + timedelta(days=83), now + timedelta(days=89), now + timedelta(days=91)):
        # Four replicas wake at the same moment.
        await asyncio.gather(*(check_consents(pool, moment) for _ in range(4)))
    async with pool.acquire() as conn:
        sent = await conn.fetch(
            "select type from events where connection_id = $1 and type like 'CONSENT_%' order by id",
            int(cid),
        )
    assert [r["type"] for r in sent] == ["CONSENT_EXPIRING", "CONSENT_EXPIRING", "CONSENT_EXPIRED"]
