"""Matching under real parallel transactions: no lost update, no double allocation."""

from __future__ import annotations

import asyncio

import asyncpg

from .conftest import GQL, MakeTenant
from .test_ingest import INGEST, PushConnection, tx
from .test_matching_api import DOCS, inv


async def test_parallel_payments_for_one_document_all_count(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection, pool: asyncpg.Pool
) -> None:
    t = await make_tenant()
    await gql(DOCS, {"i": [inv("C-1", "1000")]}, t.token())
    conns = [await push_connection(t) for _ in range(4)]
    results = await asyncio.gather(
        *(
            gql(
                INGEST,
                {"c": conns[i % 4], "i": [tx(f"c{i}", "100", remittanceInformation="C-1")]},
                t.token(),
            )
            for i in range(8)
        )
    )
    assert all(r["data"]["ingestTransactions"]["inserted"] == 1 for r in results), results
    async with pool.acquire() as conn:
        doc = await conn.fetchrow(
            "select paid_amount, payment_count from documents where tenant_id = $1", t.id
        )
        alloc = await conn.fetchval(
            "select sum(amount) from allocations where tenant_id = $1 and reversed_at is null", t.id
        )
    assert (doc["paid_amount"], doc["payment_count"]) == (800, 8)
    assert alloc == 800


async def test_document_upsert_racing_its_payment_allocates_once(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection, pool: asyncpg.Pool
) -> None:
    t = await make_tenant()
    c = await push_connection(t)
    rounds = 15
    for i in range(rounds):
        number = f"RACE-{i:03d}"
        await asyncio.gather(
            gql(DOCS, {"i": [inv(number, "250")]}, t.token()),
            gql(
                INGEST,
                {"c": c, "i": [tx(f"r{i}", "250", remittanceInformation=f"{number} fizetes")]},
                t.token(),
            ),
            gql(
                DOCS, {"i": [inv(number, "250")]}, t.token()
            ),  # a repeated sync of the same document
        )
    async with pool.acquire() as conn:
        per_payment = await conn.fetch(
            """select t.provider_transaction_id, t.amount, t.match_state,
                      coalesce(sum(a.amount), 0) as allocated, count(a.id) as allocations
               from transactions t left join allocations a on a.transaction_id = t.id and a.reversed_at is null
               where t.tenant_id = $1 group by t.id""",
            t.id,
        )
        docs = await conn.fetch(
            "select paid_amount, payment_count from documents where tenant_id = $1", t.id
        )
    assert len(per_payment) == rounds
    # Whichever came first, the payment is matched exactly once and never over-allocated.
    for row in per_payment:
        assert row["match_state"] == "MATCHED", dict(row)
        assert (row["allocated"], row["allocations"]) == (row["amount"], 1), dict(row)
    assert all((d["paid_amount"], d["payment_count"]) == (250, 1) for d in docs)


async def _hold_payment_open(
    pool: asyncpg.Pool, tenant_id: int, connection_id: int, record: dict, started: asyncio.Event
) -> None:  # type: ignore[type-arg]
    """Store and match a payment in a transaction that stays open a while before commit."""
    from service.actions.ingest import check_records, store_transactions
    from service.store import connections as connections_store

    records, problems = check_records([record])
    assert not problems
    async with pool.acquire() as conn, conn.transaction():
        connection = await connections_store.by_id(conn, tenant_id, connection_id)
        await store_transactions(conn, tenant_id, connection, records)
        started.set()
        await asyncio.sleep(0.4)


def _raw(pid: str, amount: str, text: str) -> dict:  # type: ignore[type-arg]
    return {
        "provider_transaction_id": pid,
        "booking_date": "2026-11-20",
        "amount": amount,
        "currency": "HUF",
        "remittance_information": text,
    }


async def test_overlapping_transactions_lose_no_update(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection, pool: asyncpg.Pool
) -> None:
    """The second payment's transaction starts while the first is still open."""
    from service.actions.ingest import ingest_transactions

    t = await make_tenant()
    await gql(DOCS, {"i": [inv("OV-1", "1000")]}, t.token())
    c = int(await push_connection(t))
    started = asyncio.Event()
    first = asyncio.create_task(
        _hold_payment_open(pool, t.id, c, _raw("o1", "100", "OV-1"), started)
    )
    await started.wait()
    await ingest_transactions(pool, t.scope(), c, [_raw("o2", "150", "OV-1")], max_batch=10)
    await first
    async with pool.acquire() as conn:
        doc = await conn.fetchrow(
            "select paid_amount, payment_count from documents where tenant_id = $1", t.id
        )
    assert (doc["paid_amount"], doc["payment_count"]) == (250, 2)


async def test_document_arriving_while_its_payment_is_uncommitted_still_matches(
    gql: GQL, make_tenant: MakeTenant, push_connection: PushConnection, pool: asyncpg.Pool
) -> None:
    from service.actions.documents import upsert_documents

    t = await make_tenant()
    c = int(await push_connection(t))
    started = asyncio.Event()
    first = asyncio.create_task(
        _hold_payment_open(pool, t.id, c, _raw("late", "500", "LATE-77 payment"), started)
    )
    await started.wait()
    await upsert_documents(
        pool,
        t.scope(),
        [{"kind": "INVOICE", "number": "LATE-77", "total": "500", "currency": "HUF"}],
        max_batch=10,
    )
    await first
    async with pool.acquire() as conn:
        state = await conn.fetchval(
            "select match_state from transactions where tenant_id = $1", t.id
        )
        paid = await conn.fetchval("select paid_amount from documents where tenant_id = $1", t.id)
    assert (state, paid) == ("MATCHED", 500)
