"""An allocation's payment and document: checked per statement (migration 0006), as strictly
as the foreign keys they replace."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import asyncpg
import pytest

_COLUMNS = ["tenant_id", "transaction_id", "document_id", "amount", "currency", "method"]


@dataclass
class Parents:
    tenant: int
    payments: list[int]
    documents: list[int]

    def of(self, table: str) -> list[int]:
        """The parents stored in `table` (transactions or documents), in id order."""
        return self.payments if table == "transactions" else self.documents


async def _parents(conn: asyncpg.Connection, count: int = 3) -> Parents:
    """A tenant with `count` payments and `count` documents."""
    tenant = await conn.fetchval(
        "insert into tenants (slug, name, plan) values ($1, 'x', 'PROFI') returning id",
        f"r-{uuid.uuid4().hex[:8]}",
    )
    connection = await conn.fetchval(
        "insert into bank_connections (tenant_id, provider, name, status, poll_interval_seconds,"
        " match_against, match_keys, settings_encrypted)"
        " values ($1, 'PUSH', 'x', 'ACTIVE', 60, '{INVOICE}', '{DOCUMENT_NUMBER}', '')"
        " returning id",
        tenant,
    )
    payments = await conn.fetch(
        "insert into transactions (tenant_id, connection_id, provider_transaction_id,"
        " booking_date, amount, currency) select $1, $2, 'p-' || g, current_date, 10, 'HUF'"
        " from generate_series(1, $3::int) g returning id",
        tenant,
        connection,
        count,
    )
    documents = await conn.fetch(
        "insert into documents (tenant_id, kind, number, number_norm, total, currency)"
        " select $1, 'INVOICE', 'D-' || g, 'D-' || g, 10, 'HUF'"
        " from generate_series(1, $2::int) g returning id",
        tenant,
        count,
    )
    return Parents(tenant, sorted(r["id"] for r in payments), sorted(r["id"] for r in documents))


_PARENTS = pytest.mark.parametrize("table", ["transactions", "documents"])


def _rows(p: Parents, pairs: list[tuple[int, int]]) -> list[tuple[object, ...]]:
    return [(p.tenant, t, d, 10, "HUF", "AUTO") for t, d in pairs]


async def test_allocations_naming_existing_payments_and_documents_are_written(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        p = await _parents(conn)
        pairs = [*zip(p.payments, p.documents, strict=True), (p.payments[0], p.documents[1])]
        await conn.copy_records_to_table("allocations", records=_rows(p, pairs), columns=_COLUMNS)
        count = await conn.fetchval(
            "select count(*) from allocations where transaction_id = any($1)", p.payments
        )
        assert count == 4


@pytest.mark.parametrize("missing", ["payment", "document"])
@pytest.mark.parametrize("write", ["copy", "insert"])
async def test_an_allocation_naming_a_missing_parent_fails_and_names_it(
    pool: asyncpg.Pool, missing: str, write: str
) -> None:
    async with pool.acquire() as conn:
        p = await _parents(conn)
        absent = 2**62
        pairs = list(zip(p.payments, p.documents, strict=True))
        # One bad row among good ones: the whole statement fails.
        pairs[1] = (absent, pairs[1][1]) if missing == "payment" else (pairs[1][0], absent)
        with pytest.raises(asyncpg.ForeignKeyViolationError) as caught:
            if write == "copy":
                await conn.copy_records_to_table(
                    "allocations", records=_rows(p, pairs), columns=_COLUMNS
                )
            else:
                await conn.executemany(
                    "insert into allocations (tenant_id, transaction_id, document_id, amount,"
                    " currency, method) values ($1, $2, $3, $4, $5, $6)",
                    _rows(p, pairs),
                )
        assert (
            caught.value.message == f"an allocation names {missing} {absent}, which does not exist"
        )
        column = "transaction_id" if missing == "payment" else "document_id"
        # As the foreign key it stands for reported it.
        assert caught.value.constraint_name == f"allocations_{column}_fkey"
        assert caught.value.detail == (
            f"Key ({column})=({absent}) is not present in table"
            f' "{"transactions" if missing == "payment" else "documents"}".'
        )
        assert not await conn.fetchval(
            "select count(*) from allocations where transaction_id = any($1)", p.payments
        )


@pytest.mark.parametrize(
    ("column", "to"),
    [
        ("document_id", "missing"),  # to a document that does not exist
        ("document_id", "other"),  # to one that does
        ("transaction_id", "other"),
    ],
)
async def test_an_allocations_payment_and_document_never_change(
    pool: asyncpg.Pool, column: str, to: str
) -> None:
    """Moved, an allocation would no longer be the history of what paid what: refused, so
    that no update needs its references checked again."""
    async with pool.acquire() as conn:
        p = await _parents(conn, 2)
        await conn.copy_records_to_table(
            "allocations", records=_rows(p, [(p.payments[0], p.documents[0])]), columns=_COLUMNS
        )
        other = (p.payments if column == "transaction_id" else p.documents)[1]
        with pytest.raises(asyncpg.ForeignKeyViolationError) as caught:
            await conn.execute(
                f"update allocations set {column} = $2 where transaction_id = $1",
                p.payments[0],
                -5 if to == "missing" else other,
            )
        assert caught.value.message == (
            "the payment or document of a row of allocations never changes"
        )
        # Marking it reversed (what an unmatch does) is an update like any other.
        await conn.execute(
            "update allocations set reversed_at = now(), reversed_by = 'x'"
            " where transaction_id = $1",
            p.payments[0],
        )


@_PARENTS
async def test_a_payment_or_document_with_allocations_cannot_be_deleted(
    pool: asyncpg.Pool, table: str
) -> None:
    async with pool.acquire() as conn:
        p = await _parents(conn, 2)
        allocated, free = p.of(table)
        await conn.copy_records_to_table(
            "allocations", records=_rows(p, [(p.payments[0], p.documents[0])]), columns=_COLUMNS
        )
        with pytest.raises(asyncpg.ForeignKeyViolationError) as caught:
            await conn.execute(f"delete from {table} where id = any($1)", [allocated, free])
        word, column = (
            ("payment", "transaction_id")
            if table == "transactions"
            else ("document", "document_id")
        )
        assert caught.value.message == f"{word} {allocated} has allocations and cannot be deleted"
        assert caught.value.constraint_name == f"allocations_{column}_fkey"
        assert await conn.fetchval(f"select count(*) from {table} where id = $1", allocated) == 1
        # One nothing names goes.
        await conn.execute(f"delete from {table} where id = $1", free)
        assert not await conn.fetchval(f"select count(*) from {table} where id = $1", free)


@_PARENTS
async def test_a_parent_of_allocations_cannot_be_truncated(pool: asyncpg.Pool, table: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        p = await _parents(conn, 1)
        await conn.copy_records_to_table(
            "allocations", records=_rows(p, [(p.payments[0], p.documents[0])]), columns=_COLUMNS
        )
        with pytest.raises(asyncpg.ForeignKeyViolationError, match="truncate allocations first"):
            await conn.execute(f"truncate {table} cascade")


@pytest.mark.parametrize("isolation", ["repeatable_read", "serializable"])
async def test_a_delete_under_an_older_snapshot_is_refused(
    pool: asyncpg.Pool, isolation: str
) -> None:
    """Under a snapshot taken before an allocation committed, the delete could not see it
    (a foreign key checks against rows committed since; a trigger cannot): refused."""
    async with pool.acquire() as writer, pool.acquire() as deleter:
        p = await _parents(writer, 1)
        async with deleter.transaction(isolation=isolation):
            await deleter.fetchval("select count(*) from allocations")  # the snapshot
            await writer.copy_records_to_table(
                "allocations",
                records=_rows(p, [(p.payments[0], p.documents[0])]),
                columns=_COLUMNS,
            )
            with pytest.raises(
                asyncpg.ObjectNotInPrerequisiteStateError, match="only be deleted under READ"
            ):
                await deleter.execute("delete from documents where id = $1", p.documents[0])


async def test_many_allocations_in_one_statement_probe_their_parents(pool: asyncpg.Pool) -> None:
    """However many allocations a statement writes, each parent is found by its primary key,
    never by a scan of the parent table (with thousands of ids in one array, a join was
    planned as one): the check's cost follows the statement, not the tables' size."""
    count = 5_000
    async with pool.acquire() as conn, conn.transaction():
        p = await _parents(conn, count)
        await conn.execute("analyze transactions, documents")
        seq_scans = (
            "select coalesce(sum(pg_stat_get_xact_numscans(c.oid)), 0) from pg_class c"
            " where c.relname in ('transactions', 'documents')"
        )
        before = await conn.fetchval(seq_scans)
        await conn.copy_records_to_table(
            "allocations",
            records=_rows(p, list(zip(p.payments, p.documents, strict=True))),
            columns=_COLUMNS,
        )
        assert await conn.fetchval(seq_scans) == before
        # Each of them is locked, as a foreign key locks it.
        locked = await conn.fetchval(
            "select count(*) from documents where id = any($1)"
            " and xmax = pg_current_xact_id()::xid",
            p.documents,
        )
        assert locked == count


@_PARENTS
async def test_ids_that_allocations_name_never_change(pool: asyncpg.Pool, table: str) -> None:
    async with pool.acquire() as conn:
        p = await _parents(conn, 1)
        with pytest.raises(asyncpg.ForeignKeyViolationError, match="never changes"):
            await conn.execute(f"update {table} set id = default where id = $1", p.of(table)[0])


@_PARENTS
async def test_a_delete_racing_an_allocation_waits_for_it_and_then_fails(
    pool: asyncpg.Pool, table: str
) -> None:
    """The allocation locks its payment and document as a foreign key would: a delete cannot
    slip in between the check and the commit."""
    async with pool.acquire() as writer, pool.acquire() as deleter:
        p = await _parents(writer, 1)
        async with writer.transaction():
            await writer.copy_records_to_table(
                "allocations",
                records=_rows(p, [(p.payments[0], p.documents[0])]),
                columns=_COLUMNS,
            )
            deleting = asyncio.ensure_future(
                deleter.execute(f"delete from {table} where id = $1", p.of(table)[0])
            )
            await asyncio.sleep(0.3)
            assert not deleting.done()  # held by the allocation's lock on the row
        with pytest.raises(asyncpg.ForeignKeyViolationError, match="has allocations"):
            await deleting
        assert await writer.fetchval(f"select count(*) from {table} where id = $1", p.of(table)[0])


@_PARENTS
async def test_an_allocation_racing_a_delete_waits_for_it_and_then_fails(
    pool: asyncpg.Pool, table: str
) -> None:
    async with pool.acquire() as writer, pool.acquire() as deleter:
        p = await _parents(writer, 1)
        async with deleter.transaction():
            await deleter.execute(f"delete from {table} where id = $1", p.of(table)[0])
            writing = asyncio.ensure_future(
                writer.copy_records_to_table(
                    "allocations",
                    records=_rows(p, [(p.payments[0], p.documents[0])]),
                    columns=_COLUMNS,
                )
            )
            await asyncio.sleep(0.3)
            assert not writing.done()  # waits to see whether the delete commits
        with pytest.raises(asyncpg.ForeignKeyViolationError, match="does not exist"):
            await writing
