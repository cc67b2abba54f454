"""What people decide by hand: match, unmatch, ignore. Recorded with who and when."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from asyncpg import Connection, Pool, Record

from ..domain.matcher import split_amount
from ..domain.models import MatchState
from ..domain.money import MoneyError, parse_amount
from ..errors import BadUserInput, Conflict, NotFound
from ..store import allocations as allocations_store
from ..store import documents as documents_store
from ..store import events as events_store
from ..store import matching as matching_store
from ..store import transactions as transactions_store
from .matching import document_events
from .scope import Scope

__all__ = ["ignore_transaction", "match_transaction", "unmatch_transaction"]


async def _locked_transaction(conn: Connection, scope: Scope, transaction_id: int) -> Record:
    await matching_store.lock_tenant(conn, scope.tenant_id)
    rows = await transactions_store.by_ids(conn, scope.tenant_id, [transaction_id], for_update=True)
    if not rows:
        raise NotFound(f"transaction {transaction_id} not found")
    return rows[0]


def _plan(
    payment: Record, documents: dict[int, Record], wanted: Sequence[tuple[int, Decimal | None]]
) -> list[tuple[Record, Decimal]]:
    """Check the requested split and fill in the amounts left out.

    Explicit amounts are taken as given (never more than the payment in all). What is left
    is split over the documents named without an amount the way the matcher splits a
    payment: each up to what it still owes, in the order named, the last one the rest.
    """
    currency = payment["currency"].strip()
    docs = [documents[doc_id] for doc_id, _ in wanted]
    amounts: list[Decimal | None] = []
    given = Decimal(0)
    for position, (doc, (_, amount)) in enumerate(zip(docs, wanted, strict=True)):
        field = f"allocations.{position}"
        if doc["currency"].strip() != currency:
            raise BadUserInput(
                f"document {doc['number']} is in {doc['currency'].strip()}, the payment in"
                f" {currency}: allocations must be in the payment's currency",
                field=field,
            )
        if amount is not None:
            try:
                amount = parse_amount(amount, currency)
            except MoneyError as exc:
                raise BadUserInput(str(exc), field=f"{field}.amount") from None
            if amount <= 0:
                raise BadUserInput(
                    "an allocation must be a positive amount", field=f"{field}.amount"
                )
            given += amount
            if given > payment["amount"]:
                raise BadUserInput(
                    f"allocations add up to more than the payment of {payment['amount']}"
                    f" {currency} (at document {doc['number']})",
                    field=f"{field}.amount",
                )
        amounts.append(amount)
    open_positions = [i for i, amount in enumerate(amounts) if amount is None]
    owed = [docs[i]["total"] - docs[i]["paid_amount"] for i in open_positions]
    for position, share in zip(
        open_positions, split_amount(payment["amount"] - given, owed), strict=True
    ):
        if share <= 0:
            raise BadUserInput(
                f"nothing left of the payment for document {docs[position]['number']}",
                field=f"allocations.{position}.amount",
            )
        amounts[position] = share
    return [(doc, amount) for doc, amount in zip(docs, amounts, strict=True) if amount is not None]


async def match_transaction(
    pool: Pool,
    scope: Scope,
    transaction_id: int,
    wanted: Sequence[tuple[int | None, Decimal | None]],
) -> Record:
    scope.require_bank_data()
    if not wanted:
        raise BadUserInput(
            "name at least one document to match the payment to", field="allocations"
        )
    if any(doc_id is None for doc_id, _ in wanted):
        raise NotFound("document not found")
    ids = [d for d, _ in wanted if d is not None]
    if len(set(ids)) != len(ids):
        raise BadUserInput("each document may appear once", field="allocations")
    async with pool.acquire() as conn, conn.transaction():
        payment = await _locked_transaction(conn, scope, transaction_id)
        if payment["amount"] <= 0:
            raise BadUserInput("an outgoing payment cannot pay an issued document")
        if payment["match_state"] == MatchState.MATCHED:
            raise Conflict("the payment is already matched; unmatch it first")
        documents = {r["id"]: r for r in await documents_store.lock(conn, scope.tenant_id, ids)}
        missing = [d for d in ids if d not in documents]
        if missing:
            raise NotFound(f"document {missing[0]} not found")
        plan = _plan(payment, documents, [(d, a) for d, a in wanted if d is not None])
        await allocations_store.insert_many(
            conn,
            scope.tenant_id,
            [
                {
                    "transaction_id": transaction_id,
                    "document_id": doc["id"],
                    "amount": amount,
                    "currency": payment["currency"].strip(),
                    "rule": None,
                    "method": "MANUAL",
                    "created_by": scope.subject,
                }
                for doc, amount in plan
            ],
        )
        names = ", ".join(f"{doc['number']} ({amount})" for doc, amount in plan)
        row = await transactions_store.set_decision(
            conn,
            scope.tenant_id,
            transaction_id,
            state=MatchState.MATCHED,
            explanation=f"matched by hand by {scope.subject}: {names}",
            by=scope.subject,
        )
        paid = await matching_store.recompute_paid(conn, scope.tenant_id, ids)
        await events_store.append_many(
            conn,
            scope.tenant_id,
            [
                {"type": "PAYMENT_MATCHED", "transaction_id": transaction_id},
                *document_events(paid, transaction_id),
            ],
        )
    assert row is not None
    return row


async def unmatch_transaction(pool: Pool, scope: Scope, transaction_id: int) -> Record:
    """Reverse the payment's allocations (they stay as history) and the documents' paid state."""
    scope.require_bank_data()
    async with pool.acquire() as conn, conn.transaction():
        payment = await _locked_transaction(conn, scope, transaction_id)
        if payment["match_state"] != MatchState.MATCHED:
            raise Conflict(f"the payment is {payment['match_state']}, not matched")
        reversed_rows = await allocations_store.reverse_for_transaction(
            conn, scope.tenant_id, transaction_id, scope.subject
        )
        row = await transactions_store.set_decision(
            conn,
            scope.tenant_id,
            transaction_id,
            state=MatchState.UNMATCHED,
            explanation=f"unmatched by hand by {scope.subject}",
            by=scope.subject,
        )
        docs = await matching_store.recompute_paid(
            conn, scope.tenant_id, [r["document_id"] for r in reversed_rows]
        )
        events: list[dict[str, Any]] = [
            {"type": "PAYMENT_UNMATCHED", "transaction_id": transaction_id}
        ]
        events += document_events(docs, transaction_id)
        await events_store.append_many(conn, scope.tenant_id, events)
    assert row is not None
    return row


async def ignore_transaction(
    pool: Pool, scope: Scope, transaction_id: int, reason: str | None
) -> Record:
    """Set a payment aside (a refund, a transfer between own accounts); nothing is paid."""
    scope.require_bank_data()
    reason = (reason or "").strip()[:500] or None
    async with pool.acquire() as conn, conn.transaction():
        payment = await _locked_transaction(conn, scope, transaction_id)
        if payment["match_state"] == MatchState.MATCHED:
            raise Conflict("the payment is matched; unmatch it before ignoring it")
        row = await transactions_store.set_decision(
            conn,
            scope.tenant_id,
            transaction_id,
            state=MatchState.IGNORED,
            explanation=f"ignored by {scope.subject}" + (f": {reason}" if reason else ""),
            by=scope.subject,
            ignored_reason=reason,
        )
    assert row is not None
    return row
