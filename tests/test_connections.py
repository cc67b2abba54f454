"""Connections: plans, roles, defaults, updates, disconnect; settings never come back."""

from __future__ import annotations

import asyncpg

from .conftest import GQL, MakeTenant, codes

CONNECT = """
mutation($i: ConnectBankSyncInput!) {
  connectBankSync(input: $i) { consentRedirectUrl connection { id provider name status pollIntervalSeconds matchAgainst matchKeys createdAt } }
}
"""


async def test_connect_push_with_defaults_and_update(
    gql: GQL, make_tenant: MakeTenant, pool: asyncpg.Pool
) -> None:
    t = await make_tenant("DIGITAL")
    body = await gql(
        CONNECT,
        {"i": {"provider": "PUSH", "settings": {"apiKey": "s3cret-value"}}},
        t.token("ADMIN"),
    )
    conn = body["data"]["connectBankSync"]["connection"]
    assert conn["status"] == "ACTIVE" and conn["provider"] == "PUSH"
    assert set(conn["matchAgainst"]) == {"INVOICE", "PROFORMA", "ORDER"}
    assert conn["matchKeys"]
    async with pool.acquire() as c:
        blob = await c.fetchval(
            "select settings_encrypted from bank_connections where id = $1", int(conn["id"])
        )
    assert b"s3cret-value" not in blob  # encrypted at rest
    body = await gql(
        "mutation($c: ID!, $i: UpdateConnectionInput!) { updateConnection(connectionId: $c, input: $i) { name pollIntervalSeconds matchKeys } }",
        {
            "c": conn["id"],
            "i": {"name": "Shop", "pollIntervalSeconds": 60, "matchKeys": ["VARIABLE_SYMBOL"]},
        },
        t.token("OWNER"),
    )
    assert body["data"]["updateConnection"] == {
        "name": "Shop",
        "pollIntervalSeconds": 60,
        "matchKeys": ["VARIABLE_SYMBOL"],
    }
    body = await gql(
        "mutation($c: ID!, $i: UpdateConnectionInput!) { updateConnection(connectionId: $c, input: $i) { name } }",
        {"c": conn["id"], "i": {"pollIntervalSeconds": 1}},
        t.token(),
    )
    assert codes(body) == ["BAD_USER_INPUT"]
    body = await gql(
        "mutation($c: ID!) { disconnectBankSync(connectionId: $c) { status } }",
        {"c": conn["id"]},
        t.token(),
    )
    assert body["data"]["disconnectBankSync"]["status"] == "DISCONNECTED"
    body = await gql("{ connections { id status } }", token=t.token("ACCOUNTANT"))
    assert body["data"]["connections"] == [{"id": conn["id"], "status": "DISCONNECTED"}]


async def test_free_plan_gets_plan_required(gql: GQL, make_tenant: MakeTenant) -> None:
    t = await make_tenant("FREE")
    body = await gql(CONNECT, {"i": {"provider": "PUSH"}}, t.token())
    assert codes(body) == ["PLAN_REQUIRED"]


async def test_only_owner_and_admin_manage_connections(gql: GQL, make_tenant: MakeTenant) -> None:
    t = await make_tenant()
    for role in ("ACCOUNTANT", "INVOICER", "OPERATOR"):
        body = await gql(CONNECT, {"i": {"provider": "PUSH"}}, t.token(role))
        assert codes(body) == ["FORBIDDEN"], role


async def test_unavailable_provider_is_a_clear_error(gql: GQL, make_tenant: MakeTenant) -> None:
    t = await make_tenant()
    body = await gql(CONNECT, {"i": {"provider": "KH_BANK"}}, t.token())
    assert codes(body) == ["BAD_USER_INPUT"]
    assert "not available" in body["errors"][0]["message"]
