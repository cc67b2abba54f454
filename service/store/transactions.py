"""Transactions: payments received and sent, deduplicated per connection."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any

from asyncpg import Connection, Record

from .pagination import count_rows, fetch_page, like_escape
from .params import text_list, texts_of

__all__ = [
    "Reservation",
    "by_ids",
    "by_provider_ids",
    "count",
    "insert_new",
    "list_page",
    "new_row",
    "open_for_rematch",
    "reserve_new",
    "set_decision",
    "set_match_result",
]

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


# One probe of the (connection, provider id) unique index per id. With the tenant inside
# the probe, or with `= any(array)`, a young table's plan scanned the connection's rows.
_BY_PROVIDER_ID = f"""
from {texts_of("$3")} k(v) cross join lateral (
    select * from transactions
    where connection_id = $2 and provider_transaction_id = k.v limit 1) x
where x.tenant_id = $1
"""


_RESERVE = f"""
with known as (select x.provider_transaction_id as pid {_BY_PROVIDER_ID}),
held as (select id from bank_connections where tenant_id = $1 and id = $2 for key share)
select array(select pid from known) as known,
       array(
           select nextval((select pg_get_serial_sequence('transactions', 'id')::regclass))
           from generate_series(
               1, (select count(*) from {texts_of("$3")}) - (select count(*) from known))
       ) as ids,
       now() as now
from held
"""


@dataclass(frozen=True, slots=True)
class Reservation:
    """What `reserve_new` found: provider ids already stored, and ids for the others."""

    known: set[str]
    ids: list[int]
    now: datetime  # the transaction's now(): the new rows' received_at and updated_at


async def reserve_new(
    conn: Connection, tenant_id: int, connection_id: int, provider_ids: Sequence[str]
) -> Reservation:
    """Which of these (distinct) provider ids the connection has stored, and table ids for
    the rest, in one round trip.

    With the ids known up front, rows can be copied in and what refers to them written
    without reading anything back. The connection's row is held FOR KEY SHARE from here on,
    as the rows' foreign key would hold it at their insert: taken now, before the caller
    takes the tenant's event lock, so the order is that of writers that lock a connection
    and then append events (the reverse could deadlock with them).
    """
    row = await conn.fetchrow(
        _RESERVE,
        tenant_id,
        connection_id,
        text_list(provider_ids),
    )
    if row is None:
        raise LookupError(f"connection {connection_id} not found")
    return Reservation(known=set(row["known"]), ids=list(row["ids"]), now=row["now"])


_COPIED = [
    "id",
    "tenant_id",
    "connection_id",
    *_COLUMNS,
    "match_state",
    "explanation",
    "suggestions",
]
_SCALE = Decimal("0.0001")  # numeric(18, 4)


# Every column in table order, as a new row holds it unless given.
_NEW_ROW: dict[str, Any] = {
    "id": None,
    "tenant_id": None,
    "connection_id": None,
    **dict.fromkeys(_COLUMNS),
    "match_state": "UNMATCHED",
    "explanation": None,
    "suggestions": None,
    "ignored_reason": None,
    "auto_match": True,
    "decided_by": None,
    "decided_at": None,
    "received_at": None,
    "updated_at": None,
}
_copied = itemgetter(*_COPIED)


def new_row(
    *values: Mapping[str, Any], id: int, tenant_id: int, connection_id: int, now: datetime
) -> dict[str, Any]:
    """A new payment as `select *` will return it once `insert_new` stored it.

    `values` hold its columns, in parts (a checked record, its verdict: `match_state`,
    `explanation`, `suggestions`); `id` comes from `reserve_new`, `now` is the transaction's.
    """
    row = _NEW_ROW.copy()
    for part in values:
        row.update(part)
    row["id"] = id
    row["tenant_id"] = tenant_id
    row["connection_id"] = connection_id
    row["amount"] = row["amount"].quantize(_SCALE)  # numeric(18, 4)
    if not row["suggestions"]:
        row["suggestions"] = []
    row["received_at"] = row["updated_at"] = now
    return row


async def insert_new(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Store new payments (rows from `new_row`) in one binary copy.

    One already stored violates the unique (connection_id, provider_transaction_id)
    constraint: the caller decides what to do about it.
    """
    if rows:
        await conn.copy_records_to_table(
            "transactions", records=map(_copied, rows), columns=_COPIED
        )


async def by_provider_ids(
    conn: Connection, tenant_id: int, connection_id: int, provider_ids: Sequence[str]
) -> list[Record]:
    return list(
        await conn.fetch(
            f"select x.* {_BY_PROVIDER_ID}", tenant_id, connection_id, text_list(provider_ids)
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
