"""Transactions: payments received and sent, deduplicated per connection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asyncpg import Connection, Record

from .pagination import count_rows, fetch_page, like_escape

__all__ = [
    "by_ids",
    "by_provider_ids",
    "count",
    "existing_provider_ids",
    "insert_many",
    "list_page",
    "open_for_rematch",
    "set_decision",
    "set_match_result",
]

_VERDICT = ["match_state", "explanation", "suggestions"]
_COLUMNS = [
    "provider_transaction_id",
    "booking_date",
    "value_date",
    "amount",
    "currency",
    "counterparty_name",
    "counterparty_account",
    "variable_symbol",
    "specific_symbol",
    "constant_symbol",
    "remittance_information",
    "payment_key",
]


async def insert_many(
    conn: Connection, tenant_id: int, connection_id: int, rows: Sequence[dict[str, Any]]
) -> list[Record]:
    """Insert what is new; rows whose provider id the connection already has are skipped.

    The unique (connection_id, provider_transaction_id) constraint decides, so two requests
    racing with the same payment store it once.
    """
    return list(
        await conn.fetch(
            """
            insert into transactions (tenant_id, connection_id, provider_transaction_id,
                booking_date, value_date, amount, currency, counterparty_name,
                counterparty_account, variable_symbol, specific_symbol, constant_symbol,
                remittance_information, payment_key, match_state, explanation, suggestions)
            select $1, $2, r.provider_transaction_id, r.booking_date, r.value_date, r.amount,
                r.currency, r.counterparty_name, r.counterparty_account, r.variable_symbol,
                r.specific_symbol, r.constant_symbol, r.remittance_information, r.payment_key,
                coalesce(r.match_state, 'UNMATCHED'), r.explanation,
                coalesce(r.suggestions, '[]'::jsonb)
            from rows from (jsonb_to_recordset($3::jsonb) as (provider_transaction_id text,
                booking_date date, value_date date, amount numeric, currency text,
                counterparty_name text, counterparty_account text, variable_symbol text,
                specific_symbol text, constant_symbol text, remittance_information text,
                payment_key text, match_state text, explanation text, suggestions jsonb))
                with ordinality as r
            order by r.ordinality
            on conflict (connection_id, provider_transaction_id) do nothing
            returning *
            """,
            tenant_id,
            connection_id,
            [{c: row.get(c) for c in _COLUMNS + _VERDICT} for row in rows],
        )
    )


# One probe of the (connection, provider id) unique index per id. With the tenant inside
# the probe, or with `= any(array)`, a young table's plan scanned the connection's rows.
_BY_PROVIDER_ID = """
from unnest($3::text[]) k(v) cross join lateral (
    select * from transactions
    where connection_id = $2 and provider_transaction_id = k.v limit 1) x
where x.tenant_id = $1
"""


async def existing_provider_ids(
    conn: Connection, tenant_id: int, connection_id: int, provider_ids: Sequence[str]
) -> set[str]:
    rows = await conn.fetch(
        f"select x.provider_transaction_id {_BY_PROVIDER_ID}",
        tenant_id,
        connection_id,
        list(provider_ids),
    )
    return {r["provider_transaction_id"] for r in rows}


async def by_provider_ids(
    conn: Connection, tenant_id: int, connection_id: int, provider_ids: Sequence[str]
) -> list[Record]:
    return list(
        await conn.fetch(
            f"select x.* {_BY_PROVIDER_ID}", tenant_id, connection_id, list(provider_ids)
        )
    )


async def by_ids(
    conn: Connection, tenant_id: int, ids: Sequence[int], *, for_update: bool = False
) -> list[Record]:
    lock = " order by id for update" if for_update else ""
    return list(
        await conn.fetch(
            f"select * from transactions where tenant_id = $1 and id = any($2){lock}",
            tenant_id,
            list(ids),
        )
    )


def _where(tenant_id: int, flt: dict[str, Any]) -> tuple[str, list[Any]]:
    clauses = ["x.tenant_id = $1"]
    args: list[Any] = [tenant_id]

    def add(sql: str, value: Any) -> None:
        args.append(value)
        clauses.append(sql.format(f"${len(args)}"))

    if flt.get("connection_id") is not None:
        add("x.connection_id = {}", flt["connection_id"])
    if flt.get("match_state"):
        add("x.match_state = {}", flt["match_state"])
    if flt.get("booked_from"):
        add("x.booking_date >= {}", flt["booked_from"])
    if flt.get("booked_to"):
        add("x.booking_date <= {}", flt["booked_to"])
    if flt.get("search"):
        needle = like_escape(flt["search"])
        add(
            "(x.remittance_information ilike {0} or x.counterparty_name ilike {0}"
            " or x.counterparty_account ilike {0} or x.variable_symbol ilike {0}"
            " or x.provider_transaction_id ilike {0})",
            f"%{needle}%",
        )
    return " and ".join(clauses), args


async def list_page(
    conn: Connection, tenant_id: int, flt: dict[str, Any], first: int, after: int | None
) -> list[Record]:
    where, args = _where(tenant_id, flt)
    return await fetch_page(conn, "transactions", where, args, first, after)


async def count(conn: Connection, tenant_id: int, flt: dict[str, Any]) -> int:
    where, args = _where(tenant_id, flt)
    return await count_rows(conn, "transactions", where, args)


async def set_match_result(
    conn: Connection, tenant_id: int, rows: Sequence[dict[str, Any]]
) -> list[Record]:
    """Record the matcher's verdict (state, explanation, suggestions) for many payments."""
    return list(
        await conn.fetch(
            """
        update transactions t set match_state = r.match_state, explanation = r.explanation,
            suggestions = coalesce(r.suggestions, '[]'::jsonb), updated_at = now()
        from jsonb_to_recordset($2::jsonb) as r(id bigint, match_state text, explanation text,
             suggestions jsonb)
        where t.tenant_id = $1 and t.id = r.id
        returning t.*
        """,
            tenant_id,
            list(rows),
        )
    )


async def open_for_rematch(
    conn: Connection, tenant_id: int, since: Any, limit: int
) -> list[Record]:
    """Recent incoming payments still unmatched or only suggested, newest first, that no
    person has decided on (those stay as the person left them)."""
    return list(
        await conn.fetch(
            """
            select t.* from transactions t
            join bank_connections c on c.id = t.connection_id
            where t.tenant_id = $1 and t.match_state in ('UNMATCHED', 'SUGGESTED')
              and t.auto_match and t.amount > 0 and t.received_at >= $2
              and c.status <> 'DISCONNECTED'
            order by t.received_at desc limit $3
            """,
            tenant_id,
            since,
            limit,
        )
    )


async def set_decision(
    conn: Connection,
    tenant_id: int,
    transaction_id: int,
    *,
    state: str,
    explanation: str,
    by: str,
    ignored_reason: str | None = None,
) -> Record | None:
    """Record a person's decision; automatic matching leaves the payment alone afterwards."""
    return await conn.fetchrow(
        """
        update transactions set match_state = $3, explanation = $4, decided_by = $5,
            decided_at = now(), ignored_reason = $6, auto_match = false, suggestions = '[]',
            updated_at = now()
        where tenant_id = $1 and id = $2 returning *
        """,
        tenant_id,
        transaction_id,
        state,
        explanation,
        by,
        ignored_reason,
    )
