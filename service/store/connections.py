"""Bank connections: provider settings (encrypted), matching configuration, consent, leases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asyncpg import Connection, Record

__all__ = ["by_id", "by_ids", "create", "list_all", "set_settings", "update"]

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
