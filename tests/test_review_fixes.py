"""Regression tests for defects found in review: each one is an attack or a broken promise."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import asyncpg
import pytest

from service.api.context import Context
from service.auth import AuthError, Role, TokenVerifier, issue_token
from service.clock import Clock
from service.config import Settings
from service.store import connections as connections_store

from .conftest import GQL, MakeTenant
from .test_ingest import INGEST, PushConnection, tx
from .test_matching_api import DOC, DOCS, _pay, _setup, inv
from .test_pollers import _sandbox, _scheduler, _sync_in_flight


async def test_currency_cannot_change_under_payments(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection
) -> None:
    t, c = await _setup(gql, make_tenant, push_connection, [inv("CUR-1", "100")])
    await _pay(gql, t, c, tx("cur", "100", remittanceInformation="CUR-1"))
    body = await gql(DOCS, {"i": [inv("CUR-1", "100", "EUR")]}, t.token("INVOICER"))
    assert body["data"]["upsertDocuments"]["documents"] == []
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
    assert "HUF" in body["errors"][0]["message"]
    node = (await gql(DOC, {"n": "CUR-1"}, t.token()))["data"]["documents"]["edges"][0]["node"]
    assert node["paymentState"] == "PAID"
    # Without payments the currency may still be corrected.
    body = await gql(DOCS, {"i": [inv("CUR-2", "100"), inv("CUR-2", "100", "EUR")][1:]}, t.token())
    assert body["data"]["upsertDocuments"]["documents"][0]["number"] == "CUR-2"


async def test_an_expired_token_stops_working_on_a_long_lived_context() -> None:
    """A socket's context keeps the scope it was opened with; past the token's expiry it
    answers nothing more (the subscription side is in test_subscriptions)."""
    from service.actions.scope import Scope
    from service.auth import Plan
    from service.errors import Unauthenticated

    ctx = Context(state=None, authorization=None)  # type: ignore[arg-type]
    ctx._scope = Scope(1, "x", "x", Plan.PROFI, "s", Role.OWNER, expires_at=time.time() + 60)
    assert (await ctx.scope()).subject == "s"
    ctx._scope = Scope(1, "x", "x", Plan.PROFI, "s", Role.OWNER, expires_at=time.time() - 1)
    with pytest.raises(Unauthenticated, match="expired"):
        await ctx.scope()


async def test_non_string_authorization_is_rejected_cleanly(settings: Settings) -> None:
    verifier = TokenVerifier(settings)
    with pytest.raises(AuthError):
        await verifier.verify_header(123)


def test_local_tokens_are_refused_once_an_identity_provider_is_configured(tmp_path: Path) -> None:
    local = Settings(data_dir=tmp_path, jwks_url="http://127.0.0.1:9/jwks.json", jwt_secret=None)
    token = issue_token(local, "acme", Role.OWNER, "mallory")
    with pytest.raises(AuthError, match="RS256"):
        asyncio.run(TokenVerifier(local).verify(token))


async def test_sandbox_settings_are_bounded(gql: GQL, make_tenant: MakeTenant) -> None:
    t = await make_tenant()
    for settings in (
        "{paymentsPerMinute: 1000000000}",
        "{maxPerFetch: 200000}",
        '{paymentsPerMinute: "inf"}',
        "{delaySeconds: -1}",
    ):
        body = await gql(
            f"mutation {{ connectBankSync(input: {{provider: SANDBOX, settings: {settings}}}) {{ connection {{ id }} }} }}",
            token=t.token(),
        )
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", settings


async def test_huge_cursor_is_bad_input_not_internal(gql: GQL, make_tenant: MakeTenant) -> None:
    t = await make_tenant()
    cursor = base64.urlsafe_b64encode(b"v1:99999999999999999999").decode().rstrip("=")
    for query in (
        "query($a: String) { events(after: $a) { edges { cursor } } }",
        "query($a: String) { documents(after: $a) { totalCount } }",
    ):
        body = await gql(query, {"a": cursor}, t.token())
        assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]


async def test_internal_sync_errors_do_not_leak_exception_text(
    make_tenant: MakeTenant, pool: asyncpg.Pool, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.providers.sandbox import SandboxBank

    async def broken(self: SandboxBank, request: object) -> object:
        raise RuntimeError("password=hunter2 in a stack detail")

    monkeypatch.setattr(SandboxBank, "fetch", broken)
    t = await make_tenant()
    clock = Clock()
    cid = await _sandbox(pool, settings, t, clock)
    run = await _scheduler(pool, settings, clock).sync_now(t.id, cid)
    assert run["status"] == "FAILED" and "hunter2" not in run["error"] and "ref" in run["error"]
    async with pool.acquire() as conn:
        assert "hunter2" not in await conn.fetchval(
            "select last_error from bank_connections where id = $1", cid
        )


async def test_manual_split_without_amounts_follows_the_allocation_rule(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection
) -> None:
    t, c = await _setup(gql, make_tenant, push_connection, [inv("MS-1", "60"), inv("MS-2", "40")])
    body = await gql(
        INGEST, {"c": c, "i": [tx("ms", "100", remittanceInformation="nothing")]}, t.token()
    )
    txid = body["data"]["ingestTransactions"]["transactions"][0]["id"]
    ids = {
        e["node"]["number"]: e["node"]["id"]
        for e in (await gql("{ documents { edges { node { id number } } } }", token=t.token()))[
            "data"
        ]["documents"]["edges"]
    }
    match = "mutation($t: ID!, $a: [AllocationInput!]!) { matchTransaction(transactionId: $t, allocations: $a) { allocations { amount document { number } } } }"
    unmatch = "mutation($t: ID!) { unmatchTransaction(transactionId: $t) { matchState } }"
    cases = [
        # Both left out: each up to what it owes, in order.
        (
            [{"documentId": ids["MS-1"]}, {"documentId": ids["MS-2"]}],
            [("MS-1", "60.00"), ("MS-2", "40.00")],
        ),
        # An explicit amount later in the list is reserved first; the open one gets the rest.
        (
            [{"documentId": ids["MS-1"]}, {"documentId": ids["MS-2"], "amount": "50"}],
            [("MS-1", "50.00"), ("MS-2", "50.00")],
        ),
    ]
    for allocations, expected in cases:
        body = await gql(match, {"t": txid, "a": allocations}, t.token())
        assert [
            (a["document"]["number"], a["amount"])
            for a in body["data"]["matchTransaction"]["allocations"]
        ] == expected
        await gql(unmatch, {"t": txid}, t.token())


async def test_a_downgraded_tenant_stops_syncing(
    gql: GQL,
    make_tenant: MakeTenant,
    push_connection: PushConnection,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    t = await make_tenant("PROFI")
    c = await push_connection(t)
    clock = Clock()
    cid = await _sandbox(pool, settings, t, clock)
    async with pool.acquire() as conn:
        await conn.execute("update tenants set plan = 'FREE' where id = $1", t.id)
        claimed = await connections_store.claim_due(
            conn, "probe", clock.now(), 30, 1000, ["SANDBOX"]
        )
    assert cid not in [r["id"] for r in claimed]
    body = await gql(INGEST, {"c": c, "i": [tx("free", "1")]}, t.token())
    assert body["errors"][0]["extensions"]["code"] == "PLAN_REQUIRED"
    body = await gql(
        "mutation($c: ID!) { syncNow(connectionId: $c) { id } }", {"c": str(cid)}, t.token()
    )
    assert body["errors"][0]["extensions"]["code"] == "PLAN_REQUIRED"


async def test_sync_now_refuses_while_a_poll_holds_the_lease(
    make_tenant: MakeTenant, pool: asyncpg.Pool, settings: Settings
) -> None:
    from service.errors import Conflict

    t = await make_tenant()
    cid, scheduler = await _sync_in_flight(pool, settings, t)
    with pytest.raises(Conflict):
        await scheduler.sync_now(t.id, cid)
    await asyncio.gather(*scheduler._running)


async def test_zero_total_is_paid_consistently(gql: GQL, make_tenant: MakeTenant) -> None:
    t = await make_tenant()
    body = await gql(
        DOCS.replace("documents { id number }", "documents { number fullyPaid paymentState }"),
        {"i": [inv("Z-1", "0")]},
        t.token(),
    )
    assert body["data"]["upsertDocuments"]["documents"] == [
        {"number": "Z-1", "fullyPaid": True, "paymentState": "PAID"}
    ]
    body = await gql(
        "{ documents(filter: {paymentState: UNPAID}) { totalCount } }", token=t.token()
    )
    assert body["data"]["documents"]["totalCount"] == 0


async def test_settings_sealed_for_one_connection_do_not_open_another(
    make_tenant: MakeTenant, pool: asyncpg.Pool, settings: Settings
) -> None:
    t = await make_tenant()
    clock = Clock()
    a = await _sandbox(pool, settings, t, clock, paymentsPerMinute=1)
    b = await _sandbox(pool, settings, t, clock, paymentsPerMinute=2)
    async with pool.acquire() as conn:
        await conn.execute(
            "update bank_connections set settings_encrypted = (select settings_encrypted from bank_connections where id = $1) where id = $2",
            a,
            b,
        )
    run = await _scheduler(pool, settings, clock).sync_now(t.id, b)
    assert run["status"] == "FAILED"
    assert (await _scheduler(pool, settings, clock).sync_now(t.id, a))["status"] == "SUCCEEDED"
