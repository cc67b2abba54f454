"""Sync runs: the activity log of every poll of every connection."""

from __future__ import annotations

from asyncpg import Connection, Record

from .pagination import fetch_page

__all__ = ["abandon_running", "finish", "list_page", "start"]


async def list_page(
    conn: Connection, tenant_id: int, connection_id: int | None, first: int, after: int | None
) -> list[Record]:
    where, args = "x.tenant_id = $1", [tenant_id]
    if connection_id is not None:
        where, args = where + " and x.connection_id = $2", [tenant_id, connection_id]
    return await fetch_page(conn, "sync_runs", where, args, first, after)


async def start(conn: Connection, tenant_id: int, connection_id: int, now: object) -> Record:
    row = await conn.fetchrow(
        "insert into sync_runs (tenant_id, connection_id, started_at, status)"
        " values ($1, $2, $3, 'RUNNING') returning *",
        tenant_id,
        connection_id,
        now,
    )
    assert row is not None
    return row


async def finish(conn: Connection, run_id: int, values: dict[str, object]) -> Record:
    row = await conn.fetchrow(
        """
        update sync_runs set status = $2, finished_at = $3, fetched = $4, inserted = $5,
            duplicates = $6, matched = $7, error = $8
        where id = $1 returning *
        """,
        run_id,
        values["status"],
        values["finished_at"],
        values.get("fetched", 0),
        values.get("inserted", 0),
        values.get("duplicates", 0),
        values.get("matched", 0),
        values.get("error"),
    )
    assert row is not None
    return row


async def abandon_running(conn: Connection, connection_id: int, now: object) -> None:
    """Runs left RUNNING by a process that died are closed as failed when the next one starts."""
    await conn.execute(
        "update sync_runs set status = 'FAILED', finished_at = $2,"
        " error = 'interrupted: the process running this sync stopped'"
        " where connection_id = $1 and status = 'RUNNING'",
        connection_id,
        now,
    )
