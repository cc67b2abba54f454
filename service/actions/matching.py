"""Running the matcher inside the transaction that stores payments or documents.

The domain decides; this module fetches candidates for a whole batch in two queries (exact
keys, then near misses for what is left), books the allocations, adds them to the documents'
paid state and appends the events, all on the caller's connection and transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any

from asyncpg import Connection, Record

from ..domain.index import DocumentIndex
from ..domain.matcher import Decision, Lookup, MatchConfig, decide, lookup_for
from ..domain.models import (
    DocumentKind,
    MatchKey,
    MatchState,
    OpenDocument,
    Payment,
    PaymentState,
    payment_state,
)
from ..store import allocations as allocations_store
from ..store import connections as connections_store
from ..store import events as events_store
from ..store import matching as matching_store
from ..store import transactions as transactions_store
from .lane import Lane

__all__ = [
    "MatchOutcome",
    "allocation_rows",
    "book",
    "config_of",
    "decide_batch",
    "document_events",
    "match_payments",
    "open_document",
    "payment_of",
    "verdict",
]

# The first pass hands on its decisions at least every _CHUNK payments, and as soon as the
# connection is idle (on a lane) once it has _MIN_CHUNK: fewer cost more in statements than
# the overlap gains. The first chunk goes at _FIRST_CHUNK, whether or not the connection is
# idle, since the database has nothing else to do once the reads are done. Queued
# statements need the event loop for each round trip: long stretches of Python let it run
# every _YIELD items.
_CHUNK = 256
_FIRST_CHUNK = 16
_MIN_CHUNK = 64
_YIELD = 8

_DOCUMENT_EVENT = {
    PaymentState.PAID: "DOCUMENT_PAID",
    PaymentState.PARTIALLY_PAID: "DOCUMENT_PARTIALLY_PAID",
    PaymentState.OVERPAID: "DOCUMENT_OVERPAID",
}


@dataclass(slots=True)
class MatchOutcome:
    decisions: dict[int, Decision] = field(default_factory=dict)
    # The payments as stored after matching, and the documents whose paid state moved.
    rows: list[Mapping[str, Any]] = field(default_factory=list)
    documents: list[Record] = field(default_factory=list)

    @property
    def matched(self) -> int:
        return sum(self.decisions[r["id"]].state is MatchState.MATCHED for r in self.rows)

    def events(self) -> list[dict[str, Any]]:
        """PAYMENT_MATCHED for each matched payment in order, then the event of each
        document whose paid state moved, naming the last payment that paid it."""
        events: list[dict[str, Any]] = []
        paid_by: dict[int, int] = {}  # document -> the last payment that paid it
        for row in self.rows:
            decision = self.decisions[row["id"]]
            if decision.state is MatchState.MATCHED:
                events.append({"type": "PAYMENT_MATCHED", "transaction_id": row["id"]})
                for plan in decision.allocations:
                    paid_by[plan.document_id] = row["id"]
        for doc in self.documents:
            events.extend(document_events([doc], paid_by[doc["id"]]))
        return events


def config_of(connection: Mapping[str, Any]) -> MatchConfig:
    return MatchConfig(
        match_against=frozenset(DocumentKind(k) for k in connection["match_against"]),
        match_keys=frozenset(MatchKey(k) for k in connection["match_keys"]),
    )


def payment_of(row: Mapping[str, Any]) -> Payment:
    """A stored or checked payment row as the matcher's payment."""
    return Payment._make(_payment_fields(row))


_payment_fields = itemgetter(*Payment._fields)


def open_document(row: Record) -> OpenDocument:
    """A candidate row of `matching_store` as the matcher's document."""
    return OpenDocument.restore(row)


def document_events(
    rows: Sequence[Mapping[str, Any]], transaction_id: int | None = None
) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        state = payment_state(row["total"], row["paid_amount"])
        if state in _DOCUMENT_EVENT:
            out.append(
                {
                    "type": _DOCUMENT_EVENT[state],
                    "document_id": row["id"],
                    "transaction_id": transaction_id,
                }
            )
    return out


