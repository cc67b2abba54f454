"""Taking in payments: check each record, store the new ones, match them, record events.

Everything for one batch happens in one database transaction, so a crash at any point either
keeps the whole batch (matched, with its events) or none of it, and a retry is deduplicated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asyncpg import Connection, Pool, Record

from ..domain.records import RecordProblem, check_transaction
from ..errors import BadUserInput, NotFound
from ..store import connections as connections_store
from ..store import matching as matching_store
from ..store import transactions as transactions_store
from .matching import MatchOutcome, book, config_of, decide_batch, payment_of, verdict
from .results import BatchResult
from .scope import Scope

__all__ = ["ingest_transactions", "store_transactions"]


def check_records(
    items: Sequence[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[RecordProblem]]:
    valid: dict[str, dict[str, Any]] = {}
    problems: list[RecordProblem] = []
    for i, raw in enumerate(items):
        verdict = check_transaction(i, raw)
        if isinstance(verdict, list):
            problems.extend(verdict)
        else:
            # A repeat inside one batch is a duplicate like any other, not an error.
            valid.setdefault(verdict["provider_transaction_id"], verdict)
    return list(valid.values()), problems


async def store_transactions(
    conn: Connection, tenant_id: int, connection: Record, records: list[dict[str, Any]]
) -> tuple[list[Any], list[Any], MatchOutcome]:
    """Store, match and announce a batch inside the caller's transaction.

    Returns (new rows, all rows of the batch in input order, the match outcome); the rows
    carry the matcher's verdict.
    """
    if not records:
        return [], [], MatchOutcome()
    connection_id = connection["id"]
    await matching_store.lock_tenant(conn, tenant_id)
    # Under the tenant lock nobody else inserts for this connection, so what is not stored
    # yet is new: decide those, then store each with its verdict in one insert.
    known = await transactions_store.existing_provider_ids(
        conn, tenant_id, connection_id, [r["provider_transaction_id"] for r in records]
    )
    fresh = [r for r in records if r["provider_transaction_id"] not in known]
    config = config_of(connection)
    decisions = await decide_batch(conn, tenant_id, [(payment_of(r), config) for r in fresh])
    new = await transactions_store.insert_many(
        conn,
        tenant_id,
        connection_id,
        [{**r, **verdict(d)} for r, d in zip(fresh, decisions, strict=True)],
    )
    decided = {r["provider_transaction_id"]: d for r, d in zip(fresh, decisions, strict=True)}
    outcome = await book(
        conn,
        tenant_id,
        new,
        {r["id"]: decided[r["provider_transaction_id"]] for r in new},
        received=new,
    )
    by_pid = {r["provider_transaction_id"]: r for r in new}
    missing = [
        r["provider_transaction_id"] for r in records if r["provider_transaction_id"] not in by_pid
    ]
    if missing:
        for row in await transactions_store.by_provider_ids(
            conn, tenant_id, connection_id, missing
        ):
            by_pid[row["provider_transaction_id"]] = row
    ordered = [
        by_pid[r["provider_transaction_id"]]
        for r in records
        if r["provider_transaction_id"] in by_pid
    ]
    return new, ordered, outcome


async def ingest_transactions(
    pool: Pool,
    scope: Scope,
    connection_id: int,
    items: Sequence[dict[str, Any]],
    *,
    max_batch: int,
) -> BatchResult:
    scope.require_bank_data()
    scope.require_bank_sync_plan()
    if len(items) > max_batch:
        raise BadUserInput(f"at most {max_batch} transactions per call; got {len(items)}")
    records, problems = check_records(items)
    result = BatchResult(problems=problems)
    async with pool.acquire() as conn, conn.transaction():
        connection = await connections_store.by_id(conn, scope.tenant_id, connection_id)
        if connection is None:
            raise NotFound(f"connection {connection_id} not found")
        if connection["provider"] != "PUSH":
            raise BadUserInput(
                f"connection {connection_id} is a {connection['provider']} connection;"
                " ingestTransactions takes payments for PUSH connections only"
            )
        if connection["status"] != "ACTIVE":
            raise BadUserInput(
                f"connection {connection_id} is {connection['status']}; it takes no payments"
            )
        new, ordered, _ = await store_transactions(conn, scope.tenant_id, connection, records)
    result.rows = ordered
    result.inserted = len(new)
    # Every accepted record is new or a duplicate (of a stored one or of another in the call).
    accepted = len(items) - len({p.index for p in problems})
    result.duplicates = accepted - result.inserted
    return result
