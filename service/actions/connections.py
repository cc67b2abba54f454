"""Connecting, reconfiguring and disconnecting payment sources."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from asyncpg import Pool, Record

from ..domain.matcher import DEFAULT_MATCH_KEYS
from ..domain.models import DocumentKind, MatchKey
from ..errors import BadUserInput, NotFound, ServiceError
from ..secrets import SettingsCipher
from ..store import connections as connections_store
from .scope import Scope

__all__ = ["PROVIDERS", "connect", "disconnect", "get", "update"]

PROVIDERS = [
    "FIO",
    "CESKA_SPORITELNA",
    "CSOB_BBF",
    "COMGATE",
    "GOPAY",
    "GPWEBPAY",
    "KH_BANK",
    "BYZNYS_WEB",
    "STATEMENT_FILE",
    "PUSH",
    "SANDBOX",
]
# Sources this build can run; the others answer with a clear error until they land.
AVAILABLE = frozenset({"PUSH"})
_DEFAULT_INTERVAL = {"PUSH": 3600, "SANDBOX": 10}
_MAX_SETTINGS_BYTES = 16 * 1024


class NotAvailable(ServiceError):
    """A provider this version cannot run yet."""

    code = "BAD_USER_INPUT"


def _default_keys(provider: str) -> list[str]:
    keys = DEFAULT_MATCH_KEYS.get(provider) or frozenset(MatchKey)
    return sorted(k.value for k in keys)


def _check_interval(seconds: int | None) -> None:
    if seconds is not None and not 10 <= seconds <= 86400:
        raise BadUserInput(
            "pollIntervalSeconds must be between 10 and 86400", field="pollIntervalSeconds"
        )


def _check_list(name: str, values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    if not values:
        raise BadUserInput(f"{name} must name at least one value", field=name)
    return sorted(set(values))


def settings_context(tenant_id: int, provider: str) -> bytes:
    return f"recon:connection-settings:{tenant_id}:{provider}".encode()


async def connect(pool: Pool, scope: Scope, cipher: SettingsCipher, data: dict[str, Any]) -> Record:
    scope.require_connection_admin()
    scope.require_bank_sync_plan()
    provider = data["provider"]
    if provider not in AVAILABLE:
        raise NotAvailable(
            f"provider {provider} is not available yet in this version; use PUSH", field="provider"
        )
    settings = data.get("settings") or {}
    if not isinstance(settings, dict):
        raise BadUserInput("settings must be a JSON object", field="settings")
    blob = json.dumps(settings).encode()
    if len(blob) > _MAX_SETTINGS_BYTES:
        raise BadUserInput("settings are too large", field="settings")
    _check_interval(data.get("poll_interval_seconds"))
    name = (data.get("name") or "").strip() or provider.replace("_", " ").title()
    async with pool.acquire() as conn:
        return await connections_store.create(
            conn,
            scope.tenant_id,
            {
                "provider": provider,
                "name": name[:200],
                "status": "ACTIVE",
                "poll_interval_seconds": data.get("poll_interval_seconds")
                or _DEFAULT_INTERVAL.get(provider, 900),
                "match_against": _check_list("matchAgainst", data.get("match_against"))
                or sorted(k.value for k in DocumentKind),
                "match_keys": _check_list("matchKeys", data.get("match_keys"))
                or _default_keys(provider),
                "settings_encrypted": cipher.encrypt(
                    blob, settings_context(scope.tenant_id, provider)
                ),
            },
        )


async def get(pool: Pool, scope: Scope, connection_id: int) -> Record:
    async with pool.acquire() as conn:
        row = await connections_store.by_id(conn, scope.tenant_id, connection_id)
    if row is None:
        raise NotFound(f"connection {connection_id} not found")
    return row


async def update(pool: Pool, scope: Scope, connection_id: int, data: dict[str, Any]) -> Record:
    scope.require_connection_admin()
    _check_interval(data.get("poll_interval_seconds"))
    values: dict[str, Any] = {}
    if data.get("name") is not None:
        if not data["name"].strip():
            raise BadUserInput("name must not be empty", field="name")
        values["name"] = data["name"].strip()[:200]
    if data.get("poll_interval_seconds") is not None:
        values["poll_interval_seconds"] = data["poll_interval_seconds"]
    for key, field in (("match_against", "matchAgainst"), ("match_keys", "matchKeys")):
        checked = _check_list(field, data.get(key))
        if checked is not None:
            values[key] = checked
    async with pool.acquire() as conn, conn.transaction():
        current = await connections_store.by_id(
            conn, scope.tenant_id, connection_id, for_update=True
        )
        if current is None:
            raise NotFound(f"connection {connection_id} not found")
        row = await connections_store.update(conn, scope.tenant_id, connection_id, values)
    assert row is not None
    return row


async def disconnect(pool: Pool, scope: Scope, connection_id: int) -> Record:
    """Stop the sync; every payment already received stays."""
    scope.require_connection_admin()
    async with pool.acquire() as conn, conn.transaction():
        current = await connections_store.by_id(
            conn, scope.tenant_id, connection_id, for_update=True
        )
        if current is None:
            raise NotFound(f"connection {connection_id} not found")
        if current["status"] == "DISCONNECTED":
            return current
        row = await connections_store.update(
            conn,
            scope.tenant_id,
            connection_id,
            {"status": "DISCONNECTED", "disconnected_at": datetime.now(UTC)},
        )
    assert row is not None
    return row