async def decide_batch(
    conn: Connection,
    tenant_id: int,
    payments: Sequence[tuple[Payment, MatchConfig]],
    *,
    exact: Sequence[Lookup] | None = None,
    exact_fetched: Sequence[tuple[int, Awaitable[list[Record]]]] | None = None,
    lane: Lane | None = None,
    on_decided: Callable[[list[tuple[int, Decision]]], None] | None = None,
) -> list[Decision]:
    """Decide a batch of payments in order, reading candidates in two queries.

    Exact keys are fetched for the whole batch first; only payments whose references hit
    nothing get near-miss candidates (those never change what exact hits decide).
    Allocations made earlier in the batch are seen by later payments (the in-memory indexes
    are updated as decisions are made). Reads only; the caller holds the tenant's matching
    lock (`matching_store.lock_tenant`).

    With a `lane`, the queries queue behind the caller's statements; the near-miss query for
    payments that no exact key can hit runs while the first pass decides the rest.
    `on_decided` gets (position, decision) pairs as soon as they are final, each once, so
    the caller can queue their writes meanwhile.
    `exact` is each payment's `lookup_for(..., near_misses=False)` if the caller has it;
    `exact_fetched` the candidates for them if the caller fetches those already, in parts:
    (end, fetch) for the payments before position `end` not covered by an earlier part. A
    payment is decided once its part is in, so the first decisions need not wait for the
    whole batch's candidates.
    """

    def query(fetch: Callable[[], Awaitable[list[Record]]]) -> Awaitable[list[Record]]:
        # On a lane the query is queued (and goes out at the next await) right away.
        return fetch() if lane is None else lane.run(fetch)

    # The tenant's reference lengths, for the near-miss query to work out only keys some
    # reference can meet: on a lane read right away, behind the caller's statements;
    # without one, when the near-miss query is needed.
    lengths: Awaitable[list[int]] | None = None
    if lane is not None:
        lengths = lane.run(lambda: matching_store.reference_lengths(conn, tenant_id))

    async def near_candidates(lookups: Sequence[Lookup]) -> list[Record]:
        known = await (lengths or matching_store.reference_lengths(conn, tenant_id))
        return await matching_store.near_candidates(conn, tenant_id, lookups, known)

    exact_lookups = exact or [lookup_for(p, cfg, near_misses=False) for p, cfg in payments]
    if exact_fetched is None:
        fetch = query(lambda: matching_store.exact_candidates(conn, tenant_id, exact_lookups))
        exact_fetched = [(len(payments), fetch)]
    parts = list(exact_fetched)
    # Exact keys only: the one-edit keys and prefix lists are for the near-miss pass.
    first = DocumentIndex(near_misses=False)
    exact_ids: set[int] = set()  # ids of every exact candidate row read so far
    # Each payment's candidates as its part comes in; what earlier payments paid in full is
    # dropped (and paid amounts refreshed) when its turn comes.
    reach: list[list[OpenDocument]] = []

    async def take_part() -> None:
        end, fetch = parts.pop(0)
        rows = await fetch
        if lane is not None:
            await asyncio.sleep(0)  # what is queued goes out before the indexing below
        for i, doc in enumerate(rows):
            # A document an earlier part brought is indexed already, maybe paid since: the
            # row, read as the batch began, would undo that.
            if doc["id"] not in exact_ids:
                exact_ids.add(doc["id"])
                first.add(open_document(doc))
            if lane is not None and not i % _YIELD:
                await asyncio.sleep(0)
        reach.extend(first.candidates(lookup) for lookup in exact_lookups[len(reach) : end])

    await take_part()
    decisions: list[Decision | None] = []
    pending: list[tuple[int, Lookup]] = []
    final: list[tuple[int, Decision]] = []
    # Payments no exact key reaches end unmatched whatever the batch does before them: their
    # near-miss candidates are fetched in the background while the rest are decided, queued
    # behind the first writes (the database has those to do while the keys are worked out).
    early: dict[int, Lookup] = {}
    early_fetch: Awaitable[list[Record]] | None = None
    early_sent = lane is None
    handed = 0  # decisions handed over so far

    async def fetch_early() -> None:
        nonlocal early_fetch, early_sent
        while parts:  # every payment's exact candidates are needed to know which hit none
            await take_part()
        early_sent = True
        seen = dict(pending)
        for position, ((payment, cfg), docs) in enumerate(zip(payments, reach, strict=True)):
            if not docs and payment.amount > 0:
                early[position] = seen.get(position) or lookup_for(payment, cfg)
                if not len(early) % _YIELD:
                    await asyncio.sleep(0)
        if early:
            lookups = list(early.values())
            early_fetch = query(lambda: near_candidates(lookups))
            await asyncio.sleep(0)  # send it

    for position, ((payment, cfg), refs) in enumerate(zip(payments, exact_lookups, strict=True)):
        while position >= len(reach):
            await take_part()
        docs = reach[position]
        if docs:
            docs = [d for d in map(first.get, (d.id for d in docs)) if d is not None]
        decision = decide(payment, docs, cfg, refs)
        if decision.state is MatchState.MATCHED:
            first.apply(decision)
        if decision.state is MatchState.UNMATCHED and payment.amount > 0:
            # No exact reference hit anything; near misses can only add suggestions.
            near = early.get(position)
            if near is None:
                near = lookup_for(payment, cfg)
            pending.append((position, near))
            decisions.append(None)
        else:
            decisions.append(decision)
            final.append((position, decision))
        if on_decided is None:
            continue
        if lane is None:
            if len(final) >= _CHUNK:
                on_decided(final)
                final = []
        elif position % _YIELD == 0:
            # Hand over what is final whenever the database has nothing left to do: the
            # writes keep it busy while the rest is decided, in as few statements as that
            # allows. The first chunk goes as soon as it is there, queued behind the reads:
            # the database starts on it the moment they are done instead of waiting for
            # this loop to notice.
            least = _MIN_CHUNK if handed else _FIRST_CHUNK
            if len(final) >= _CHUNK or (len(final) >= least and (lane.idle or not handed)):
                on_decided(final)
                handed += len(final)
                final = []
                if not early_sent and handed >= _MIN_CHUNK:
                    await fetch_early()
            await asyncio.sleep(0)
    # Payments that turned out to hit nothing after all: their near-miss query goes ahead
    # of the writes for the last decisions.
    late = [lk for position, lk in pending if position not in early]
    late_fetch = query(lambda: near_candidates(late)) if late else None
    if on_decided is not None and final:
        on_decided(final)
    if pending:
        fetched = list(await early_fetch) if early_fetch is not None else []
        if late_fetch is not None:
            fetched += await late_fetch
        # The batch's own view first: documents it paid in full stay out, and the ones it
        # paid in part keep what it paid (the database does not have those allocations yet).
        index = DocumentIndex(first.documents())
        closed = {i for i in exact_ids if i not in first}
        for doc in fetched:
            if doc["id"] not in index and doc["id"] not in closed:
                index.add(open_document(doc))
        index.compact()
        final = []
        for position, lookup in pending:
            payment, cfg = payments[position]
            decision = decide(payment, index.candidates(lookup), cfg, lookup)
            if decision.state is MatchState.MATCHED:
                index.apply(decision)
            decisions[position] = decision
            final.append((position, decision))
            if lane is not None and not len(final) % _YIELD:
                await asyncio.sleep(0)
        if on_decided is not None:
            on_decided(final)
    elif early_fetch is not None:
        await early_fetch  # every early one was decided without it (cannot happen); collect
    return [d for d in decisions if d is not None]


