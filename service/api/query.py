"""Root query fields."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from ..store import connections as connections_store
from ..store import documents as documents_store
from ..store import events as events_store
from ..store import sync_runs as sync_runs_store
from ..store import transactions as transactions_store
from ..store.pagination import encode_cursor
from .enums import PaymentEventType
from .events import PaymentEvent, PaymentEventConnection, PaymentEventEdge
from .inputs import DocumentFilter, TransactionFilter, as_record
from .paging import check_page, page, parse_id
from .permissions import BANK_DATA
from .types import BankConnection, Document, PageInfo, SyncRun, Tenant, Transaction, Viewer

__all__ = ["DocumentConnection", "Query", "TransactionConnection"]


@strawberry.type
class DocumentEdge:
    cursor: str
    node: Document


@strawberry.type
class DocumentConnection:
    edges: list[DocumentEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type
class TransactionEdge:
    cursor: str
    node: Transaction


@strawberry.type
class TransactionConnection:
    edges: list[TransactionEdge]
    page_info: PageInfo
    total_count: int


def _ids_filter(flt: dict[str, object], key: str) -> bool:
    """Turn an id filter into an int; False when it cannot match anything."""
    if flt.get(key) is None:
        return True
    parsed = parse_id(str(flt[key]))
    flt[key] = parsed
    return parsed is not None


@strawberry.type
class SyncRunEdge:
    cursor: str
    node: SyncRun


@strawberry.type
class SyncRunConnection:
    edges: list[SyncRunEdge]
    page_info: PageInfo


@strawberry.type
class Query:
    @strawberry.field
    async def viewer(self, info: Info) -> Viewer:
        scope = await info.context.scope()
        return Viewer(
            subject=scope.subject,
            role=scope.role,
            tenant=Tenant(slug=scope.tenant_slug, name=scope.tenant_name, plan=scope.plan),
        )

    @strawberry.field
    async def documents(
        self,
        info: Info,
        filter: DocumentFilter | None = None,
        first: int | None = 50,
        after: str | None = None,
    ) -> DocumentConnection:
        scope = await info.context.scope()
        first, cursor = check_page(first, after, info.context.settings.max_page_size)
        flt = as_record(filter) if filter else {}
        if not _ids_filter(flt, "partner_id"):
            return DocumentConnection(
                edges=[], page_info=PageInfo(has_next_page=False, end_cursor=None), total_count=0
            )
        async with info.context.pool.acquire() as conn:
            rows = await documents_store.list_page(conn, scope.tenant_id, flt, first, cursor)
            total = await documents_store.count(conn, scope.tenant_id, flt)
        edges, has_next, end = page(rows, first, Document.from_row)
        return DocumentConnection(
            edges=[DocumentEdge(cursor=c, node=n) for c, n in edges],
            page_info=PageInfo(has_next_page=has_next, end_cursor=end),
            total_count=total,
        )

    @strawberry.field
    async def document(self, info: Info, id: strawberry.ID) -> Document | None:
        await info.context.scope()
        key = parse_id(id)
        row = await info.context.documents.load(key) if key is not None else None
        return Document.from_row(row) if row else None

    @strawberry.field(extensions=BANK_DATA())
    async def transactions(
        self,
        info: Info,
        filter: TransactionFilter | None = None,
        first: int | None = 50,
        after: str | None = None,
    ) -> TransactionConnection:
        scope = await info.context.scope()
        first, cursor = check_page(first, after, info.context.settings.max_page_size)
        flt = as_record(filter) if filter else {}
        if not _ids_filter(flt, "connection_id"):
            return TransactionConnection(
                edges=[], page_info=PageInfo(has_next_page=False, end_cursor=None), total_count=0
            )
        async with info.context.pool.acquire() as conn:
            rows = await transactions_store.list_page(conn, scope.tenant_id, flt, first, cursor)
            total = await transactions_store.count(conn, scope.tenant_id, flt)
        edges, has_next, end = page(rows, first, Transaction.from_row)
        return TransactionConnection(
            edges=[TransactionEdge(cursor=c, node=n) for c, n in edges],
            page_info=PageInfo(has_next_page=has_next, end_cursor=end),
            total_count=total,
        )

    @strawberry.field(extensions=BANK_DATA())
    async def transaction(self, info: Info, id: strawberry.ID) -> Transaction | None:
        key = parse_id(id)
        row = await info.context.transactions.load(key) if key is not None else None
        return Transaction.from_row(row) if row else None

    @strawberry.field(extensions=BANK_DATA())
    async def connections(self, info: Info) -> list[BankConnection]:
        scope = await info.context.scope()
        async with info.context.pool.acquire() as conn:
            rows = await connections_store.list_all(conn, scope.tenant_id)
        return [BankConnection.from_row(r) for r in rows]

    @strawberry.field(extensions=BANK_DATA())
    async def connection(self, info: Info, id: strawberry.ID) -> BankConnection | None:
        key = parse_id(id)
        row = await info.context.connections.load(key) if key is not None else None
        return BankConnection.from_row(row) if row else None

    @strawberry.field(extensions=BANK_DATA())
    async def sync_runs(
        self,
        info: Info,
        connection_id: strawberry.ID | None = None,
        first: int | None = 50,
        after: str | None = None,
    ) -> SyncRunConnection:
        scope = await info.context.scope()
        first, cursor = check_page(first, after, info.context.settings.max_page_size)
        key = parse_id(connection_id) if connection_id is not None else None
        if connection_id is not None and key is None:
            return SyncRunConnection(
                edges=[], page_info=PageInfo(has_next_page=False, end_cursor=None)
            )
        async with info.context.pool.acquire() as conn:
            rows = await sync_runs_store.list_page(conn, scope.tenant_id, key, first, cursor)
        edges, has_next, end = page(rows, first, SyncRun.from_row)
        return SyncRunConnection(
            edges=[SyncRunEdge(cursor=c, node=n) for c, n in edges],
            page_info=PageInfo(has_next_page=has_next, end_cursor=end),
        )

    @strawberry.field(extensions=BANK_DATA())
    async def events(
        self,
        info: Info,
        after: str | None = None,
        first: int | None = 100,
        types: list[PaymentEventType] | None = None,
    ) -> PaymentEventConnection:
        scope = await info.context.scope()
        first, cursor = check_page(first, after, info.context.settings.max_page_size)
        async with info.context.pool.acquire() as conn:
            rows = await events_store.list_after(
                conn, scope.tenant_id, cursor, first + 1, [t.value for t in types or []]
            )
        has_next = len(rows) > first
        edges = [
            PaymentEventEdge(cursor=c, node=PaymentEvent.from_row(r, c))
            for r in rows[:first]
            for c in (encode_cursor(r["id"]),)
        ]
        return PaymentEventConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=has_next, end_cursor=edges[-1].cursor if edges else after
            ),
        )
