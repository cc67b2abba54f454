"""Consent reminders and expiry: CONSENT_EXPIRING 8 and again 2 days before the end (once
each, whichever replica gets there first), CONSENT_EXPIRED at the end, when polling stops."""

from __future__ import annotations

from datetime import datetime, timedelta

from asyncpg import Pool

from ..store import connections as connections_store
from ..store import events as events_store

__all__ = ["check_consents"]

_FIRST = timedelta(days=8)
_SECOND = timedelta(days=2)


async def check_consents(pool: Pool, now: datetime) -> int:
    """Send what is due as of `now`; returns how many events were written."""
    written = 0
    async with pool.acquire() as conn:
        due = await connections_store.consent_due(conn, now, _FIRST)
    for row in due:
        async with pool.acquire() as conn, conn.transaction():
            left = row["consent_valid_until"] - now
            event: dict[str, object] | None = None
            if left <= timedelta(0):
                if await connections_store.expire_consent(conn, row["id"], now) is not None:
                    event = {"type": "CONSENT_EXPIRED", "connection_id": row["id"]}
            elif left <= _SECOND:
                if await connections_store.mark_warned(
                    conn, row["id"], "consent_warned_2d_at", now
                ):
                    # A consent first seen this close to its end gets one reminder, not two.
                    await connections_store.mark_warned(
                        conn, row["id"], "consent_warned_8d_at", now
                    )
                    event = _expiring(row["id"], row["consent_valid_until"], left)
            elif await connections_store.mark_warned(conn, row["id"], "consent_warned_8d_at", now):
                event = _expiring(row["id"], row["consent_valid_until"], left)
            if event is not None:
                await events_store.append_many(conn, row["tenant_id"], [event])
                written += 1
    return written


def _expiring(connection_id: int, until: datetime, left: timedelta) -> dict[str, object]:
    return {
        "type": "CONSENT_EXPIRING",
        "connection_id": connection_id,
        "payload": {"validUntil": until.isoformat(), "daysLeft": max(0, left.days)},
    }