def verdict(decision: Decision) -> dict[str, Any]:
    """How a decision is stored on its payment."""
    return {
        "match_state": decision.state.value,
        "explanation": decision.explanation,
        "suggestions": [
            {"document_id": s.document_id, "confidence": s.confidence, "reason": s.reason}
            for s in decision.suggestions
        ],
    }


def allocation_rows(
    row: Mapping[str, Any], decision: Decision, actor: str | None = None
) -> list[dict[str, Any]]:
    """The allocations a matched decision books for its stored payment `row`."""
    return [
        {
            "transaction_id": row["id"],
            "document_id": plan.document_id,
            "amount": plan.amount,
            "currency": row["currency"],
            "rule": plan.rule.value,
            "method": "AUTO",
            "created_by": actor,
        }
        for plan in decision.allocations
    ]


async def book(
    conn: Connection,
    tenant_id: int,
    rows: Sequence[Mapping[str, Any]],
    decisions: Mapping[int, Decision],
    *,
    actor: str | None = None,
) -> MatchOutcome:
    """Write what the decisions allocate, add it to the documents' paid state, append events.

    `decisions` maps payment ids (of `rows`) to their decision; the payments have no active
    allocation yet.
    """
    outcome = MatchOutcome(rows=list(rows), decisions=dict(decisions))
    allocations = [
        allocation
        for row in rows
        if decisions[row["id"]].state is MatchState.MATCHED
        for allocation in allocation_rows(row, decisions[row["id"]], actor)
    ]
    if allocations:
        await allocations_store.copy_many(conn, tenant_id, allocations)
        # The payments booked here had no active allocation: each adds to its documents.
        outcome.documents = await matching_store.add_paid(conn, tenant_id, allocations)
    await events_store.append_many(conn, tenant_id, outcome.events())
    return outcome


