"""Bank connections: provider settings (encrypted), matching configuration, consent, leases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asyncpg import Connection, Record

__all__ = [
    "by_id",
    "by_ids",
    "claim_due",
    "claim_one",
    "consent_due",
    "create",
    "expire_consent",
    "finish_sync",
    "list_all",
    "lock_leased",
    "mark_warned",
    "release_leases",
    "set_settings",
    "settings_blob",
    "update",
]

# Columns the API may read; the encrypted settings never leave this module unless asked for.
_PUBLIC = """id, tenant_id, provider, name, status, poll_interval_seconds, match_against,
    match_keys,
    consent_status, consent_valid_until, consent_reference, last_sync_at, last_error, created_at,
    updated_at, disconnected_at"""


async def create(conn: Connection, tenant_id: int, values: dict[str, Any]) -> Record:
    row = await conn.fetchrow(
        f"""
        insert into bank_connections (tenant_id, provider, name, status, poll_interval_seconds,
            match_against, match_keys, settings_encrypted, consent_status, consent_valid_until)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        returning {_PUBLIC}
        """,
        tenant_id,
        values["provider"],
        values["name"],
        values["status"],
        values["poll_interval_seconds"],
        values["match_against"],
        values["match_keys"],
        values["settings_encrypted"],
        values.get("consent_status"),
        values.get("consent_valid_until"),
    )
    assert row is not None
    return row


async def by_id(
    conn: Connection, tenant_id: int, connection_id: int, *, for_update: bool = False
) -> Record | None:
    lock = " for update" if for_update else ""
    return await conn.fetchrow(
        f"select {_PUBLIC} from bank_connections where tenant_id = $1 and id = $2{lock}",
        tenant_id,
        connection_id,
    )


async def by_ids(conn: Connection, tenant_id: int, ids: Sequence[int]) -> list[Record]:
    return list(
        await conn.fetch(
            f"select {_PUBLIC} from bank_connections where tenant_id = $1 and id = any($2)",
            tenant_id,
            list(ids),
        )
    )


async def list_all(conn: Connection, tenant_id: int) -> list[Record]:
    return list(
        await conn.fetch(
            f"select {_PUBLIC} from bank_connections where tenant_id = $1 order by id", tenant_id
        )
    )


_UPDATABLE = frozenset(
    {
        "consent_reference",
        "consent_granted_at",
        "consent_warned_8d_at",
        "consent_warned_2d_at",
        "failure_count",
        "name",
        "poll_interval_seconds",
        "match_against",
        "match_keys",
        "status",
        "last_error",
        "consent_status",
        "consent_valid_until",
        "disconnected_at",
        "next_sync_at",
    }
)


async def update(
    conn: Connection, tenant_id: int, connection_id: int, values: dict[str, Any]
) -> Record | None:
    unknown = set(values) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    if not values:
        return await by_id(conn, tenant_id, connection_id)
    names = list(values)
    sets = ", ".join(f"{n} = ${i + 3}" for i, n in enumerate(names))
    return await conn.fetchrow(
        f"update bank_connections set {sets}, updated_at = now()"
        f" where tenant_id = $1 and id = $2 returning {_PUBLIC}",
        tenant_id,
        connection_id,
        *[values[n] for n in names],
    )


async def set_settings(conn: Connection, tenant_id: int, connection_id: int, blob: bytes) -> None:
    await conn.execute(
        "update bank_connections set settings_encrypted = $3, updated_at = now()"
        " where tenant_id = $1 and id = $2",
        tenant_id,
        connection_id,
        blob,
    )


_WORKER = _PUBLIC + ", settings_encrypted, sync_cursor, failure_count, lease_owner"


async def claim_due(
    conn: Connection, owner: str, now: Any, lease_seconds: int, limit: int, providers: Sequence[str]
) -> list[Record]:
    """Lease up to `limit` active connections that are due, skipping ones another replica
    holds; a lease whose holder died runs out and the connection is claimed again."""
    return list(
        await conn.fetch(
            f"""
            update bank_connections c set lease_owner = $1,
                lease_expires_at = $2::timestamptz + make_interval(secs => $3)
            where c.id in (
                select id from bank_connections
                where status = 'ACTIVE' and provider = any($5::text[]) and next_sync_at <= $2
                  and (lease_expires_at is null or lease_expires_at < $2)
                  and tenant_id in (select id from tenants where plan in ('DIGITAL', 'PROFI'))
                order by next_sync_at limit $4
                for update skip locked)
            returning {_WORKER}
            """,
            owner,
            now,
            lease_seconds,
            limit,
            list(providers),
        )
    )


async def claim_one(
    conn: Connection, tenant_id: int, connection_id: int, owner: str, now: Any, lease_seconds: int
) -> Record | None:
    """Lease one connection now (syncNow), unless another sync holds it."""
    return await conn.fetchrow(
        f"""
        update bank_connections set lease_owner = $3,
            lease_expires_at = $4::timestamptz + make_interval(secs => $5)
        where tenant_id = $1 and id = $2
          and (lease_expires_at is null or lease_expires_at < $4)
        returning {_WORKER}
        """,
        tenant_id,
        connection_id,
        owner,
        now,
        lease_seconds,
    )


async def lock_leased(conn: Connection, connection_id: int, owner: str) -> Record | None:
    """The connection, locked, if this owner still holds its lease (the fencing check before
    writing what a sync fetched)."""
    return await conn.fetchrow(
        f"select {_WORKER} from bank_connections where id = $1 and lease_owner = $2 for update",
        connection_id,
        owner,
    )


async def finish_sync(conn: Connection, connection_id: int, values: dict[str, Any]) -> None:
    """Record a sync's outcome and give the lease back."""
    await conn.execute(
        """
        update bank_connections set sync_cursor = coalesce($2::jsonb, sync_cursor),
            last_sync_at = coalesce($3, last_sync_at), next_sync_at = $4,
            last_error = $5, failure_count = $6, lease_owner = null, lease_expires_at = null,
            status = coalesce($7, status), updated_at = now()
        where id = $1
        """,
        connection_id,
        values.get("cursor"),
        values.get("last_sync_at"),
        values["next_sync_at"],
        values.get("last_error"),
        values.get("failure_count", 0),
        values.get("status"),
    )


