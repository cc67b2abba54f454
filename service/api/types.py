"""GraphQL object types. Built from store rows; nested objects come through DataLoaders."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import strawberry
from asyncpg import Record
from strawberry.types import Info

from ..domain.models import payment_state
from ..domain.money import currency_exponent
from .enums import (
    ConnectionStatus,
    ConsentStatus,
    DocumentKind,
    MatchKey,
    MatchMethod,
    MatchState,
    PaymentState,
    Plan,
    Provider,
    Role,
    SyncStatus,
)
from .permissions import BANK_DATA

__all__ = [
    "Allocation",
    "BankConnection",
    "Consent",
    "Document",
    "MatchSuggestion",
    "PageInfo",
    "Partner",
    "RecordError",
    "SyncRun",
    "Tenant",
    "Transaction",
    "Viewer",
]


def _money(value: Decimal, currency: str) -> Decimal:
    # numeric(18,4) comes back with four places; show the currency's own precision.
    return value.quantize(Decimal(1).scaleb(-currency_exponent(currency)))


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Tenant:
    slug: str
    name: str
    plan: Plan


@strawberry.type
class Viewer:
    subject: str
    role: Role
    tenant: Tenant


@strawberry.type
class Partner:
    id: strawberry.ID
    name: str
    identifier: str | None = strawberry.field(
        description=(
            "Constant identifier the partner writes into the remittance text (e.g. a "
            "membership card number)."
        )
    )
    tax_number: str | None
    external_id: str | None

    @classmethod
    def from_row(cls, row: Record) -> Partner:
        return cls(
            id=strawberry.ID(str(row["id"])),
            name=row["name"],
            identifier=row["identifier"],
            tax_number=row["tax_number"],
            external_id=row["external_id"],
        )


@strawberry.type
class Document:
    id: strawberry.ID
    kind: DocumentKind
    number: str = strawberry.field(
        description="Invoice / proforma / order number as issued (sorszám)."
    )
    order_number: str | None
    recurring_order_number: bool = strawberry.field(
        description=(
            "When true, every new payment carrying orderNumber pays the oldest unpaid document "
            "with it."
        )
    )
    variable_symbol: str | None
    specific_symbol: str | None
    constant_symbol: str | None
    payment_key: str | None = strawberry.field(
        description=(
            "Gateway payment id/key stored on the document (Comgate transId, GoPay payment id)."
        )
    )
    issue_date: date | None
    due_date: date | None
    total: Decimal
    currency: str
    paid_amount: Decimal
    payment_count: int
    fully_paid: bool
    payment_state: PaymentState
    external_id: str | None
    partner_id: strawberry.Private[int | None]

    @strawberry.field
    async def partner(self, info: Info) -> Partner | None:
        if self.partner_id is None:
            return None
        row = await info.context.partners.load(self.partner_id)
        return Partner.from_row(row) if row else None

    @strawberry.field
    async def allocations(self, info: Info) -> list[Allocation]:
        rows = await info.context.allocations_by_document.load(int(self.id))
        return [Allocation.from_row(r) for r in rows]

    @strawberry.field(description="Every allocation ever made, reversed ones included.")
    async def allocation_history(self, info: Info) -> list[Allocation]:
        rows = await info.context.allocation_history_by_document.load(int(self.id))
        return [Allocation.from_row(r) for r in rows]

    @classmethod
    def from_row(cls, row: Record) -> Document:
        total, paid, currency = row["total"], row["paid_amount"], row["currency"]
        return cls(
            id=strawberry.ID(str(row["id"])),
            kind=DocumentKind(row["kind"]),
            number=row["number"],
            order_number=row["order_number"],
            recurring_order_number=row["recurring_order_number"],
            variable_symbol=row["variable_symbol"],
            specific_symbol=row["specific_symbol"],
            constant_symbol=row["constant_symbol"],
            payment_key=row["payment_key"],
            issue_date=row["issue_date"],
            due_date=row["due_date"],
            total=_money(total, currency),
            currency=currency,
            paid_amount=_money(paid, currency),
            payment_count=row["payment_count"],
            fully_paid=paid >= total,
            payment_state=PaymentState(payment_state(total, paid)),
            external_id=row["external_id"],
            partner_id=row["partner_id"],
        )


@strawberry.type
class Consent:
    status: ConsentStatus
    valid_until: datetime
    days_left: int


@strawberry.type
class BankConnection:
    id: strawberry.ID
    provider: Provider
    name: str
    status: ConnectionStatus
    poll_interval_seconds: int
    match_against: list[DocumentKind]
    match_keys: list[MatchKey]
    consent: Consent | None
    last_sync_at: datetime | None
    last_error: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Record) -> BankConnection:
        consent = None
        if row["consent_status"] and row["consent_valid_until"]:
            left = row["consent_valid_until"] - datetime.now(UTC)
            consent = Consent(
                status=ConsentStatus(row["consent_status"]),
                valid_until=row["consent_valid_until"],
                days_left=max(0, left.days),
            )
        return cls(
            id=strawberry.ID(str(row["id"])),
            provider=Provider(row["provider"]),
            name=row["name"],
            status=ConnectionStatus(row["status"]),
            poll_interval_seconds=row["poll_interval_seconds"],
            match_against=[DocumentKind(k) for k in row["match_against"]],
            match_keys=[MatchKey(k) for k in row["match_keys"]],
            consent=consent,
            last_sync_at=row["last_sync_at"],
            last_error=row["last_error"],
            created_at=row["created_at"],
        )


@strawberry.type
class Allocation:
    id: strawberry.ID
    amount: Decimal
    rule: MatchKey | None
    method: MatchMethod
    created_at: datetime
    created_by: str | None
    reversed_at: datetime | None = strawberry.field(
        description="Set when an unmatch reversed this allocation; the row stays as history."
    )
    reversed_by: str | None
    transaction_id: strawberry.Private[int]
    document_id: strawberry.Private[int]

    @strawberry.field(extensions=BANK_DATA())
    async def transaction(self, info: Info) -> Transaction:
        row = await info.context.transactions.load(self.transaction_id)
        return Transaction.from_row(row)

    @strawberry.field
    async def document(self, info: Info) -> Document:
        row = await info.context.documents.load(self.document_id)
        return Document.from_row(row)

    @classmethod
    def from_row(cls, row: Record) -> Allocation:
        return cls(
            id=strawberry.ID(str(row["id"])),
            amount=_money(row["amount"], row["currency"]),
            rule=MatchKey(row["rule"]) if row["rule"] else None,
            method=MatchMethod(row["method"]),
            created_at=row["created_at"],
            created_by=row["created_by"],
            reversed_at=row["reversed_at"],
            reversed_by=row["reversed_by"],
            transaction_id=row["transaction_id"],
            document_id=row["document_id"],
        )


@strawberry.type
class MatchSuggestion:
    confidence: float = strawberry.field(
        description="0..1; suggestions are never applied automatically."
    )
    reason: str
    document_id: strawberry.Private[int]

    @strawberry.field
    async def document(self, info: Info) -> Document:
        row = await info.context.documents.load(self.document_id)
        return Document.from_row(row)


@strawberry.type
class Transaction:
    id: strawberry.ID
    provider_transaction_id: str
    booking_date: date
    value_date: date | None
    amount: Decimal = strawberry.field(
        description="Positive for money received, negative for money sent."
    )
    currency: str
    counterparty_name: str | None
    counterparty_account: str | None
    variable_symbol: str | None
    specific_symbol: str | None
    constant_symbol: str | None
    remittance_information: str | None
    payment_key: str | None
    match_state: MatchState
    explanation: str | None = strawberry.field(description="Why it matched, or why it did not.")
    received_at: datetime
    decided_by: str | None = strawberry.field(
        description="Who matched, unmatched or ignored the payment by hand."
    )
    decided_at: datetime | None
    ignored_reason: str | None
    connection_id: strawberry.Private[int]
    suggestion_rows: strawberry.Private[list[dict[str, Any]]]

    @strawberry.field(extensions=BANK_DATA())
    async def connection(self, info: Info) -> BankConnection:
        row = await info.context.connections.load(self.connection_id)
        return BankConnection.from_row(row)

    @strawberry.field
    async def allocations(self, info: Info) -> list[Allocation]:
        rows = await info.context.allocations_by_transaction.load(int(self.id))
        return [Allocation.from_row(r) for r in rows]

    @strawberry.field(description="Every allocation ever made, reversed ones included.")
    async def allocation_history(self, info: Info) -> list[Allocation]:
        rows = await info.context.allocation_history_by_transaction.load(int(self.id))
        return [Allocation.from_row(r) for r in rows]

    @strawberry.field
    def suggestions(self) -> list[MatchSuggestion]:
        return [
            MatchSuggestion(
                confidence=float(s["confidence"]),
                reason=s["reason"],
                document_id=int(s["document_id"]),
            )
            for s in self.suggestion_rows
        ]

    @classmethod
    def from_row(cls, row: Record) -> Transaction:
        currency = row["currency"]
        return cls(
            id=strawberry.ID(str(row["id"])),
            provider_transaction_id=row["provider_transaction_id"],
            booking_date=row["booking_date"],
            value_date=row["value_date"],
            amount=_money(row["amount"], currency),
            currency=currency,
            counterparty_name=row["counterparty_name"],
            counterparty_account=row["counterparty_account"],
            variable_symbol=row["variable_symbol"],
            specific_symbol=row["specific_symbol"],
            constant_symbol=row["constant_symbol"],
            remittance_information=row["remittance_information"],
            payment_key=row["payment_key"],
            match_state=MatchState(row["match_state"]),
            explanation=row["explanation"],
            received_at=row["received_at"],
            decided_by=row["decided_by"],
            decided_at=row["decided_at"],
            ignored_reason=row["ignored_reason"],
            connection_id=row["connection_id"],
            suggestion_rows=list(row["suggestions"] or []),
        )


@strawberry.type
class SyncRun:
    id: strawberry.ID
    started_at: datetime
    finished_at: datetime | None
    status: SyncStatus
    fetched: int
    inserted: int
    duplicates: int
    matched: int
    error: str | None
    connection_id: strawberry.Private[int]

    @strawberry.field(extensions=BANK_DATA())
    async def connection(self, info: Info) -> BankConnection:
        row = await info.context.connections.load(self.connection_id)
        return BankConnection.from_row(row)

    @classmethod
    def from_row(cls, row: Record) -> SyncRun:
        return cls(
            id=strawberry.ID(str(row["id"])),
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            status=SyncStatus(row["status"]),
            fetched=row["fetched"],
            inserted=row["inserted"],
            duplicates=row["duplicates"],
            matched=row["matched"],
            error=row["error"],
            connection_id=row["connection_id"],
        )


@strawberry.type(description="A record of a batch that was not accepted, and why.")
class RecordError:
    index: int = strawberry.field(description="Position of the record in the input list, from 0.")
    key: str | None = strawberry.field(description="The record's own key (provider id or number).")
    field: str
    message: str
