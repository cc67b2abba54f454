"""The event stream: paged reads and (later) the live subscription."""

from __future__ import annotations

from datetime import datetime

import strawberry
from asyncpg import Record
from strawberry.types import Info

from .enums import PaymentEventType
from .permissions import BANK_DATA
from .types import BankConnection, Document, PageInfo, Transaction

__all__ = ["PaymentEvent", "PaymentEventConnection", "PaymentEventEdge"]


@strawberry.type
class PaymentEvent:
    cursor: str = strawberry.field(
        description=(
            "Opaque, strictly increasing position in the tenant's event stream; pass it as "
            "`after` to resume."
        )
    )
    type: PaymentEventType
    occurred_at: datetime
    transaction_id: strawberry.Private[int | None]
    document_id: strawberry.Private[int | None]
    connection_id: strawberry.Private[int | None]

    @strawberry.field(extensions=BANK_DATA())
    async def transaction(self, info: Info) -> Transaction | None:
        if self.transaction_id is None:
            return None
        row = await info.context.transactions.load(self.transaction_id)
        return Transaction.from_row(row) if row else None

    @strawberry.field
    async def document(self, info: Info) -> Document | None:
        if self.document_id is None:
            return None
        row = await info.context.documents.load(self.document_id)
        return Document.from_row(row) if row else None

    @strawberry.field(extensions=BANK_DATA())
    async def connection(self, info: Info) -> BankConnection | None:
        if self.connection_id is None:
            return None
        row = await info.context.connections.load(self.connection_id)
        return BankConnection.from_row(row) if row else None

    @classmethod
    def from_row(cls, row: Record, cursor: str) -> PaymentEvent:
        return cls(
            cursor=cursor,
            type=PaymentEventType(row["type"]),
            occurred_at=row["occurred_at"],
            transaction_id=row["transaction_id"],
            document_id=row["document_id"],
            connection_id=row["connection_id"],
        )


@strawberry.type
class PaymentEventEdge:
    cursor: str
    node: PaymentEvent


@strawberry.type
class PaymentEventConnection:
    edges: list[PaymentEventEdge]
    page_info: PageInfo
