"""Documents: invoices, proformas and orders, with their paid state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asyncpg import Connection, Record

from .pagination import count_rows, fetch_page, like_escape

__all__ = [
    "by_ids",
    "count",
    "list_page",
    "lock",
    "open_hints",
    "paid_currencies",
    "upsert_many",
]

_STATE_SQL = {
    "UNPAID": "x.paid_amount <= 0 and x.total > 0",
    "PARTIALLY_PAID": "x.paid_amount > 0 and x.paid_amount < x.total",
    "PAID": "x.paid_amount = x.total",
    "OVERPAID": "x.paid_amount > x.total",
}

_UPSERT = """
insert into documents (tenant_id, kind, number, number_norm, order_number, order_number_norm,
    recurring_order_number, variable_symbol, specific_symbol, constant_symbol,
    variable_symbol_norm, specific_symbol_norm, payment_key, payment_key_norm, partner_id,
    issue_date, due_date, total, currency, external_id)
select $1, r.kind, r.number, r.number_norm, r.order_number, r.order_number_norm,
    r.recurring_order_number, r.variable_symbol, r.specific_symbol, r.constant_symbol,
    r.variable_symbol_norm, r.specific_symbol_norm, r.payment_key, r.payment_key_norm,
    r.partner_id, r.issue_date, r.due_date, r.total, r.currency, r.external_id
from jsonb_to_recordset($2::jsonb) as r(kind text, number text, number_norm text,
    order_number text, order_number_norm text, recurring_order_number boolean,
    variable_symbol text, specific_symbol text, constant_symbol text,
    variable_symbol_norm text, specific_symbol_norm text, payment_key text,
    payment_key_norm text, partner_id bigint, issue_date date, due_date date,
    total numeric, currency text, external_id text)
on conflict (tenant_id, kind, number) do update set
    order_number = excluded.order_number, order_number_norm = excluded.order_number_norm,
    recurring_order_number = excluded.recurring_order_number,
    variable_symbol = excluded.variable_symbol, specific_symbol = excluded.specific_symbol,
    constant_symbol = excluded.constant_symbol,
    variable_symbol_norm = excluded.variable_symbol_norm,
    specific_symbol_norm = excluded.specific_symbol_norm,
    payment_key = excluded.payment_key, payment_key_norm = excluded.payment_key_norm,
    partner_id = excluded.partner_id, issue_date = excluded.issue_date,
    due_date = excluded.due_date, total = excluded.total, currency = excluded.currency,
    external_id = excluded.external_id, updated_at = now()
returning *
"""


async def upsert_many(
    conn: Connection, tenant_id: int, rows: Sequence[dict[str, Any]]
) -> list[Record]:
    """Insert or update by (kind, number); paid state is never touched here.

    Each row's `fuzzy_keys` replace the document's one-edit-away lookup keys.
    """
    returned = await conn.fetch(_UPSERT, tenant_id, [_without_keys(r) for r in rows])
    by_key = {(d["kind"], d["number"]): d for d in returned}
    stored = [by_key[(r["kind"], r["number"])] for r in rows]  # RETURNING has no order
    ids: list[int] = []
    keys: list[str] = []
    for row, doc in zip(rows, stored, strict=True):
        for key in row.get("fuzzy_keys") or ():
            ids.append(doc["id"])
            keys.append(key)
    await conn.execute(
        "delete from document_keys where tenant_id = $1 and document_id = any($2::bigint[])",
        tenant_id,
        [d["id"] for d in stored],
    )
    if keys:
        await conn.execute(
            "insert into document_keys (tenant_id, document_id, key)"
            " select $1, * from unnest($2::bigint[], $3::text[]) on conflict do nothing",
            tenant_id,
            ids,
            keys,
        )
    lengths = {len(v) for r in rows for v in (r.get(c) for c in _REFERENCES) if v}
    if lengths:
        await conn.execute(
            "insert into document_reference_lengths (tenant_id, length)"
            " select $1, unnest($2::int[]) on conflict do nothing",
            tenant_id,
            sorted(lengths),
        )
    return stored


# The references whose lengths near-miss probes are checked against.
_REFERENCES = ("number_norm", "order_number_norm", "variable_symbol_norm", "specific_symbol_norm")


def _without_keys(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "fuzzy_keys"}


def _where(tenant_id: int, flt: dict[str, Any]) -> tuple[str, list[Any]]:
    clauses = ["x.tenant_id = $1"]
    args: list[Any] = [tenant_id]
    if flt.get("kind"):
        args.append(flt["kind"])
        clauses.append(f"x.kind = ${len(args)}")
    if flt.get("payment_state"):
        clauses.append(_STATE_SQL[flt["payment_state"]])
    if flt.get("number"):
        escaped = like_escape(flt["number"].upper())
        args.append(escaped + "%")
        clauses.append(f"x.number_norm like ${len(args)}")
    if flt.get("partner_id") is not None:
        args.append(flt["partner_id"])
        clauses.append(f"x.partner_id = ${len(args)}")
    return " and ".join(clauses), args


async def list_page(
    conn: Connection, tenant_id: int, flt: dict[str, Any], first: int, after: int | None
) -> list[Record]:
    where, args = _where(tenant_id, flt)
    return await fetch_page(conn, "documents", where, args, first, after)


async def count(conn: Connection, tenant_id: int, flt: dict[str, Any]) -> int:
    where, args = _where(tenant_id, flt)
    return await count_rows(conn, "documents", where, args)


async def by_ids(conn: Connection, tenant_id: int, ids: Sequence[int]) -> list[Record]:
    return list(
        await conn.fetch(
            "select * from documents where tenant_id = $1 and id = any($2)", tenant_id, list(ids)
        )
    )


async def lock(conn: Connection, tenant_id: int, ids: Sequence[int]) -> list[Record]:
    """Lock documents for an allocation, in id order so concurrent writers cannot deadlock."""
    return list(
        await conn.fetch(
            "select * from documents where tenant_id = $1 and id = any($2) order by id for update",
            tenant_id,
            sorted(set(ids)),
        )
    )


async def open_hints(conn: Connection, tenant_id: int, limit: int) -> list[Record]:
    """A sample of open documents with their payer, newest first (the sandbox bank's payers)."""
    return list(
        await conn.fetch(
            """
            select d.number, d.total - d.paid_amount as total, d.currency, d.variable_symbol,
                   d.order_number, p.name as partner_name, p.identifier as partner_identifier
            from open_documents o join documents d on d.id = o.document_id
                left join partners p on p.id = d.partner_id
            where o.tenant_id = $1
            order by o.document_id desc limit $2
            """,
            tenant_id,
            limit,
        )
    )


async def paid_currencies(
    conn: Connection, tenant_id: int, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """(kind, number) -> currency of those documents that have active allocations."""
    rows = await conn.fetch(
        """
        select d.kind, d.number, d.currency from unnest($2::text[], $3::text[]) k(kind, number)
        join documents d on d.tenant_id = $1 and d.kind = k.kind and d.number = k.number
        where d.paid_amount <> 0 or d.payment_count > 0
        """,
        tenant_id,
        [k for k, _ in keys],
        [n for _, n in keys],
    )
    return {(r["kind"], r["number"]): r["currency"].strip() for r in rows}
