"""Root mutation fields."""

from __future__ import annotations

from collections.abc import Sequence

import strawberry
from graphql import GraphQLError
from strawberry.file_uploads import Upload
from strawberry.types import Info

from ..actions import connections as connection_actions
from ..actions import documents as document_actions
from ..actions import ingest as ingest_actions
from ..actions import manual as manual_actions
from ..domain.records import RecordProblem
from ..errors import NotAvailable, NotFound
from .enums import StatementFormat
from .inputs import (
    AllocationInput,
    ConnectBankSyncInput,
    DocumentInput,
    PartnerInput,
    TransactionInput,
    UpdateConnectionInput,
    as_record,
)
from .paging import parse_id
from .permissions import BANK_DATA, MANAGES_CONNECTIONS
from .types import BankConnection, Document, Partner, RecordError, SyncRun, Transaction

__all__ = ["Mutation"]


@strawberry.type
class UpsertDocumentsPayload:
    documents: list[Document]
    errors: list[RecordError] = strawberry.field(
        description="Records that were not accepted; the others landed."
    )


@strawberry.type
class UpsertPartnersPayload:
    partners: list[Partner]
    errors: list[RecordError] = strawberry.field(
        description="Records that were not accepted; the others landed."
    )


@strawberry.type
class ConnectBankSyncPayload:
    connection: BankConnection
    consent_redirect_url: str | None = strawberry.field(
        description="Set when the user must authorize access at the bank (PSD2 consent)."
    )


@strawberry.type
class IngestPayload:
    inserted: int
    duplicates: int
    transactions: list[Transaction]
    errors: list[RecordError] = strawberry.field(
        description="Records that were not accepted; the others landed."
    )


def _report(info: Info, problems: Sequence[RecordProblem]) -> list[RecordError]:
    """Each rejected record becomes a BAD_USER_INPUT error beside the data, and a RecordError."""
    path = [info.path.key] if info.path else []
    for p in problems:
        info.context.extra_errors.append(
            GraphQLError(
                p.describe(),
                path=path,
                extensions={
                    "code": "BAD_USER_INPUT",
                    "index": p.index,
                    "field": p.field,
                    "key": p.key,
                },
            )
        )
    return [
        RecordError(index=p.index, key=p.key, field=p.field, message=p.message) for p in problems
    ]


def _wake_scheduler(info: Info) -> None:
    """A connection became pollable: look for due work now rather than at the next tick."""
    if info.context.state.scheduler is not None:
        info.context.state.scheduler.wake()


