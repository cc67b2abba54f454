"""What the matcher reads and writes: open documents by reference, and paid state."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from asyncpg import Connection, Record

from ..domain.matcher import Lookup

__all__ = ["candidates", "lock_tenant", "open_documents", "recompute_paid"]

_SELECT = """
select d.id, d.kind, d.number, d.total, d.paid_amount, d.currency, d.order_number,
       d.recurring_order_number, d.variable_symbol, d.specific_symbol, d.constant_symbol,
       d.payment_key, d.partner_id, d.issue_date, p.identifier as partner_identifier,
       p.name as partner_name
from documents d left join partners p on p.id = d.partner_id
"""

# Exact keys: each arm is an equality on an indexed, normalized column of open documents.
_EXACT = (
    _SELECT
    + """
where d.tenant_id = $1 and d.paid_amount < d.total and (
    d.number_norm = any($2::text[]) or d.order_number_norm = any($2::text[])
    or d.partner_id in (select id from partners
                        where tenant_id = $1 and identifier_norm = any($2::text[]))
    or d.variable_symbol_norm = any($3::text[]) or d.specific_symbol_norm = any($4::text[])
    or d.payment_key_norm = any($5::text[]))
"""
)

# Near misses: glued and one-edit-away references, truncated numbers (prefix or suffix range
# scans, each bounded), and documents of a named payer whose outstanding equals the amount.
_NEAR = (
    _SELECT
    + """
where d.tenant_id = $1 and d.paid_amount < d.total and (
    d.number_norm = any($2::text[]) or d.order_number_norm = any($2::text[])
    or d.fuzzy_keys && $3::text[]
    or d.number_norm = any($3::text[]) or d.order_number_norm = any($3::text[])
    or d.variable_symbol_norm = any($3::text[]) or d.specific_symbol_norm = any($3::text[])
    or d.id in (
        select x.id from unnest($4::text[]) as q(f) cross join lateral (
            select id from documents
            where tenant_id = $1 and paid_amount < total
              and number_norm ~>=~ q.f and number_norm ~<~ (q.f || chr(1114111))
            order by number_norm limit $7) x
        union all
        select x.id from unnest($4::text[]) as q(f) cross join lateral (
            select id from documents
            where tenant_id = $1 and paid_amount < total
              and reverse(number_norm) ~>=~ reverse(q.f)
              and reverse(number_norm) ~<~ (reverse(q.f) || chr(1114111))
            order by reverse(number_norm) limit $7) x)
    or (d.partner_id in (select id from partners
                         where tenant_id = $1 and name_norm = any($5::text[]))
        and d.total - d.paid_amount = any($6::numeric[])))
"""
)
_PREFIX_FETCH = 48
# Two-key advisory lock space: (this constant, tenant id).
_MATCH_LOCK = 0x6D617463


async def lock_tenant(conn: Connection, tenant_id: int) -> None:
    """Serialize matching within a tenant for the rest of the transaction.

    A payment and a document that arrive at the same moment would otherwise each miss the
    other; under this lock the later one always sees the earlier one.
    """
    await conn.execute(
        "select pg_advisory_xact_lock($1::int, $2::int)", _MATCH_LOCK, tenant_id & 0x7FFFFFFF
    )


def _union(values: Iterable[str | None]) -> list[str]:
    return sorted({v for v in values if v})


async def candidates(
    conn: Connection, tenant_id: int, lookups: Sequence[Lookup], *, near: bool
) -> list[Record]:
    """Open documents any of the lookups may name: one query for a whole batch."""
    if not lookups:
        return []
    if not near:
        args: list[Any] = [
            _union(t for lk in lookups for t in lk.tokens),
            _union(lk.variable_symbol for lk in lookups),
            _union(lk.specific_symbol for lk in lookups),
            _union(lk.payment_key for lk in lookups),
        ]
        if not any(args):
            return []
        return list(await conn.fetch(_EXACT, tenant_id, *args))
    args = [
        _union(g for lk in lookups for g in lk.glued),
        _union(f for lk in lookups for f in lk.fuzzy),
        _union(p for lk in lookups for p in lk.prefixes),
        _union(lk.counterparty_name for lk in lookups),
        sorted({lk.amount for lk in lookups if lk.amount is not None and lk.counterparty_name}),
    ]
    if not any(args):
        return []
    return list(await conn.fetch(_NEAR, tenant_id, *args, _PREFIX_FETCH))


async def recompute_paid(
    conn: Connection, tenant_id: int, document_ids: Sequence[int]
) -> list[Record]:
    """Set paid amount and payment count from the active allocations; returns the new rows.

    Derived from the allocations rather than incremented, so a reversal or a retry can never
    leave the totals out of step with the history.
    """
    return list(
        await conn.fetch(
            """
            update documents d set
                paid_amount = coalesce(s.paid, 0), payment_count = coalesce(s.payments, 0),
                updated_at = now()
            from (select id from documents where tenant_id = $1 and id = any($2::bigint[])) ids
            left join (
                select document_id, sum(amount) as paid, count(distinct transaction_id) as payments
                from allocations
                where tenant_id = $1 and document_id = any($2::bigint[]) and reversed_at is null
                group by document_id) s on s.document_id = ids.id
            where d.id = ids.id
            returning d.*
            """,
            tenant_id,
            sorted(set(document_ids)),
        )
    )


async def open_documents(conn: Connection, tenant_id: int, ids: Sequence[int]) -> list[Record]:
    """The given documents that are still open, with what the matcher needs of their partner."""
    return list(
        await conn.fetch(
            _SELECT
            + "where d.tenant_id = $1 and d.id = any($2::bigint[]) and d.paid_amount < d.total",
            tenant_id,
            list(ids),
        )
    )
