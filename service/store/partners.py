"""Partners (customers who pay)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asyncpg import Connection, Record

__all__ = ["by_ids", "ids_by_external_id", "upsert_many"]


async def upsert_many(
    conn: Connection, tenant_id: int, rows: Sequence[dict[str, Any]]
) -> list[Record]:
    return list(
        await conn.fetch(
            """
            insert into partners (tenant_id, external_id, name, name_norm, identifier,
                                  identifier_norm, tax_number)
            select $1, r.external_id, r.name, r.name_norm, r.identifier, r.identifier_norm,
                   r.tax_number
            from jsonb_to_recordset($2::jsonb) as r(external_id text, name text, name_norm text,
                 identifier text, identifier_norm text, tax_number text)
            on conflict (tenant_id, external_id) do update set
                name = excluded.name, name_norm = excluded.name_norm,
                identifier = excluded.identifier, identifier_norm = excluded.identifier_norm,
                tax_number = excluded.tax_number, updated_at = now()
            returning *
            """,
            tenant_id,
            list(rows),
        )
    )


async def ids_by_external_id(
    conn: Connection, tenant_id: int, external_ids: list[str]
) -> dict[str, int]:
    rows = await conn.fetch(
        "select id, external_id from partners where tenant_id = $1 and external_id = any($2)",
        tenant_id,
        external_ids,
    )
    return {r["external_id"]: r["id"] for r in rows}


async def by_ids(conn: Connection, tenant_id: int, ids: Sequence[int]) -> list[Record]:
    return list(
        await conn.fetch(
            "select * from partners where tenant_id = $1 and id = any($2)", tenant_id, list(ids)
        )
    )
