"""Taking in payments: check each record, store the new ones, match them, record events.

Everything for one batch happens in one database transaction, so a crash at any point either
keeps the whole batch (matched, with its events) or none of it, and a retry is deduplicated.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Sequence
from typing import Any

from asyncpg import Connection, Pool, Record, UniqueViolationError

from ..domain.matcher import Decision, MatchConfig, lookup_for
from ..domain.models import MatchState
from ..domain.records import RecordProblem, check_transaction
from ..errors import BadUserInput, NotFound
from ..store import allocations as allocations_store
from ..store import connections as connections_store
from ..store import events as events_store
from ..store import matching as matching_store
from ..store import transactions as transactions_store
from .lane import Lane
from .matching import (
    MatchOutcome,
    allocation_rows,
    config_of,
    decide_batch,
    payment_of,
    verdict,
)
from .results import BatchResult
from .scope import Scope

__all__ = ["ingest_transactions", "store_transactions"]

_YIELD = 32
# The exact candidates of this many payments are fetched ahead of the rest of the batch's.
_FIRST_FETCH = 96
# A batch is taken again (in a new savepoint) at most this many times in all when payments
# of it turn out to be stored meanwhile.
_ATTEMPTS = 3
_PROVIDER_ID_KEY = "transactions_connection_id_provider_transaction_id_key"


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
    carry the matcher's verdict. The outcome's documents carry id, total, paid_amount and
    payment_count only.

    Each attempt runs in a savepoint. Under the tenant lock nothing else stores payments for
    the connection, so a clash with the unique (connection, provider id) constraint means a
    writer that bypassed the lock stored some of them meanwhile: the attempt is rolled back
    and the batch is taken again, and those now count as stored already.
    """
    if not records:
        return [], [], MatchOutcome()
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            async with conn.transaction():
                new, outcome = await _store(conn, tenant_id, connection, records)
            break
        except UniqueViolationError as exc:
            if exc.constraint_name != _PROVIDER_ID_KEY or attempt == _ATTEMPTS:
                raise
    by_pid: dict[str, Any] = {r["provider_transaction_id"]: r for r in new}
    missing = [
        r["provider_transaction_id"] for r in records if r["provider_transaction_id"] not in by_pid
    ]
    if missing:
        for row in await transactions_store.by_provider_ids(
            conn, tenant_id, connection["id"], missing
        ):
            by_pid[row["provider_transaction_id"]] = row
    ordered = [
        by_pid[r["provider_transaction_id"]]
        for r in records
        if r["provider_transaction_id"] in by_pid
    ]
    return new, ordered, outcome


async def _store(
    conn: Connection, tenant_id: int, connection: Record, records: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], MatchOutcome]:
    """One attempt at `store_transactions`: the new rows and the outcome."""
    connection_id = connection["id"]
    # Under the tenant lock nobody else inserts for this connection, so what is not stored
    # yet is new: decide those, then store each with its verdict. The first record of each
    # provider id counts (check_records already keeps only that one).
    distinct: dict[str, dict[str, Any]] = {}
    for r in records:
        distinct.setdefault(r["provider_transaction_id"], r)
    lane = Lane()
    try:
        lane.run(lambda: matching_store.lock_tenant(conn, tenant_id))
        reserving = lane.run(
            lambda: transactions_store.reserve_new(conn, tenant_id, connection_id, list(distinct))
        )
        # The batch's PAYMENT_RECEIVED events go out as soon as the reservation has the ids.
        lane.run(lambda: _announce(conn, tenant_id, connection_id, reserving))
        # While they run, the payments' exact keys are worked out (with a pause now and then
        # for the reservation to go out when the lock is in). The exact candidates go out
        # right behind them, for every payment (one found stored already only
        # brings documents nobody asks for): those of the first few as soon as their keys
        # are known, so that the database reads while the rest are worked out, and the
        # first decisions need not wait for the whole batch's candidates.
        config = config_of(connection)
        prepared: list[tuple[str, _Prepared]] = []
        cuts = [0]  # where each part of the exact-candidate fetch starts
        fetches: list[Awaitable[list[Record]]] = []

        def fetch(start: int, end: int) -> None:
            lookups = [p.lookup for _, p in prepared[start:end]]
            fetches.append(
                lane.run(lambda: matching_store.exact_candidates(conn, tenant_id, lookups))
            )
            cuts.append(end)

        for pid, r in distinct.items():
            if not len(prepared) % _YIELD:
                await asyncio.sleep(0)
            prepared.append((pid, _Prepared(r, config)))
            if len(prepared) == _FIRST_FETCH and len(distinct) > _FIRST_FETCH:
                fetch(0, _FIRST_FETCH)
        fetch(cuts[-1], len(prepared))
        reserved = await reserving
        fresh: list[_Prepared] = []
        parts: list[tuple[int, Awaitable[list[Record]]]] = []
        for (start, end), part in zip(itertools.pairwise(cuts), fetches, strict=True):
            fresh += [p for pid, p in prepared[start:end] if pid not in reserved.known]
            parts.append((len(fresh), part))
        if not fresh:
            return [], MatchOutcome()
        return await _store_fresh(
            conn, tenant_id, connection_id, config, fresh, reserved, lane, parts
        )
    finally:
        await lane.settle()


