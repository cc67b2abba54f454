"""Allocations: which payment paid how much of which document. Rows are never deleted;
an unmatch marks them reversed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asyncpg import Connection, Record

__all__ = [
    "by_document_ids",
    "by_transaction_ids",
    "copy_many",
    "history_by_document_ids",
    "history_by_transaction_ids",
    "insert_many",
    "reverse_for_transaction",
]


async def insert_many(
    conn: Connection, tenant_id: int, rows: Sequence[dict[str, Any]]
) -> list[Record]:
    return list(
        await conn.fetch(
            """
            insert into allocations (tenant_id, transaction_id, document_id, amount, currency,
                                     rule, method, created_by)
            select $1, r.transaction_id, r.document_id, r.amount, r.currency, r.rule, r.method,
                   r.created_by
            from rows from (jsonb_to_recordset($2::jsonb) as (transaction_id bigint,
                 document_id bigint, amount numeric, currency text, rule text, method text,
                 created_by text)) with ordinality as r
            order by r.ordinality
            returning *
            """,
            tenant_id,
            list(rows),
        )
    )


_COPIED = [
    "tenant_id",
    "transaction_id",
    "document_id",
    "amount",
    "currency",
    "rule",
    "method",
    "created_by",
]


async def copy_many(conn: Connection, tenant_id: int, rows: Sequence[dict[str, Any]]) -> None:
    """`insert_many` for callers that need nothing back: a binary copy, no rows returned."""
    if rows:
        await conn.copy_records_to_table(
            "allocations",
            records=[(tenant_id, *[r.get(c) for c in _COPIED[1:]]) for r in rows],
            columns=_COPIED,
        )


async def _by(
    conn: Connection, tenant_id: int, parent: str, ids: Sequence[int], include_reversed: bool
) -> list[Record]:
    active = "" if include_reversed else " and reversed_at is null"
    return list(
        await conn.fetch(
            f"select * from allocations where tenant_id = $1 and {parent} = any($2){active}"
            " order by id",
            tenant_id,
            list(ids),
        )
    )


async def by_transaction_ids(
    conn: Connection, tenant_id: int, ids: Sequence[int], *, include_reversed: bool = False
) -> list[Record]:
    return await _by(conn, tenant_id, "transaction_id", ids, include_reversed)


async def by_document_ids(
    conn: Connection, tenant_id: int, ids: Sequence[int], *, include_reversed: bool = False
) -> list[Record]:
    return await _by(conn, tenant_id, "document_id", ids, include_reversed)


async def reverse_for_transaction(
    conn: Connection, tenant_id: int, transaction_id: int, by: str
) -> list[Record]:
    return list(
        await conn.fetch(
            "update allocations set reversed_at = now(), reversed_by = $3"
            " where tenant_id = $1 and transaction_id = $2 and reversed_at is null returning *",
            tenant_id,
            transaction_id,
            by,
        )
    )


async def history_by_transaction_ids(
    conn: Connection, tenant_id: int, ids: Sequence[int]
) -> list[Record]:
    return await by_transaction_ids(conn, tenant_id, ids, include_reversed=True)


async def history_by_document_ids(
    conn: Connection, tenant_id: int, ids: Sequence[int]
) -> list[Record]:
    return await by_document_ids(conn, tenant_id, ids, include_reversed=True)
