"""The event stream: paged reads (`Query.events`) and the live subscription's event type."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import strawberry
from asyncpg import Pool, Record
from strawberry.dataloader import DataLoader
from strawberry.types import Info

from ..store import connections as connections_store
from ..store import documents as documents_store
from ..store import transactions as transactions_store
from .enums import PaymentEventType
from .permissions import BANK_DATA
from .types import BankConnection, Document, PageInfo, Transaction

__all__ = ["EventLoaders", "PaymentEvent", "PaymentEventConnection", "PaymentEventEdge"]

Loader = DataLoader[int, Record | None]
Fetch = Callable[[Any, int, Sequence[int]], Awaitable[list[Record]]]


class EventLoaders:
    """Loaders for the rows an event points at, shared by everyone who receives that event.

    The live hub reads a tenant's new rows once and hands the same batch to every local
    subscriber of the tenant; with these, `transaction { ... }` on an event costs one query
    per batch, not one per subscriber. They live only as long as the batch, so a later event
    sees the row as it is then.
    """

    __slots__ = ("connections", "documents", "transactions")

    def __init__(self, pool: Pool, tenant_id: int) -> None:
        self.transactions = self._loader(pool, tenant_id, transactions_store.by_ids)
        self.documents = self._loader(pool, tenant_id, documents_store.by_ids)
        self.connections = self._loader(pool, tenant_id, connections_store.by_ids)

    @staticmethod
    def _loader(pool: Pool, tenant_id: int, fetch: Fetch) -> Loader:
        async def load(ids: list[int]) -> list[Record | None]:
            async with pool.acquire() as conn:
                rows = {r["id"]: r for r in await fetch(conn, tenant_id, ids)}
            return [rows.get(i) for i in ids]

        return DataLoader(load)

    @classmethod
    def shared(cls, memo: dict[str, Any], pool: Pool, tenant_id: int) -> EventLoaders:
        """The loaders kept in a batch's shared memo, created by whoever comes first."""
        loaders = memo.get("loaders")
        if not isinstance(loaders, EventLoaders):
            loaders = memo["loaders"] = cls(pool, tenant_id)
        return loaders


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
    # Set for live events: loaders shared with the other receivers of the same batch.
    loaders: strawberry.Private[EventLoaders | None] = None

    @strawberry.field(extensions=BANK_DATA())
    async def transaction(self, info: Info) -> Transaction | None:
        if self.transaction_id is None:
            return None
        loader = (
            self.loaders.transactions if self.loaders is not None else info.context.transactions
        )
        row = await loader.load(self.transaction_id)
        return Transaction.from_row(row) if row else None

    @strawberry.field
    async def document(self, info: Info) -> Document | None:
        if self.document_id is None:
            return None
        loader = self.loaders.documents if self.loaders is not None else info.context.documents
        row = await loader.load(self.document_id)
        return Document.from_row(row) if row else None

    @strawberry.field(extensions=BANK_DATA())
    async def connection(self, info: Info) -> BankConnection | None:
        if self.connection_id is None:
            return None
        loader = self.loaders.connections if self.loaders is not None else info.context.connections
        row = await loader.load(self.connection_id)
        return BankConnection.from_row(row) if row else None

    @classmethod
    def from_row(
        cls, row: Record, cursor: str, loaders: EventLoaders | None = None
    ) -> PaymentEvent:
        return cls(
            cursor=cursor,
            type=PaymentEventType(row["type"]),
            occurred_at=row["occurred_at"],
            transaction_id=row["transaction_id"],
            document_id=row["document_id"],
            connection_id=row["connection_id"],
            loaders=loaders,
        )


@strawberry.type
class PaymentEventEdge:
    cursor: str
    node: PaymentEvent


@strawberry.type
class PaymentEventConnection:
    edges: list[PaymentEventEdge]
    page_info: PageInfo
