"""The event outbox: appended in the writer's transaction, read back by position."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asyncpg import Connection, Record

__all__ = ["CHANNEL", "append_many", "list_after"]

# Wakes listeners on every replica; the payload is a hint, the table is the truth.
CHANNEL = "recon_events"


async def append_many(conn: Connection, tenant_id: int, events: Sequence[dict[str, Any]]) -> None:
    if not events:
        return
    await conn.execute(
        """
        insert into events (tenant_id, type, transaction_id, document_id, connection_id, payload)
        select $1, e.type, e.transaction_id, e.document_id, e.connection_id,
               coalesce(e.payload, '{}'::jsonb)
        from rows from (jsonb_to_recordset($2::jsonb) as (type text, transaction_id bigint,
             document_id bigint, connection_id bigint, payload jsonb)) with ordinality as e
        order by e.ordinality
        """,
        tenant_id,
        list(events),
    )
    await conn.execute("select pg_notify($1, $2)", CHANNEL, str(tenant_id))


async def list_after(
    conn: Connection, tenant_id: int, after: int | None, limit: int, types: Sequence[str] | None
) -> list[Record]:
    """Events after a position, oldest first, only those no running writer can precede.

    Ids are taken before commit, so a transaction still running may hold a lower id than one
    already visible. Rows written by transactions at or above the snapshot's xmin are held back
    until every older writer has finished; a reader that resumes from the last id it saw then
    never skips one.
    """
    args: list[Any] = [tenant_id, after or 0, limit]
    type_filter = ""
    if types:
        args.append(list(types))
        type_filter = " and type = any($4)"
    return list(
        await conn.fetch(
            f"""
            select * from events
            where tenant_id = $1 and id > $2{type_filter}
              and xid < pg_snapshot_xmin(pg_current_snapshot())
            order by id limit $3
            """,
            *args,
        )
    )
