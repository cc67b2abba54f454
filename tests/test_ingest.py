"""ingestTransactions: idempotent, race-safe, exact money, per-record errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from .conftest import GQL, MakeTenant, TenantHandle, codes

INGEST = """
mutation($c: ID!, $i: [TransactionInput!]!) {
  ingestTransactions(connectionId: $c, input: $i) {
    inserted duplicates
    transactions { id providerTransactionId amount currency matchState bookingDate }
    errors { index key field message }
  }
}
"""

PushConnection = Callable[[TenantHandle], Awaitable[str]]


def tx(pid: str, amount: str = "1000", currency: str = "HUF", **extra: Any) -> dict[str, Any]:
    return {
        "providerTransactionId": pid,
        "bookingDate": "2026-11-20",
        "amount": amount,
        "currency": currency,
        **extra,
    }


async def test_same_payment_twice_is_a_duplicate(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection
) -> None:
    t = await make_tenant()
    c = await push_connection(t)
    first = await gql(INGEST, {"c": c, "i": [tx("a"), tx("b", "12.34", "CZK")]}, t.token())
    p = first["data"]["ingestTransactions"]
    assert (p["inserted"], p["duplicates"]) == (2, 0)
    assert [x["amount"] for x in p["transactions"]] == ["1000.00", "12.34"]
    second = await gql(INGEST, {"c": c, "i": [tx("a"), tx("c"), tx("c")]}, t.token())
    p2 = second["data"]["ingestTransactions"]
    assert (p2["inserted"], p2["duplicates"]) == (1, 2)
    assert p2["transactions"][0]["id"] == p["transactions"][0]["id"]
    body = await gql("{ transactions { totalCount } }", token=t.token())
    assert body["data"]["transactions"]["totalCount"] == 3


async def test_concurrent_ingest_stores_each_payment_once(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection, pool: asyncpg.Pool
) -> None:
    t = await make_tenant()
    c = await push_connection(t)
    batch = [tx(f"race-{i}", str(100 + i)) for i in range(50)]
    results = await asyncio.gather(
        *(gql(INGEST, {"c": c, "i": batch}, t.token()) for _ in range(8))
    )
    inserted = sum(r["data"]["ingestTransactions"]["inserted"] for r in results)
    duplicates = sum(r["data"]["ingestTransactions"]["duplicates"] for r in results)
    assert inserted == 50 and duplicates == 7 * 50
    async with pool.acquire() as conn:
        count = await conn.fetchval(
            "select count(*) from transactions where connection_id = $1", int(c)
        )
        total = await conn.fetchval(
            "select sum(amount) from transactions where connection_id = $1", int(c)
        )
    assert count == 50
    assert str(total) == str(sum(100 + i for i in range(50))) + ".0000"


async def test_bad_records_are_named_and_valid_ones_land(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection
) -> None:
    t = await make_tenant()
    c = await push_connection(t)
    records = [
        tx("ok-1"),
        tx("bad-currency", currency="ABC"),
        tx("bad-decimals", "10.005", "CZK"),
        tx("bad-huf", "10.123", "HUF"),
        tx("bad-vs", variableSymbol="12-34"),
        tx("bad-zero", "0"),
        tx("", "5"),
        tx("ok-2", "-250.50", "CZK", variableSymbol="0001234"),
    ]
    body = await gql(INGEST, {"c": c, "i": records}, t.token())
    p = body["data"]["ingestTransactions"]
    assert [x["providerTransactionId"] for x in p["transactions"]] == ["ok-1", "ok-2"]
    assert p["inserted"] == 2 and p["duplicates"] == 0
    assert {(e["index"], e["field"]) for e in p["errors"]} == {
        (1, "currency"),
        (2, "amount"),
        (3, "amount"),
        (4, "variableSymbol"),
        (5, "amount"),
        (6, "providerTransactionId"),
    }
    assert set(codes(body)) == {"BAD_USER_INPUT"}
    assert any("bad-decimals" in e["message"] for e in body["errors"])
    assert p["transactions"][1]["amount"] == "-250.50"


async def test_missing_field_and_bad_scalars_are_bad_user_input(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection
) -> None:
    t = await make_tenant()
    c = await push_connection(t)
    body = await gql(
        INGEST,
        {"c": c, "i": [{"providerTransactionId": "x", "amount": "1", "currency": "HUF"}]},
        t.token(),
    )
    assert codes(body) == ["BAD_USER_INPUT"] and "bookingDate" in body["errors"][0]["message"]
    body = await gql(INGEST, {"c": c, "i": [tx("y", amount="1,5")]}, t.token())
    assert codes(body) == ["BAD_USER_INPUT"]


async def test_ingest_is_refused_where_it_does_not_belong(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection
) -> None:
    t = await make_tenant()
    c = await push_connection(t)
    body = await gql(INGEST, {"c": "999999999", "i": [tx("a")]}, t.token())
    assert codes(body) == ["NOT_FOUND"]
    body = await gql(INGEST, {"c": "abc", "i": [tx("a")]}, t.token())
    assert codes(body) == ["NOT_FOUND"]
    big = [tx(f"b{i}") for i in range(501)]
    body = await gql(INGEST, {"c": c, "i": big}, t.token())
    assert codes(body) == ["BAD_USER_INPUT"]
    await gql(
        "mutation($c: ID!) { disconnectBankSync(connectionId: $c) { status } }", {"c": c}, t.token()
    )
    body = await gql(INGEST, {"c": c, "i": [tx("a")]}, t.token())
    assert codes(body) == ["BAD_USER_INPUT"]
