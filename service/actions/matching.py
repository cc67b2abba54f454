"""Running the matcher inside the transaction that stores payments or documents.

The domain decides; this module fetches candidates for a whole batch in two queries (exact
keys, then near misses for what is left), books the allocations, derives the documents' paid
state from them and appends the events, all on the caller's connection and transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
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

__all__ = [
    "MatchOutcome",
    "book",
    "config_of",
    "decide_batch",
    "document_events",
    "match_payments",
    "open_document",
    "payment_of",
    "verdict",
]

_DOCUMENT_EVENT = {
    PaymentState.PAID: "DOCUMENT_PAID",
    PaymentState.PARTIALLY_PAID: "DOCUMENT_PARTIALLY_PAID",
    PaymentState.OVERPAID: "DOCUMENT_OVERPAID",
}


@dataclass(slots=True)
class MatchOutcome:
    matched: int = 0
    decisions: dict[int, Decision] = field(default_factory=dict)
    # The payments as stored after matching, and the documents whose paid state moved.
    rows: list[Record] = field(default_factory=list)
    documents: list[Record] = field(default_factory=list)


def config_of(connection: Mapping[str, Any]) -> MatchConfig:
    return MatchConfig(
        match_against=frozenset(DocumentKind(k) for k in connection["match_against"]),
        match_keys=frozenset(MatchKey(k) for k in connection["match_keys"]),
    )


def payment_of(row: Mapping[str, Any]) -> Payment:
    return Payment(
        amount=row["amount"],
        currency=row["currency"],
        remittance_information=row["remittance_information"],
        variable_symbol=row["variable_symbol"],
        specific_symbol=row["specific_symbol"],
        constant_symbol=row["constant_symbol"],
        payment_key=row["payment_key"],
        counterparty_name=row["counterparty_name"],
        counterparty_account=row["counterparty_account"],
    )


def open_document(row: Mapping[str, Any]) -> OpenDocument:
    return OpenDocument(
        id=row["id"],
        seq=row["id"],
        kind=DocumentKind(row["kind"]),
        number=row["number"],
        total=row["total"],
        paid=row["paid_amount"],
        currency=row["currency"].strip(),
        order_number=row["order_number"],
        recurring_order_number=row["recurring_order_number"],
        variable_symbol=row["variable_symbol"],
        specific_symbol=row["specific_symbol"],
        constant_symbol=row["constant_symbol"],
        payment_key=row["payment_key"],
        partner_id=row["partner_id"],
        partner_identifier=row["partner_identifier"],
        partner_name=row["partner_name"],
        issue_date=row["issue_date"],
    )


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
    conn: Connection, tenant_id: int, payments: Sequence[tuple[Payment, MatchConfig]]
) -> list[Decision]:
    """Decide a batch of payments in order, reading candidates in two queries.

    Exact keys are fetched for the whole batch first; only payments whose references hit
    nothing get near-miss candidates (those never change what exact hits decide).
    Allocations made earlier in the batch are seen by later payments (the in-memory index is
    updated as decisions are made). Reads only; the caller holds the tenant's matching lock
    (`matching_store.lock_tenant`).
    """
    exact = [lookup_for(p, cfg, near_misses=False) for p, cfg in payments]
    index = DocumentIndex()
    for doc in await matching_store.candidates(conn, tenant_id, exact, near=False):
        index.add(open_document(doc))
    index.compact()  # sort the prefix lists once, rather than scan them on every lookup
    decisions: list[Decision | None] = []
    pending: list[tuple[int, Lookup]] = []
    for position, ((payment, cfg), lookup) in enumerate(zip(payments, exact, strict=True)):
        first = decide(payment, index.candidates(lookup), cfg)
        if first.state is MatchState.MATCHED:
            index.apply(first)
        elif first.state is MatchState.UNMATCHED and payment.amount > 0:
            # No exact reference hit anything; near misses can only add suggestions.
            pending.append((position, lookup_for(payment, cfg)))
            decisions.append(None)
            continue
        decisions.append(first)
    if pending:
        fetched = await matching_store.candidates(
            conn, tenant_id, [lk for _, lk in pending], near=True
        )
        for doc in fetched:
            if doc["id"] not in index:  # keep the copies whose paid amount this batch moved
                index.add(open_document(doc))
        index.compact()
        for position, lookup in pending:
            payment, cfg = payments[position]
            decision = decide(payment, index.candidates(lookup), cfg)
            if decision.state is MatchState.MATCHED:
                index.apply(decision)
            decisions[position] = decision
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


async def book(
    conn: Connection,
    tenant_id: int,
    rows: Sequence[Record],
    decisions: Mapping[int, Decision],
    *,
    actor: str | None = None,
    received: Sequence[Record] = (),
) -> MatchOutcome:
    """Write what the decisions allocate, derive the documents' paid state, append events.

    `decisions` maps payment ids (of `rows`) to their decision. Payments in `received` are
    announced (PAYMENT_RECEIVED) ahead of what matching them caused, in one write.
    """
    outcome = MatchOutcome(rows=list(rows), decisions=dict(decisions))
    allocations: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = [
        {"type": "PAYMENT_RECEIVED", "transaction_id": r["id"], "connection_id": r["connection_id"]}
        for r in received
    ]
    touched: dict[int, int] = {}
    for row in rows:
        decision = decisions[row["id"]]
        if decision.state is not MatchState.MATCHED:
            continue
        outcome.matched += 1
        events.append({"type": "PAYMENT_MATCHED", "transaction_id": row["id"]})
        for plan in decision.allocations:
            allocations.append(
                {
                    "transaction_id": row["id"],
                    "document_id": plan.document_id,
                    "amount": plan.amount,
                    "currency": row["currency"],
                    "rule": plan.rule.value,
                    "method": "AUTO",
                    "created_by": actor,
                }
            )
            touched[plan.document_id] = row["id"]
    if allocations:
        await allocations_store.insert_many(conn, tenant_id, allocations)
        outcome.documents = await matching_store.recompute_paid(conn, tenant_id, list(touched))
        for doc in outcome.documents:
            events.extend(document_events([doc], touched[doc["id"]]))
    await events_store.append_many(conn, tenant_id, events)
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