async def _announce(
    conn: Connection,
    tenant_id: int,
    connection_id: int,
    reserving: Awaitable[transactions_store.Reservation],
) -> None:
    """PAYMENT_RECEIVED for each new payment of the batch, in input order: the reservation
    holds their ids already, whatever their decisions will be."""
    ids = (await reserving).ids
    if ids:
        await events_store.append_many(
            conn,
            tenant_id,
            [
                {"type": "PAYMENT_RECEIVED", "transaction_id": i, "connection_id": connection_id}
                for i in ids
            ],
        )


class _Prepared:
    """A record to store, as the matcher sees it, with its exact keys worked out."""

    __slots__ = ("lookup", "payment", "record")

    def __init__(self, record: dict[str, Any], config: MatchConfig) -> None:
        self.record = record
        self.payment = payment_of(record)
        self.lookup = lookup_for(self.payment, config, near_misses=False)


async def _store_fresh(
    conn: Connection,
    tenant_id: int,
    connection_id: int,
    config: MatchConfig,
    fresh: list[_Prepared],
    reserved: transactions_store.Reservation,
    lane: Lane,
    candidates: Sequence[tuple[int, Awaitable[list[Record]]]],
) -> tuple[list[dict[str, Any]], MatchOutcome]:
    """Decide, store and book payments not stored yet, overlapping Python and PostgreSQL.

    Statements queue on the `lane`: while the first pass decides, the payments it has
    finished with are already being copied in with their allocations. A candidate query
    queued after such writes sees them, as the in-memory view it is merged with does; and
    all of it is still one transaction.
    """
    writer = _Writer(conn, tenant_id, connection_id, fresh, reserved, lane)
    await decide_batch(
        conn,
        tenant_id,
        [(p.payment, config) for p in fresh],
        exact=[p.lookup for p in fresh],
        exact_fetched=candidates,
        lane=lane,
        # The rows follow PAYMENT_RECEIVED (`_announce`) in chunks, in the order their
        # decisions become final.
        on_decided=writer.decided,
    )
    return await writer.finish()


class _Writer:
    """Queues the writes for payments as their decisions become final.

    PAYMENT_RECEIVED for the whole batch has gone first (`_announce`). Each chunk of decided
    payments is then copied in with its allocations, which are added to the paid state of
    the documents they touch. PAYMENT_MATCHED and the documents' events (for their final
    state) follow every chunk: the events keep the order and the count they had when the
    batch was written in one go.
    """

    def __init__(
        self,
        conn: Connection,
        tenant_id: int,
        connection_id: int,
        fresh: list[_Prepared],
        reserved: transactions_store.Reservation,
        lane: Lane,
    ) -> None:
        self._conn = conn
        self._tenant_id = tenant_id
        self._connection_id = connection_id
        self._fresh = fresh
        self._ids = reserved.ids  # by position in `fresh`
        self._now = reserved.now
        self._lane = lane
        # Each payment's stored row and decision, by position in `fresh`, as decided.
        self._decided: dict[int, tuple[dict[str, Any], Decision]] = {}
        # Documents whose paid state moved, as last updated.
        self._documents: dict[int, Record] = {}
        # The last write that moved documents' paid state.
        self._booked: Awaitable[None] | None = None

    def decided(self, final: list[tuple[int, Decision]]) -> None:
        ids, fresh, new_row = self._ids, self._fresh, transactions_store.new_row
        tenant_id, connection_id, now = self._tenant_id, self._connection_id, self._now
        rows = []
        allocations: list[dict[str, Any]] = []
        for position, decision in final:
            row = new_row(
                fresh[position].record,
                verdict(decision),
                id=ids[position],
                tenant_id=tenant_id,
                connection_id=connection_id,
                now=now,
            )
            rows.append(row)
            self._decided[position] = row, decision
            if decision.state is MatchState.MATCHED:
                allocations.extend(allocation_rows(row, decision))
        # Everything the writes send is ready before they are queued: between two of them the
        # connection would otherwise wait for Python.
        written = self._lane.run(lambda: self._write(rows, allocations))
        if allocations:
            self._booked = written

    async def _write(self, rows: list[dict[str, Any]], allocations: list[dict[str, Any]]) -> None:
        conn, tenant_id = self._conn, self._tenant_id
        await transactions_store.insert_new(conn, rows)
        if allocations:
            await allocations_store.copy_many(conn, tenant_id, allocations)
            # Every allocation here is a new payment's, so it adds to its document.
            for doc in await matching_store.add_paid(conn, tenant_id, allocations, brief=True):
                self._documents[doc["id"]] = doc

    async def finish(self) -> tuple[list[dict[str, Any]], MatchOutcome]:
        # The events need the documents' final paid state, which the last write with
        # allocations brings back. They are worked out while the writes after it (of
        # payments that hit nothing, as a rule) still run, and queued right behind them.
        if self._booked is not None:
            await self._booked
        # In input order, as the batch came.
        decided = [self._decided[p] for p in sorted(self._decided)]
        new = [row for row, _ in decided]
        outcome = MatchOutcome(
            decisions={row["id"]: decision for row, decision in decided},
            rows=list(new),
            documents=list(self._documents.values()),
        )
        events = outcome.events()
        # PAYMENT_RECEIVED went first, so the event lock is held already.
        self._lane.run(
            lambda: events_store.append_many(self._conn, self._tenant_id, events, again=True)
        )
        await self._lane.drain()
        return new, outcome


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
