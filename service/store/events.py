"""The event outbox: appended in the writer's transaction, read back by position.

Ordering rules (why a reader that resumes from the last id it saw never skips a row):

* Writers of one tenant are serialized from their first event row to their commit
  (`append_many` takes a per-tenant transaction lock before it takes ids). A tenant's ids are
  therefore handed out in commit order, and the rows a reader can see always form a prefix of
  that tenant's ids: nothing can later appear below a row already seen.
* Reads also stop at the first row whose writer began while an older write transaction (any
  table, any tenant) is still running: `xid >= pg_snapshot_xmin(pg_current_snapshot())`. It is
  a cut, not a filter: rows above that row are held back too, never handed out past it. That
  keeps the guarantee for a writer that bypasses `append_many` in the common interleaving (the
  lower id taken first), at the price of holding rows back while a long write transaction runs.
  A filter (hand out every row below xmin, skip the rest) is not enough: a transaction that got
  its xid early but its id late commits a higher id that the filter hands out while the lower
  one is still held back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from asyncpg import Connection, Record

__all__ = [
    "CHANNEL",
    "Page",
    "append_many",
    "current_xmin",
    "last_id",
    "last_ids",
    "list_after",
    "read_after",
]

# Wakes listeners on every replica; the payload is a hint, the table is the truth.
CHANNEL = "recon_events"

# Two-key advisory lock space (this constant, tenant id) for event writers; "evnt".
_EVENTS_LOCK = 0x65766E74
_MAX_ID = 2**63 - 1
_COPIED = ["tenant_id", "type", "transaction_id", "document_id", "connection_id"]


async def append_many(
    conn: Connection, tenant_id: int, events: Sequence[dict[str, Any]], *, again: bool = False
) -> None:
    """Append events in the caller's transaction and wake listeners at commit.

    Takes the tenant's event lock until the transaction ends, so call it as the last write of
    the transaction: the lock is held from here to commit, and other writers of the same
    tenant wait for it. `again` says this transaction appended events already (so holds the
    lock, and listeners will be woken): the rows are then just written.
    """
    if not events:
        return
    if not conn.is_in_transaction():
        # The lock only serializes if it is held until the rows commit.
        async with conn.transaction():
            await append_many(conn, tenant_id, events)
        return
    if not again:
        # The notification goes out at commit whenever it is queued: take it with the lock.
        await conn.execute(
            "select pg_advisory_xact_lock($1::int, $2::int), pg_notify($3, $4)",
            _EVENTS_LOCK,
            tenant_id & 0x7FFFFFFF,
            CHANNEL,
            str(tenant_id),
        )
    if any(e.get("payload") for e in events):
        await conn.execute(
            """
            insert into events (tenant_id, type, transaction_id, document_id, connection_id,
                                payload)
            select $1, e.type, e.transaction_id, e.document_id, e.connection_id,
                   coalesce(e.payload, '{}'::jsonb)
            from rows from (jsonb_to_recordset($2::jsonb) as (type text, transaction_id bigint,
                 document_id bigint, connection_id bigint, payload jsonb)) with ordinality as e
            order by e.ordinality
            """,
            tenant_id,
            list(events),
        )
        return
    # No payloads (the usual case): a binary copy. Ids come from the identity default row by
    # row in input order, after the lock, like the insert's.
    await conn.copy_records_to_table(
        "events",
        records=[
            (
                tenant_id,
                e["type"],
                e.get("transaction_id"),
                e.get("document_id"),
                e.get("connection_id"),
            )
            for e in events
        ],
        columns=_COPIED,
    )


@dataclass(frozen=True, slots=True)
class Page:
    """Rows after a position, oldest first.

    `held_xid` is set when the read stopped at a row whose writer may still be preceded by a
    running one: the row's transaction id. Once `current_xmin` has passed it, read again.
    """

    rows: list[Record]
    held_xid: int | None = None

    @property
    def held(self) -> bool:
        return self.held_xid is not None


async def read_after(
    conn: Connection,
    tenant_id: int,
    after: int | None,
    limit: int,
    types: Sequence[str] | None = None,
    upto: int | None = None,
) -> Page:
    """Up to `limit` events with `after < id <= upto` of the given types, cut at a held row."""
    args: list[Any] = [tenant_id, after or 0, _MAX_ID if upto is None else upto, limit]
    type_filter = ""
    if types:
        args.append(list(types))
        type_filter = " and type = any($5)"
    # The cut looks at rows of every type, but only up to the last row of this page: a held
    # row further on does not matter for this page, and the scan stays as short as the page.
    rows = await conn.fetch(
        f"""
        with page as (
            select * from events
            where tenant_id = $1 and id > $2 and id <= $3{type_filter}
            order by id limit $4
        ), cut as (
            select id, xid from events
            where tenant_id = $1 and id > $2 and id <= (select max(id) from page)
              and xid >= pg_snapshot_xmin(pg_current_snapshot())
            order by id limit 1
        )
        select page.*, cut.id as held_from, cut.xid as held_xid
        from page left join cut on true order by page.id
        """,
        *args,
    )
    if not rows:
        return Page(rows=[])
    cut = rows[0]["held_from"]
    if cut is None:
        return Page(rows=list(rows))
    return Page(rows=[r for r in rows if r["id"] < cut], held_xid=int(rows[0]["held_xid"]))


async def list_after(
    conn: Connection, tenant_id: int, after: int | None, limit: int, types: Sequence[str] | None
) -> list[Record]:
    """Events after a position, oldest first, only those no running writer can precede."""
    return (await read_after(conn, tenant_id, after, limit, types)).rows


async def last_id(conn: Connection, tenant_id: int) -> int:
    """The tenant's newest committed event id (0 when it has none): where "from now" starts."""
    value = await conn.fetchval(
        "select coalesce(max(id), 0) from events where tenant_id = $1", tenant_id
    )
    return int(value)


async def last_ids(conn: Connection, tenant_ids: Sequence[int]) -> dict[int, int]:
    """Each tenant's newest committed event id (one index probe per tenant, one round trip)."""
    rows = await conn.fetch(
        """
        select t.id, coalesce((select max(e.id) from events e where e.tenant_id = t.id), 0) as head
        from unnest($1::bigint[]) as t(id)
        """,
        list(tenant_ids),
    )
    return {r["id"]: r["head"] for r in rows}


async def current_xmin(conn: Connection) -> int:
    """The oldest running write transaction's id: rows held at a lower xid are released."""
    return int(await conn.fetchval("select pg_snapshot_xmin(pg_current_snapshot())"))
