"""The demo tenant: a few partners, invoices, proformas and orders in HUF and CZK, and a
PUSH connection, so a new user has something to query at once. Seeding is idempotent."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from asyncpg import Pool

from .actions import connections as connection_actions
from .actions import documents as document_actions
from .actions.connections import Sources
from .actions.scope import Scope
from .auth import Plan, Role, issue_token
from .clock import Clock
from .config import Settings
from .providers.registry import polled_providers
from .secrets import SettingsCipher, encryption_key
from .store import connections as connections_store
from .store import tenants as tenants_store

__all__ = ["DEMO_PARTNERS", "seed_demo"]

DEMO_PARTNERS = [
    {
        "external_id": "P-1",
        "name": "Kovács Kft.",
        "identifier": "TAG-1001",
        "tax_number": "12345678-2-42",
    },
    {"external_id": "P-2", "name": "Szabó és Társa Bt.", "identifier": "TAG-1002"},
    {"external_id": "P-3", "name": "Novák s.r.o.", "tax_number": "CZ27082440"},
    {"external_id": "P-4", "name": "Dvořáková Jana"},
]


def _documents(today: date) -> list[dict[str, Any]]:
    d = today - timedelta(days=10)
    return [
        {
            "kind": "INVOICE",
            "number": "E-DEMO-2026-1",
            "total": Decimal("125000"),
            "currency": "HUF",
            "partner_external_id": "P-1",
            "issue_date": d,
            "due_date": d + timedelta(days=8),
        },
        {
            "kind": "INVOICE",
            "number": "E-DEMO-2026-2",
            "total": Decimal("48900"),
            "currency": "HUF",
            "partner_external_id": "P-2",
            "issue_date": d,
            "due_date": d + timedelta(days=8),
        },
        {
            "kind": "PROFORMA",
            "number": "D-DEMO-2026-1",
            "total": Decimal("15000"),
            "currency": "HUF",
            "order_number": "TAG-1001",
            "recurring_order_number": True,
            "partner_external_id": "P-1",
            "issue_date": d,
        },
        {
            "kind": "INVOICE",
            "number": "FV2026001",
            "total": Decimal("12100.00"),
            "currency": "CZK",
            "variable_symbol": "2026001",
            "constant_symbol": "0308",
            "partner_external_id": "P-3",
            "issue_date": d,
            "due_date": d + timedelta(days=14),
        },
        {
            "kind": "INVOICE",
            "number": "FV2026002",
            "total": Decimal("2450.50"),
            "currency": "CZK",
            "variable_symbol": "2026002",
            "partner_external_id": "P-4",
            "issue_date": d,
        },
        {
            "kind": "PROFORMA",
            "number": "ZF2026001",
            "total": Decimal("5000.00"),
            "currency": "CZK",
            "variable_symbol": "9026001",
            "partner_external_id": "P-3",
            "issue_date": d,
        },
        {
            "kind": "ORDER",
            "number": "OBJ-10045",
            "total": Decimal("899.00"),
            "currency": "CZK",
            "order_number": "10045",
            "payment_key": "AB12-CD34-EF56",
            "issue_date": d,
        },
        {
            "kind": "ORDER",
            "number": "R-2026-0042",
            "total": Decimal("23990"),
            "currency": "HUF",
            "order_number": "R-2026-0042",
            "issue_date": d,
        },
    ]


def _more_documents(today: date, count: int = 50) -> list[dict[str, Any]]:
    """Enough open documents that the sandbox bank keeps finding payers for a while."""
    out: list[dict[str, Any]] = []
    for n in range(count):
        issued = today - timedelta(days=n % 20)
        if n % 2:
            out.append(
                {
                    "kind": "INVOICE",
                    "number": f"FV2026{100 + n:03d}",
                    "currency": "CZK",
                    "total": Decimal(500 + 37 * n) + Decimal("0.50") * (n % 3),
                    "variable_symbol": f"2026{100 + n:03d}",
                    "partner_external_id": f"P-{3 + n % 2}",
                    "issue_date": issued,
                }
            )
        else:
            out.append(
                {
                    "kind": "INVOICE" if n % 3 else "PROFORMA",
                    "number": f"E-DEMO-2026-{100 + n}",
                    "currency": "HUF",
                    "total": Decimal(5000 + 1250 * n),
                    "partner_external_id": f"P-{1 + n % 2}",
                    "issue_date": issued,
                }
            )
    return out


async def seed_demo(pool: Pool, settings: Settings, today: date | None = None) -> str:
    """Create or refresh the demo tenant and return an OWNER token for it."""
    async with pool.acquire() as conn:
        tenant = await tenants_store.upsert(conn, "demo", "Demo Kft.", Plan.PROFI.value)
        assert tenant is not None
        existing = await connections_store.list_all(conn, tenant["id"])
    scope = Scope(
        tenant_id=tenant["id"],
        tenant_slug="demo",
        tenant_name=tenant["name"],
        plan=Plan.PROFI,
        subject="demo-seed",
        role=Role.OWNER,
    )
    await document_actions.upsert_partners(pool, scope, DEMO_PARTNERS, max_batch=1000)
    day = today or date.today()
    await document_actions.upsert_documents(
        pool, scope, _documents(day) + _more_documents(day), max_batch=1000
    )
    sources = Sources(
        cipher=SettingsCipher(encryption_key(settings)),
        providers=polled_providers(settings),
        clock=Clock(),
    )
    live = {c["provider"] for c in existing if c["status"] != "DISCONNECTED"}
    if "PUSH" not in live:
        await connection_actions.connect(
            pool, scope, sources, {"provider": "PUSH", "name": "Webshop payments (push)"}
        )
    if "SANDBOX" not in live:
        # The simulated bank: a payment every few seconds against the demo's open documents.
        await connection_actions.connect(
            pool,
            scope,
            sources,
            {
                "provider": "SANDBOX",
                "name": "Sandbox bank",
                "poll_interval_seconds": 10,
                "settings": {"paymentsPerMinute": 12},
            },
        )
    return issue_token(settings, "demo", Role.OWNER, "owner@demo")
