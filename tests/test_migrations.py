"""Migrations: from an empty database, in order, exactly once, also when raced."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from service import db


@pytest.fixture
async def empty_database(database_url: str) -> AsyncIterator[str]:
    """A brand-new database on the same server, dropped afterwards."""
    name = f"recon_mig_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'create database "{name}"')
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(database_url)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    await admin.execute(f'drop database "{name}" with (force)')
    await admin.close()


async def test_migrate_from_empty_applies_every_file_once(empty_database: str) -> None:
    conn = await asyncpg.connect(empty_database)
    try:
        files = sorted(p.stem for p in db.MIGRATIONS_DIR.glob("*.sql"))
        assert await db.pending_migrations(conn) == files
        assert await db.migrate(conn) == files
        assert await db.migrate(conn) == []
        assert await db.pending_migrations(conn) == []
        recorded = [
            r["version"]
            for r in await conn.fetch("select version from schema_migrations order by version")
        ]
        assert recorded == files
        tables = {
            r["tablename"]
            for r in await conn.fetch("select tablename from pg_tables where schemaname = 'public'")
        }
        assert {
            "tenants",
            "partners",
            "documents",
            "bank_connections",
            "transactions",
            "allocations",
            "sync_runs",
            "events",
            "schema_migrations",
        } <= tables
    finally:
        await conn.close()


async def test_concurrent_migrators_do_not_race(empty_database: str) -> None:
    conns = [await asyncpg.connect(empty_database) for _ in range(4)]
    try:
        results = await asyncio.gather(*(db.migrate(c) for c in conns))
        applied = [r for r in results if r]
        assert len(applied) == 1, results
        count = await conns[0].fetchval("select count(*) from schema_migrations")
        assert count == len(list(db.MIGRATIONS_DIR.glob("*.sql")))
    finally:
        for c in conns:
            await c.close()


async def test_constraints_keep_data_right(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant = await conn.fetchval(
            "insert into tenants (slug, name, plan) values ($1, 'x', 'PROFI') returning id",
            f"c-{uuid.uuid4().hex[:8]}",
        )
        insert = (
            "insert into documents (tenant_id, kind, number, number_norm, total, currency)"
            " values ($1, 'INVOICE', 'A-1', 'A-1', 10, 'HUF')"
        )
        await conn.execute(insert, tenant)
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(insert, tenant)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("insert into tenants (slug, name, plan) values ('bad', 'x', 'GOLD')")
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute(
                "insert into documents (tenant_id, kind, number, number_norm, total, currency)"
                " values (-1, 'INVOICE', 'A-2', 'A-2', 10, 'HUF')"
            )
        # Money is exact numeric, not float.
        assert (
            await conn.fetchval(
                "select data_type from information_schema.columns"
                " where table_name = 'transactions' and column_name = 'amount'"
            )
            == "numeric"
        )


async def test_the_outbox_is_keyed_by_tenant_with_one_index(pool: asyncpg.Pool) -> None:
    # Every event write pays for each index: the outbox keeps the one its readers use.
    async with pool.acquire() as conn:
        indexes = await conn.fetch(
            "select indexdef from pg_indexes where tablename = 'events' and schemaname = 'public'"
        )
        assert [r["indexdef"].split(" USING ")[1] for r in indexes] == ["btree (tenant_id, id)"]
        plan = await conn.fetch(
            "explain select * from events where tenant_id = 1 and id > 5 order by id limit 10"
        )
        assert "events_pkey" in " ".join(r[0] for r in plan)


async def test_reference_lengths_are_backfilled_for_documents_already_stored(
    empty_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = sorted(db.MIGRATIONS_DIR.glob("*.sql"))
    cut = next(i for i, f in enumerate(files) if f.stem == "0003_document_reference_lengths")
    for f in files[:cut]:
        (tmp_path / f.name).write_text(f.read_text())
    conn = await asyncpg.connect(empty_database)
    try:
        monkeypatch.setattr(db, "MIGRATIONS_DIR", tmp_path)
        await db.migrate(conn)
        tenant = await conn.fetchval(
            "insert into tenants (slug, name, plan) values ('old', 'x', 'PROFI') returning id"
        )
        await conn.execute(
            "insert into documents (tenant_id, kind, number, number_norm, order_number,"
            " order_number_norm, variable_symbol, variable_symbol_norm, total, currency)"
            " values ($1, 'INVOICE', 'e-1', 'E-1', 'web-2026', 'WEB-2026', '0042', '42', 1, 'HUF')",
            tenant,
        )
        monkeypatch.setattr(db, "MIGRATIONS_DIR", files[0].parent)
        assert "0003_document_reference_lengths" in await db.migrate(conn)
        lengths = await conn.fetch(
            "select length from document_reference_lengths where tenant_id = $1 order by 1",
            tenant,
        )
        assert [r["length"] for r in lengths] == [2, 3, 8]
    finally:
        await conn.close()


async def test_a_payment_holds_its_tenant_through_its_own_reference(pool: asyncpg.Pool) -> None:
    # Allocations and events carry a plain tenant id (0002, 0004): the payment's reference
    # is the one that holds it. (How allocations check their payment and document:
    # test_allocation_references.)
    async with pool.acquire() as conn:
        parents = await conn.fetch(
            "select confrelid::regclass::text as parent from pg_constraint c"
            " where c.conrelid = 'transactions'::regclass and c.contype = 'f'"
            " and c.conkey = array[(select attnum from pg_attribute"
            " where attrelid = c.conrelid and attname = 'tenant_id')]"
        )
        assert [r["parent"] for r in parents] == ["tenants"]


async def test_open_documents_upgrade_backfills_and_misses_no_concurrent_write(
    empty_database: str,
) -> None:
    """0005 over a database with documents: the open ones are taken over, and a document an
    old replica writes while the migration runs waits for it, then lands in the table."""
    conn = await asyncpg.connect(empty_database)
    writer = await asyncpg.connect(empty_database)
    try:
        for version, path in db._migration_files():
            if version < "0005":
                await conn.execute(path.read_text())
        tid = await conn.fetchval(
            "insert into tenants (slug, name, plan) values ('m', 'M', 'PROFI') returning id"
        )
        insert = (
            "insert into documents (tenant_id, kind, number, number_norm, total, paid_amount,"
            " currency) values ($1, 'INVOICE', $2, $2, $3, $4, 'HUF')"
        )
        await conn.execute(insert, tid, "OPEN-1", 100, 0)
        await conn.execute(insert, tid, "PAID-1", 100, 100)
        [(version, path)] = [(v, p) for v, p in db._migration_files() if v.startswith("0005")]
        # The writer comes in right after the backfill, before the triggers exist.
        sql = path.read_text()
        cut = sql.index("create index open_documents_number ")
        async with conn.transaction():
            await conn.execute(sql[:cut])
            late = asyncio.ensure_future(writer.execute(insert, tid, "LATE-1", 50, 0))
            await asyncio.sleep(0.3)
            assert not late.done()  # held until the triggers are in
            await conn.execute(sql[cut:])
        await late
        numbers = {
            r["number_norm"]
            for r in await conn.fetch(
                "select number_norm from open_documents where tenant_id = $1", tid
            )
        }
        assert numbers == {"OPEN-1", "LATE-1"}
    finally:
        await writer.close()
        await conn.close()