def _id(value: strawberry.ID, what: str) -> int:
    parsed = parse_id(value)
    if parsed is None:
        raise NotFound(f"{what} {value} not found")
    return parsed


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def upsert_partners(self, info: Info, input: list[PartnerInput]) -> UpsertPartnersPayload:
        scope = await info.context.scope()
        result = await document_actions.upsert_partners(
            info.context.pool,
            scope,
            [as_record(i) for i in input],
            max_batch=info.context.settings.max_batch_size,
        )
        return UpsertPartnersPayload(
            partners=[Partner.from_row(r) for r in result.rows],
            errors=_report(info, result.problems),
        )

    @strawberry.mutation
    async def upsert_documents(
        self, info: Info, input: list[DocumentInput]
    ) -> UpsertDocumentsPayload:
        scope = await info.context.scope()
        result = await document_actions.upsert_documents(
            info.context.pool,
            scope,
            [as_record(i) for i in input],
            max_batch=info.context.settings.max_batch_size,
            rematch_window_days=info.context.settings.rematch_window_days,
        )
        return UpsertDocumentsPayload(
            documents=[Document.from_row(r) for r in result.rows],
            errors=_report(info, result.problems),
        )

    @strawberry.mutation(extensions=MANAGES_CONNECTIONS())
    async def connect_bank_sync(
        self, info: Info, input: ConnectBankSyncInput
    ) -> ConnectBankSyncPayload:
        scope = await info.context.scope()
        row, redirect = await connection_actions.connect(
            info.context.pool, scope, info.context.state.sources, as_record(input)
        )
        _wake_scheduler(info)
        return ConnectBankSyncPayload(
            connection=BankConnection.from_row(row), consent_redirect_url=redirect
        )

    @strawberry.mutation(
        extensions=MANAGES_CONNECTIONS(),
        description=(
            "Called after the user returns from the bank; checks the consent with the bank."
        ),
    )
    async def complete_consent(self, info: Info, connection_id: strawberry.ID) -> BankConnection:
        scope = await info.context.scope()
        row = await connection_actions.complete_consent(
            info.context.pool, scope, info.context.state.sources, _id(connection_id, "connection")
        )
        _wake_scheduler(info)
        return BankConnection.from_row(row)

    @strawberry.mutation(extensions=MANAGES_CONNECTIONS())
    async def renew_consent(
        self, info: Info, connection_id: strawberry.ID, redirect_uri: str | None = None
    ) -> ConnectBankSyncPayload:
        scope = await info.context.scope()
        row, redirect = await connection_actions.renew_consent(
            info.context.pool,
            scope,
            info.context.state.sources,
            _id(connection_id, "connection"),
            redirect_uri,
        )
        return ConnectBankSyncPayload(
            connection=BankConnection.from_row(row), consent_redirect_url=redirect
        )

    @strawberry.mutation(
        extensions=MANAGES_CONNECTIONS(),
        description="Stops the sync; transactions already received stay.",
    )
    async def disconnect_bank_sync(
        self, info: Info, connection_id: strawberry.ID
    ) -> BankConnection:
        scope = await info.context.scope()
        row = await connection_actions.disconnect(
            info.context.pool, scope, info.context.state.sources, _id(connection_id, "connection")
        )
        return BankConnection.from_row(row)

    @strawberry.mutation(extensions=MANAGES_CONNECTIONS())
    async def update_connection(
        self, info: Info, connection_id: strawberry.ID, input: UpdateConnectionInput
    ) -> BankConnection:
        scope = await info.context.scope()
        row = await connection_actions.update(
            info.context.pool, scope, _id(connection_id, "connection"), as_record(input)
        )
        return BankConnection.from_row(row)

    @strawberry.mutation(extensions=BANK_DATA())
    async def sync_now(self, info: Info, connection_id: strawberry.ID) -> SyncRun:
        scope = await info.context.scope()
        scope.require_bank_sync_plan()
        scheduler = info.context.state.scheduler
        assert scheduler is not None
        row = await scheduler.sync_now(scope.tenant_id, _id(connection_id, "connection"))
        return SyncRun.from_row(row)

    @strawberry.mutation(
        extensions=BANK_DATA(),
        description=(
            "For PUSH connections: partner systems deliver payments themselves. Idempotent on "
            "providerTransactionId."
        ),
    )
    async def ingest_transactions(
        self, info: Info, connection_id: strawberry.ID, input: list[TransactionInput]
    ) -> IngestPayload:
        scope = await info.context.scope()
        result = await ingest_actions.ingest_transactions(
            info.context.pool,
            scope,
            _id(connection_id, "connection"),
            [as_record(i) for i in input],
            max_batch=info.context.settings.max_batch_size,
        )
        return IngestPayload(
            inserted=result.inserted,
            duplicates=result.duplicates,
            transactions=[Transaction.from_row(r) for r in result.rows],
            errors=_report(info, result.problems),
        )

    @strawberry.mutation(extensions=BANK_DATA())
    async def import_statement(
        self,
        info: Info,
        connection_id: strawberry.ID,
        file: Upload,
        format: StatementFormat | None = None,
    ) -> IngestPayload:
        raise NotAvailable("statement import is not available yet in this version")

    @strawberry.mutation(extensions=BANK_DATA())
    async def match_transaction(
        self, info: Info, transaction_id: strawberry.ID, allocations: list[AllocationInput]
    ) -> Transaction:
        scope = await info.context.scope()
        row = await manual_actions.match_transaction(
            info.context.pool,
            scope,
            _id(transaction_id, "transaction"),
            [(parse_id(a.document_id), a.amount) for a in allocations],
        )
        return Transaction.from_row(row)

    @strawberry.mutation(extensions=BANK_DATA())
    async def unmatch_transaction(self, info: Info, transaction_id: strawberry.ID) -> Transaction:
        scope = await info.context.scope()
        row = await manual_actions.unmatch_transaction(
            info.context.pool, scope, _id(transaction_id, "transaction")
        )
        return Transaction.from_row(row)

    @strawberry.mutation(extensions=BANK_DATA())
    async def ignore_transaction(
        self, info: Info, transaction_id: strawberry.ID, reason: str | None = None
    ) -> Transaction:
        scope = await info.context.scope()
        row = await manual_actions.ignore_transaction(
            info.context.pool, scope, _id(transaction_id, "transaction"), reason
        )
        return Transaction.from_row(row)