async def release_leases(conn: Connection, owner: str) -> int:
    result = await conn.execute(
        "update bank_connections set lease_owner = null, lease_expires_at = null"
        " where lease_owner = $1",
        owner,
    )
    return int(result.split()[-1])


async def settings_blob(conn: Connection, tenant_id: int, connection_id: int) -> bytes | None:
    value = await conn.fetchval(
        "select settings_encrypted from bank_connections where tenant_id = $1 and id = $2",
        tenant_id,
        connection_id,
    )
    return bytes(value) if value is not None else None


async def consent_due(conn: Connection, now: Any, within: Any) -> list[Record]:
    """Connections whose valid consent ends before `now + within`."""
    return list(
        await conn.fetch(
            f"select {_PUBLIC}, consent_warned_8d_at, consent_warned_2d_at from bank_connections"
            " where consent_status = 'VALID' and consent_valid_until <= $1::timestamptz + $2",
            now,
            within,
        )
    )


async def mark_warned(conn: Connection, connection_id: int, column: str, now: Any) -> bool:
    """Set a reminder column once; True only for the caller that set it."""
    if column not in ("consent_warned_8d_at", "consent_warned_2d_at"):
        raise ValueError(column)
    result = await conn.execute(
        f"update bank_connections set {column} = $2 where id = $1 and {column} is null",
        connection_id,
        now,
    )
    return str(result).endswith(" 1")


async def expire_consent(conn: Connection, connection_id: int, now: Any) -> Record | None:
    """Mark an expired consent, once; polling stops until it is renewed."""
    return await conn.fetchrow(
        f"""
        update bank_connections set consent_status = 'EXPIRED', status = 'CONSENT_EXPIRED',
            updated_at = now()
        where id = $1 and consent_status = 'VALID' and consent_valid_until <= $2
        returning {_PUBLIC}
        """,
        connection_id,
        now,
    )
