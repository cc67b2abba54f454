"""`open_documents`, the open documents' references the matcher looks up: the triggers keep
it equal to the documents that are not paid in full, whatever writes them, and a payment's
update of a document stays heap-only (the reason the table exists, migration 0005)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg

from service.domain.records import check_document, check_partner
from service.store import documents as documents_store
from service.store import matching as matching_store
from service.store import partners as partners_store

from .conftest import MakeTenant

_REFERENCES = (
    "number_norm",
    "order_number_norm",
    "variable_symbol_norm",
    "specific_symbol_norm",
    "payment_key_norm",
    "partner_id",
)


async def _mismatch(conn: asyncpg.Connection, tenant_id: int) -> list[Any]:
    """Differences between `open_documents` and the tenant's open documents, both ways."""
    columns = ", ".join(_REFERENCES)
    return list(
        await conn.fetch(
            f"""
            (select 'missing' as what, id, {columns} from documents
             where tenant_id = $1 and paid_amount < total
             except select 'missing', document_id, {columns} from open_documents
             where tenant_id = $1)
            union all
            (select 'extra', document_id, {columns} from open_documents where tenant_id = $1
             except select 'extra', id, {columns} from documents
             where tenant_id = $1 and paid_amount < total)
            """,
            tenant_id,
        )
    )


async def _open_ids(conn: asyncpg.Connection, tenant_id: int) -> set[int]:
    rows = await conn.fetch(
        "select document_id from open_documents where tenant_id = $1", tenant_id
    )
    return {r["document_id"] for r in rows}


def _doc(i: int, number: str, total: str, **extra: Any) -> dict[str, Any]:
    checked = check_document(
        i, {"kind": "INVOICE", "number": number, "total": total, "currency": "HUF"} | extra
    )
    assert isinstance(checked, dict)
    checked.pop("partner_external_id")
    checked["partner_id"] = None
    return checked


async def _add(conn: asyncpg.Connection, tenant_id: int, doc_id: int, amount: str) -> None:
    await matching_store.add_paid(
        conn,
        tenant_id,
        [{"document_id": doc_id, "amount": Decimal(amount), "transaction_id": -doc_id}],
    )


async def test_open_documents_follow_every_writer(
    pool: asyncpg.Pool, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    tid = tenant.id
    async with pool.acquire() as conn, conn.transaction():
        partner = check_partner(0, {"external_id": "p", "name": "P Kft.", "identifier": "P-1"})
        assert isinstance(partner, dict)
        [stored_partner] = await partners_store.upsert_many(conn, tid, [partner])
        rows = [
            _doc(0, "OD-1", "100", variable_symbol="111"),
            _doc(1, "OD-2", "200", order_number="WEB-2"),
            _doc(2, "OD-3", "0"),  # nothing to pay: never open
            _doc(3, "OD-4", "50", payment_key="pk-4"),
        ]
        stored = await documents_store.upsert_many(conn, tid, rows)
        ids = [d["id"] for d in stored]
        assert await _mismatch(conn, tid) == []
        assert (
            await conn.fetchval("select count(*) from open_documents where tenant_id = $1", tid)
            == 3
        )

        written = (
            "select pg_stat_get_xact_tuples_inserted('open_documents'::regclass)"
            " + pg_stat_get_xact_tuples_updated('open_documents'::regclass)"
            " + pg_stat_get_xact_tuples_deleted('open_documents'::regclass)"
        )
        before = await conn.fetchval(written)
        await _add(conn, tid, ids[0], "40")  # partly paid: stays, and nothing is written
        assert await conn.fetchval(written) == before
        await _add(conn, tid, ids[1], "200")  # paid in full: leaves
        assert await _mismatch(conn, tid) == []
        assert await _open_ids(conn, tid) == {ids[0], ids[3]}

        # An upsert changes references and totals: the paid one reopens with a larger
        # total, the open one moves to a partner and a new symbol, one is paid off by a
        # smaller total.
        rows[1]["total"] = Decimal(300)
        rows[0]["variable_symbol_norm"] = rows[0]["variable_symbol"] = "222"
        rows[0]["partner_id"] = stored_partner["id"]
        rows[3]["total"] = Decimal(0)
        await documents_store.upsert_many(conn, tid, rows)
        assert await _mismatch(conn, tid) == []
        assert await _open_ids(conn, tid) == {ids[0], ids[1]}

        # Derived again from allocations (none here): everything unpaid is open.
        await matching_store.recompute_paid(conn, tid, ids)
        assert await _mismatch(conn, tid) == []
        await conn.execute("delete from documents where id = $1", ids[0])
        assert await _mismatch(conn, tid) == []
        assert not await conn.fetchval(
            "select count(*) from open_documents where document_id = $1", ids[0]
        )


async def test_a_payment_updates_its_document_heap_only(
    pool: asyncpg.Pool, make_tenant: MakeTenant
) -> None:
    """No index names paid_amount, and each page has room for a new version of its rows:
    paying documents writes no index entry for them."""
    tenant = await make_tenant()
    tid = tenant.id
    async with pool.acquire() as conn, conn.transaction():
        stored = await documents_store.upsert_many(
            conn, tid, [_doc(i, f"HOT-{i:04d}", "100") for i in range(300)]
        )
        before = await conn.fetchval(
            "select pg_stat_get_xact_tuples_hot_updated('documents'::regclass)"
        )
        # Every one of them in one statement, as a batch pays documents issued together.
        await matching_store.add_paid(
            conn,
            tid,
            [
                {"document_id": d["id"], "amount": Decimal(100), "transaction_id": -d["id"]}
                for d in stored
            ],
        )
        after = await conn.fetchval(
            "select pg_stat_get_xact_tuples_hot_updated('documents'::regclass)"
        )
        assert after - before == len(stored)
        assert await _mismatch(conn, tid) == []
