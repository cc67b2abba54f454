"""Sync runs: the activity log of every poll of every connection."""

from __future__ import annotations

from asyncpg import Connection, Record

__all__ = ["list_page"]


async def list_page(
    conn: Connection, tenant_id: int, connection_id: int | None, first: int, after: int | None
) -> list[Record]:
    args: list[object] = [tenant_id, first + 1]
    where = "tenant_id = $1"
    if connection_id is not None:
        args.append(connection_id)
        where += f" and connection_id = ${len(args)}"
    if after is not None:
        args.append(after)
        where += f" and id < ${len(args)}"
    return list(
        await conn.fetch(f"select * from sync_runs where {where} order by id desc limit $2", *args)
    )
