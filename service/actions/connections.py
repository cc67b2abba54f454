"""Connecting, reconfiguring and disconnecting payment sources."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from asyncpg import Pool, Record

from ..clock import Clock
from ..domain.matcher import DEFAULT_MATCH_KEYS
from ..domain.models import DocumentKind, MatchKey
from ..errors import BadUserInput, Conflict, NotAvailable, NotFound
from ..providers.base import Provider, ProviderError
from ..secrets import SettingsCipher
from ..store import connections as connections_store
from ..store import events as events_store
from .scope import Scope

__all__ = [
    "Sources",
    "complete_consent",
    "connect",
    "disconnect",
    "get",
    "renew_consent",
    "update",
]

log = logging.getLogger(__name__)

# Sources this build can run; the others answer with a clear error until they land.
AVAILABLE = frozenset({"PUSH"})
_DEFAULT_INTERVAL = {"PUSH": 3600, "SANDBOX": 10}
_MAX_SETTINGS_BYTES = 16 * 1024


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


def settings_context(tenant_id: int, provider: str, connection_id: int) -> bytes:
    """Authenticated data of a connection's encrypted settings: a ciphertext copied onto
    another connection, even of the same tenant and source, does not decrypt."""
    return f"recon:connection-settings:{tenant_id}:{provider}:{connection_id}".encode()


@dataclass(frozen=True, slots=True)
class Sources:
    """What the connection use cases need beyond the database: the encryption of settings,
    the sources this build can poll, and the time."""

    cipher: SettingsCipher
    providers: Mapping[str, Provider]
    clock: Clock


def _settings_of(sources: Sources, row: Record, blob: bytes | None) -> dict[str, Any]:
    if blob is None:
        return {}
    plain = sources.cipher.decrypt(
        blob, settings_context(row["tenant_id"], row["provider"], row["id"])
    )
    settings: dict[str, Any] = json.loads(plain)
    return settings


async def connect(
    pool: Pool, scope: Scope, sources: Sources, data: dict[str, Any]
) -> tuple[Record, str | None]:
    """Create a connection; returns it and, for consent-based sources, where to send the user."""
    scope.require_connection_admin()
    scope.require_bank_sync_plan()
    provider_name = data["provider"]
    provider = sources.providers.get(provider_name)
    if provider_name not in AVAILABLE and provider is None:
        raise NotAvailable(
            f"provider {provider_name} is not available yet in this version; use PUSH or SANDBOX",
            field="provider",
        )
    settings = data.get("settings") or {}
    if not isinstance(settings, dict):
        raise BadUserInput("settings must be a JSON object", field="settings")
    blob = json.dumps(settings).encode()
    if len(blob) > _MAX_SETTINGS_BYTES:
        raise BadUserInput("settings are too large", field="settings")
    _check_interval(data.get("poll_interval_seconds"))
    if provider is not None:
        try:
            provider.check_settings(settings)
        except ValueError as exc:
            raise BadUserInput(str(exc), field="settings") from None
    name = (data.get("name") or "").strip() or provider_name.replace("_", " ").title()
    now = sources.clock.now()
    consent = provider is not None and provider.requires_consent(settings)
    start = (
        await provider.start_consent(settings, data.get("redirect_uri"), now)
        if provider and consent
        else None
    )
    async with pool.acquire() as conn, conn.transaction():
        row = await connections_store.create(
            conn,
            scope.tenant_id,
            {
                "provider": provider_name,
                "name": name[:200],
                "status": "PENDING_CONSENT" if consent else "ACTIVE",
                "poll_interval_seconds": data.get("poll_interval_seconds")
                or _DEFAULT_INTERVAL.get(provider_name, 900),
                "match_against": _check_list("matchAgainst", data.get("match_against"))
                or sorted(k.value for k in DocumentKind),
                "match_keys": _check_list("matchKeys", data.get("match_keys"))
                or _default_keys(provider_name),
                "settings_encrypted": b"",  # sealed below, bound to the new id
                "consent_status": "PENDING" if consent else None,
                "consent_valid_until": None,
            },
        )
        await connections_store.set_settings(
            conn,
            scope.tenant_id,
            row["id"],
            sources.cipher.encrypt(
                blob, settings_context(scope.tenant_id, provider_name, row["id"])
            ),
        )
        if start is not None:
            row = await connections_store.update(
                conn, scope.tenant_id, row["id"], {"consent_reference": start.reference}
            )
    assert row is not None
    return row, start.redirect_url if start else None


async def _consent_connection(
    conn: Any, scope: Scope, sources: Sources, connection_id: int
) -> tuple[Record, Provider, dict[str, Any]]:
    row = await connections_store.by_id(conn, scope.tenant_id, connection_id, for_update=True)
    if row is None:
        raise NotFound(f"connection {connection_id} not found")
    provider = sources.providers.get(row["provider"])
    blob = await connections_store.settings_blob(conn, scope.tenant_id, connection_id)
    settings = _settings_of(sources, row, blob)
    if provider is None or not provider.requires_consent(settings):
        raise Conflict(
            f"connection {connection_id} ({row['provider']}) works without a bank consent"
        )
    if row["status"] == "DISCONNECTED":
        raise Conflict(f"connection {connection_id} is disconnected; connect it again")
    return row, provider, settings


async def complete_consent(
    pool: Pool, scope: Scope, sources: Sources, connection_id: int
) -> Record:
    """The user is back from the bank: ask the bank whether the consent is granted."""
    scope.require_connection_admin()
    scope.require_bank_sync_plan()
    async with pool.acquire() as conn, conn.transaction():
        row, provider, settings = await _consent_connection(conn, scope, sources, connection_id)
        if not row["consent_reference"]:
            raise Conflict(f"connection {connection_id} has no consent waiting; call renewConsent")
        now = sources.clock.now()
        grant = await provider.check_consent(settings, row["consent_reference"], now)
        if grant.status != "VALID" or grant.valid_until is None:
            updated = await connections_store.update(
                conn,
                scope.tenant_id,
                connection_id,
                {
                    "consent_status": grant.status,
                    "last_error": f"the bank reports the consent {grant.status.lower()}",
                },
            )
        else:
            updated = await connections_store.update(
                conn,
                scope.tenant_id,
                connection_id,
                {
                    "status": "ACTIVE",
                    "consent_status": "VALID",
                    "consent_valid_until": grant.valid_until,
                    "consent_granted_at": now,
                    "consent_warned_8d_at": None,
                    "consent_warned_2d_at": None,
                    "consent_reference": row["consent_reference"],
                    "next_sync_at": now,
                    "last_error": None,
                },
            )
    assert updated is not None
    return updated


async def renew_consent(
    pool: Pool, scope: Scope, sources: Sources, connection_id: int, redirect_uri: str | None = None
) -> tuple[Record, str]:
    """Start a new consent at the bank; polling goes on under the old one until it ends."""
    scope.require_connection_admin()
    scope.require_bank_sync_plan()
    async with pool.acquire() as conn, conn.transaction():
        _, provider, settings = await _consent_connection(conn, scope, sources, connection_id)
        start = await provider.start_consent(settings, redirect_uri, sources.clock.now())
        updated = await connections_store.update(
            conn, scope.tenant_id, connection_id, {"consent_reference": start.reference}
        )
    assert updated is not None
    return updated, start.redirect_url


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


async def disconnect(pool: Pool, scope: Scope, sources: Sources, connection_id: int) -> Record:
    """Stop the sync and revoke the consent at the bank where there is one; every payment
    already received stays."""
    scope.require_connection_admin()
    async with pool.acquire() as conn, conn.transaction():
        current = await connections_store.by_id(
            conn, scope.tenant_id, connection_id, for_update=True
        )
        if current is None:
            raise NotFound(f"connection {connection_id} not found")
        if current["status"] == "DISCONNECTED":
            return current
        provider = sources.providers.get(current["provider"])
        if provider is not None and current["consent_reference"]:
            blob = await connections_store.settings_blob(conn, scope.tenant_id, connection_id)
            try:
                await provider.revoke(
                    _settings_of(sources, current, blob), current["consent_reference"]
                )
            except ProviderError as exc:  # the bank ends it at expiry anyway; we stop polling now
                log.warning("connection %s: revoking the consent failed: %s", connection_id, exc)
        values: dict[str, Any] = {"status": "DISCONNECTED", "disconnected_at": sources.clock.now()}
        if current["consent_status"] in ("VALID", "PENDING"):
            values["consent_status"] = "REVOKED"
        row = await connections_store.update(conn, scope.tenant_id, connection_id, values)
        await events_store.append_many(
            conn,
            scope.tenant_id,
            [{"type": "CONNECTION_DISCONNECTED", "connection_id": connection_id}],
        )
    assert row is not None
    return row