async def match_payments(
    conn: Connection,
    tenant_id: int,
    transactions: Sequence[Record],
    configs: Mapping[int, MatchConfig],
    *,
    actor: str | None = None,
) -> MatchOutcome:
    """Match payments already stored (in this transaction), record the verdicts, book them.

    The payments are unmatched or suggested ones: none has an active allocation.

    `configs` maps each payment's connection id to its matching configuration.
    """
    if not transactions:
        return MatchOutcome()
    decisions = await decide_batch(
        conn, tenant_id, [(payment_of(t), configs[t["connection_id"]]) for t in transactions]
    )
    by_id = {t["id"]: d for t, d in zip(transactions, decisions, strict=True)}
    rows = await transactions_store.set_match_result(
        conn, tenant_id, [{"id": i, **verdict(d)} for i, d in by_id.items()]
    )
    return await book(conn, tenant_id, rows, by_id, actor=actor)


async def rematch_for_documents(
    conn: Connection,
    tenant_id: int,
    document_ids: Sequence[int],
    since: datetime,
    *,
    limit: int = 5000,
) -> MatchOutcome:
    """Payments that arrived before their document: match the ones that now name it exactly.

    Only recent unmatched or suggested payments are looked at (a bounded window), and each
    is first probed against an index of just the new documents, so the cost follows the
    window, not the number of documents the tenant has.
    """
    fresh = DocumentIndex(
        open_document(r) for r in await matching_store.open_documents(conn, tenant_id, document_ids)
    )
    if not len(fresh):
        return MatchOutcome()
    waiting = await transactions_store.open_for_rematch(conn, tenant_id, since, limit)
    if not waiting:
        return MatchOutcome()
    connections = {
        r["id"]: config_of(r)
        for r in await connections_store.by_ids(
            conn, tenant_id, sorted({t["connection_id"] for t in waiting})
        )
    }
    hits = [
        t
        for t in waiting
        if fresh.candidates(
            lookup_for(payment_of(t), connections[t["connection_id"]], near_misses=False)
        )
    ]
    if not hits:
        return MatchOutcome()
    hits.sort(key=lambda t: t["id"])  # oldest payment first, as if they had arrived in order
    return await match_payments(conn, tenant_id, hits, connections)
