"""Per-request context: who is calling, and batched loaders scoped to their tenant."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from asyncpg import Pool, Record
from graphql import GraphQLError
from strawberry.dataloader import DataLoader

from ..actions.connections import Sources
from ..actions.scope import Scope
from ..auth import AuthError, Plan, Principal, TokenVerifier
from ..config import Settings
from ..errors import Unauthenticated
from ..events import EventHub
from ..store import allocations as allocations_store
from ..store import connections as connections_store
from ..store import documents as documents_store
from ..store import partners as partners_store
from ..store import tenants as tenants_store
from ..store import transactions as transactions_store
from ..workers.scheduler import Scheduler

__all__ = ["AppState", "Context", "resolve_scope"]


@dataclass(slots=True)
class AppState:
    """What every request shares: settings, the pool, the token verifier, the payment
    sources (with the settings cipher and the clock) and this process's poll scheduler."""

    settings: Settings
    pool: Pool
    verifier: TokenVerifier
    sources: Sources
    scheduler: Scheduler | None = None
    hub: EventHub | None = None


async def resolve_scope(state: AppState, authorization: str | None) -> Scope:
    """Turn a bearer header into the caller's scope, or raise Unauthenticated."""
    try:
        principal: Principal = await state.verifier.verify_header(authorization)
    except AuthError as exc:
        raise Unauthenticated(str(exc)) from None
    async with state.pool.acquire() as conn:
        tenant = await tenants_store.by_slug(conn, principal.tenant_slug)
    if tenant is None:
        raise Unauthenticated(f"tenant {principal.tenant_slug!r} of this token does not exist")
    return Scope(
        tenant_id=tenant["id"],
        tenant_slug=tenant["slug"],
        tenant_name=tenant["name"],
        plan=Plan(tenant["plan"]),
        subject=principal.subject,
        role=principal.role,
        expires_at=principal.expires_at,
    )


Loader = DataLoader[int, Record | None]
ListLoader = DataLoader[int, list[Record]]


@dataclass
class Context:
    state: AppState
    authorization: str | None
    request: Any = None
    response: Any = None
    # The WebSocket connection_init payload (strawberry sets it).
    connection_params: Any = None
    # Errors to report beside the data (one bad record in a batch that otherwise landed).
    extra_errors: list[GraphQLError] = field(default_factory=list)
    _scope: Scope | None = None
    _auth_error: Unauthenticated | None = None
    _loaders: dict[str, DataLoader[Any, Any]] = field(default_factory=dict)

    @property
    def pool(self) -> Pool:
        return self.state.pool

    @property
    def settings(self) -> Settings:
        return self.state.settings

    async def scope(self) -> Scope:
        if self._scope is not None and self._scope.expires_at <= time.time():
            # A socket outlives its token: from expiry on, nothing more is answered on it.
            raise Unauthenticated("the token has expired; reconnect with a new one")
        if self._scope is None:
            if self._auth_error is not None:
                raise self._auth_error
            try:
                self._scope = await resolve_scope(self.state, self.authorization)
            except Unauthenticated as exc:
                self._auth_error = exc
                raise
        return self._scope

    def _by_id(
        self, name: str, fetch: Callable[[Any, int, Sequence[int]], Awaitable[list[Record]]]
    ) -> Loader:
        loader = self._loaders.get(name)
        if loader is None:

            async def load(ids: list[int]) -> list[Record | None]:
                scope = await self.scope()
                async with self.pool.acquire() as conn:
                    rows = {r["id"]: r for r in await fetch(conn, scope.tenant_id, ids)}
                return [rows.get(i) for i in ids]

            loader = self._loaders[name] = DataLoader(load)
        return loader

    def _by_parent(
        self,
        name: str,
        fetch: Callable[[Any, int, Sequence[int]], Awaitable[list[Record]]],
        key: str,
    ) -> ListLoader:
        loader = self._loaders.get(name)
        if loader is None:

            async def load(ids: list[int]) -> list[list[Record]]:
                scope = await self.scope()
                async with self.pool.acquire() as conn:
                    rows = await fetch(conn, scope.tenant_id, ids)
                grouped: dict[int, list[Record]] = defaultdict(list)
                for row in rows:
                    grouped[row[key]].append(row)
                return [grouped.get(i, []) for i in ids]

            loader = self._loaders[name] = DataLoader(load)
        return loader

    @property
    def partners(self) -> Loader:
        return self._by_id("partners", partners_store.by_ids)

    @property
    def documents(self) -> Loader:
        return self._by_id("documents", documents_store.by_ids)

    @property
    def connections(self) -> Loader:
        return self._by_id("connections", connections_store.by_ids)

    @property
    def transactions(self) -> Loader:
        return self._by_id("transactions", transactions_store.by_ids)

    @property
    def allocations_by_document(self) -> ListLoader:
        return self._by_parent("alloc_doc", allocations_store.by_document_ids, "document_id")

    @property
    def allocations_by_transaction(self) -> ListLoader:
        return self._by_parent("alloc_tx", allocations_store.by_transaction_ids, "transaction_id")

    @property
    def allocation_history_by_transaction(self) -> ListLoader:
        return self._by_parent(
            "alloc_tx_all", allocations_store.history_by_transaction_ids, "transaction_id"
        )

    @property
    def allocation_history_by_document(self) -> ListLoader:
        return self._by_parent(
            "alloc_doc_all", allocations_store.history_by_document_ids, "document_id"
        )
